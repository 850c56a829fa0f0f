//! One trust store for every HTTPS client: Keystone (through the product's osauth session) and
//! the Kubernetes API (through the kube client) both trust the host's system store, as the
//! OpenStack cloud provider does, so a private CA installed on the host works for both.
//!
//! `SSL_CERT_FILE` stands for the system store here (both TLS stacks read it in its place). The
//! environment of running tests cannot be changed safely, so the test runs itself again as a
//! child process with that variable set, or removed, and reads what the child's TLS servers saw.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cinder_remediator::openstack::{config, session};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Set in the child process: probe both clients instead of spawning.
const CHILD: &str = "CINDER_REMEDIATOR_TRUST_STORE_PROBE";
const TEST_NAME: &str = "every_https_client_trusts_the_system_store";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

#[tokio::test]
async fn every_https_client_trusts_the_system_store() {
    if std::env::var_os(CHILD).is_some() {
        probe().await;
        return;
    }
    // The private CA in the (stand-in) system store: both clients complete the handshake.
    let trusted = run_child(Some(fixture("ca.pem")));
    assert_eq!(
        (trusted.keystone, trusted.kubernetes),
        (true, true),
        "with the CA in the system store, every client must trust the server:\n{}",
        trusted.output
    );
    // The host's own store, without that CA: neither client may connect (no bundled roots, no
    // verification switched off).
    let untrusted = run_child(None);
    assert_eq!(
        (untrusted.keystone, untrusted.kubernetes),
        (false, false),
        "without the CA, no client may complete a handshake:\n{}",
        untrusted.output
    );
}

struct Seen {
    keystone: bool,
    kubernetes: bool,
    output: String,
}

fn run_child(cert_file: Option<PathBuf>) -> Seen {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env_remove("SSL_CERT_DIR");
    match cert_file {
        Some(path) => command.env("SSL_CERT_FILE", path),
        None => command.env_remove("SSL_CERT_FILE"),
    };
    let out = command.output().unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the probe failed:\n{output}");
    let handshakes = |service: &str| {
        output
            .lines()
            .find_map(|line| line.strip_prefix(&format!("probe: {service} handshakes: ")))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("the probe did not report {service}:\n{output}"))
    };
    Seen {
        keystone: handshakes("keystone") > 0,
        kubernetes: handshakes("kubernetes") > 0,
        output,
    }
}

/// In the child: a TLS server for each client, one login attempt each, then the handshakes
/// each server completed.
async fn probe() {
    let (keystone_url, keystone) = tls_server().await;
    let (kubernetes_url, kubernetes) = tls_server().await;

    let source = config::Source::from_env([
        ("OS_AUTH_URL", format!("{keystone_url}/v3")),
        ("OS_USERNAME", "probe".to_owned()),
        ("OS_PASSWORD", "probe".to_owned()),
        ("OS_USER_DOMAIN_NAME", "Default".to_owned()),
        ("OS_PROJECT_NAME", "probe".to_owned()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".to_owned()),
    ]);
    let settings = config::load(&source).unwrap();
    let login = session::connect(&settings).await;
    println!(
        "probe: keystone login: {:?}",
        login.err().map(|e| e.to_string())
    );

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: probe\n\
             clusters: [{{name: probe, cluster: {{server: \"{kubernetes_url}\"}}}}]\n\
             users: [{{name: probe, user: {{token: probe}}}}]\n\
             contexts: [{{name: probe, context: {{cluster: probe, user: probe}}}}]\n"
        ),
    )
    .unwrap();
    let client = cinder_remediator::config::kube_client(Some(&kubeconfig), None)
        .await
        .unwrap();
    let list = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await;
    println!(
        "probe: kubernetes list: {:?}",
        list.err().map(|e| e.to_string())
    );

    println!(
        "probe: keystone handshakes: {}",
        keystone.load(Ordering::SeqCst)
    );
    println!(
        "probe: kubernetes handshakes: {}",
        kubernetes.load(Ordering::SeqCst)
    );
}

/// A loopback HTTPS server with the test CA's certificate for 127.0.0.1 that counts completed
/// handshakes and answers every request with 401.
async fn tls_server() -> (String, Arc<AtomicUsize>) {
    let certs = CertificateDer::pem_file_iter(fixture("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server-key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handshakes);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
                              content-length: 2\r\nconnection: close\r\n\r\n{}",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (url, handshakes)
}

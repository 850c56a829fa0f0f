//! HTTPS for the emulated Kubernetes API server. A real API server serves HTTPS only, and
//! kubectl sends no credentials to a plain-HTTP server, so the emulated one serves HTTPS too:
//! a CA made for the run signs a certificate for `127.0.0.1` and `localhost`, and clients trust
//! that CA (the kubeconfig's `certificate-authority-data`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Why no certificate could be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CA or the server certificate.
    #[error("cannot make the emulated API server's certificate")]
    Certificate(#[from] rcgen::Error),
    /// The TLS configuration.
    #[error("cannot configure TLS for the emulated API server")]
    Tls(#[from] rustls::Error),
}

/// A CA of the run and the server configuration its certificate is served with.
pub struct Authority {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    config: Arc<ServerConfig>,
}

impl Authority {
    /// A new CA, and a server certificate it signs for `127.0.0.1` and `localhost`.
    ///
    /// # Errors
    /// When a key or a certificate cannot be made.
    pub fn new() -> Result<Self, Error> {
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "sim-kubernetes-ca");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut server = CertificateParams::new(["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let key = KeyPair::generate()?;
        let certificate = server.signed_by(&key, &ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().to_vec(),
            config: Arc::new(config),
        })
    }

    /// Serves TLS on `listener`: connections that complete their handshake, in the order they do.
    #[must_use]
    pub fn listen(&self, listener: TcpListener) -> Listener {
        let acceptor = TlsAcceptor::from(Arc::clone(&self.config));
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (ready, connections) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    // Out of descriptors, say: try again in a moment, not in a busy loop.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, ready) = (acceptor.clone(), ready.clone());
                // Each handshake on its own: a client that never completes one holds up no other.
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await
                    {
                        let _ = ready.send((tls, peer)).await;
                    }
                });
            }
        });
        Listener {
            connections,
            local,
            accepting,
        }
    }
}

/// Connections whose TLS handshake is done; the accepting task stops when this is dropped.
pub struct Listener {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accepting task ended: no connection will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

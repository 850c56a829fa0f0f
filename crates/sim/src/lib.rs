//! The emulated cloud and cluster behind cinder-remediator's `sim` and `demo` commands and its
//! tests.
//!
//! Each emulator (Keystone, Nova, Cinder, Kubernetes, LINSTOR) is its own axum router over one
//! shared [`World`], listening on its own loopback port. They speak the real wire protocols, so
//! the production clients (the `kube` client, the product's osauth session, the `openstack` CLI
//! and `kubectl`) run against them unchanged. This crate depends on neither the product nor its
//! fencing core, and on no client crate: a serialization bug cannot hide by being shared.

pub mod cinder;
pub mod cloud;
pub mod expect;
pub mod fault;
pub mod keystone;
pub mod kubernetes;
pub mod linstor;
pub mod nova;
pub mod scenario;
pub mod tls;
pub mod world;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use scenario::Scenario;
pub use world::{Endpoints, RequestRecord, World};

use scenario::Service;

/// How often the ticker brings the world up to the present when nobody asks.
const TICK: Duration = Duration::from_millis(50);

/// Why the emulators could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No loopback port could be bound.
    #[error("cannot listen on {addr} for the emulated {service}")]
    Bind {
        /// The service.
        service: &'static str,
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Kubernetes API server's certificate could not be made.
    #[error(transparent)]
    Tls(#[from] tls::Error),
    /// A state file could not be written.
    #[error("cannot write {path}; pass a --state-dir that exists and is writable")]
    StateDir {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Emulators serving a scenario, until [`Running::shutdown`] or drop of the token.
pub struct Running {
    /// The shared state, for tests to inspect and to inject faults.
    pub world: World,
    /// Where each emulator listens.
    pub endpoints: Endpoints,
    /// The CA (DER) the Kubernetes API server's certificate chains to, for clients to trust.
    pub kubernetes_ca: Vec<u8>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// The request log so far.
    #[must_use]
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.world.lock().requests().to_vec()
    }

    /// Stops every emulator and waits for them.
    pub async fn shutdown(mut self) {
        // Open watches only end at their timeout: end them first, or shutdown would wait.
        self.world.lock().kube.stop_watches();
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Writes `kubeconfig`, `clouds.yaml`, `cloud.conf` (the OpenStack cloud provider's
    /// format, as its `cloud-config` Secret holds it), `endpoints.json` and, last, `ready` into
    /// `dir`.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn write_state_dir(&self, dir: &Path) -> Result<(), Error> {
        let credentials = self.world.lock().credentials.clone();
        let region = self.world.lock().cloud.region().to_owned();
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| Error::StateDir { path, source })
        };
        write(
            "kubeconfig",
            kubeconfig(&self.endpoints.kubernetes, &self.endpoints.kubernetes_ca),
        )?;
        write(
            "clouds.yaml",
            clouds_yaml(&self.endpoints.keystone, &region, &credentials),
        )?;
        write(
            "cloud.conf",
            cloud_conf(&self.endpoints.keystone, &region, &credentials),
        )?;
        let endpoints =
            serde_json::to_string_pretty(&self.endpoints).unwrap_or_else(|_| "{}".to_owned());
        write("endpoints.json", endpoints + "\n")?;
        write("ready", String::new())
    }

    /// Removes what [`Self::write_state_dir`] wrote, `ready` first, so a stopped emulator leaves
    /// nothing a client could mistake for a running one.
    pub fn clear_state_dir(dir: &Path) {
        for name in [
            "ready",
            "endpoints.json",
            "kubeconfig",
            "clouds.yaml",
            "cloud.conf",
        ] {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
}

/// Binds every emulator on `127.0.0.1` (ports chosen by the system) and starts serving.
///
/// # Errors
/// When a port cannot be bound.
pub async fn serve(scenario: &Scenario) -> Result<Running, Error> {
    serve_on(scenario, None).await
}

/// Like [`serve`], but with `port_base` the emulators listen on fixed, consecutive ports:
/// Keystone on `port_base`, then Nova, Cinder, Kubernetes, the request log, LINSTOR and its
/// backup endpoint.
///
/// # Errors
/// When a port cannot be bound (for instance, it is in use).
pub async fn serve_on(scenario: &Scenario, port_base: Option<u16>) -> Result<Running, Error> {
    let world = World::new(scenario);
    let authority = tls::Authority::new()?;
    let mut ports = Ports(port_base);
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut endpoints = Endpoints {
        started_at: world.started_at().to_string(),
        kubernetes_ca: authority.ca_pem.clone(),
        ..Endpoints::default()
    };

    let services: [(Service, Router); 4] = [
        (Service::Keystone, keystone::router(world.clone())),
        (Service::Nova, nova::router(world.clone())),
        (Service::Cinder, cinder::router(world.clone())),
        (Service::Kubernetes, kubernetes::router(world.clone())),
    ];
    for (service, router) in services {
        let tls = (service == Service::Kubernetes).then_some(&authority);
        let served = Served {
            world: &world,
            stop: &stop,
            tls,
        };
        let url = served
            .listen(service, ports.next(), router, &mut tasks)
            .await?;
        match service {
            Service::Keystone => endpoints.keystone = url,
            Service::Nova => endpoints.nova = url,
            Service::Cinder => endpoints.cinder = url,
            Service::Kubernetes => endpoints.kubernetes = url,
            Service::Linstor => {}
        }
    }
    let log = Router::new()
        .route("/", get(request_log))
        .with_state(world.clone());
    let addr = ports.next();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            service: "request log",
            addr,
            source,
        })?;
    endpoints.requests = format!("http://{}/", local(&listener));
    spawn_server(listener, log, &stop, &mut tasks);
    let plain = Served {
        world: &world,
        stop: &stop,
        tls: None,
    };
    if let Some(cluster) = &scenario.linstor {
        let addr = ports.next();
        let url = if cluster.controller_down {
            // A port bound and let go: a client's connection is refused there.
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind {
                    service: Service::Linstor.as_str(),
                    addr,
                    source,
                })?;
            format!("http://{}", local(&listener))
        } else {
            let router = linstor::router(world.clone());
            plain
                .listen(Service::Linstor, addr, router, &mut tasks)
                .await?
        };
        endpoints.linstor = Some(url);
        if cluster.backup_controller {
            let router = linstor::router(world.clone());
            let url = plain
                .listen(Service::Linstor, ports.next(), router, &mut tasks)
                .await?;
            endpoints.linstor_backup = Some(url);
        }
    }

    world.lock().endpoints = endpoints.clone();

    let ticker_world = world.clone();
    let ticker_stop = stop.clone();
    tasks.spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = ticker_stop.cancelled() => break,
                _ = interval.tick() => drop(ticker_world.lock()),
            }
        }
    });

    Ok(Running {
        world,
        endpoints,
        kubernetes_ca: authority.ca_der,
        stop,
        tasks,
    })
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Hands out loopback addresses: consecutive fixed ports from a base, or port 0 (any free port).
struct Ports(Option<u16>);

impl Ports {
    fn next(&mut self) -> SocketAddr {
        match self.0 {
            Some(port) => {
                self.0 = Some(port.saturating_add(1));
                SocketAddr::from(([127, 0, 0, 1], port))
            }
            None => loopback(),
        }
    }
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().unwrap_or_else(|_| loopback())
}

/// How an emulator is served: over one world, until one token, with TLS or without.
struct Served<'a> {
    world: &'a World,
    stop: &'a CancellationToken,
    tls: Option<&'a tls::Authority>,
}

impl Served<'_> {
    /// Serves `router` on `addr`, every request logged; its base URL.
    async fn listen(
        &self,
        service: Service,
        addr: SocketAddr,
        router: Router,
        tasks: &mut JoinSet<()>,
    ) -> Result<String, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                service: service.as_str(),
                addr,
                source,
            })?;
        let router = router.layer(middleware::from_fn_with_state(
            (self.world.clone(), service),
            record_and_interfere,
        ));
        let address = local(&listener);
        Ok(match self.tls {
            Some(authority) => {
                spawn_server(authority.listen(listener), router, self.stop, tasks);
                format!("https://{address}")
            }
            None => {
                spawn_server(listener, router, self.stop, tasks);
                format!("http://{address}")
            }
        })
    }
}

fn spawn_server<L>(listener: L, router: Router, stop: &CancellationToken, tasks: &mut JoinSet<()>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let stop = stop.clone();
    tasks.spawn(async move {
        let shutdown = async move { stop.cancelled().await };
        // A serving error ends this emulator only; its clients then see a dead endpoint.
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    });
}

/// Logs every request, and applies injected latency and faults before the handler runs.
async fn record_and_interfere(
    AxumState((world, service)): AxumState<(World, Service)>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let arrived = world.now_ms();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let interference = world.lock().interference(service, &method, &path);
    if !interference.delay.is_zero() {
        tokio::time::sleep(interference.delay).await;
    }
    let response = match interference
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
    {
        Some(status) => fault::error(service, status, "injected fault"),
        None => next.run(request).await,
    };
    world.record(RequestRecord {
        service,
        method,
        path,
        query,
        status: response.status().as_u16(),
        at_ms: arrived,
        bytes: axum::body::HttpBody::size_hint(response.body()).exact(),
        by: None,
        access: response.extensions().get::<kubernetes::Access>().cloned(),
    });
    response
}

async fn request_log(AxumState(world): AxumState<World>) -> Response {
    axum::Json(world.lock().requests().to_vec()).into_response()
}

fn kubeconfig(server: &str, ca_pem: &str) -> String {
    use base64::Engine;
    let token = kubernetes::ADMIN_TOKEN;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sim
  cluster:
    server: {server}
    certificate-authority-data: {ca}
contexts:
- name: sim
  context:
    cluster: sim
    user: sim
    namespace: default
current-context: sim
users:
- name: sim
  user:
    token: {token}
"
    )
}

fn cloud_conf(keystone: &str, region: &str, credentials: &world::Credentials) -> String {
    format!(
        "# The emulated cloud's credentials, as the OpenStack cloud provider's cloud.conf.
[Global]
auth-url = {keystone}/v3
username = {username}
password = \"{password}\"
user-domain-name = {domain}
tenant-name = {project}
tenant-domain-name = {domain}
region = {region}
",
        username = credentials.username,
        password = credentials.password,
        project = credentials.project,
        domain = credentials.domain,
    )
}

fn clouds_yaml(keystone: &str, region: &str, credentials: &world::Credentials) -> String {
    format!(
        "clouds:
  sim:
    auth_type: password
    auth:
      auth_url: {keystone}/v3
      username: {username}
      password: {password}
      project_name: {project}
      user_domain_name: {domain}
      project_domain_name: {domain}
    region_name: {region}
    interface: public
    identity_api_version: 3
  sim-appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: {keystone}/v3
      application_credential_id: {ac_id}
      application_credential_secret: {ac_secret}
    region_name: {region}
    interface: public
    identity_api_version: 3
",
        username = credentials.username,
        password = credentials.password,
        project = credentials.project,
        domain = credentials.domain,
        ac_id = credentials.application_credential_id,
        ac_secret = credentials.application_credential_secret,
    )
}

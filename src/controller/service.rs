//! The controller process: the admin server, the Lease election and the control loop, started
//! together and stopped in order: on shutdown no new round starts, the round in flight finishes
//! (bounded by the shutdown timeout), then the Lease is released and the admin server stops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Settings, lease};
use crate::admin::{self, Health};
use crate::backend::Backend;
use crate::cluster::Cluster;
use crate::metrics::Metrics;

/// Everything `run` needs.
pub struct Service<B> {
    /// The cluster.
    pub cluster: Cluster,
    /// The storage backend.
    pub backend: B,
    /// How the controller runs.
    pub settings: Settings,
    /// The Lease to compete for; `None`: act without one.
    pub lease: Option<lease::Settings>,
    /// How long, on shutdown, the round in flight may take to finish.
    pub shutdown_timeout: Duration,
    /// The metrics (the cluster and the backend time their requests into them).
    pub metrics: Arc<Metrics>,
}

impl<B: Backend> Service<B> {
    /// Runs until `shutdown` completes (and the round in flight with it), or the Node watch
    /// ends.
    ///
    /// # Errors
    /// When the Node watch ends for good.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), super::Error> {
        let metrics = Arc::clone(&self.metrics);
        let health = Arc::new(Health::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let admin = Task(tokio::spawn(admin::serve(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&health),
            turned_true(stop_rx.clone()),
        )));
        let (leader_tx, leader_rx) = watch::channel(self.lease.is_none());
        metrics.set_leader(self.lease.is_none());
        let election = self.lease.clone().map(|settings| {
            Task(tokio::spawn(lease::elect(
                self.cluster.client(),
                settings,
                leader_tx,
                stop_rx.clone(),
            )))
        });
        let _gauge = {
            let metrics = Arc::clone(&metrics);
            let mut leader = leader_rx.clone();
            Task(tokio::spawn(async move {
                while leader.changed().await.is_ok() {
                    let now = *leader.borrow();
                    metrics.set_leader(now);
                }
            }))
        };

        let (signal_tx, signal_rx) = watch::channel(false);
        let control = super::run(
            &self.cluster,
            &self.backend,
            &self.settings,
            leader_rx,
            &metrics,
            &health,
            turned_true(signal_rx.clone()),
        );
        let signalled = async {
            shutdown.await;
            tracing::info!("Stopping: no new round; the one in flight finishes");
            let _ = signal_tx.send(true);
            tokio::time::sleep(self.shutdown_timeout).await;
        };
        let result = tokio::select! {
            result = control => result,
            () = signalled => {
                tracing::warn!(timeout = ?self.shutdown_timeout, "The round in flight did not finish within the shutdown timeout");
                Ok(())
            }
        };
        let _ = stop_tx.send(true);
        if let Some(election) = election {
            election.finish().await;
        }
        admin.finish().await;
        result
    }
}

/// A task of the service: aborted when the service is dropped (a killed process takes its
/// tasks with it; so does a dropped service), awaited on an orderly stop.
struct Task<T>(tokio::task::JoinHandle<T>);

impl<T> Task<T> {
    async fn finish(mut self) {
        let _ = (&mut self.0).await;
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Completes once `flag` is true (or its sender is gone).
async fn turned_true(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|value| *value).await;
}

//! The emulated Kubernetes API server subset.

pub mod attacher;

use axum::Router;

use super::scenario::{Readiness, Scenario};
use super::world::World;

/// Every Kubernetes object the emulator holds.
#[derive(Debug, Default)]
pub struct Store {}

impl Store {
    /// The objects a scenario describes (its `kubernetes` part; the `openstack` part gives
    /// volume sizes), with times relative to `now`.
    #[must_use]
    pub fn new(scenario: &Scenario, now: jiff::Timestamp) -> Self {
        let _ = (scenario, now);
        Self {}
    }

    /// Sets a node's Ready condition (a timeline step).
    pub fn set_node_ready(&mut self, node: &str, status: Readiness) {
        let _ = (node, status);
    }
}

/// The Kubernetes API router.
pub fn router(world: World) -> Router {
    Router::new().with_state(world)
}

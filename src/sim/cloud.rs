//! The emulated OpenStack cloud's state: projects, compute hosts, servers, volumes and their
//! attachments, and the rules Nova and Cinder apply to them. Keystone, Nova and Cinder routers
//! read and change it.

use super::scenario::{self, HostState, ServerStatusChange};

/// The OpenStack side of the world.
#[derive(Debug, Clone)]
pub struct Cloud {
    region: String,
}

impl Cloud {
    /// The cloud a scenario describes.
    #[must_use]
    pub fn new(scenario: &scenario::OpenStack) -> Self {
        Self {
            region: scenario.region.clone(),
        }
    }

    /// The region every endpoint is published in.
    #[must_use]
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Completes the detaches that are due at `now_ms`.
    pub fn advance(&mut self, now_ms: u64) {
        let _ = now_ms;
    }

    /// Applies a timeline server status change.
    pub fn set_server_status(&mut self, change: &ServerStatusChange, now_ms: u64) {
        let _ = (change, now_ms);
    }

    /// Applies a timeline compute host state change.
    pub fn set_host_state(&mut self, host: &str, state: HostState, now_ms: u64) {
        let _ = (host, state, now_ms);
    }
}

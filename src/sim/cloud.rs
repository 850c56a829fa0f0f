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

    /// The server a Kubernetes node runs on, as the Cinder CSI driver finds it: the id in the
    /// providerID (`openstack:///ID` or `openstack://REGION/ID`), else the server with the node's
    /// name.
    #[must_use]
    pub fn server_for_node(&self, provider_id: Option<&str>, node_name: &str) -> Option<String> {
        let _ = (provider_id, node_name);
        None
    }

    /// What the CSI external-attacher's ControllerUnpublishVolume does: a Nova detach of the
    /// volume from the server. A server that is gone, or a volume already detached or
    /// `detaching`, counts as success; a refusal by Nova is the error message.
    ///
    /// # Errors
    /// When Nova refuses the detach (409 or 400), with Nova's message.
    pub fn attacher_detach(
        &mut self,
        server_id: &str,
        volume_id: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        let _ = (server_id, volume_id, now_ms);
        Ok(())
    }

    /// Whether Cinder still shows an attachment (attached or `detaching`) of the volume to the
    /// server.
    #[must_use]
    pub fn is_attached(&self, volume_id: &str, server_id: &str) -> bool {
        let _ = (volume_id, server_id);
        false
    }
}

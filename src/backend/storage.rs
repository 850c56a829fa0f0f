//! The cluster's storage as one backend: OpenStack (Nova and Cinder), LINSTOR, or both. Each
//! PV goes to the backend of its driver; a node is seen through Nova when a server is matched
//! to it, else through LINSTOR when LINSTOR knows it as a satellite. Servers are OpenStack's.

use super::linstor::Linstor;
use super::openstack::OpenStack;
use super::{Backend, ChangedServer, Error, Release, ReleaseState, Whereabouts};
use fencing::model::{
    BackendVolume, Driver, LinstorNodeView, NodeView, ServerId, StorageView, VolumeId,
};

/// The configured backends (at least one).
#[derive(Debug, Clone)]
pub struct Storage {
    openstack: Option<OpenStack>,
    linstor: Option<Linstor>,
}

impl Storage {
    /// OpenStack alone.
    #[must_use]
    pub fn openstack(openstack: OpenStack) -> Self {
        Self {
            openstack: Some(openstack),
            linstor: None,
        }
    }

    /// LINSTOR alone.
    #[must_use]
    pub fn linstor(linstor: Linstor) -> Self {
        Self {
            openstack: None,
            linstor: Some(linstor),
        }
    }

    /// Adds LINSTOR to OpenStack.
    #[must_use]
    pub fn with_linstor(mut self, linstor: Option<Linstor>) -> Self {
        self.linstor = linstor.or(self.linstor);
        self
    }

    /// Times every OpenStack request into `metrics`.
    #[must_use]
    pub fn with_metrics(self, metrics: &std::sync::Arc<crate::metrics::Metrics>) -> Self {
        Self {
            openstack: self.openstack.map(|b| b.with_metrics(metrics)),
            linstor: self.linstor,
        }
    }

    fn servers(&self) -> Result<&OpenStack, Error> {
        self.openstack.as_ref().ok_or_else(|| {
            Error::Unsupported("no OpenStack cloud is configured: no server to act on".to_owned())
        })
    }
}

impl Backend for Storage {
    fn manages(&self, driver: &Driver) -> bool {
        self.openstack.as_ref().is_some_and(|b| b.manages(driver))
            || self.linstor.as_ref().is_some_and(|b| b.manages(driver))
    }

    async fn observe_node(&self, node: &NodeView) -> StorageView {
        let cloud = match &self.openstack {
            Some(openstack) => openstack.observe_node(node).await,
            None => StorageView::NoMatch,
        };
        match (&cloud, &self.linstor) {
            (StorageView::NoMatch, Some(linstor)) => match linstor.observe_node(node).await {
                StorageView::NoMatch => cloud,
                satellite => satellite,
            },
            _ => cloud,
        }
    }

    async fn observe_satellite(&self, node: &NodeView) -> Option<LinstorNodeView> {
        match &self.linstor {
            Some(linstor) => linstor.observe_satellite(node).await,
            None => None,
        }
    }

    fn region(&self) -> Option<&str> {
        self.openstack.as_ref().and_then(Backend::region)
    }

    async fn observe_volumes(
        &self,
        volumes: &[(Driver, VolumeId)],
    ) -> Vec<Result<BackendVolume, Error>> {
        let (linstor, cloud): (Vec<usize>, Vec<usize>) =
            (0..volumes.len()).partition(|&at| volumes[at].0 == Driver::Linstor);
        let pick = |positions: &[usize]| -> Vec<(Driver, VolumeId)> {
            positions.iter().map(|&at| volumes[at].clone()).collect()
        };
        let unmanaged = || Err(Error::Unsupported("no backend for this driver".to_owned()));
        let cloud_read = match &self.openstack {
            Some(openstack) if !cloud.is_empty() => openstack.observe_volumes(&pick(&cloud)).await,
            _ => cloud.iter().map(|_| unmanaged()).collect(),
        };
        let linstor_read = match &self.linstor {
            Some(backend) if !linstor.is_empty() => backend.observe_volumes(&pick(&linstor)).await,
            _ => linstor.iter().map(|_| unmanaged()).collect(),
        };
        let mut read: Vec<Option<Result<BackendVolume, Error>>> =
            (0..volumes.len()).map(|_| None).collect();
        for (at, result) in cloud
            .into_iter()
            .zip(cloud_read)
            .chain(linstor.into_iter().zip(linstor_read))
        {
            read[at] = Some(result);
        }
        read.into_iter()
            .map(|result| result.unwrap_or_else(unmanaged))
            .collect()
    }

    async fn server_gone(&self, server: &ServerId) -> Result<bool, Error> {
        self.servers()?.server_gone(server).await
    }

    async fn stop(&self, server: &ServerId) -> Result<(), Error> {
        self.servers()?.stop(server).await
    }

    async fn stopped(&self, server: &ServerId) -> Result<bool, Error> {
        self.servers()?.stopped(server).await
    }

    async fn delete_server(&self, server: &ServerId) -> Result<(), Error> {
        self.servers()?.delete_server(server).await
    }

    async fn evacuate(&self, server: &ServerId) -> Result<(), Error> {
        self.servers()?.evacuate(server).await
    }

    async fn whereabouts(&self, server: &ServerId) -> Result<Option<Whereabouts>, Error> {
        self.servers()?.whereabouts(server).await
    }

    async fn changed_servers(&self, since: jiff::Timestamp) -> Result<Vec<ChangedServer>, Error> {
        self.servers()?.changed_servers(since).await
    }

    async fn release(&self, release: &Release) -> Result<(), Error> {
        self.servers()?.release(release).await
    }

    async fn release_state(&self, release: &Release) -> Result<ReleaseState, Error> {
        self.servers()?.release_state(release).await
    }
}

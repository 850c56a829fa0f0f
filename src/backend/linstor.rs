//! The LINSTOR backend: the LINSTOR controller tells whether a node's satellite is lost and, per
//! resource, how each replica sees it (connection, may-promote, in use). Nothing to release:
//! once the survivors may take over, only the Kubernetes side is cleaned.

use std::collections::BTreeMap;

use super::{Backend, Error, Release, ReleaseState, Whereabouts};
use crate::linstor::{Controllers, Replica};
use crate::openstack::error::ApiError;
use fencing::model::{
    BackendVolume, Driver, LinstorNodeView, LinstorResourceView, NodeName, NodeView, ReplicaView,
    ServerId, StorageView, VolumeId,
};

/// The LINSTOR backend over its controllers.
#[derive(Debug, Clone)]
pub struct Linstor {
    controllers: Controllers,
}

impl Linstor {
    /// The backend over `controllers`.
    #[must_use]
    pub fn new(controllers: Controllers) -> Self {
        Self { controllers }
    }
}

impl Linstor {
    /// The node's satellite, `None` when LINSTOR has no node of that name.
    async fn satellite(&self, node: &NodeView) -> Result<Option<LinstorNodeView>, ApiError> {
        Ok(self
            .controllers
            .nodes(&[node.name.as_str()])
            .await?
            .into_iter()
            .find(|satellite| satellite.name == node.name.as_str())
            .map(|satellite| LinstorNodeView {
                connection_status: satellite.connection_status,
            }))
    }
}

fn no_servers() -> Error {
    Error::Unsupported("LINSTOR has no servers to act on".to_owned())
}

fn replica_view(replica: Replica) -> ReplicaView {
    ReplicaView {
        node: NodeName::new(replica.node),
        in_use: replica.in_use,
        may_promote: replica.may_promote,
        connections: replica
            .connections
            .into_iter()
            .map(|(peer, connected)| (NodeName::new(peer), connected))
            .collect(),
        disk_state: replica.disk_state,
    }
}

impl Backend for Linstor {
    fn manages(&self, driver: &Driver) -> bool {
        *driver == Driver::Linstor
    }

    async fn observe_node(&self, node: &NodeView) -> StorageView {
        match self.satellite(node).await {
            Ok(Some(satellite)) => StorageView::Linstor(satellite),
            Ok(None) => StorageView::NoMatch,
            Err(err) => StorageView::Error {
                message: err.to_string(),
            },
        }
    }

    async fn observe_satellite(&self, node: &NodeView) -> Option<LinstorNodeView> {
        self.satellite(node).await.ok().flatten()
    }

    fn region(&self) -> Option<&str> {
        None
    }

    async fn observe_volumes(
        &self,
        volumes: &[(Driver, VolumeId)],
    ) -> Vec<Result<BackendVolume, Error>> {
        let names: Vec<&str> = volumes.iter().map(|(_, id)| id.as_str()).collect();
        match self.controllers.replicas(&names).await {
            Ok(replicas) => {
                let mut by_resource: BTreeMap<String, Vec<ReplicaView>> = BTreeMap::new();
                for replica in replicas {
                    by_resource
                        .entry(replica.resource.clone())
                        .or_default()
                        .push(replica_view(replica));
                }
                volumes
                    .iter()
                    .map(|(_, id)| {
                        Ok(by_resource
                            .remove(id.as_str())
                            .map_or(BackendVolume::NotFound, |replicas| {
                                BackendVolume::Linstor(LinstorResourceView { replicas })
                            }))
                    })
                    .collect()
            }
            Err(err) => volumes
                .iter()
                .map(|_| Err(Error::Linstor(err.clone())))
                .collect(),
        }
    }

    async fn server_gone(&self, _server: &ServerId) -> Result<bool, Error> {
        Err(no_servers())
    }

    async fn stop(&self, _server: &ServerId) -> Result<(), Error> {
        Err(no_servers())
    }

    async fn stopped(&self, _server: &ServerId) -> Result<bool, Error> {
        Err(no_servers())
    }

    async fn delete_server(&self, _server: &ServerId) -> Result<(), Error> {
        Err(no_servers())
    }

    async fn evacuate(&self, _server: &ServerId) -> Result<(), Error> {
        Err(no_servers())
    }

    async fn whereabouts(&self, _server: &ServerId) -> Result<Option<Whereabouts>, Error> {
        Err(no_servers())
    }

    async fn release(&self, _release: &Release) -> Result<(), Error> {
        Err(Error::Unsupported(
            "LINSTOR volumes are never released: the surviving replicas take over".to_owned(),
        ))
    }

    async fn release_state(&self, _release: &Release) -> Result<ReleaseState, Error> {
        Err(no_servers())
    }
}

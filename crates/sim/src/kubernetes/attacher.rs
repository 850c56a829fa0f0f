//! The emulated Cinder CSI external-attacher.
//!
//! When a VolumeAttachment of `cinder.csi.openstack.org` is marked for deletion and still
//! carries the attacher's finalizer, it asks the cloud to detach the volume from the node's
//! server once (ControllerUnpublishVolume), writes `status.detachError` and retries about once a
//! second when the cloud refuses, and removes the finalizer (so the object goes away) once the
//! cloud no longer shows the volume attached to that server. VolumeAttachments of other drivers
//! are left alone.
//!
//! A new VolumeAttachment (not attached, not being deleted) gets the attacher's finalizer and
//! the node id annotation, then is attached as cinder-csi's ControllerPublishVolume does: the
//! node's server and the volume must exist; a volume Cinder shows attached to another server
//! (not multiattach) is refused with `disk VOL is attached to a different instance (SERVER)`
//! into `status.attachError`, retried about once a second; otherwise the cloud is asked to
//! attach it (Nova's `os-volume_attachments`), and `status.attached` is set once Cinder shows
//! the attachment complete.
//!
//! VolumeAttachments of `linstor.csi.linbit.com` go to the LINSTOR attacher ([`linstor`]).

mod linstor;

use serde_json::{Value, json};

use super::resource;
use super::seed::{CINDER_DRIVER, LINSTOR_DRIVER, attacher_finalizer};
use super::store::{Key, Part, Store, finalizers, str_at, time};
use crate::scenario::Service;
use crate::world::State;

/// How the attacher's Nova calls are marked in the request log.
const COMPONENT: &str = "csi-attacher";

/// How long the attacher waits before retrying a refused detach.
const RETRY_MS: u64 = 1000;

/// What the attacher has done for one VolumeAttachment.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The (server, volume) the cloud accepted a detach for.
    detached: Option<(String, String)>,
    /// When a refused detach may be tried again.
    retry_at_ms: u64,
    /// The (server, volume, device) the cloud accepted an attach for.
    attaching: Option<(String, String, String)>,
    /// When a refused attach may be tried again.
    attach_retry_at_ms: u64,
}

/// Detaches volumes whose VolumeAttachments are marked for deletion, as the real attacher does.
/// Cheap when nothing is being deleted: one emptiness check. Nothing while the scenario has the
/// attacher down (`kubernetes.controllers: {csi-attacher: false}`).
pub fn reconcile(state: &mut State, now_ms: u64) {
    if !state.controllers.runs("csi-attacher") {
        return;
    }
    if !state.kube.attaching_attachments().is_empty() {
        let names: Vec<String> = state.kube.attaching_attachments().iter().cloned().collect();
        for name in names {
            if is_linstor(&state.kube, &name) {
                linstor::attach(state, &name, now_ms);
            } else {
                attach(state, &name, now_ms);
            }
        }
    }
    if state.kube.deleting_attachments().is_empty() {
        return;
    }
    let names: Vec<String> = state.kube.deleting_attachments().iter().cloned().collect();
    for name in names {
        if is_linstor(&state.kube, &name) {
            linstor::detach(state, &name, now_ms);
        } else {
            step(state, &name, now_ms);
        }
    }
}

fn is_linstor(store: &Store, name: &str) -> bool {
    store
        .get("volumeattachments", None, name)
        .and_then(|va| str_at(va, &["spec", "attacher"]))
        == Some(LINSTOR_DRIVER)
}

/// One attach step for a VolumeAttachment waiting to be attached.
fn attach(state: &mut State, name: &str, now_ms: u64) {
    let key = Key::new("volumeattachments", None, name);
    let mut progress = state.kube.attacher.get(name).cloned().unwrap_or_default();
    if let Some((server, volume, device)) = &progress.attaching {
        if state.cloud.is_attached_complete(volume, server) {
            let device = device.clone();
            if let Some(va) = state.kube.object(&key).cloned() {
                set_attached(&mut state.kube, &va, &device);
            }
            progress.attaching = None;
            state.kube.attacher.insert(name.to_owned(), progress);
        } else if !state.cloud.is_attached(volume, server) {
            // The attachment went away before it completed: publish again.
            progress.attaching = None;
            state.kube.attacher.insert(name.to_owned(), progress);
        }
        return;
    }
    if now_ms < progress.attach_retry_at_ms {
        return;
    }
    let Some(mut va) = state.kube.object(&key).cloned() else {
        return;
    };
    let node = str_at(&va, &["spec", "nodeName"])
        .unwrap_or_default()
        .to_owned();
    let provider = state
        .kube
        .get("nodes", None, &node)
        .and_then(|n| str_at(n, &["spec", "providerID"]))
        .map(str::to_owned);
    let server = locate(&state.kube, &va)
        .map(|(server, _)| server)
        .or_else(|| state.cloud.server_for_node(provider.as_deref(), &node));
    if take(state, name, &mut va, CINDER_DRIVER, server.clone()) {
        return;
    }
    let outcome = publish(state, &va, server, now_ms);
    match outcome {
        Ok(target) => {
            progress.attaching = Some(target);
            state.kube.attacher.insert(name.to_owned(), progress);
        }
        Err(message) => {
            progress.attach_retry_at_ms = now_ms + RETRY_MS;
            state.kube.attacher.insert(name.to_owned(), progress);
            set_error(&mut state.kube, &va, "attachError", &message);
        }
    }
}

/// cinder-csi's ControllerPublishVolume: the (server, volume, device) it attached, or the
/// gRPC error the external-attacher writes into `status.attachError`.
/// The external-attacher's first step on a VolumeAttachment of `driver`: its finalizer and,
/// when known, the CSI node id, written back. Whether it was taken now (the next step comes at
/// the next pass).
fn take(
    state: &mut State,
    name: &str,
    va: &mut Value,
    driver: &str,
    node_id: Option<String>,
) -> bool {
    let finalizer = attacher_finalizer(driver);
    if finalizers(va).contains(&finalizer) {
        return false;
    }
    let mut list: Vec<Value> = finalizers(va).into_iter().map(Value::from).collect();
    list.push(finalizer.into());
    va["metadata"]["finalizers"] = Value::Array(list);
    if let Some(node_id) = node_id {
        va["metadata"]["annotations"]["csi.alpha.kubernetes.io/node-id"] = node_id.into();
    }
    if let Some(resource) = resource::find("storage.k8s.io", "v1", "volumeattachments") {
        let _ = state
            .kube
            .update(resource, None, name, va.clone(), Part::Main);
    }
    true
}

fn publish(
    state: &mut State,
    va: &Value,
    server: Option<String>,
    now_ms: u64,
) -> Result<(String, String, String), String> {
    let volume_id = volume_of(&state.kube, va).unwrap_or_default();
    let Some(server) = server.filter(|s| state.cloud.server(s).is_some()) else {
        return Err(format!(
            "rpc error: code = NotFound desc = [ControllerPublishVolume] Instance {} not found",
            str_at(va, &["spec", "nodeName"]).unwrap_or_default()
        ));
    };
    let Some(volume) = state.cloud.volume(&volume_id) else {
        return Err(format!(
            "rpc error: code = NotFound desc = [ControllerPublishVolume] Volume {volume_id} not found"
        ));
    };
    if let Some(mine) = volume.attachments.iter().find(|a| a.server_id == server) {
        return Ok((server, volume_id, mine.device.clone()));
    }
    if !volume.multiattach
        && let Some(other) = volume.attachments.first()
    {
        return Err(format!(
            "rpc error: code = Internal desc = [ControllerPublishVolume] Attach Volume failed \
             with error disk {volume_id} is attached to a different instance ({})",
            other.server_id
        ));
    }
    let attached = state.cloud.attach(&server, &volume_id, now_ms);
    state.record_component(
        COMPONENT,
        Service::Nova,
        "POST",
        format!("/v2.1/servers/{server}/os-volume_attachments"),
        attached
            .as_ref()
            .map_or_else(|r| r.status().as_u16(), |_| 200),
        now_ms,
    );
    match attached {
        Ok(device) => Ok((server, volume_id, device)),
        Err(refusal) => Err(format!(
            "rpc error: code = Internal desc = [ControllerPublishVolume] Attach Volume failed \
             with error {refusal}"
        )),
    }
}

fn set_attached(store: &mut Store, va: &Value, device: &str) {
    let Some(resource) = resource::find("storage.k8s.io", "v1", "volumeattachments") else {
        return;
    };
    let Some(name) = str_at(va, &["metadata", "name"]) else {
        return;
    };
    let mut updated = va.clone();
    updated["status"] = json!({"attached": true, "attachmentMetadata": {"DevicePath": device}});
    let _ = store.update(resource, None, name, updated, Part::Status);
}

fn step(state: &mut State, name: &str, now_ms: u64) {
    let key = Key::new("volumeattachments", None, name);
    let mut progress = state.kube.attacher.get(name).cloned().unwrap_or_default();
    if progress.detached.is_none() {
        if now_ms < progress.retry_at_ms {
            return;
        }
        let Some(va) = state.kube.object(&key).cloned() else {
            return;
        };
        let outcome = locate(&state.kube, &va)
            .or_else(|| {
                let node = str_at(&va, &["spec", "nodeName"])?;
                let provider = state
                    .kube
                    .get("nodes", None, node)
                    .and_then(|n| str_at(n, &["spec", "providerID"]));
                let server = state.cloud.server_for_node(provider, node)?;
                Some((server, volume_of(&state.kube, &va)?))
            })
            .ok_or_else(|| {
                "rpc error: code = NotFound desc = cannot find the volume or the node's instance"
                    .to_owned()
            })
            .and_then(|(server, volume)| {
                let (called, result) = state.cloud.attacher_detach(&server, &volume, now_ms);
                if let Some(status) = called {
                    state.record_component(
                        COMPONENT,
                        Service::Nova,
                        "DELETE",
                        format!("/v2.1/servers/{server}/os-volume_attachments/{volume}"),
                        status,
                        now_ms,
                    );
                }
                result.map(|()| (server, volume))
            });
        match outcome {
            Ok(target) => progress.detached = Some(target),
            Err(message) => {
                progress.retry_at_ms = now_ms + RETRY_MS;
                state.kube.attacher.insert(name.to_owned(), progress);
                set_error(&mut state.kube, &va, "detachError", &message);
                return;
            }
        }
        state
            .kube
            .attacher
            .insert(name.to_owned(), progress.clone());
    }
    // Waiting for the cloud costs a lookup, not a copy of the object.
    let Some((server, volume)) = &progress.detached else {
        return;
    };
    if !state.cloud.is_attached(volume, server)
        && let Some(va) = state.kube.object(&key).cloned()
    {
        release(&mut state.kube, &va);
    }
}

/// The server and volume of a VolumeAttachment, from what the cluster records: the node id the
/// attacher noted on the object, else the node's CSINode entry for the driver.
fn locate(store: &Store, va: &Value) -> Option<(String, String)> {
    let volume = volume_of(store, va)?;
    let noted = str_at(
        va,
        &["metadata", "annotations", "csi.alpha.kubernetes.io/node-id"],
    );
    let server = match noted {
        Some(id) => id.to_owned(),
        None => {
            let node = str_at(va, &["spec", "nodeName"])?;
            store
                .get("csinodes", None, node)?
                .pointer("/spec/drivers")?
                .as_array()?
                .iter()
                .find(|d| str_at(d, &["name"]) == Some(CINDER_DRIVER))
                .and_then(|d| str_at(d, &["nodeID"]))?
                .to_owned()
        }
    };
    Some((server, volume))
}

/// The Cinder volume id behind a VolumeAttachment: its PV's CSI volume handle (or in-tree
/// Cinder volume id), or the inline volume spec's.
fn volume_of(store: &Store, va: &Value) -> Option<String> {
    let spec = match str_at(va, &["spec", "source", "persistentVolumeName"]) {
        Some(pv) => store.get("persistentvolumes", None, pv)?.get("spec")?,
        None => va.pointer("/spec/source/inlineVolumeSpec")?,
    };
    str_at(spec, &["csi", "volumeHandle"])
        .or_else(|| str_at(spec, &["cinder", "volumeID"]))
        .map(str::to_owned)
}

fn set_error(store: &mut Store, va: &Value, field: &str, message: &str) {
    let Some(resource) = resource::find("storage.k8s.io", "v1", "volumeattachments") else {
        return;
    };
    let Some(name) = str_at(va, &["metadata", "name"]) else {
        return;
    };
    let mut updated = va.clone();
    let error = json!({"time": time(jiff::Timestamp::now()), "message": message});
    match updated.get_mut("status") {
        Some(Value::Object(status)) => {
            status.insert(field.into(), error);
        }
        _ => updated["status"] = json!({ field: error }),
    }
    // The object is ours to update; a refusal here only means it changed meanwhile.
    let _ = store.update(resource, None, name, updated, Part::Status);
}

fn release(store: &mut Store, va: &Value) {
    let driver = str_at(va, &["spec", "attacher"]).unwrap_or(CINDER_DRIVER);
    release_finalizer(store, va, &attacher_finalizer(driver));
}

/// Removes `finalizer` from the VolumeAttachment.
fn release_finalizer(store: &mut Store, va: &Value, finalizer: &str) {
    let Some(resource) = resource::find("storage.k8s.io", "v1", "volumeattachments") else {
        return;
    };
    let Some(name) = str_at(va, &["metadata", "name"]) else {
        return;
    };
    let rest: Vec<Value> = finalizers(va)
        .into_iter()
        .filter(|f| f != finalizer)
        .map(Value::from)
        .collect();
    let mut updated = va.clone();
    updated["metadata"]["finalizers"] = Value::Array(rest);
    // As above: a refusal means a concurrent change; the next reconcile tries again.
    let _ = store.update(resource, None, name, updated, Part::Main);
}

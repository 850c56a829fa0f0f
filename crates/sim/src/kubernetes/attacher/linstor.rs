//! The emulated external-attacher of `linstor.csi.linbit.com`, calling linstor-csi's
//! ControllerPublishVolume and ControllerUnpublishVolume against the emulated LINSTOR
//! controller.
//!
//! A new VolumeAttachment gets the finalizer `external-attacher/linstor-csi-linbit-com` and the
//! node id annotation (the node name, as linstor-csi's NodeGetInfo gives it), then is published:
//! the PV's volume handle names the LINSTOR resource; the node's satellite must be `ONLINE`;
//! LINSTOR makes the resource available there, creating a diskless replica where the node has
//! none; `status.attached` is set with the DRBD device. A refusal goes into
//! `status.attachError` and is retried about once a second.
//!
//! A VolumeAttachment marked for deletion is unpublished (see
//! [`crate::linstor::Linstor::unpublish`] for what linstor-csi does, including for a node whose
//! satellite is OFFLINE) and its finalizer removed. Only a LINSTOR controller that cannot be
//! reached (`linstor.controller_down` without `backup_controller`) makes either fail; injected
//! HTTP faults apply to clients of the REST API, not to this in-cluster component.

use super::{RETRY_MS, release, set_attached, set_error, take, volume_of};
use crate::kubernetes::seed::LINSTOR_DRIVER;
use crate::kubernetes::store::{Key, str_at};
use crate::world::State;

/// Why the controller cannot be asked, as linstor-csi reports a refused connection.
fn unreachable(call: &str, resource: &str) -> String {
    format!(
        "rpc error: code = Internal desc = {call} failed for {resource}: dial tcp: connect: \
         connection refused"
    )
}

/// One attach step for a LINSTOR VolumeAttachment waiting to be attached.
pub(super) fn attach(state: &mut State, name: &str, now_ms: u64) {
    let key = Key::new("volumeattachments", None, name);
    let mut progress = state.kube.attacher.get(name).cloned().unwrap_or_default();
    if now_ms < progress.attach_retry_at_ms {
        return;
    }
    let Some(mut va) = state.kube.object(&key).cloned() else {
        return;
    };
    let node = str_at(&va, &["spec", "nodeName"])
        .unwrap_or_default()
        .to_owned();
    if take(state, name, &mut va, LINSTOR_DRIVER, Some(node.clone())) {
        return;
    }
    let volume = volume_of(&state.kube, &va);
    let outcome = match (volume, state.linstor.as_mut()) {
        (None, _) => Err(
            "rpc error: code = InvalidArgument desc = ControllerPublishVolume: the PV has no \
             volume handle"
                .to_owned(),
        ),
        (Some(volume), None) => Err(unreachable("ControllerPublishVolume", &volume)),
        (Some(volume), Some(linstor)) if !linstor.controller_reachable() => {
            Err(unreachable("ControllerPublishVolume", &volume))
        }
        (Some(volume), Some(linstor)) => linstor.publish(&volume, &node),
    };
    match outcome {
        Ok(device) => {
            state.kube.attacher.remove(name);
            set_attached(&mut state.kube, &va, &device);
        }
        Err(message) => {
            progress.attach_retry_at_ms = now_ms + RETRY_MS;
            state.kube.attacher.insert(name.to_owned(), progress);
            set_error(&mut state.kube, &va, "attachError", &message);
        }
    }
}

/// One detach step for a LINSTOR VolumeAttachment marked for deletion.
pub(super) fn detach(state: &mut State, name: &str, now_ms: u64) {
    let key = Key::new("volumeattachments", None, name);
    let mut progress = state.kube.attacher.get(name).cloned().unwrap_or_default();
    if now_ms < progress.retry_at_ms {
        return;
    }
    let Some(va) = state.kube.object(&key).cloned() else {
        return;
    };
    let node = str_at(&va, &["spec", "nodeName"])
        .unwrap_or_default()
        .to_owned();
    let volume = volume_of(&state.kube, &va).unwrap_or_default();
    match state.linstor.as_mut() {
        Some(linstor) if linstor.controller_reachable() => {
            linstor.unpublish(&volume, &node);
            release(&mut state.kube, &va);
        }
        _ => {
            progress.retry_at_ms = now_ms + RETRY_MS;
            state.kube.attacher.insert(name.to_owned(), progress);
            let message = unreachable("ControllerUnpublishVolume", &volume);
            set_error(&mut state.kube, &va, "detachError", &message);
        }
    }
}

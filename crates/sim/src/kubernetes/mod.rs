//! The emulated Kubernetes API server subset, and the emulated Cinder CSI external-attacher.
//!
//! Objects are kept as JSON ([`Store`]); every kind in the resource table ([`resource`]) gets
//! the same verbs: get, list and watch (resourceVersion, bookmarks, timeouts, 410 Gone when the
//! history is compacted), create, replace with optimistic concurrency, merge / JSON /
//! strategic-merge patch and server-side apply, delete with preconditions, finalizers and
//! graceful pod deletion, label and field selectors, list paging (`limit` and `continue`), and
//! Table output for `kubectl get`. Discovery answers what kubectl and kube ask for.

mod api;
pub mod attacher;
pub mod controllers;
mod convert;
mod discovery;
mod output;
mod paging;
mod patch;
pub mod resource;
mod seed;
mod selector;
mod store;
mod table;
mod watch;

use axum::Router;

pub use controllers::Controllers;
pub use seed::{CINDER_DRIVER, LINSTOR_DRIVER, attacher_finalizer, attachment_name, uid};
pub use store::{ApiError, Store};

use super::world::World;

/// The Kubernetes API router.
pub fn router(world: World) -> Router {
    Router::new().fallback(api::handle).with_state(world)
}

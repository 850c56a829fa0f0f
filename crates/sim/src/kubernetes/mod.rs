//! The emulated Kubernetes API server subset, and the emulated Cinder CSI external-attacher.
//!
//! Objects are kept as JSON ([`Store`]); every kind in the resource table ([`resource`]) gets
//! the same verbs: get, list and watch (resourceVersion, bookmarks, timeouts, 410 Gone when the
//! history is compacted), create, replace with optimistic concurrency, merge / JSON /
//! strategic-merge patch and server-side apply, delete with preconditions, finalizers and
//! graceful pod deletion, label and field selectors, list paging (`limit` and `continue`), and
//! Table output for `kubectl get`. Discovery answers what kubectl and kube ask for. Every
//! request is authenticated ([`auth`]: the admin token, ServiceAccount tokens from the
//! TokenRequest API) and authorized by the RBAC objects the store holds ([`rbac`]), as a real API
//! server does.

mod api;
pub mod attacher;
mod auth;
pub mod controllers;
mod convert;
mod defaults;
mod discovery;
mod output;
mod paging;
mod patch;
mod protobuf;
mod rbac;
pub mod resource;
mod seed;
mod selector;
mod store;
mod table;
mod watch;

use axum::Router;

pub use auth::{ADMIN_TOKEN, User};
pub use controllers::Controllers;
pub use rbac::{Access, Attributes, ResourceAttributes};
pub use seed::{CINDER_DRIVER, LINSTOR_DRIVER, attacher_finalizer, attachment_name, uid};
pub use store::{ApiError, Store};

use super::world::World;

/// The Kubernetes API router.
pub fn router(world: World) -> Router {
    Router::new().fallback(api::handle).with_state(world)
}

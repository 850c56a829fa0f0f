//! cinder-remediator: fences dead Kubernetes nodes on OpenStack and releases their Cinder
//! volumes, safely, in seconds.
//!
//! Data flows one way: cluster + backend → [`fencing::model::Observation`] →
//! [`fencing::plan::plan`] → execute → cluster + backend. The planner (the `fencing` crate) never
//! calls out; the executor never decides.
//!
//! Modules of this crate (the product; the fencing core and the emulated cloud are crates of
//! their own):
//! - [`observe`]: builds one observation from the cluster and the backend.
//! - [`execute`]: runs a plan step by step, verifying each step and recording progress.
//! - [`backend`]: the storage backend trait and its OpenStack implementation.
//! - [`cluster`]: the Kubernetes side: observe, apply Kubernetes actions, Events.
//! - [`openstack`]: OpenStack connection settings, session, Nova and Cinder calls.
//! - [`cli`], [`config`], [`oneshot`], [`report`], [`demo`]: the command line (`sim`, `demo`,
//!   `diagnose`, `remediate`).

pub mod backend;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod execute;
pub mod observe;
pub mod oneshot;
pub mod openstack;
pub mod report;

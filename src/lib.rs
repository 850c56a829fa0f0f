//! cinder-remediator: fences dead Kubernetes nodes on OpenStack and releases their Cinder
//! volumes, safely, in seconds.
//!
//! Data flows one way: cluster + backend → [`model::Observation`] → [`plan::plan`] → execute →
//! cluster + backend. The planner never calls out; the executor never decides.
//!
//! Modules:
//! - [`execute`]: runs a plan step by step, verifying each step and recording progress.
//! - [`model`]: plain observation data (what was read).
//! - [`plan`]: the fencing core: fence verdicts, the planner, actions. Pure.
//! - [`backend`]: the storage backend trait and its OpenStack implementation.
//! - [`cluster`]: the Kubernetes side: observe, apply Kubernetes actions, Events.
//! - [`observe`]: builds one observation from the cluster and the backend.
//! - [`openstack`]: OpenStack connection settings, session, Nova and Cinder calls.
//! - [`cli`]: the command line (`sim`, `demo`, `diagnose`, `remediate`).
//! - [`sim`]: the emulated OpenStack, Kubernetes and LINSTOR used by `demo`, `sim` and the tests.

pub mod backend;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod execute;
pub mod model;
pub mod observe;
pub mod oneshot;
pub mod openstack;
pub mod plan;
pub mod report;
pub mod sim;

//! cinder-remediator: fences dead Kubernetes nodes on OpenStack and releases their Cinder
//! volumes, safely, in seconds.
//!
//! Data flows one way: cluster + backend → [`model::Observation`] → [`plan::plan`] → execute →
//! cluster + backend. The planner never calls out; the executor never decides.
//!
//! Modules:
//! - [`model`]: plain observation data (what was read).
//! - [`plan`]: the fencing core: fence verdicts, the planner, actions. Pure.
//! - [`cluster`]: the Kubernetes side: observe, apply Kubernetes actions, Events.
//! - [`openstack`]: OpenStack connection settings, session, Nova and Cinder calls.
//! - [`cli`]: the command line (`sim`, `demo`, `diagnose`, `remediate`).
//! - [`sim`]: the emulated OpenStack, Kubernetes and LINSTOR used by `demo`, `sim` and the tests.

pub mod cli;
pub mod cluster;
pub mod model;
pub mod openstack;
pub mod plan;
pub mod sim;

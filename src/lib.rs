//! cinder-remediator: fences dead Kubernetes nodes on OpenStack and releases their Cinder
//! volumes, safely, in seconds.
//!
//! Modules:
//! - [`cli`]: the command line (`sim`, `demo`, `diagnose`, `remediate`, `run`).
//! - [`sim`]: the emulated OpenStack, Kubernetes and LINSTOR used by `demo`, `sim` and the tests.

pub mod cli;
pub mod model;
pub mod plan;
pub mod sim;

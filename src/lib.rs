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
//! - [`bounded`]: many reads at once, a bounded number in flight.
//! - [`execute`]: runs a plan step by step, verifying each step and recording progress.
//! - [`backend`]: the storage backend trait, its OpenStack and LINSTOR implementations, and
//!   both as one.
//! - [`cluster`]: the Kubernetes side: observe, apply Kubernetes actions, Events.
//! - [`openstack`]: OpenStack connection settings, session, Nova and Cinder calls.
//! - [`linstor`]: the LINSTOR controllers' REST API (read-only).
//! - [`controller`]: `run`, the controller: a Node watch, a timer per node, one actor (Lease).
//! - [`metrics`], [`admin`]: the controller's Prometheus metrics and its /livez, /readyz and
//!   /metrics server.
//! - [`cli`], [`config`], [`oneshot`], [`report`], [`demo`]: the command line (`sim`, `demo`,
//!   `diagnose`, `remediate`, `run`); [`manual`]: its completions and man pages.

pub mod admin;
pub mod backend;
pub mod bounded;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod demo;
pub mod execute;
pub mod linstor;
pub mod manual;
pub mod metrics;
pub mod observe;
pub mod oneshot;
pub mod openstack;
pub mod report;

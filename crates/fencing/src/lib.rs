//! The fencing core of cinder-remediator: what was observed ([`model`]) and what to do about it
//! ([`plan`]): fence verdicts, the planner, its actions and reasons; and what to change before
//! the next failure ([`advice`]).
//!
//! Pure by construction: this crate depends on `serde` and `jiff` only, so it can do no I/O and
//! read no clock (the observation carries `now`). The product observes and executes around it;
//! the compiler keeps Kubernetes, HTTP and async out of here.

pub mod advice;
pub mod model;
pub mod plan;

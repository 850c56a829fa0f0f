//! The OpenStack side of the remediator: connection settings, the authenticated session, and the
//! Nova and Cinder calls the backend makes (raw calls over the `osauth` session, with tolerant
//! types of our own where the `openstack` crate lacks fields or rejects real responses).

pub mod config;
pub mod session;

//! The authenticated OpenStack session.

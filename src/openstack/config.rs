//! OpenStack connection settings.

//! Helpers for the integration tests: start a runtime's binary on a loopback port and
//! talk HTTP to it (being written).

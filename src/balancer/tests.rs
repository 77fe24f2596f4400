//! Balancer tests.

//! Simulated upstreams (in progress).

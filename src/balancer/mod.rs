//! Load balancing (in progress).

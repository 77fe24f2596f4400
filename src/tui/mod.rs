//! Dashboard (in progress).

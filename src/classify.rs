//! Request classification (in progress).

//! The demo's moving parts, also used by the integration tests and the benchmarks.
//!
//! - [`upstream`]: simulated CodeWhisperer upstreams (real HTTP servers on 127.0.0.1 with fault knobs).
//! - [`traffic`]: a synthetic Claude Code sending a realistic request mix through the proxy.
//! - [`run`]: `ccr demo`: upstreams + ccr + traffic, with fault injection.

pub mod account;
pub mod run;
pub mod traffic;
pub mod upstream;

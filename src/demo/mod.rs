//! The demo's moving parts, also used by the integration tests and the benchmarks.
//!
//! - [`upstream`]: simulated CodeWhisperer upstreams (real HTTP servers on 127.0.0.1 with fault knobs).
//! - [`traffic`]: a synthetic Claude Code sending a realistic request mix through the proxy.
//! - [`account`]: a simulated account's tier and credits.
//! - [`pool`]: simulated upstreams plus a config pointing at them (demo, tests, benches).
//! - [`redis`]: a private `redis-server` on a unix socket (shared-state tests and benches).
//! - [`run`]: `ccr demo`: upstreams + ccr + traffic, with fault injection.

pub mod account;
pub mod pool;
pub mod redis;
pub mod run;
pub mod traffic;
pub mod upstream;

//! The `strata` binary's library: command line, configuration, the data directory, the node's lifecycle and
//! the admin HTTP server.
//!
//! Invariant: this is the only crate that knows about command-line flags, config files and which services
//! run. Services receive a [`node::ServiceContext`] (shutdown token, task tracker, metrics registry, readiness
//! flag) and a bound listener; they never read flags or the environment themselves.
//!
//! Lifecycle of `strata serve`, in order (see [`node::serve`]):
//! 1. resolve the configuration (defaults < `strata.toml` < `STRATA_*` < flags) and refuse an unsafe one;
//! 2. install the signal handlers, lock the data directory, open storage (`<data-dir>/storage`, recovering
//!    from its WAL), bind every listener (port 0 picks a free port);
//! 3. write `ports.json`, start the services, report ready on `/readyz`;
//! 4. on SIGINT/SIGTERM: report not-ready, stop accepting, drain in-flight work for at most
//!    `shutdown_timeout`, fsync and close storage, remove `ports.json`, release the lock, exit 0. A second
//!    signal exits at once.

pub mod admin;
pub mod amqp_api;
pub mod amqp_metrics;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod kv_metrics;
pub mod node;
pub mod storage_cli;
pub mod storage_metrics;
pub mod user_cli;

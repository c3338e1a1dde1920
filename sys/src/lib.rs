//! `spout-sys`: the OS plumbing both spout runtimes share, written once on std (plus
//! rustix for the few Unix calls std lacks). Like quinn-udp beside quinn-proto and
//! quinn: no decisions, no async runtime, and it imports neither runtime.
//!
//! - [`archive`]: the archive directory's files (append, sync, positioned reads);
//! - [`restore`]: the recovery scan at start-up;
//! - [`os`]: process groups, signals, OS randomness, the open-files limit, and the
//!   `std::process::Command` every job is spawned from;
//! - [`driver`]: the shared state and carrying out a job's actions (files, signals);
//! - [`startup`]: reading the config file, opening the archive, restoring jobs;
//! - [`link_key`]: the share-link key's file in the data dir;
//! - [`pty`]: pseudo-terminals for `"pty": true` commands, and the `pty-exec` helper;
//! - [`demo`]: the process the built-in demo commands run;
//! - `redis_store` (feature `redis`): the cluster's Redis operations (docs/cluster.md);
//! - `cluster` (feature `redis`): the cluster's threads (pushers, readers, lease
//!   watch, stop requests) for both runtimes.
//!
//! Nothing here decides anything: which bytes go in a file, when a job is stopped or
//! what an id looks like is `spout-core`'s business. These modules only move bytes,
//! files and processes, and report OS errors with the path or pid they concern.
//! Anything that must await on a socket belongs in a runtime, not here; the cluster
//! modules block on Redis from threads of their own (docs/cluster.md).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
#[cfg(feature = "redis")]
pub mod cluster;
#[cfg(not(feature = "redis"))]
#[path = "cluster_off.rs"]
pub mod cluster;
pub mod demo;
pub mod driver;
pub mod link_key;
pub mod os;
pub mod pty;
#[cfg(feature = "redis")]
pub mod redis_store;
pub mod restore;
pub mod startup;

//! The OS plumbing both spout runtimes share, written once on std (plus rustix for
//! the few Unix calls std lacks): the archive directory's files ([`archive`]) and
//! process groups, signals, OS randomness and fd limits ([`os`]).
//!
//! Nothing here decides anything: which bytes go in a file, when a job is stopped or
//! what an id looks like is `spout-core`'s business. These modules only move bytes,
//! files and processes, and report OS errors with the path or pid they concern.
//!
//! The blocking runtime (`spout-blocking`) uses it directly; the smol runtime (`spout`)
//! uses it too, running the file calls on its blocking thread pool and building its
//! child processes from [`os::job_command`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod demo;
pub mod driver;
pub mod head;
pub mod os;
pub mod startup;

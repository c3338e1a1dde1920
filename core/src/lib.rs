//! # spout-core
//!
//! The sans-IO protocol core of spout (manual being written).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod assembler;
pub mod cli;
pub mod config;
pub mod demo;
pub mod event;
pub mod fuzzing;
pub mod http;
pub mod id;
pub mod job;
pub mod json;
pub mod log;
pub mod registry;
pub mod sse;
pub mod subscriber;

pub use id::{Cursor, EventId, JobId};

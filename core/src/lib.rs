//! # spout-core
//!
//! The sans-IO protocol core of spout (manual being written).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod assembler;
pub mod id;
pub mod json;
pub mod sse;
pub mod event;
pub mod http;

pub use id::{Cursor, EventId, JobId};

//! The cluster driver's stand-in in builds without the `redis` feature
//! (`--no-default-features`): the same names, so the runtimes need no `cfg`; a
//! config that names a Redis is refused at start rather than ignored.

use crate::driver::Shared;
use anyhow::bail;
use spout_core::JobId;
use std::sync::Arc;

/// Wakes a local job's driver (unused without cluster mode).
pub type WakeDriver = Box<dyn Fn(JobId) + Send + Sync>;

/// No cluster: this type has no values.
#[derive(Debug)]
pub enum Cluster {}

impl Cluster {
    /// `Ok(None)`, or an error when the config names a Redis this build cannot use.
    ///
    /// # Errors
    /// `redis` is set in a build without cluster mode.
    pub fn start(shared: &Arc<Shared>, _wake: WakeDriver) -> anyhow::Result<Option<Arc<Cluster>>> {
        if shared.lock().config().redis.is_some() {
            bail!(
                "redis: this spout was built without cluster mode (cargo feature \"redis\"); \
                 remove \"redis\" and --redis, or use a build with it"
            );
        }
        Ok(None)
    }

    /// Never called: there is no value.
    pub fn own(self: &Arc<Cluster>, _id: JobId) {
        match **self {}
    }

    /// Never called: there is no value.
    #[must_use]
    pub fn follow(self: &Arc<Cluster>, _id: JobId) -> bool {
        match **self {}
    }

    /// Never called: there is no value.
    #[must_use]
    pub fn forward_stop(&self, _id: JobId) -> bool {
        match *self {}
    }

    /// Never called: there is no value.
    #[must_use]
    pub fn read_range(
        &self,
        _id: JobId,
        _after: spout_core::Cursor,
        _count: usize,
    ) -> Option<Vec<spout_core::cluster::StreamEntry>> {
        match *self {}
    }

    /// Never called: there is no value.
    pub fn refresh_index(&self) {
        match *self {}
    }

    /// Never called: there is no value.
    pub fn finish_pushes(&self, _bound: std::time::Duration) {
        match *self {}
    }

    /// Never called: there is no value.
    pub fn stop(&self) {
        match *self {}
    }
}

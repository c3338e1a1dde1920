//! The events of a job's log (`start`, `stdout`, `stderr`, `error`, `exit`, `gap`)
//! and their JSON data.

/// Which output stream of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The SSE event type for this stream's text.
    #[must_use]
    pub fn event_name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

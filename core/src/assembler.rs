//! Output assembly for one stream (stdout or stderr): bytes in, text events out.
//! CONTRACT STUB: the signatures are fixed; the bodies are being written.

use std::time::{Duration, Instant};

/// How an [`Assembler`] groups text into events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssemblerConfig {
    /// How long a partial line may wait for the rest of its line.
    pub partial_line_delay: Duration,
    /// The most UTF-8 bytes of text one event carries.
    pub max_event_bytes: usize,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        AssemblerConfig {
            partial_line_delay: Duration::from_millis(50),
            max_event_bytes: 16 * 1024,
        }
    }
}

/// Turns one stream's bytes into the texts of `stdout`/`stderr` events.
#[derive(Debug)]
pub struct Assembler {
    _private: (),
}

impl Assembler {
    /// A new assembler.
    pub fn new(config: AssemblerConfig) -> Assembler {
        let _ = config;
        todo!()
    }
    /// Takes bytes the process wrote, read at `now`.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Instant) {
        let _ = (bytes, now);
        todo!()
    }
    /// The stream ended: everything held becomes text (an incomplete character at
    /// the end becomes U+FFFD).
    pub fn handle_eof(&mut self) {
        todo!()
    }
    /// The next event's text, if one is due at `now`.
    #[must_use]
    pub fn poll_text(&mut self, now: Instant) -> Option<String> {
        let _ = now;
        todo!()
    }
    /// When a held partial line becomes due, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    /// Raw bytes taken so far.
    pub fn bytes_in(&self) -> u64 {
        todo!()
    }
}

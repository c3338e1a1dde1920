//! What the client shows for each event of a job, and the exit code it ends with:
//! pure decisions over decoded events, so they are unit-tested without sockets.
//!
//! Text mode: `stdout` text to stdout, `stderr` text to stderr, each written and
//! flushed as it arrives (the exact characters, carriage returns included); `error`,
//! `gap` and how the job ended as one `spout: …` line on stderr. JSON mode: one line
//! per event on stdout, `{"id":…,"event":…,"data":…}`; the notices stay on stderr.

use serde_json::Value;
use spout_core::event::signal_number;
use spout_core::sse::Dispatched;
use std::io::{self, Write};

/// The exit codes of `spout run` / `spout tail` other than the job's own (see
/// docs/client.md). Numbers from sysexits(3) where one fits, so scripts can tell
/// "the job failed" from "spout could not follow it".
pub mod code {
    /// Bad URL or token on the command line (`EX_USAGE`).
    pub const USAGE: u8 = 64;
    /// The server refused the request as invalid (400): unknown command, arguments
    /// not allowed, `--last-event-id` beyond the job's end (`EX_DATAERR`).
    pub const REFUSED: u8 = 65;
    /// No such job (404) (`EX_NOINPUT`).
    pub const NO_SUCH_JOB: u8 = 66;
    /// The server cannot be reached, or stayed unavailable until the client gave up
    /// (`EX_UNAVAILABLE`).
    pub const UNAVAILABLE: u8 = 69;
    /// The job ended without an exit status (the server restarted while it ran)
    /// (`EX_SOFTWARE`).
    pub const NO_STATUS: u8 = 70;
    /// The client's own output could not be written (a closed pipe) (`EX_IOERR`).
    pub const OUTPUT: u8 = 74;
    /// The server is busy (429/503 to `run`): nothing was started (`EX_TEMPFAIL`).
    pub const BUSY: u8 = 75;
    /// The server's answer is not spout's HTTP or event stream (`EX_PROTOCOL`).
    pub const PROTOCOL: u8 = 76;
    /// The server wants a (different) token: 401/403 (`EX_NOPERM`).
    pub const NO_PERMISSION: u8 = 77;
    /// The job's command could not be started on the server (as a shell's 127).
    pub const NOT_STARTED: u8 = 127;
    /// The client was interrupted (Ctrl-C) and detached; the job goes on.
    pub const DETACHED: u8 = 130;
}

/// The exit code for a job's `exit` data: its code, or 128 + the signal number;
/// [`code::NOT_STARTED`] after an `error` event, else [`code::NO_STATUS`].
pub fn exit_code(exit: &Value, not_started: bool) -> u8 {
    if let Some(c) = exit.get("code").and_then(Value::as_i64) {
        // A wait status holds 0..=255; anything else is not a code a shell can see.
        return u8::try_from(c).unwrap_or(1);
    }
    let signal = exit
        .get("signal")
        .and_then(Value::as_str)
        .and_then(signal_number);
    match signal {
        Some(n) => u8::try_from(128 + n).unwrap_or(255),
        None if not_started => code::NOT_STARTED,
        None => code::NO_STATUS,
    }
}

/// Shows events as they arrive; remembers what the exit code needs.
#[derive(Debug, Default)]
pub struct Printer {
    json: bool,
    /// An `error` event came: the command could not be started.
    not_started: bool,
    /// The stream was asked for `?tail=N` and only `start` has come since: a `gap`
    /// now is the intended skip, not lost history.
    tail_skip_expected: bool,
}

impl Printer {
    /// A printer for text (`json == false`) or JSON lines.
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            ..Printer::default()
        }
    }

    /// The next stream was opened with `?tail=N`.
    pub fn expect_tail_skip(&mut self) {
        self.tail_skip_expected = true;
    }

    /// Shows one event; `Some(code)` once it was the job's `exit`.
    ///
    /// # Errors
    /// When stdout or stderr cannot be written.
    pub fn show(&mut self, event: &Dispatched) -> io::Result<Option<u8>> {
        let data: Option<Value> = serde_json::from_str(&event.data).ok();
        let field = |name: &str| data.as_ref().and_then(|d| d.get(name)).cloned();
        let tail_skip = std::mem::take(&mut self.tail_skip_expected);
        if self.json {
            json_line(event, data.as_ref())?;
        }
        match event.event_type.as_str() {
            "start" => self.tail_skip_expected = tail_skip,
            "stdout" | "stderr" if !self.json => {
                let text = field("text");
                let text = text.as_ref().and_then(Value::as_str).unwrap_or("");
                if event.event_type == "stdout" {
                    write_flush(&mut io::stdout().lock(), text)?;
                } else {
                    write_flush(&mut io::stderr().lock(), text)?;
                }
            }
            "error" => {
                self.not_started = true;
                let message = field("message");
                let message = message.as_ref().and_then(Value::as_str).unwrap_or("");
                notice(&format!("the job could not be started: {message}"))?;
            }
            "gap" => {
                let (from, to) = (field("from"), field("to"));
                let range = match (from, to) {
                    (Some(a), Some(b)) => format!("events {a} to {b}"),
                    _ => "some events".to_owned(),
                };
                if tail_skip {
                    notice(&format!(
                        "showing the latest output only ({range} skipped; --from-start shows everything)"
                    ))?;
                } else {
                    notice(&format!(
                        "{range} of this job are lost (the server no longer holds them): output is missing here"
                    ))?;
                }
            }
            "exit" => {
                let exit = data.unwrap_or(Value::Null);
                if let Some(reason) = exit.get("reason").and_then(Value::as_str) {
                    notice(&format!("the server ended the job: {reason}"))?;
                } else if let Some(signal) = exit.get("signal").and_then(Value::as_str) {
                    notice(&format!("the job was killed by {signal}"))?;
                }
                return Ok(Some(exit_code(&exit, self.not_started)));
            }
            _ => {}
        }
        Ok(None)
    }
}

/// `{"id":…,"event":…,"data":…}`: the id as a number when it is one, the data as
/// parsed JSON (one line, whatever the server's spacing), else as a string.
fn json_line(event: &Dispatched, data: Option<&Value>) -> io::Result<()> {
    let id = match event.last_event_id.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) if event.last_event_id.is_empty() => Value::Null,
        Err(_) => Value::from(event.last_event_id.as_str()),
    };
    let data = data
        .cloned()
        .unwrap_or_else(|| Value::from(event.data.as_str()));
    // Written by hand, not through a map, to keep the documented key order.
    let line = format!(
        "{{\"id\":{id},\"event\":{},\"data\":{data}}}\n",
        Value::from(event.event_type.as_str())
    );
    write_flush(&mut io::stdout().lock(), &line)
}

fn write_flush(out: &mut dyn Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// One `spout: …` line on stderr.
///
/// # Errors
/// When stderr cannot be written.
pub fn notice(message: &str) -> io::Result<()> {
    write_flush(&mut io::stderr().lock(), &format!("spout: {message}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exit_codes() {
        let cases = [
            (json!({"code": 0, "signal": null}), false, 0),
            (json!({"code": 3, "signal": null}), false, 3),
            (json!({"code": 255}), false, 255),
            (json!({"code": 300}), false, 1),
            (json!({"code": null, "signal": "SIGTERM"}), false, 143),
            (json!({"code": null, "signal": "SIGKILL"}), false, 137),
            (json!({"code": null, "signal": "SIG40"}), false, 168),
            (
                json!({"code": null, "signal": null}),
                true,
                code::NOT_STARTED,
            ),
            (
                json!({"code": null, "signal": null, "reason": "server_restart"}),
                false,
                code::NO_STATUS,
            ),
            (Value::Null, false, code::NO_STATUS),
        ];
        for (exit, not_started, want) in cases {
            assert_eq!(exit_code(&exit, not_started), want, "{exit}");
        }
    }
}

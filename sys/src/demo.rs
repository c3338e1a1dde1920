//! Runs a built-in demo script (`spout demo …`, `spout-blocking demo …`): the
//! process the demo commands start. The script itself is data from
//! `spout_core::demo`; this only writes, sleeps and exits.

use spout_core::demo::{self, Step};
use spout_core::event::Stream;
use std::io::{self, Write};
use std::process::ExitCode;

/// Runs the demo script `args` and returns its exit code (2 with a message on
/// stderr when the arguments are not a script).
#[must_use]
pub fn run(args: &[String]) -> ExitCode {
    let steps = match demo::script(args) {
        Ok(steps) => steps,
        Err(e) => {
            eprintln!("spout demo: {e}");
            return ExitCode::from(2);
        }
    };
    match play(&steps) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // A closed pipe means nobody reads any more: stop quietly.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(141),
        Err(e) => {
            eprintln!("spout demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn play(steps: &[Step]) -> io::Result<i32> {
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr().lock();
    for step in steps {
        match step {
            Step::Write(stream, bytes) => {
                let out: &mut dyn Write = match stream {
                    Stream::Stdout => &mut stdout,
                    Stream::Stderr => &mut stderr,
                };
                out.write_all(bytes)?;
                out.flush()?;
            }
            Step::Repeat {
                stream,
                line,
                times,
            } => {
                let out: &mut dyn Write = match stream {
                    Stream::Stdout => &mut stdout,
                    Stream::Stderr => &mut stderr,
                };
                // Batch copies into ~64 KiB writes: this is the load generator.
                let per = (64 * 1024 / line.len().max(1)).max(1) as u64;
                let block = line.repeat(usize::try_from(per).unwrap_or(1));
                let mut left = *times;
                while left >= per {
                    out.write_all(&block)?;
                    left -= per;
                }
                for _ in 0..left {
                    out.write_all(line)?;
                }
                out.flush()?;
            }
            Step::Sleep(d) => std::thread::sleep(*d),
            Step::Exit(code) => return Ok(*code),
        }
    }
    Ok(0)
}

//! `spout-blocking`: the same server as `spout`, on std threads (one per
//! connection, bounded) driving the core's sans-IO HTTP connection — the build
//! without an async runtime, for constrained deployments.
//!
//! This binary is a thin loop around `spout-core`: the core decides, this crate
//! moves bytes (sockets, pipes, files) and reads the clock. Run with:
//!
//! ```text
//! cargo run --release -p spout-blocking -- serve     # demo commands on 127.0.0.1:8080
//! spout-blocking serve --config spout.json
//! ```

mod clock;
mod http;
mod idle;
mod job;
mod serve;
mod stream;

use spout_core::cli::{self, Cli, Program};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args, Program::SpoutBlocking) {
        Ok(Cli::Serve(options)) => serve::run(&options),
        Ok(Cli::Demo(args)) => spout_sys::demo::run(&args),
        Ok(Cli::PtyExec(argv)) => spout_sys::pty::exec(&argv),
        Ok(Cli::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Cli::Version) => {
            println!("spout-blocking {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Cli::Run { .. } | Cli::Tail { .. }) => {
            // invariant: the core's parser offers `run`/`tail` only to `spout`; kept
            // so that a change there is a clear message here, not a panic.
            eprintln!("spout: `run` and `tail` are part of `spout`, not `spout-blocking`");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("spout: {e}");
            ExitCode::from(2)
        }
    }
}

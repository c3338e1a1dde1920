//! `spout`: run declared commands as jobs and stream their output over
//! Server-Sent Events — the default server, on smol.
//!
//! This binary is a thin loop around `spout-core`: the core decides, this crate
//! moves bytes (sockets, pipes, files) and reads the clock. Run with:
//!
//! ```text
//! cargo run --release            # demo commands on 127.0.0.1:8080
//! spout serve --config spout.json
//! ```

mod client;
mod clock;
mod http;
mod job;
mod process;
mod serve;
mod stream;

use spout_core::cli::{self, Cli, Program};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args, Program::Spout) {
        Ok(Cli::Serve(options)) => serve::run(&options),
        Ok(Cli::Demo(args)) => spout_sys::demo::run(&args),
        Ok(Cli::PtyExec(argv)) => spout_sys::pty::exec(&argv),
        Ok(Cli::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Cli::Version) => {
            println!("spout {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Cli::Run {
            server,
            command,
            args,
            token,
            kill_on_interrupt,
            json,
        }) => client::run(&server, &command, &args, token, kill_on_interrupt, json),
        Ok(Cli::Tail {
            url,
            token,
            from_start,
            last_event_id,
            json,
        }) => client::tail(&url, token, from_start, last_event_id, json),
        Err(e) => {
            eprintln!("spout: {e}");
            // The client's usage errors keep the client's documented code (64,
            // EX_USAGE, docs/client.md); the server's are 2.
            let client = matches!(args.first().map(String::as_str), Some("run" | "tail"));
            ExitCode::from(if client { 64 } else { 2 })
        }
    }
}

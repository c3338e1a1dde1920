//! Start-up both runtimes share: reading the config the command line names (the
//! core checks it), opening the archive, and rebuilding the registry from it; and
//! the exit codes of `serve`. A runtime adds only its listener and its loops.

use crate::archive::ArchiveDir;
use crate::driver::Shared;
use crate::link_key;
use crate::os;
use crate::restore;
use anyhow::{anyhow, Context as _};
use spout_core::cli::ServeOptions;
use spout_core::config::Config;
use spout_core::link::LinkKey;
use spout_core::registry::Registry;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// A server ready to listen.
#[derive(Debug)]
pub struct Started {
    /// The registry (restored from the archive) behind its lock.
    pub shared: Arc<Shared>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The start-up log line after "listening on": commands, storage, jobs restored.
    pub summary: String,
}

/// Runs `serve` on the config `options` ask for. Exit code 0 after a clean
/// shutdown, 2 for a config that is refused, 1 for other start-up failures (the
/// error is printed to stderr either way).
pub fn run(
    options: &ServeOptions,
    clock: impl Fn() -> (Instant, SystemTime, [u8; 16]),
    serve: impl FnOnce(Started) -> anyhow::Result<()>,
) -> ExitCode {
    let config = match load_config(options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spout: {e:#}");
            return ExitCode::from(2);
        }
    };
    match prepare(config, clock()).and_then(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spout: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(options: &ServeOptions) -> anyhow::Result<Config> {
    let text = match &options.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {path}"))?,
        ),
        None => None,
    };
    let exe = std::env::current_exe().context("cannot find the spout executable")?;
    Config::load(options, text.as_deref(), &exe.to_string_lossy())
        .map_err(|e| anyhow!("config refused: {e}"))
}

fn prepare(
    config: Config,
    (now, wall, random): (Instant, SystemTime, [u8; 16]),
) -> anyhow::Result<Started> {
    let _ = os::raise_nofile_limit();
    os::try_random_bytes().context("the OS gives no randomness for job ids")?;
    let archive = if config.memory {
        None
    } else {
        Some(
            ArchiveDir::open(&config.data_dir)
                .with_context(|| format!("cannot use data dir {}", config.data_dir))?
                .with_fsync(config.fsync),
        )
    };
    let listen = config.listen;
    let commands: Vec<String> = config.commands.keys().cloned().collect();
    let mode = archive.as_ref().map_or("memory only".to_string(), |a| {
        format!("archive {}", a.root().display())
    });
    let configured_key = config.link_key.is_some();
    let mut registry = Registry::new(config)?;
    // The config's `link_key` (a cluster's shared key) wins; otherwise the data
    // dir's key file, or a key for this process only in memory mode.
    if !configured_key {
        let key = match &archive {
            Some(a) => {
                link_key::load_or_create(a.root()).context("cannot use the share-link key")?
            }
            None => {
                link_key::random_key().context("the OS gives no randomness for the link key")?
            }
        };
        registry.set_link_key(LinkKey::new(&key).context("the share-link key")?);
    }
    let shared = Shared::new(registry, archive);
    let restored =
        restore::restore(&shared, now, wall, random).context("cannot read the archive")?;
    let summary = format!(
        "commands: {}; {mode}; {restored} archived jobs",
        commands.join(", ")
    );
    Ok(Started {
        shared,
        listen,
        summary,
    })
}

/// Binds the server's listening socket, non-blocking (the smol runtime adopts it
/// into its reactor; the blocking one `poll`s it, so a connection that vanishes
/// between `poll` and `accept` cannot block the loop and with it the shutdown).
///
/// # Errors
/// The address is taken, not ours, or needs privileges; the message names it.
pub fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    listener
        .set_nonblocking(true)
        .context("cannot set up the listening socket")?;
    Ok(listener)
}

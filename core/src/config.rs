//! The server's configuration: the JSON file of SPEC.md ("Configuration and CLI"),
//! parsed, validated and given its defaults, plus the rules that turn a user's
//! arguments into a command's argv.
//!
//! Everything is checked before anything starts: an error names the path of the bad
//! field (`commands.build.timeout_s`) and why, unknown fields included, so a typo is
//! never silently ignored. After [`parse`], callers see plain values with the
//! defaults applied; only settings whose absence means something (`timeout_s`,
//! `args`, `cwd`, …) stay `Option`s.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::cli::ServeOptions;
use crate::cluster::{RedisUrl, DEFAULT_STREAM_MAX_EVENTS};

/// The address served when neither the file nor `--listen` names one.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// The archive directory used when neither the file nor `--data-dir` names one.
pub const DEFAULT_DATA_DIR: &str = "./spout-data";
/// The name of the one command of `spout serve -- CMD ARGS…`.
pub const ADHOC_COMMAND: &str = "default";

/// The most user arguments a command may accept (`args.max`).
pub const MAX_ARGS: usize = 64;
/// The longest user argument a command may accept, in bytes (`args.max_len`).
pub const MAX_ARG_LEN: usize = 4096;
/// The shortest accepted token, in characters.
pub const MIN_TOKEN_LEN: usize = 16;
/// The smallest `sse.max_event_bytes`: below this, an event could not hold one
/// multi-byte character plus room to make progress.
pub const MIN_EVENT_BYTES: usize = 64;
/// The largest `sse.max_event_bytes` (16 MiB): one event is held whole in memory.
pub const MAX_EVENT_BYTES: usize = 16 << 20;
/// The longest duration in seconds any `*_s` field takes (ten years). Larger values
/// would make `Instant + Duration` overflow in a runtime, which panics.
pub const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;
/// The longest duration in milliseconds any `*_ms` field takes (one day).
pub const MAX_MILLIS: u64 = 24 * 3600 * 1000;
/// The longest command name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The terminal size a `"pty": true` command gets when it sets no `pty_size`.
pub const DEFAULT_PTY_SIZE: PtySize = PtySize {
    cols: 120,
    rows: 40,
};
/// The most columns or rows a `pty_size` may ask for.
pub const MAX_PTY_CELLS: u16 = 1000;
/// The `TERM` a job on a pseudo-terminal gets unless its `env` names one: tools
/// decide whether to colour from it (an unset `TERM` reads as "no colours" to many).
pub const PTY_TERM: &str = "xterm-256color";

/// A configuration that was refused: where, and why.
///
/// `path` names the field as it is written in the file: `commands.build.timeout_s`,
/// `tokens[0].scopes[1]`; `.` names the file as a whole (a JSON syntax error before
/// any field, or an empty file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The path of the bad field.
    pub path: String,
    /// What is wrong with it, in lowercase prose.
    pub message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The whole, validated configuration of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The archive directory (default `./spout-data`); unused when `memory` is set.
    pub data_dir: String,
    /// Keep logs in memory only (`--memory`); never read from the file.
    pub memory: bool,
    /// Flush the archive to stable storage (`fsync`) before a job's `201` and at
    /// each sync point (default true), so acknowledged jobs and synced events
    /// survive a power loss too; false keeps only what survives a process crash
    /// (see docs/reliability.md).
    pub fsync: bool,
    /// The declared commands by name; never empty after [`parse`].
    pub commands: BTreeMap<String, CommandSpec>,
    /// The bearer tokens; empty means no authentication (loopback only, see
    /// [`Config::check_listen`]).
    pub tokens: Vec<TokenSpec>,
    /// Cross-origin access.
    pub cors: CorsSpec,
    /// Server-wide limits.
    pub limits: Limits,
    /// Event-stream settings.
    pub sse: SseSettings,
    /// The secret that signs share links (`link_key`), shared by every server of a
    /// cluster; `None` means the runtime uses the key file in the data dir (made
    /// on first start), or a per-process key with `--memory`.
    pub link_key: Option<String>,
    /// The Redis that servers of a cluster share (`redis`, `--redis`); `None` runs
    /// one server on its own (see docs/cluster.md).
    pub redis: Option<RedisUrl>,
    /// The most events of one job kept in Redis (`redis_max_events`, default
    /// 100000); older ones are trimmed, and a server that cannot serve them sends a
    /// `gap` (the owner's archive keeps them).
    pub redis_max_events: u64,
    /// The owner's lease on each of its jobs in Redis (`redis_lease_ttl_ms`,
    /// default 10000): a job whose owner stops renewing is ended (`server_lost`) by
    /// another server about this long after. Short values suit tests.
    pub redis_lease_ttl_ms: u64,
}

/// The most `redis_max_events` accepted (a billion events).
pub const MAX_REDIS_EVENTS: u64 = 1_000_000_000;
/// `redis_lease_ttl_ms` when the config sets none (`cluster::DEFAULT_LEASE_TTL`).
pub const DEFAULT_LEASE_TTL_MS: u64 = 10_000;
/// The shortest lease accepted: renewals every third of it must fit round trips.
pub const MIN_LEASE_TTL_MS: u64 = 300;
/// The longest lease accepted (an hour).
pub const MAX_LEASE_TTL_MS: u64 = 3_600_000;

/// One declared command: a process template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command's name (its key in `commands`), used in messages and events.
    pub name: String,
    /// A one-line description for `GET /commands` and the viewer (default empty).
    pub description: String,
    /// The program and its fixed arguments; never empty, `argv[0]` never empty.
    pub argv: Vec<String>,
    /// Which user arguments may be appended; `None` accepts none.
    pub args: Option<ArgsRule>,
    /// The working directory; `None` inherits the server's.
    pub cwd: Option<String>,
    /// Variables set in the otherwise cleared environment (PATH is added by the
    /// runtime).
    pub env: BTreeMap<String, String>,
    /// Stop the job after this many seconds; `None` lets it run.
    pub timeout_s: Option<u64>,
    /// Stop the job once it has written this many bytes (stdout and stderr
    /// together); `None` sets no limit.
    pub max_output_bytes: Option<u64>,
    /// Stop the job when nobody has watched it for this many seconds; `None` lets
    /// it run whether watched or not.
    pub stop_when_unwatched_s: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL when the job is stopped (default 5; an
    /// extension to SPEC.md). 0 sends SIGKILL at once.
    pub stop_grace_s: u64,
    /// Run the job on a pseudo-terminal of this size (`"pty": true`); `None` runs
    /// it on pipes, stdout and stderr apart. An extension to SPEC.md.
    pub pty: Option<PtySize>,
}

/// The size of a job's pseudo-terminal (`pty_size`), in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtySize {
    /// Columns: the line width the job sees (1 to [`MAX_PTY_CELLS`]).
    pub cols: u16,
    /// Rows (1 to [`MAX_PTY_CELLS`]).
    pub rows: u16,
}

/// Which user arguments a command accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgsRule {
    /// The most arguments, 1..=64 (default 1).
    pub max: usize,
    /// The longest argument in bytes, 1..=4096 (default 256).
    pub max_len: usize,
    /// The only accepted values; `None` accepts any value (see `allow_options`).
    pub allow: Option<Vec<String>>,
    /// With no `allow` list, also accept arguments that start with `-` (default
    /// false; an extension to SPEC.md). Off, a user cannot add options the command's
    /// author did not foresee, such as `--output=/etc/passwd`.
    pub allow_options: bool,
}

/// A bearer token and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    /// The secret: at least 16 visible ASCII characters.
    pub token: String,
    /// What the token may do; never empty.
    pub scopes: Vec<Scope>,
}

impl TokenSpec {
    /// Whether this token grants `scope`.
    #[must_use]
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Start jobs (`POST /jobs`) and stop them (`DELETE /jobs/{id}`).
    Start,
    /// Watch jobs: list them, read status, events and logs.
    Watch,
    /// Make share links to one job (`POST /jobs/{id}/links`).
    Share,
}

impl Scope {
    /// The scope's name in the config file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Start => "start",
            Scope::Watch => "watch",
            Scope::Share => "share",
        }
    }
}

/// Cross-origin access.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsSpec {
    /// Origins allowed to call the API from a browser, in the exact form browsers
    /// send in `Origin` (`https://ops.example.com`, lowercase, no default port), or
    /// the single entry `"*"` for any origin. Empty (the default) allows none.
    pub allow_origins: Vec<String>,
}

impl CorsSpec {
    /// Whether a request's `Origin` header value is allowed.
    #[must_use]
    pub fn allows(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|o| o == "*" || o == origin)
    }

    /// Whether any origin is allowed (`"*"`).
    #[must_use]
    pub fn allows_any(&self) -> bool {
        self.allow_origins.iter().any(|o| o == "*")
    }
}

/// Server-wide limits. Every value is at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Jobs running at once (default 16); more are refused with 429.
    pub max_running_jobs: usize,
    /// Event-stream connections at once (default 10000).
    pub max_subscribers: usize,
    /// Finished jobs kept (default 1000); the oldest are forgotten first.
    pub max_retained_jobs: usize,
    /// Seconds a finished job is kept (default 604800, one week).
    pub retention_s: u64,
    /// Bytes of recent events kept in memory per job (default 1 MiB); at least
    /// `sse.max_event_bytes`.
    pub memory_window_bytes: usize,
    /// The longest lifetime a share link may be given, in seconds (default
    /// 604800, one week).
    pub max_link_s: u64,
    /// Seconds a new connection may take to send its first byte before it is closed
    /// without an answer (default 10).
    pub first_byte_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_running_jobs: 16,
            max_subscribers: 10_000,
            max_retained_jobs: 1000,
            retention_s: 604_800,
            memory_window_bytes: 1 << 20,
            max_link_s: 604_800,
            first_byte_timeout_s: 10,
        }
    }
}

impl Limits {
    /// How long a finished job is kept.
    #[must_use]
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_s)
    }

    /// How long a new connection may stay silent.
    #[must_use]
    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs(self.first_byte_timeout_s)
    }
}

/// Event-stream settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseSettings {
    /// The `retry:` sent first on every stream, in ms, before jitter (default 2000).
    pub retry_ms: u64,
    /// Seconds of silence before a heartbeat (default 15).
    pub heartbeat_s: u64,
    /// How long a partial line waits for the rest of its line, in ms (default 50).
    pub partial_line_ms: u64,
    /// The most bytes of text in one output event (default 16384, at least 64).
    pub max_event_bytes: usize,
    /// Send heartbeats as `event: heartbeat` for every stream, not only for those
    /// that ask with `?heartbeat=event` (default false; an extension to SPEC.md).
    pub heartbeat_event: bool,
}

impl Default for SseSettings {
    fn default() -> SseSettings {
        SseSettings {
            retry_ms: 2000,
            heartbeat_s: 15,
            partial_line_ms: 50,
            max_event_bytes: 16 * 1024,
            heartbeat_event: false,
        }
    }
}

impl SseSettings {
    /// The reconnection delay announced to clients, before jitter.
    #[must_use]
    pub fn retry(&self) -> Duration {
        Duration::from_millis(self.retry_ms)
    }

    /// The silence after which a heartbeat is sent.
    #[must_use]
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_s)
    }

    /// How long a partial line waits for the rest of its line.
    #[must_use]
    pub fn partial_line_delay(&self) -> Duration {
        Duration::from_millis(self.partial_line_ms)
    }
}

/// Parses and validates a config file's text.
///
/// # Errors
/// A [`ConfigError`] naming the first bad field: a JSON syntax error, a wrong type,
/// an unknown or duplicate field, or a value the rules in `docs/config.md` refuse.
///
/// # Examples
/// ```
/// let config = spout_core::config::parse(r#"{"commands": {"hi": {"argv": ["echo", "hi"]}}}"#).unwrap();
/// assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
/// let err = spout_core::config::parse(r#"{"commands": {"hi": {"argv": []}}}"#).unwrap_err();
/// assert_eq!(err.path, "commands.hi.argv");
/// ```
pub fn parse(json: &str) -> Result<Config, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let Obj(raw): Obj<RawConfig> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = format_path(e.path());
        ConfigError::new(path, e.into_inner().to_string())
    })?;
    // Trailing text after the object is a broken file, not something to ignore.
    de.end().map_err(|e| ConfigError::new(".", e.to_string()))?;
    let config = raw.into_config()?;
    config.validate()?;
    Ok(config)
}

impl Config {
    /// A configuration with these commands and every other setting at its default.
    #[must_use]
    pub fn with_commands(commands: BTreeMap<String, CommandSpec>) -> Config {
        Config {
            listen: DEFAULT_LISTEN,
            data_dir: DEFAULT_DATA_DIR.to_owned(),
            memory: false,
            fsync: true,
            commands,
            tokens: Vec::new(),
            cors: CorsSpec::default(),
            limits: Limits::default(),
            sse: SseSettings::default(),
            link_key: None,
            redis: None,
            redis_max_events: DEFAULT_STREAM_MAX_EVENTS,
            redis_lease_ttl_ms: DEFAULT_LEASE_TTL_MS,
        }
    }

    /// The configuration of `spout serve -- CMD ARGS…`: one command named `default`
    /// that runs `argv` and accepts no user arguments, described by its argv.
    #[must_use]
    pub fn adhoc(argv: Vec<String>) -> Config {
        let mut command = CommandSpec::new(ADHOC_COMMAND, argv);
        command.description = command.argv.join(" ");
        let mut commands = BTreeMap::new();
        commands.insert(ADHOC_COMMAND.to_owned(), command);
        Config::with_commands(commands)
    }

    /// Applies command-line flags, which override the file.
    pub fn apply(&mut self, overrides: &ServeOptions) {
        if let Some(listen) = overrides.listen {
            self.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            self.data_dir.clone_from(dir);
        }
        if overrides.memory {
            self.memory = true;
        }
        if let Some(redis) = &overrides.redis {
            self.redis = Some(redis.clone());
        }
    }

    /// Builds the configuration a `serve` invocation asks for: the file's (whose
    /// text the runtime read from `options.config`), the ad-hoc command's, or the
    /// built-in demo commands, which run `self_exe`; then applies the flags and
    /// checks the result, [`Config::check_listen`] included.
    ///
    /// # Errors
    /// The file's [`ConfigError`], or a refused listen address, or (a runtime bug)
    /// `options.config` set without `file_text`.
    pub fn load(
        options: &ServeOptions,
        file_text: Option<&str>,
        self_exe: &str,
    ) -> Result<Config, ConfigError> {
        let mut config = match (&options.config, file_text, &options.adhoc) {
            (Some(_), Some(text), _) => parse(text)?,
            (Some(file), None, _) => {
                return Err(ConfigError::new(
                    ".",
                    format!("config file {file:?} was not read"),
                ))
            }
            (None, _, Some(argv)) => Config::adhoc(argv.clone()),
            (None, _, None) => crate::demo::config(self_exe),
        };
        config.apply(options);
        config.validate()?;
        config.check_listen(options.insecure_no_auth)?;
        Ok(config)
    }

    /// Refuses to serve a non-loopback address without tokens, unless the operator
    /// passed `--insecure-no-auth`: anyone who can reach the port could run the
    /// declared commands.
    ///
    /// # Errors
    /// A [`ConfigError`] at `listen` that says how to fix it.
    pub fn check_listen(&self, insecure_no_auth: bool) -> Result<(), ConfigError> {
        if self.listen.ip().is_loopback() || !self.tokens.is_empty() || insecure_no_auth {
            return Ok(());
        }
        Err(ConfigError::new(
            "listen",
            format!(
                "{} is reachable from other machines and no tokens are configured: anyone could \
                 run your commands; add \"tokens\" to the config, listen on 127.0.0.1, or pass \
                 --insecure-no-auth if something in front of spout authenticates requests",
                self.listen
            ),
        ))
    }

    /// Checks every rule of the file on an assembled configuration (after
    /// [`Config::adhoc`] or [`Config::apply`], say). [`parse`] already does this.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        no_nul("data_dir", &self.data_dir)?;
        if self.data_dir.is_empty() {
            return Err(ConfigError::new("data_dir", "must not be empty"));
        }
        if self.commands.is_empty() {
            return Err(ConfigError::new(
                "commands",
                "must declare at least one command",
            ));
        }
        for (name, command) in &self.commands {
            validate_name(name)?;
            if &command.name != name {
                return Err(ConfigError::new(
                    format!("commands.{name}"),
                    format!("is named {:?} inside but {name:?} in the map", command.name),
                ));
            }
            command.validate(&format!("commands.{name}"))?;
        }
        for (i, token) in self.tokens.iter().enumerate() {
            let path = format!("tokens[{i}]");
            validate_token(&format!("{path}.token"), &token.token)?;
            if token.scopes.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.scopes"),
                    "must name at least one of \"start\", \"watch\", \"share\"",
                ));
            }
            if self.tokens[..i].iter().any(|t| t.token == token.token) {
                return Err(ConfigError::new(
                    format!("{path}.token"),
                    "is the same as an earlier token; give each token one entry with all its scopes",
                ));
            }
        }
        if let Some(key) = &self.link_key {
            if key.len() < crate::link::MIN_KEY_BYTES {
                return Err(ConfigError::new(
                    "link_key",
                    format!(
                        "is {} bytes; use a random secret of at least {} (e.g. `head -c 32 /dev/urandom | base64`)",
                        key.len(),
                        crate::link::MIN_KEY_BYTES
                    ),
                ));
            }
        }
        if !(1..=MAX_REDIS_EVENTS).contains(&self.redis_max_events) {
            return Err(ConfigError::new(
                "redis_max_events",
                format!("must be 1..={MAX_REDIS_EVENTS}"),
            ));
        }
        if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&self.redis_lease_ttl_ms) {
            return Err(ConfigError::new(
                "redis_lease_ttl_ms",
                format!("must be {MIN_LEASE_TTL_MS}..={MAX_LEASE_TTL_MS}"),
            ));
        }
        validate_origins(&self.cors.allow_origins)?;
        // sse first: the memory window is checked against a valid event size.
        self.sse.validate()?;
        self.limits.validate(&self.sse)
    }
}

impl CommandSpec {
    /// A command running `argv`, accepting no user arguments, with every other
    /// setting at its default.
    #[must_use]
    pub fn new(name: &str, argv: Vec<String>) -> CommandSpec {
        CommandSpec {
            name: name.to_owned(),
            description: String::new(),
            argv,
            args: None,
            cwd: None,
            env: BTreeMap::new(),
            timeout_s: None,
            max_output_bytes: None,
            stop_when_unwatched_s: None,
            stop_grace_s: DEFAULT_STOP_GRACE_S,
            pty: None,
        }
    }

    /// The environment the job's process gets besides `PATH`: the command's `env`,
    /// plus `TERM` ([`PTY_TERM`]) on a pseudo-terminal when `env` names none.
    #[must_use]
    pub fn job_env(&self) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        if self.pty.is_some() {
            env.entry("TERM".to_owned())
                .or_insert_with(|| PTY_TERM.to_owned());
        }
        env
    }

    /// Whether users may append arguments (for `GET /commands`).
    #[must_use]
    pub fn accepts_args(&self) -> bool {
        self.args.is_some()
    }

    /// The job's timeout, if any.
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_s.map(Duration::from_secs)
    }

    /// How long the job may go unwatched before it is stopped, if ever.
    #[must_use]
    pub fn stop_when_unwatched(&self) -> Option<Duration> {
        self.stop_when_unwatched_s.map(Duration::from_secs)
    }

    /// The time between SIGTERM and SIGKILL.
    #[must_use]
    pub fn stop_grace(&self) -> Duration {
        Duration::from_secs(self.stop_grace_s)
    }

    /// The argv of a job: the template, then the user's arguments where the
    /// command's `args` rule accepts them.
    ///
    /// # Errors
    /// An [`ArgsError`] for the first rule the arguments break: arguments given to a
    /// command that takes none, too many, a NUL byte, too long, not in the `allow`
    /// list, or (with no `allow` list and no `allow_options`) starting with `-`.
    pub fn build_argv(&self, user_args: &[String]) -> Result<Vec<String>, ArgsError> {
        let command = self.name.clone();
        if user_args.is_empty() {
            return Ok(self.argv.clone());
        }
        let Some(rule) = &self.args else {
            return Err(ArgsError::NotAccepted { command });
        };
        if user_args.len() > rule.max {
            return Err(ArgsError::TooMany {
                command,
                max: rule.max,
            });
        }
        for (i, arg) in user_args.iter().enumerate() {
            let position = i + 1;
            if arg.contains('\0') {
                return Err(ArgsError::Nul { command, position });
            }
            if arg.len() > rule.max_len {
                return Err(ArgsError::TooLong {
                    command,
                    position,
                    max_len: rule.max_len,
                });
            }
            match &rule.allow {
                Some(allow) if !allow.contains(arg) => {
                    return Err(ArgsError::NotAllowed {
                        command,
                        value: arg.clone(),
                        allowed: allow.clone(),
                    });
                }
                None if arg.starts_with('-') && !rule.allow_options => {
                    return Err(ArgsError::Option {
                        command,
                        value: arg.clone(),
                    });
                }
                _ => {}
            }
        }
        let mut argv = Vec::with_capacity(self.argv.len() + user_args.len());
        argv.extend_from_slice(&self.argv);
        argv.extend_from_slice(user_args);
        Ok(argv)
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        no_nul(&format!("{path}.description"), &self.description)?;
        if self.argv.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.argv"),
                "must name at least the program to run",
            ));
        }
        for (i, arg) in self.argv.iter().enumerate() {
            no_nul(&format!("{path}.argv[{i}]"), arg)?;
        }
        // invariant: argv is not empty, checked above.
        if self.argv[0].is_empty() {
            return Err(ConfigError::new(
                format!("{path}.argv[0]"),
                "must name the program to run",
            ));
        }
        if let Some(rule) = &self.args {
            rule.validate(&format!("{path}.args"))?;
        }
        if let Some(cwd) = &self.cwd {
            no_nul(&format!("{path}.cwd"), cwd)?;
            if cwd.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.cwd"),
                    "must not be empty; leave it out to use the server's",
                ));
            }
        }
        for (key, value) in &self.env {
            let key_path = key_path(&format!("{path}.env"), key);
            no_nul(&key_path, key)?;
            if key.is_empty() {
                return Err(ConfigError::new(
                    key_path,
                    "a variable name must not be empty",
                ));
            }
            if key.contains('=') {
                return Err(ConfigError::new(
                    key_path,
                    "a variable name must not contain '='",
                ));
            }
            no_nul(&key_path, value)?;
        }
        positive_secs(&format!("{path}.timeout_s"), self.timeout_s)?;
        positive(&format!("{path}.max_output_bytes"), self.max_output_bytes)?;
        positive_secs(
            &format!("{path}.stop_when_unwatched_s"),
            self.stop_when_unwatched_s,
        )?;
        if self.stop_grace_s > MAX_SECONDS {
            return Err(ConfigError::new(
                format!("{path}.stop_grace_s"),
                format!("must be at most {MAX_SECONDS}"),
            ));
        }
        if let Some(size) = self.pty {
            for (field, cells) in [("cols", size.cols), ("rows", size.rows)] {
                if !(1..=MAX_PTY_CELLS).contains(&cells) {
                    return Err(ConfigError::new(
                        format!("{path}.pty_size.{field}"),
                        format!("must be 1..={MAX_PTY_CELLS}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

const DEFAULT_STOP_GRACE_S: u64 = 5;
const DEFAULT_ARGS_MAX: usize = 1;
const DEFAULT_ARG_LEN: usize = 256;

impl ArgsRule {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if !(1..=MAX_ARGS).contains(&self.max) {
            return Err(ConfigError::new(
                format!("{path}.max"),
                format!("must be 1..={MAX_ARGS}; leave out \"args\" to accept no arguments"),
            ));
        }
        if !(1..=MAX_ARG_LEN).contains(&self.max_len) {
            return Err(ConfigError::new(
                format!("{path}.max_len"),
                format!("must be 1..={MAX_ARG_LEN}"),
            ));
        }
        if let Some(allow) = &self.allow {
            if allow.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.allow"),
                    "must list at least one value; leave out \"args\" to accept no arguments",
                ));
            }
            for (i, value) in allow.iter().enumerate() {
                let item = format!("{path}.allow[{i}]");
                no_nul(&item, value)?;
                if value.len() > self.max_len {
                    return Err(ConfigError::new(
                        item,
                        format!("is longer than max_len ({} bytes)", self.max_len),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Limits {
    fn validate(&self, sse: &SseSettings) -> Result<(), ConfigError> {
        let counts = [
            ("limits.max_running_jobs", self.max_running_jobs),
            ("limits.max_subscribers", self.max_subscribers),
            ("limits.max_retained_jobs", self.max_retained_jobs),
            ("limits.memory_window_bytes", self.memory_window_bytes),
        ];
        for (path, value) in counts {
            if value == 0 {
                return Err(ConfigError::new(path, "must be at least 1"));
            }
        }
        positive_secs("limits.retention_s", Some(self.retention_s))?;
        positive_secs("limits.max_link_s", Some(self.max_link_s))?;
        positive_secs(
            "limits.first_byte_timeout_s",
            Some(self.first_byte_timeout_s),
        )?;
        if self.memory_window_bytes < sse.max_event_bytes {
            return Err(ConfigError::new(
                "limits.memory_window_bytes",
                format!(
                    "must be at least sse.max_event_bytes ({}) so one event fits",
                    sse.max_event_bytes
                ),
            ));
        }
        Ok(())
    }
}

impl SseSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        positive_millis("sse.retry_ms", self.retry_ms)?;
        positive_secs("sse.heartbeat_s", Some(self.heartbeat_s))?;
        positive_millis("sse.partial_line_ms", self.partial_line_ms)?;
        if !(MIN_EVENT_BYTES..=MAX_EVENT_BYTES).contains(&self.max_event_bytes) {
            return Err(ConfigError::new(
                "sse.max_event_bytes",
                format!("must be {MIN_EVENT_BYTES}..={MAX_EVENT_BYTES}"),
            ));
        }
        Ok(())
    }
}

/// Writes a serde path the way [`ConfigError::path`] documents it.
fn format_path(path: &serde_path_to_error::Path) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            serde_path_to_error::Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => text = key_path(&text, key),
            serde_path_to_error::Segment::Unknown => text.push_str("[?]"),
        }
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

/// `parent.key`, or `parent["key"]` (escaped) when the key is empty or has
/// characters that would make the path ambiguous or unprintable.
fn key_path(parent: &str, key: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    match (key.is_empty() || !key.chars().all(plain), parent.is_empty()) {
        (true, _) => format!("{parent}[{key:?}]"),
        (false, true) => key.to_owned(),
        (false, false) => format!("{parent}.{key}"),
    }
}

fn no_nul(path: &str, value: &str) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(ConfigError::new(path, "must not contain a NUL character"));
    }
    Ok(())
}

fn positive(path: &str, value: Option<u64>) -> Result<(), ConfigError> {
    if value == Some(0) {
        return Err(ConfigError::new(
            path,
            "must be at least 1; leave it out for no limit",
        ));
    }
    Ok(())
}

fn positive_secs(path: &str, value: Option<u64>) -> Result<(), ConfigError> {
    match value {
        Some(0) => Err(ConfigError::new(path, "must be at least 1")),
        Some(s) if s > MAX_SECONDS => Err(ConfigError::new(
            path,
            format!("must be at most {MAX_SECONDS} (ten years)"),
        )),
        _ => Ok(()),
    }
}

fn positive_millis(path: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 || value > MAX_MILLIS {
        return Err(ConfigError::new(path, format!("must be 1..={MAX_MILLIS}")));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) {
        return Err(ConfigError::new(
            "commands",
            format!("command name {name:?} must be 1 to {MAX_NAME_LEN} of the characters A-Z a-z 0-9 _ . -"),
        ));
    }
    Ok(())
}

fn validate_token(path: &str, token: &str) -> Result<(), ConfigError> {
    // Tokens travel in an Authorization header and in `?token=`: visible ASCII keeps
    // them intact in both without any quoting.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            path,
            "must be visible ASCII characters only (no spaces)",
        ));
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(ConfigError::new(
            path,
            format!("must be at least {MIN_TOKEN_LEN} characters; use a long random secret"),
        ));
    }
    Ok(())
}

fn validate_origins(origins: &[String]) -> Result<(), ConfigError> {
    for (i, origin) in origins.iter().enumerate() {
        let path = format!("cors.allow_origins[{i}]");
        if origin == "*" {
            if origins.len() > 1 {
                return Err(ConfigError::new(
                    path,
                    "\"*\" allows every origin and must be the only entry",
                ));
            }
            continue;
        }
        match normalize_origin(origin) {
            Some(normal) if &normal == origin => {}
            Some(normal) => {
                return Err(ConfigError::new(
                    path,
                    format!("write it as {normal:?}, the form browsers send in the Origin header"),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    path,
                    format!(
                        "{origin:?} is not an origin: write scheme and host only, like \
                         \"https://ops.example.com\" or \"http://localhost:3000\" (no path), or \"*\""
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The serialized form browsers send for an `http`/`https` origin (lowercase, no
/// default port), or `None` when `origin` is not one.
fn normalize_origin(origin: &str) -> Option<String> {
    let lower = origin.to_ascii_lowercase();
    let (scheme, rest, default_port) = if let Some(rest) = lower.strip_prefix("https://") {
        ("https", rest, "443")
    } else if let Some(rest) = lower.strip_prefix("http://") {
        ("http", rest, "80")
    } else {
        return None;
    };
    // IPv6 hosts are bracketed and contain colons of their own.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let end = v6.find(']')?;
        let (inner, after) = (&v6[..end], &v6[end + 1..]);
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&rest[..end + 2], port)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let host_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if host.is_empty() || !host.chars().all(host_char) {
            return None;
        }
        (host, port)
    };
    match port {
        None => Some(format!("{scheme}://{host}")),
        Some(p) => {
            let ok = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            let n: u32 = p.parse().ok().filter(|_| ok)?;
            if n == 0 || n > 65535 {
                return None;
            }
            if n.to_string() == default_port {
                Some(format!("{scheme}://{host}"))
            } else {
                Some(format!("{scheme}://{host}:{n}"))
            }
        }
    }
}

/// What is wrong with a user's arguments to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgsError {
    /// The command accepts no arguments.
    NotAccepted {
        /// The command's name.
        command: String,
    },
    /// More arguments than `args.max`.
    TooMany {
        /// The command's name.
        command: String,
        /// The most it accepts.
        max: usize,
    },
    /// An argument contains a NUL byte, which no argv can carry.
    Nul {
        /// The command's name.
        command: String,
        /// Which argument, from 1.
        position: usize,
    },
    /// An argument longer than `args.max_len` bytes.
    TooLong {
        /// The command's name.
        command: String,
        /// Which argument, from 1.
        position: usize,
        /// The longest accepted, in bytes.
        max_len: usize,
    },
    /// An argument not in the `allow` list.
    NotAllowed {
        /// The command's name.
        command: String,
        /// The refused argument.
        value: String,
        /// The accepted values.
        allowed: Vec<String>,
    },
    /// An argument that starts with `-` where the command does not accept options.
    Option {
        /// The command's name.
        command: String,
        /// The refused argument.
        value: String,
    },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::NotAccepted { command } => write!(f, "command {command:?} accepts no arguments"),
            ArgsError::TooMany { command, max } => {
                let s = if *max == 1 { "" } else { "s" };
                write!(f, "command {command:?} accepts at most {max} argument{s}")
            }
            ArgsError::Nul { command, position } => {
                write!(f, "argument {position} of command {command:?} contains a NUL byte")
            }
            ArgsError::TooLong { command, position, max_len } => {
                write!(f, "argument {position} of command {command:?} is longer than {max_len} bytes")
            }
            ArgsError::NotAllowed { command, value, allowed } => {
                write!(f, "command {command:?} does not accept the argument {value:?}; it accepts ")?;
                for (i, a) in allowed.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{a:?}")?;
                }
                Ok(())
            }
            ArgsError::Option { command, value } => write!(
                f,
                "command {command:?} does not accept options: the argument {value:?} starts with '-'"
            ),
        }
    }
}

impl std::error::Error for ArgsError {}

// ---- the file's shape, before defaults and validation ----
//
// These mirror the public types with `Option`s where the file may leave a field
// out. They stay private so the only way to a `Config` is through `parse`, which
// validates.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<String>,
    #[serde(default = "default_fsync")]
    fsync: bool,
    commands: Option<UniqueMap<Obj<RawCommand>>>,
    #[serde(default)]
    tokens: Vec<Obj<RawToken>>,
    #[serde(default)]
    cors: Obj<RawCors>,
    #[serde(default)]
    limits: Obj<RawLimits>,
    #[serde(default)]
    sse: Obj<RawSse>,
    link_key: Option<String>,
    redis: Option<String>,
    redis_max_events: Option<u64>,
    redis_lease_ttl_ms: Option<u64>,
}

fn default_fsync() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    #[serde(default)]
    description: String,
    argv: Vec<String>,
    args: Option<Obj<RawArgs>>,
    cwd: Option<String>,
    #[serde(default)]
    env: UniqueMap<String>,
    timeout_s: Option<u64>,
    max_output_bytes: Option<u64>,
    stop_when_unwatched_s: Option<u64>,
    stop_grace_s: Option<u64>,
    #[serde(default)]
    pty: bool,
    pty_size: Option<Obj<RawPtySize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPtySize {
    // Wider than the field so that a large value is refused by `validate` with the
    // field's bounds, not by serde with "expected u16".
    cols: u64,
    rows: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArgs {
    max: Option<usize>,
    max_len: Option<usize>,
    allow: Option<Vec<String>>,
    #[serde(default)]
    allow_options: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    token: String,
    scopes: Vec<RawScope>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawScope {
    Start,
    Watch,
    Share,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allow_origins: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_running_jobs: usize,
    max_subscribers: usize,
    max_retained_jobs: usize,
    retention_s: u64,
    memory_window_bytes: usize,
    max_link_s: u64,
    first_byte_timeout_s: u64,
}

impl Default for RawLimits {
    fn default() -> RawLimits {
        let d = Limits::default();
        RawLimits {
            max_running_jobs: d.max_running_jobs,
            max_subscribers: d.max_subscribers,
            max_retained_jobs: d.max_retained_jobs,
            retention_s: d.retention_s,
            memory_window_bytes: d.memory_window_bytes,
            max_link_s: d.max_link_s,
            first_byte_timeout_s: d.first_byte_timeout_s,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSse {
    retry_ms: u64,
    heartbeat_s: u64,
    partial_line_ms: u64,
    max_event_bytes: usize,
    heartbeat_event: bool,
}

impl Default for RawSse {
    fn default() -> RawSse {
        let d = SseSettings::default();
        RawSse {
            retry_ms: d.retry_ms,
            heartbeat_s: d.heartbeat_s,
            partial_line_ms: d.partial_line_ms,
            max_event_bytes: d.max_event_bytes,
            heartbeat_event: d.heartbeat_event,
        }
    }
}

impl RawConfig {
    fn into_config(self) -> Result<Config, ConfigError> {
        let listen = match self.listen {
            None => DEFAULT_LISTEN,
            Some(text) => text.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "listen",
                    format!("{text:?} is not an IP address and port, such as \"127.0.0.1:8080\" or \"[::1]:8080\""),
                )
            })?,
        };
        let Some(UniqueMap(raw_commands)) = self.commands else {
            return Err(ConfigError::new(
                "commands",
                "is required: declare at least one command",
            ));
        };
        let commands = raw_commands
            .into_iter()
            .map(|(name, Obj(raw))| Ok((name.clone(), raw.into_spec(name)?)))
            .collect::<Result<_, ConfigError>>()?;
        let tokens = self
            .tokens
            .into_iter()
            .map(|Obj(t)| TokenSpec {
                token: t.token,
                scopes: t
                    .scopes
                    .into_iter()
                    .map(|s| match s {
                        RawScope::Start => Scope::Start,
                        RawScope::Watch => Scope::Watch,
                        RawScope::Share => Scope::Share,
                    })
                    .collect(),
            })
            .collect();
        let redis = match &self.redis {
            None => None,
            Some(text) => {
                Some(RedisUrl::parse(text).map_err(|e| ConfigError::new("redis", e.to_string()))?)
            }
        };
        // `redis_max_events` and `redis_lease_ttl_ms` without `redis` are not
        // refused here: `--redis URL` on the command line may supply it.
        let Obj(l) = self.limits;
        let Obj(s) = self.sse;
        Ok(Config {
            listen,
            data_dir: self.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned()),
            memory: false,
            fsync: self.fsync,
            commands,
            tokens,
            cors: CorsSpec {
                allow_origins: self.cors.0.allow_origins,
            },
            limits: Limits {
                max_running_jobs: l.max_running_jobs,
                max_subscribers: l.max_subscribers,
                max_retained_jobs: l.max_retained_jobs,
                retention_s: l.retention_s,
                memory_window_bytes: l.memory_window_bytes,
                max_link_s: l.max_link_s,
                first_byte_timeout_s: l.first_byte_timeout_s,
            },
            sse: SseSettings {
                retry_ms: s.retry_ms,
                heartbeat_s: s.heartbeat_s,
                partial_line_ms: s.partial_line_ms,
                max_event_bytes: s.max_event_bytes,
                heartbeat_event: s.heartbeat_event,
            },
            link_key: self.link_key,
            redis,
            redis_max_events: self.redis_max_events.unwrap_or(DEFAULT_STREAM_MAX_EVENTS),
            redis_lease_ttl_ms: self.redis_lease_ttl_ms.unwrap_or(DEFAULT_LEASE_TTL_MS),
        })
    }
}

impl RawCommand {
    fn into_spec(self, name: String) -> Result<CommandSpec, ConfigError> {
        let cells = |n: u64| u16::try_from(n).unwrap_or(u16::MAX);
        let pty = match (self.pty, self.pty_size) {
            (false, None) => None,
            (false, Some(_)) => {
                // A size nobody uses is a mistake (a forgotten `"pty": true`), not
                // something to ignore silently.
                return Err(ConfigError::new(
                    format!("commands.{name}.pty_size"),
                    "is set but \"pty\" is not true; add \"pty\": true or leave pty_size out",
                ));
            }
            (true, None) => Some(DEFAULT_PTY_SIZE),
            (true, Some(Obj(size))) => Some(PtySize {
                cols: cells(size.cols),
                rows: cells(size.rows),
            }),
        };
        Ok(CommandSpec {
            name,
            description: self.description,
            argv: self.argv,
            args: self.args.map(|Obj(a)| ArgsRule {
                max: a.max.unwrap_or(DEFAULT_ARGS_MAX),
                max_len: a.max_len.unwrap_or(DEFAULT_ARG_LEN),
                allow: a.allow,
                allow_options: a.allow_options,
            }),
            cwd: self.cwd,
            env: self.env.0,
            timeout_s: self.timeout_s,
            max_output_bytes: self.max_output_bytes,
            stop_when_unwatched_s: self.stop_when_unwatched_s,
            stop_grace_s: self.stop_grace_s.unwrap_or(DEFAULT_STOP_GRACE_S),
            pty,
        })
    }
}

/// A struct that must be written as a JSON object: serde's derived structs also
/// accept an array of their fields in order, which would let `"limits": [16, 10]`
/// through without naming a single field.
#[derive(Default)]
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(access)).map(Obj)
            }
        }

        deserializer.deserialize_map(ObjVisitor(PhantomData))
    }
}

/// A JSON object read into a map that refuses duplicate keys: serde_json would keep
/// the last one silently, and a second `"build"` is almost certainly a mistake.
struct UniqueMap<V>(BTreeMap<String, V>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = UniqueMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = BTreeMap::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                    }
                    let value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(UniqueMap(map))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// Fuzzing entry point: [`parse`] never panics on any input, and an accepted
/// configuration keeps its invariants.
#[doc(hidden)]
pub fn fuzz_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let config = match parse(&text) {
        Ok(config) => config,
        Err(err) => {
            assert!(
                !err.path.is_empty() && !err.message.is_empty(),
                "error without path or message: {err:?}"
            );
            return;
        }
    };
    assert_eq!(
        config.validate(),
        Ok(()),
        "parse accepted what validate refuses"
    );
    assert!(!config.commands.is_empty());
    let _ = config.check_listen(false);
    assert_eq!(config.check_listen(true), Ok(()));
    for command in config.commands.values() {
        assert_eq!(command.build_argv(&[]).as_ref(), Ok(&command.argv));
        let nul = vec!["a\0b".to_owned()];
        assert!(
            command.build_argv(&nul).is_err(),
            "a NUL argument was accepted"
        );
        let Some(rule) = &command.args else {
            assert!(command.build_argv(&["x".to_owned()]).is_err());
            continue;
        };
        let sample = match &rule.allow {
            // invariant: validate refuses an empty allow list.
            Some(allow) => allow[0].clone(),
            None => "x".to_owned(),
        };
        let full = vec![sample; rule.max];
        let argv = command
            .build_argv(&full)
            .expect("the allowed values within max are accepted");
        assert_eq!(argv.len(), command.argv.len() + rule.max);
        let over = vec![full[0].clone(); rule.max + 1];
        assert!(matches!(
            command.build_argv(&over),
            Err(ArgsError::TooMany { .. })
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"{
  "listen": "127.0.0.1:8080",
  "data_dir": "./spout-data",
  "commands": {
    "build": {
      "description": "Build and test the app",
      "argv": ["make", "-C", "/srv/app"],
      "args": {"max": 4, "max_len": 256, "allow": ["test", "release"]},
      "cwd": "/srv/app",
      "env": {"CARGO_TERM_COLOR": "always"},
      "timeout_s": 3600,
      "max_output_bytes": 1073741824,
      "stop_when_unwatched_s": 300
    }
  },
  "tokens": [{"token": "a-long-random-secret", "scopes": ["start", "watch"]}],
  "cors": {"allow_origins": ["https://ops.example.com"]},
  "limits": {"max_running_jobs": 16, "max_subscribers": 10000,
             "max_retained_jobs": 1000, "retention_s": 604800,
             "memory_window_bytes": 1048576},
  "sse": {"retry_ms": 2000, "heartbeat_s": 15, "partial_line_ms": 50,
          "max_event_bytes": 16384}
}"#;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn spec_example_parses_with_every_field() {
        let config = parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.data_dir, "./spout-data");
        assert!(!config.memory);
        let build = &config.commands["build"];
        assert_eq!(build.name, "build");
        assert_eq!(build.description, "Build and test the app");
        assert_eq!(build.argv, strings(&["make", "-C", "/srv/app"]));
        assert_eq!(
            build.args,
            Some(ArgsRule {
                max: 4,
                max_len: 256,
                allow: Some(strings(&["test", "release"])),
                allow_options: false
            })
        );
        assert_eq!(build.cwd.as_deref(), Some("/srv/app"));
        assert_eq!(
            build.env.get("CARGO_TERM_COLOR").map(String::as_str),
            Some("always")
        );
        assert_eq!(build.timeout(), Some(Duration::from_secs(3600)));
        assert_eq!(build.max_output_bytes, Some(1 << 30));
        assert_eq!(build.stop_when_unwatched(), Some(Duration::from_secs(300)));
        assert_eq!(build.stop_grace(), Duration::from_secs(5));
        assert_eq!(config.tokens.len(), 1);
        assert!(config.tokens[0].allows(Scope::Start) && config.tokens[0].allows(Scope::Watch));
        assert_eq!(
            config.cors.allow_origins,
            strings(&["https://ops.example.com"])
        );
        assert!(config.cors.allows("https://ops.example.com"));
        assert!(!config.cors.allows("https://evil.example.com"));
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.sse, SseSettings::default());
        assert_eq!(config.sse.retry(), Duration::from_millis(2000));
        assert_eq!(config.sse.heartbeat(), Duration::from_secs(15));
        assert_eq!(config.sse.partial_line_delay(), Duration::from_millis(50));
        assert_eq!(config.limits.retention(), Duration::from_secs(604_800));
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse(r#"{"commands": {"hi": {"argv": ["echo"]}}}"#).unwrap();
        let mut expected = BTreeMap::new();
        expected.insert("hi".to_owned(), CommandSpec::new("hi", strings(&["echo"])));
        assert_eq!(config, Config::with_commands(expected));
        assert_eq!(config.limits.max_running_jobs, 16);
        assert_eq!(config.limits.max_subscribers, 10_000);
        assert_eq!(config.limits.max_retained_jobs, 1000);
        assert_eq!(config.limits.retention_s, 604_800);
        assert_eq!(config.limits.memory_window_bytes, 1_048_576);
        assert_eq!(config.limits.first_byte_timeout_s, 10);
        assert_eq!(config.limits.first_byte_timeout(), Duration::from_secs(10));
        assert_eq!(config.sse.retry_ms, 2000);
        assert_eq!(config.sse.heartbeat_s, 15);
        assert_eq!(config.sse.partial_line_ms, 50);
        assert_eq!(config.sse.max_event_bytes, 16_384);
        assert!(!config.sse.heartbeat_event);
        assert!(config.fsync, "fsync is on unless turned off");
        assert!(config.tokens.is_empty() && config.cors.allow_origins.is_empty());
    }

    #[test]
    fn pty_takes_the_default_size_or_the_given_one() {
        let config = parse(
            r#"{"commands": {
                "plain": {"argv": ["ls"]},
                "tty": {"argv": ["ls"], "pty": true},
                "small": {"argv": ["ls"], "pty": true, "pty_size": {"cols": 80, "rows": 24},
                          "env": {"TERM": "dumb"}}}}"#,
        )
        .unwrap();
        let plain = &config.commands["plain"];
        assert_eq!(plain.pty, None);
        assert!(plain.job_env().is_empty(), "no TERM without a terminal");
        let tty = &config.commands["tty"];
        assert_eq!(
            tty.pty,
            Some(PtySize {
                cols: 120,
                rows: 40
            })
        );
        assert_eq!(
            tty.job_env().get("TERM").map(String::as_str),
            Some(PTY_TERM)
        );
        let small = &config.commands["small"];
        assert_eq!(small.pty, Some(PtySize { cols: 80, rows: 24 }));
        assert_eq!(
            small.job_env().get("TERM").map(String::as_str),
            Some("dumb"),
            "the command's own TERM wins"
        );
        let edge = parse(&with_command(
            r#"{"argv": ["a"], "pty": true, "pty_size": {"cols": 1000, "rows": 1}}"#,
        ))
        .unwrap();
        assert_eq!(
            edge.commands["build"].pty,
            Some(PtySize {
                cols: 1000,
                rows: 1
            })
        );
    }

    #[test]
    fn extensions_parse() {
        let config = parse(
            r#"{"commands": {"x": {"argv": ["ls"], "stop_grace_s": 0,
                "args": {"allow_options": true}}},
                "sse": {"heartbeat_event": true}, "cors": {"allow_origins": ["*"]},
                "limits": {"first_byte_timeout_s": 3},
                "listen": "[::1]:9000", "fsync": false}"#,
        )
        .unwrap();
        let x = &config.commands["x"];
        assert_eq!(x.stop_grace_s, 0);
        assert_eq!(
            x.args,
            Some(ArgsRule {
                max: 1,
                max_len: 256,
                allow: None,
                allow_options: true
            })
        );
        assert!(config.sse.heartbeat_event);
        assert!(!config.fsync, "fsync can be turned off");
        assert!(config.cors.allows_any() && config.cors.allows("https://anything.example"));
        assert_eq!(config.listen.to_string(), "[::1]:9000");
        assert_eq!(config.limits.first_byte_timeout(), Duration::from_secs(3));
    }

    /// Wraps a command body into a whole config.
    fn with_command(body: &str) -> String {
        format!(r#"{{"commands": {{"build": {body}}}}}"#)
    }

    /// Adds a top-level field to a valid config.
    fn with_top(field: &str) -> String {
        format!(r#"{{"commands": {{"build": {{"argv": ["make"]}}}}, {field}}}"#)
    }

    #[test]
    fn refusals_name_the_path() {
        let long = "a".repeat(65);
        let cases: Vec<(String, &str, &str)> = vec![
            // (config, path, a fragment of the message)
            ("".into(), ".", "EOF"),
            (
                "[]".into(),
                ".",
                "invalid type: sequence, expected an object",
            ),
            (
                with_top(r#""limits": [1, 2, 3, 4, 5]"#),
                "limits",
                "invalid type: sequence, expected an object",
            ),
            (
                with_command(r#"["", ["make"]]"#),
                "commands.build",
                "invalid type: sequence",
            ),
            ("{}".into(), "commands", "required"),
            (r#"{"commands": {}}"#.into(), "commands", "at least one"),
            (
                r#"{"commands": {"build": {"argv": ["a"]}}} x"#.into(),
                ".",
                "trailing",
            ),
            (
                with_command(r#"{"argv": ["a"], "timeout_s": "x"}"#),
                "commands.build.timeout_s",
                "invalid type: string \"x\", expected u64",
            ),
            (
                with_command(r#"{"argv": ["a"], "timeout_s": -1}"#),
                "commands.build.timeout_s",
                "invalid value",
            ),
            (
                with_command(r#"{"argv": ["a"], "timout_s": 5}"#),
                "commands.build.timout_s",
                "unknown field `timout_s`",
            ),
            (
                with_command(r#"{"argv": ["a"], "args": {"max": 1, "maxlen": 5}}"#),
                "commands.build.args.maxlen",
                "unknown field",
            ),
            (
                with_top(r#""lisen": "0.0.0.0:1""#),
                "lisen",
                "unknown field `lisen`",
            ),
            (with_top(r#""memory": true"#), "memory", "unknown field"),
            (
                with_top(r#""fsync": "yes""#),
                "fsync",
                "invalid type: string \"yes\", expected a boolean",
            ),
            (with_top(r#""fsync": null"#), "fsync", "expected a boolean"),
            (
                with_top(r#""sse": {"retry": 5}"#),
                "sse.retry",
                "unknown field",
            ),
            (
                with_top(r#""limits": {"max_jobs": 5}"#),
                "limits.max_jobs",
                "unknown field",
            ),
            (
                with_top(r#""cors": {"origins": []}"#),
                "cors.origins",
                "unknown field",
            ),
            (
                with_top(
                    r#""tokens": [{"token": "0123456789abcdef", "scopes": ["watch"], "name": "x"}]"#,
                ),
                "tokens[0].name",
                "unknown field",
            ),
            (
                with_command(r#"{"argv": ["a"]}, "build": {"argv": ["b"]}"#),
                "commands",
                "duplicate key \"build\"",
            ),
            (
                with_command(r#"{"argv": ["a"], "env": {"A": "1", "A": "2"}}"#),
                "commands.build.env",
                "duplicate key \"A\"",
            ),
            (
                with_command(r#"{"argv": ["a"], "argv": ["b"]}"#),
                "commands.build",
                "duplicate field `argv`",
            ),
            (
                with_command(r#"{"description": "no argv"}"#),
                "commands.build",
                "missing field `argv`",
            ),
            (
                format!(r#"{{"commands": {{"{long}": {{"argv": ["a"]}}}}}}"#),
                "commands",
                "command name",
            ),
            (
                r#"{"commands": {"bad name": {"argv": ["a"]}}}"#.into(),
                "commands",
                "\"bad name\"",
            ),
            (
                r#"{"commands": {"": {"argv": ["a"]}}}"#.into(),
                "commands",
                "command name \"\"",
            ),
            (
                with_command(r#"{"argv": []}"#),
                "commands.build.argv",
                "at least the program",
            ),
            (
                with_command(r#"{"argv": [""]}"#),
                "commands.build.argv[0]",
                "program",
            ),
            (
                with_command(r#"{"argv": ["a", "b\u0000"]}"#),
                "commands.build.argv[1]",
                "NUL",
            ),
            (
                with_command(r#"{"argv": ["a"], "description": "\u0000"}"#),
                "commands.build.description",
                "NUL",
            ),
            (
                with_command(r#"{"argv": ["a"], "cwd": "/x\u0000"}"#),
                "commands.build.cwd",
                "NUL",
            ),
            (
                with_command(r#"{"argv": ["a"], "cwd": ""}"#),
                "commands.build.cwd",
                "empty",
            ),
            (
                with_command(r#"{"argv": ["a"], "env": {"": "1"}}"#),
                "commands.build.env[\"\"]",
                "empty",
            ),
            (
                with_command(r#"{"argv": ["a"], "env": {"A=B": "1"}}"#),
                "commands.build.env[\"A=B\"]",
                "'='",
            ),
            (
                with_command(r#"{"argv": ["a"], "env": {"A\u0000": "1"}}"#),
                "commands.build.env[\"A\\0\"]",
                "NUL",
            ),
            (
                with_command(r#"{"argv": ["a"], "env": {"A": "1\u0000"}}"#),
                "commands.build.env.A",
                "NUL",
            ),
            (
                with_command(r#"{"argv": ["a"], "args": {"max": 65}}"#),
                "commands.build.args.max",
                "1..=64",
            ),
            (
                with_command(r#"{"argv": ["a"], "args": {"max": 0}}"#),
                "commands.build.args.max",
                "1..=64",
            ),
            (
                with_command(r#"{"argv": ["a"], "args": {"max_len": 0}}"#),
                "commands.build.args.max_len",
                "1..=4096",
            ),
            (
                with_command(r#"{"argv": ["a"], "args": {"max_len": 4097}}"#),
                "commands.build.args.max_len",
                "1..=4096",
            ),
            (
                with_command(r#"{"argv": ["a"], "args": {"allow": []}}"#),
                "commands.build.args.allow",
                "at least one",
            ),
            (
                with_command(r#"{"argv": ["a"], "args": {"allow": ["ok", "x\u0000"]}}"#),
                "commands.build.args.allow[1]",
                "NUL",
            ),
            (
                with_command(r#"{"argv": ["a"], "args": {"max_len": 2, "allow": ["long"]}}"#),
                "commands.build.args.allow[0]",
                "max_len",
            ),
            (
                with_command(r#"{"argv": ["a"], "timeout_s": 0}"#),
                "commands.build.timeout_s",
                "at least 1",
            ),
            (
                with_command(r#"{"argv": ["a"], "timeout_s": 18446744073709551615}"#),
                "commands.build.timeout_s",
                "at most",
            ),
            (
                with_command(r#"{"argv": ["a"], "max_output_bytes": 0}"#),
                "commands.build.max_output_bytes",
                "at least 1",
            ),
            (
                with_command(r#"{"argv": ["a"], "stop_when_unwatched_s": 0}"#),
                "commands.build.stop_when_unwatched_s",
                "at least 1",
            ),
            (
                with_command(r#"{"argv": ["a"], "stop_grace_s": 999999999999}"#),
                "commands.build.stop_grace_s",
                "at most",
            ),
            (
                with_command(r#"{"argv": ["a"], "pty_size": {"cols": 80, "rows": 24}}"#),
                "commands.build.pty_size",
                "\"pty\" is not true",
            ),
            (
                with_command(
                    r#"{"argv": ["a"], "pty": false, "pty_size": {"cols": 80, "rows": 24}}"#,
                ),
                "commands.build.pty_size",
                "\"pty\" is not true",
            ),
            (
                with_command(
                    r#"{"argv": ["a"], "pty": true, "pty_size": {"cols": 0, "rows": 24}}"#,
                ),
                "commands.build.pty_size.cols",
                "1..=1000",
            ),
            (
                with_command(
                    r#"{"argv": ["a"], "pty": true, "pty_size": {"cols": 80, "rows": 70000}}"#,
                ),
                "commands.build.pty_size.rows",
                "1..=1000",
            ),
            (
                with_command(r#"{"argv": ["a"], "pty": true, "pty_size": {"cols": 80}}"#),
                "commands.build.pty_size",
                "missing field `rows`",
            ),
            (
                with_command(
                    r#"{"argv": ["a"], "pty": true, "pty_size": {"cols": 80, "rows": 24, "x": 1}}"#,
                ),
                "commands.build.pty_size.x",
                "unknown field",
            ),
            (
                with_command(r#"{"argv": ["a"], "pty": "yes"}"#),
                "commands.build.pty",
                "expected a boolean",
            ),
            (
                with_top(r#""listen": "localhost:8080""#),
                "listen",
                "not an IP address",
            ),
            (
                with_top(r#""listen": "127.0.0.1""#),
                "listen",
                "not an IP address",
            ),
            (with_top(r#""listen": 8080"#), "listen", "invalid type"),
            (with_top(r#""data_dir": """#), "data_dir", "empty"),
            (with_top(r#""data_dir": "a\u0000""#), "data_dir", "NUL"),
            (
                with_top(r#""tokens": [{"token": "short", "scopes": ["start"]}]"#),
                "tokens[0].token",
                "at least 16",
            ),
            (
                with_top(r#""tokens": [{"token": "has a space in it ok", "scopes": ["start"]}]"#),
                "tokens[0].token",
                "visible ASCII",
            ),
            (
                with_top(r#""tokens": [{"token": "0123456789abcdef", "scopes": []}]"#),
                "tokens[0].scopes",
                "at least one",
            ),
            (
                with_top(
                    r#""tokens": [{"token": "0123456789abcdef", "scopes": ["watch", "admin"]}]"#,
                ),
                "tokens[0].scopes[1]",
                "unknown variant `admin`",
            ),
            (
                with_top(
                    r#""tokens": [{"token": "0123456789abcdef", "scopes": ["watch"]}, {"token": "0123456789abcdef", "scopes": ["start"]}]"#,
                ),
                "tokens[1].token",
                "same as an earlier",
            ),
            (
                with_top(r#""tokens": [{"scopes": ["watch"]}]"#),
                "tokens[0]",
                "missing field `token`",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://a.example/path"]}"#),
                "cors.allow_origins[0]",
                "not an origin",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["ok", "ftp://a.example"]}"#),
                "cors.allow_origins[0]",
                "not an origin",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://a.example", "ftp://a.example"]}"#),
                "cors.allow_origins[1]",
                "not an origin",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://*.example.com"]}"#),
                "cors.allow_origins[0]",
                "not an origin",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://a.example:99999"]}"#),
                "cors.allow_origins[0]",
                "not an origin",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://a.example:"]}"#),
                "cors.allow_origins[0]",
                "not an origin",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://"]}"#),
                "cors.allow_origins[0]",
                "not an origin",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://u@a.example"]}"#),
                "cors.allow_origins[0]",
                "not an origin",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://a.example/"]}"#),
                "cors.allow_origins[0]",
                "not an origin",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://A.example"]}"#),
                "cors.allow_origins[0]",
                "\"https://a.example\"",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["https://a.example:443"]}"#),
                "cors.allow_origins[0]",
                "\"https://a.example\"",
            ),
            (
                with_top(r#""cors": {"allow_origins": ["*", "https://a.example"]}"#),
                "cors.allow_origins[0]",
                "only entry",
            ),
            (
                with_top(r#""limits": {"max_running_jobs": 0}"#),
                "limits.max_running_jobs",
                "at least 1",
            ),
            (
                with_top(r#""limits": {"max_subscribers": 0}"#),
                "limits.max_subscribers",
                "at least 1",
            ),
            (
                with_top(r#""limits": {"max_retained_jobs": 0}"#),
                "limits.max_retained_jobs",
                "at least 1",
            ),
            (
                with_top(r#""limits": {"retention_s": 0}"#),
                "limits.retention_s",
                "at least 1",
            ),
            (
                with_top(r#""limits": {"first_byte_timeout_s": 0}"#),
                "limits.first_byte_timeout_s",
                "at least 1",
            ),
            (
                with_top(r#""limits": {"first_byte_timeout_s": 315360001}"#),
                "limits.first_byte_timeout_s",
                "at most",
            ),
            (
                with_top(r#""limits": {"first_byte_timeout_s": -1}"#),
                "limits.first_byte_timeout_s",
                "expected u64",
            ),
            (
                with_top(r#""limits": {"memory_window_bytes": 0}"#),
                "limits.memory_window_bytes",
                "at least 1",
            ),
            (
                with_top(r#""limits": {"memory_window_bytes": 1000}"#),
                "limits.memory_window_bytes",
                "max_event_bytes",
            ),
            (
                with_top(r#""sse": {"retry_ms": 0}"#),
                "sse.retry_ms",
                "1..=",
            ),
            (
                with_top(r#""sse": {"heartbeat_s": 0}"#),
                "sse.heartbeat_s",
                "at least 1",
            ),
            (
                with_top(r#""sse": {"partial_line_ms": 0}"#),
                "sse.partial_line_ms",
                "1..=",
            ),
            (
                with_top(r#""sse": {"max_event_bytes": 63}"#),
                "sse.max_event_bytes",
                "64..=",
            ),
            (
                with_top(r#""sse": {"max_event_bytes": 16777217}"#),
                "sse.max_event_bytes",
                "64..=",
            ),
            (
                with_top(r#""sse": {"heartbeat_event": "yes"}"#),
                "sse.heartbeat_event",
                "expected a boolean",
            ),
        ];
        for (text, path, fragment) in &cases {
            let err = parse(text).expect_err(text);
            assert_eq!(&err.path, path, "config {text}\nerror {err}");
            assert!(
                err.message.contains(fragment),
                "config {text}\nerror {err}\nwanted {fragment:?}"
            );
            assert_eq!(err.to_string(), format!("{path}: {}", err.message));
        }
    }

    #[test]
    fn redis_fields() {
        let config = parse(&with_top(r#""redis": "redis://10.0.0.5:6380/1""#)).unwrap();
        assert_eq!(config.redis.unwrap().to_string(), "redis://10.0.0.5:6380/1");
        assert_eq!(config.redis_max_events, DEFAULT_STREAM_MAX_EVENTS);
        let config = parse(&with_top(
            r#""redis": "redis+unix:///run/redis.sock", "redis_max_events": 5"#,
        ))
        .unwrap();
        assert_eq!(
            config.redis,
            Some(RedisUrl::Unix {
                path: "/run/redis.sock".into()
            })
        );
        assert_eq!(config.redis_max_events, 5);
        assert_eq!(parse(SPEC_EXAMPLE).unwrap().redis, None);
        let cases = [
            (r#""redis": "http://x""#, "redis", "not a Redis URL"),
            (r#""redis": "redis://x:0""#, "redis", "1..=65535"),
            (r#""redis": 6379"#, "redis", "expected a string"),
            (
                r#""redis": "redis://x", "redis_max_events": 0"#,
                "redis_max_events",
                "1..=",
            ),
            (
                r#""redis": "redis://x", "redis_max_events": 1000000001"#,
                "redis_max_events",
                "1..=",
            ),
            (
                r#""redis": "redis://x", "redis_max_events": -1"#,
                "redis_max_events",
                "expected u64",
            ),
        ];
        for (top, path, fragment) in cases {
            let err = parse(&with_top(top)).expect_err(top);
            assert_eq!(err.path, path, "{top}: {err}");
            assert!(err.message.contains(fragment), "{top}: {err}");
        }
        // --redis overrides the file.
        let mut config = parse(&with_top(r#""redis": "redis://a""#)).unwrap();
        let mut flags = serve(None, None, false);
        config.apply(&flags);
        assert_eq!(
            config.redis.as_ref().unwrap().to_string(),
            "redis://a:6379/0"
        );
        flags.redis = Some(RedisUrl::parse("redis://b:1").unwrap());
        config.apply(&flags);
        assert_eq!(config.redis.unwrap().to_string(), "redis://b:1/0");
        // Wired into both servers: load accepts it.
        let config = Config::load(&flags, None, "/bin/spout").unwrap();
        assert_eq!(config.redis.unwrap().to_string(), "redis://b:1/0");
        assert_eq!(config.redis_lease_ttl_ms, DEFAULT_LEASE_TTL_MS);
    }

    #[test]
    fn redis_lease_ttl() {
        let config = parse(&with_top(
            r#""redis": "redis://x", "redis_lease_ttl_ms": 1500"#,
        ))
        .unwrap();
        assert_eq!(config.redis_lease_ttl_ms, 1500);
        let cases = [
            (
                r#""redis": "redis://x", "redis_lease_ttl_ms": 299"#,
                "300..=",
            ),
            (
                r#""redis": "redis://x", "redis_lease_ttl_ms": 3600001"#,
                "300..=",
            ),
        ];
        for (top, fragment) in cases {
            let err = parse(&with_top(top)).expect_err(top);
            assert_eq!(err.path, "redis_lease_ttl_ms", "{top}: {err}");
            assert!(err.message.contains(fragment), "{top}: {err}");
        }
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        let cases = [
            (with_top(r#""": 1"#), r#"[""]"#),
            (
                with_command(r#"{"argv": ["a"], "time out": 1}"#),
                r#"commands.build["time out"]"#,
            ),
            (
                with_command(r#"{"argv": ["a"], "env": {"A\nB": 1}}"#),
                r#"commands.build.env["A\nB"]"#,
            ),
            (
                r#"{"commands": {"é": {"argv": 1}}}"#.to_owned(),
                r#"commands["é"].argv"#,
            ),
        ];
        for (text, path) in cases {
            assert_eq!(parse(&text).unwrap_err().path, path, "{text}");
        }
    }

    #[test]
    fn accepted_origin_forms() {
        for origin in [
            "https://a.example",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "https://[::1]:8443",
            "http://[::1]",
        ] {
            let text = with_top(&format!(r#""cors": {{"allow_origins": ["{origin}"]}}"#));
            let config = parse(&text).unwrap_or_else(|e| panic!("{origin}: {e}"));
            assert!(config.cors.allows(origin));
            assert!(!config.cors.allows_any());
        }
    }

    fn build(args: Option<ArgsRule>) -> CommandSpec {
        let mut spec = CommandSpec::new("build", strings(&["make", "-C", "/srv"]));
        spec.args = args;
        spec
    }

    fn rule(
        max: usize,
        max_len: usize,
        allow: Option<&[&str]>,
        allow_options: bool,
    ) -> Option<ArgsRule> {
        Some(ArgsRule {
            max,
            max_len,
            allow: allow.map(strings),
            allow_options,
        })
    }

    #[test]
    fn build_argv_cases() {
        let ok = |v: &[&str]| -> Result<Vec<String>, String> { Ok(strings(v)) };
        // (the command's rule, the user's arguments, the argv or the error's text)
        type Case = (
            Option<ArgsRule>,
            Vec<&'static str>,
            Result<Vec<String>, String>,
        );
        let cases: Vec<Case> = vec![
            (None, vec![], ok(&["make", "-C", "/srv"])),
            (None, vec!["x"], Err("command \"build\" accepts no arguments".into())),
            (rule(1, 8, None, false), vec!["test"], ok(&["make", "-C", "/srv", "test"])),
            (rule(1, 8, None, false), vec![], ok(&["make", "-C", "/srv"])),
            (rule(1, 8, None, false), vec!["a", "b"], Err("command \"build\" accepts at most 1 argument".into())),
            (rule(2, 8, None, false), vec!["a", "b", "c"], Err("command \"build\" accepts at most 2 arguments".into())),
            (rule(2, 8, None, false), vec!["a", "b"], ok(&["make", "-C", "/srv", "a", "b"])),
            (rule(2, 4, None, false), vec!["a", "12345"], Err("argument 2 of command \"build\" is longer than 4 bytes".into())),
            // Length is in bytes: "é" is two.
            (rule(1, 4, None, false), vec!["éé"], ok(&["make", "-C", "/srv", "éé"])),
            (rule(1, 4, None, false), vec!["ééé"], Err("argument 1 of command \"build\" is longer than 4 bytes".into())),
            (rule(1, 8, None, false), vec!["a\0b"], Err("argument 1 of command \"build\" contains a NUL byte".into())),
            (rule(1, 8, Some(&["a\0b"]), false), vec!["a\0b"], Err("argument 1 of command \"build\" contains a NUL byte".into())),
            (rule(1, 8, None, false), vec!["--out=/x"], Err("command \"build\" does not accept options: the argument \"--out=/x\" starts with '-'".into())),
            (rule(1, 8, None, false), vec!["-"], Err("command \"build\" does not accept options: the argument \"-\" starts with '-'".into())),
            (rule(1, 8, None, true), vec!["--out=/x"], ok(&["make", "-C", "/srv", "--out=/x"])),
            (rule(1, 8, None, false), vec!["a-b"], ok(&["make", "-C", "/srv", "a-b"])),
            (rule(1, 8, None, false), vec![""], ok(&["make", "-C", "/srv", ""])),
            (rule(2, 8, Some(&["test", "-v"]), false), vec!["test", "-v"], ok(&["make", "-C", "/srv", "test", "-v"])),
            (rule(2, 8, Some(&["test", "release"]), false), vec!["deploy"], Err("command \"build\" does not accept the argument \"deploy\"; it accepts \"test\", \"release\"".into())),
            (rule(2, 8, Some(&["test"]), true), vec!["--x"], Err("command \"build\" does not accept the argument \"--x\"; it accepts \"test\"".into())),
        ];
        for (args_rule, user, want) in cases {
            let spec = build(args_rule.clone());
            let got = spec.build_argv(&strings(&user)).map_err(|e| e.to_string());
            assert_eq!(got, want, "rule {args_rule:?} args {user:?}");
        }
    }

    #[test]
    fn check_listen_refuses_open_address_without_tokens() {
        let mut config =
            parse(r#"{"commands": {"a": {"argv": ["a"]}}, "listen": "0.0.0.0:8080"}"#).unwrap();
        let err = config.check_listen(false).unwrap_err();
        assert_eq!(err.path, "listen");
        assert!(
            err.message.contains("tokens") && err.message.contains("--insecure-no-auth"),
            "{err}"
        );
        assert_eq!(config.check_listen(true), Ok(()));
        config.tokens.push(TokenSpec {
            token: "0123456789abcdef".into(),
            scopes: vec![Scope::Watch],
        });
        assert_eq!(config.check_listen(false), Ok(()));
        for loopback in ["127.0.0.1:1", "127.9.9.9:80", "[::1]:8080"] {
            let mut c = Config::adhoc(strings(&["true"]));
            c.listen = loopback.parse().unwrap();
            assert_eq!(c.check_listen(false), Ok(()), "{loopback}");
        }
        for open in ["[::]:8080", "192.168.1.2:80", "[::ffff:127.0.0.1]:80"] {
            let mut c = Config::adhoc(strings(&["true"]));
            c.listen = open.parse().unwrap();
            assert!(c.check_listen(false).is_err(), "{open}");
        }
    }

    #[test]
    fn adhoc_is_one_default_command_without_args() {
        let config = Config::adhoc(strings(&["make", "-C", "/srv/app", "test"]));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.commands.len(), 1);
        let command = &config.commands["default"];
        assert_eq!(command.argv, strings(&["make", "-C", "/srv/app", "test"]));
        assert_eq!(command.description, "make -C /srv/app test");
        assert!(!command.accepts_args());
        assert!(command.build_argv(&strings(&["x"])).is_err());
        assert_eq!(
            Config::adhoc(Vec::new()).validate().unwrap_err().path,
            "commands.default.argv"
        );
    }

    fn serve(listen: Option<&str>, data_dir: Option<&str>, memory: bool) -> ServeOptions {
        ServeOptions {
            config: None,
            listen: listen.map(|l| l.parse().unwrap()),
            data_dir: data_dir.map(str::to_owned),
            memory,
            insecure_no_auth: false,
            adhoc: None,
            redis: None,
        }
    }

    #[test]
    fn flags_override_the_file() {
        let mut config = parse(SPEC_EXAMPLE).unwrap();
        config.apply(&serve(None, None, false));
        assert_eq!(config, parse(SPEC_EXAMPLE).unwrap());
        config.apply(&serve(Some("0.0.0.0:9"), Some("/var/spout"), true));
        assert_eq!(config.listen.to_string(), "0.0.0.0:9");
        assert_eq!(config.data_dir, "/var/spout");
        assert!(config.memory);
    }

    #[test]
    fn load_picks_file_adhoc_or_demo() {
        let mut options = serve(None, None, true);
        options.config = Some("spout.json".into());
        let config = Config::load(&options, Some(SPEC_EXAMPLE), "/bin/spout").unwrap();
        assert!(config.memory && config.commands.contains_key("build"));
        assert_eq!(
            Config::load(&options, None, "/bin/spout").unwrap_err().path,
            "."
        );
        assert_eq!(
            Config::load(&options, Some("{}"), "/bin/spout")
                .unwrap_err()
                .path,
            "commands"
        );

        let mut options = serve(Some("0.0.0.0:80"), None, false);
        options.adhoc = Some(strings(&["make"]));
        assert_eq!(
            Config::load(&options, None, "/bin/spout").unwrap_err().path,
            "listen"
        );
        options.insecure_no_auth = true;
        let config = Config::load(&options, None, "/bin/spout").unwrap();
        assert_eq!(config.commands.keys().collect::<Vec<_>>(), ["default"]);

        let config = Config::load(&serve(None, Some(""), false), None, "/bin/spout");
        assert_eq!(config.unwrap_err().path, "data_dir");
        let config = Config::load(&serve(None, None, false), None, "/bin/spout").unwrap();
        assert!(config.commands.contains_key("demo"));
    }

    /// A cheap stand-in for the fuzzer in `cargo test`: every one-byte deletion and
    /// a few substitutions of the SPEC example keep `fuzz_config`'s invariants.
    #[test]
    fn mutations_of_the_spec_example_keep_invariants() {
        let bytes = SPEC_EXAMPLE.as_bytes();
        let mut accepted = 0;
        for i in 0..bytes.len() {
            let mut deleted = bytes.to_vec();
            deleted.remove(i);
            fuzz_config(&deleted);
            for b in [b'0', b'-', b'"', b'\\', b'}', 0xff] {
                let mut changed = bytes.to_vec();
                changed[i] = b;
                fuzz_config(&changed);
                accepted += usize::from(parse(&String::from_utf8_lossy(&changed)).is_ok());
            }
        }
        // Some substitutions (inside strings, digits in numbers) stay valid, so the
        // Ok branch's checks ran too.
        assert!(accepted > 100, "{accepted}");
    }

    /// The fuzz seeds stay what their names say: valid ones parse, broken ones are
    /// refused at the field they break.
    #[test]
    fn fuzz_seeds() {
        macro_rules! seed {
            ($name:literal) => {
                (
                    $name,
                    include_str!(concat!("../../fuzz/corpus/config/", $name)),
                )
            };
        }
        let cases = [
            (seed!("spec-example.json"), None),
            (seed!("minimal.json"), None),
            (seed!("extensions.json"), None),
            (seed!("open-listen.json"), None),
            (
                seed!("unknown-nested.json"),
                Some("commands.build.timout_s"),
            ),
            (seed!("nul-argv.json"), Some("commands.build.argv[1]")),
            (seed!("bad-listen.json"), Some("listen")),
            (seed!("duplicate-command.json"), Some("commands")),
            (seed!("array-limits.json"), Some("limits")),
            (seed!("bad-origin.json"), Some("cors.allow_origins[0]")),
            (seed!("odd-keys.json"), Some("[\"\"]")),
        ];
        for ((name, text), want) in cases {
            fuzz_config(text.as_bytes());
            let got = parse(text).err().map(|e| e.path);
            assert_eq!(got.as_deref(), want, "{name}");
        }
        assert_eq!(parse(seed!("spec-example.json").1), parse(SPEC_EXAMPLE));
    }

    #[test]
    fn fuzz_entry_accepts_spec_example_and_garbage() {
        fuzz_config(SPEC_EXAMPLE.as_bytes());
        fuzz_config(b"\xff\xfe{");
        fuzz_config(b"");
        fuzz_config(
            with_command(r#"{"argv": ["a"], "args": {"max": 64, "max_len": 1, "allow": ["-"]}}"#)
                .as_bytes(),
        );
        fuzz_config(with_command(r#"{"argv": ["a"], "args": {}}"#).as_bytes());
    }
}

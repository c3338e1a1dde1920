//! The command lines of both binaries (`spout`, `spout-blocking`) as one pure
//! function from arguments to a [`Cli`] value, with the help text.
//!
//! Flags accept both `--flag value` and `--flag=value`; a repeated flag takes its
//! last value. Errors say what to do next, ending in "see spout --help".

use core::fmt;
use core::net::SocketAddr;

/// Which binary is parsing its arguments: they share `serve`, only `spout` has the
/// client commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `spout`, the smol runtime and the CLI client.
    Spout,
    /// `spout-blocking`, the thread-per-connection server.
    SpoutBlocking,
}

impl Program {
    /// The binary's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Program::Spout => "spout",
            Program::SpoutBlocking => "spout-blocking",
        }
    }
}

/// What a command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cli {
    /// Run the server.
    Serve(ServeOptions),
    /// Start a job on a server and follow it (`spout` only).
    Run {
        /// The server's base URL, `http://host:port`.
        server: String,
        /// The command's name.
        command: String,
        /// The user arguments for the command.
        args: Vec<String>,
        /// A bearer token.
        token: Option<String>,
        /// Stop the job (DELETE) when the client is interrupted, instead of
        /// leaving it running.
        kill_on_interrupt: bool,
        /// Print the events as JSON lines instead of the output text.
        json: bool,
    },
    /// Follow a job by its URL (`spout` only).
    Tail {
        /// The job's URL, `http://host:port/jobs/ID`.
        url: String,
        /// A bearer token.
        token: Option<String>,
        /// Start from the job's first event.
        from_start: bool,
        /// Resume after this event id.
        last_event_id: Option<u64>,
        /// Print the events as JSON lines instead of the output text.
        json: bool,
    },
    /// Run a built-in demo script (hidden; the demo commands run it): the
    /// arguments after `demo`, see [`crate::demo::script`].
    Demo(Vec<String>),
    /// Become a job's program on the pseudo-terminal this process was started on
    /// (hidden; the runtime starts it for `"pty": true` commands): the job's argv
    /// after `pty-exec`, taken verbatim.
    PtyExec(Vec<String>),
    /// Print this help text to stdout and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
}

/// The options of `serve`. `None` and `false` mean "not given on the command line".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// `--config FILE`: the JSON config file.
    pub config: Option<String>,
    /// `--listen ADDR`: overrides the file's `listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir DIR`: overrides the file's `data_dir`.
    pub data_dir: Option<String>,
    /// `--memory`: keep logs in memory only.
    pub memory: bool,
    /// `--insecure-no-auth`: allow a non-loopback address without tokens.
    pub insecure_no_auth: bool,
    /// `-- CMD ARGS…`: serve this one command, named `default`.
    pub adhoc: Option<Vec<String>>,
    /// `--redis URL`: overrides the file's `redis` (docs/cluster.md).
    pub redis: Option<crate::cluster::RedisUrl>,
}

/// A command line that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError {
    /// What is wrong and what to do, ending with a pointer to `--help`.
    pub message: String,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Parses a command line; `args` excludes the program name (argv\[0\]).
///
/// # Errors
/// A [`CliError`] for an unknown command or option, a missing or malformed value,
/// or options that cannot be combined.
///
/// # Examples
/// ```
/// use spout_core::cli::{parse, Cli, Program};
/// let args: Vec<String> = ["serve", "--memory"].map(String::from).to_vec();
/// let Ok(Cli::Serve(options)) = parse(&args, Program::Spout) else { panic!() };
/// assert!(options.memory);
/// ```
pub fn parse(args: &[String], program: Program) -> Result<Cli, CliError> {
    let p = Parser { program };
    match args.first().map(String::as_str) {
        None => Ok(Cli::Serve(ServeOptions::default())),
        Some("serve") => p.serve(&args[1..]),
        Some("demo") => Ok(Cli::Demo(args[1..].to_vec())),
        Some("pty-exec") => Ok(Cli::PtyExec(args[1..].to_vec())),
        Some("help") => Ok(Cli::Help(help(program))),
        Some("-h" | "--help") => Ok(Cli::Help(help(program))),
        Some("-V" | "--version") => Ok(Cli::Version),
        Some("run") if program == Program::Spout => p.run(&args[1..]),
        Some("tail") if program == Program::Spout => p.tail(&args[1..]),
        Some(first) if first.starts_with('-') => p.serve(args),
        Some(other) => Err(p.error(format!("unknown command {other:?}"))),
    }
}

/// The help text of `program`: synopsis, one line per flag, examples.
#[must_use]
pub fn help(program: Program) -> String {
    let name = program.name();
    let mut text = format!(
        "{name} {version}: run declared commands as jobs and stream their output over Server-Sent Events\n\
         \n\
         Usage:\n  \
           {name} [serve] [--config FILE] [--listen ADDR] [--data-dir DIR] [--memory] [--redis URL] [--insecure-no-auth] [-- CMD ARGS...]\n",
        version = env!("CARGO_PKG_VERSION"),
    );
    if program == Program::Spout {
        text.push_str(
            "  spout run SERVER COMMAND [ARGS...] [--token T] [--kill-on-interrupt] [--json]\n  \
               spout tail URL [--token T] [--from-start] [--last-event-id N] [--json]\n",
        );
    }
    text.push_str(
        "\nServe options:\n  \
           --config FILE         your commands, from a JSON config file (see docs/config.md)\n  \
           --listen ADDR         address and port to listen on (default 127.0.0.1:8080)\n  \
           --data-dir DIR        where job logs are archived (default ./spout-data)\n  \
           --memory              keep logs in memory only, nothing on disk\n  \
           --redis URL           share jobs with other servers through Redis: redis://HOST:PORT[/DB] or redis+unix:///PATH\n  \
           --insecure-no-auth    allow a non-loopback --listen without tokens (only behind an authenticating proxy)\n  \
           -- CMD ARGS...        serve this one command, named \"default\", instead of a config file\n\
         Without --config or -- CMD, the built-in demo commands are served.\n",
    );
    if program == Program::Spout {
        text.push_str(
            "\nRun and tail options:\n  \
               --token T             bearer token for a server that requires one\n  \
               --kill-on-interrupt   (run) stop the job when you press Ctrl-C, instead of leaving it running\n  \
               --from-start          (tail) replay the job from its first event\n  \
               --last-event-id N     (tail) resume after event N\n  \
               --json                print each event as a JSON line instead of the output text\n  \
               --                    (run) every later word is an argument of the command, even --json\n\
             run and tail print the job's stdout to stdout and stderr to stderr, reconnect on\n\
             dropped connections, and exit with the job's exit code (128 + signal number).\n",
        );
    }
    text.push_str("\nOther:\n  -h, --help            print this help\n  -V, --version         print the version\n\nExamples:\n");
    let examples: &[&str] = match program {
        Program::Spout => &[
            "spout serve                                     # built-in demo commands, 127.0.0.1:8080",
            "spout serve --config spout.json                 # your commands",
            "spout serve -- make -C /srv/app test            # one ad-hoc command, named \"default\"",
            "spout run http://127.0.0.1:8080 build test      # start a job and follow it",
            "spout tail http://127.0.0.1:8080/jobs/ID        # follow a job, resuming on drops",
        ],
        Program::SpoutBlocking => &[
            "spout-blocking serve                            # built-in demo commands, 127.0.0.1:8080",
            "spout-blocking serve --config spout.json        # same server, thread per connection",
            "spout-blocking serve -- make -C /srv/app test   # one ad-hoc command, named \"default\"",
        ],
    };
    for example in examples {
        text.push_str("  ");
        text.push_str(example);
        text.push('\n');
    }
    text
}

struct Parser {
    program: Program,
}

/// One word of a command line, split into a flag and its inline `=value`.
enum Word<'a> {
    Flag(&'a str, Option<&'a str>),
    EndOfOptions,
    Positional(&'a str),
}

fn classify(word: &str) -> Word<'_> {
    if word == "--" {
        Word::EndOfOptions
    } else if word.starts_with("--") {
        match word.split_once('=') {
            Some((flag, value)) => Word::Flag(flag, Some(value)),
            None => Word::Flag(word, None),
        }
    } else if word.starts_with('-') && word.len() > 1 {
        Word::Flag(word, None)
    } else {
        Word::Positional(word)
    }
}

impl Parser {
    fn error(&self, what: impl fmt::Display) -> CliError {
        CliError {
            message: format!("{what}; see {} --help", self.program.name()),
        }
    }

    /// The value of a flag: inline after `=`, or the next word.
    fn value<'a>(
        &self,
        flag: &str,
        inline: Option<&'a str>,
        rest: &mut std::slice::Iter<'a, String>,
    ) -> Result<&'a str, CliError> {
        match inline {
            Some(v) => Ok(v),
            None => match rest.next() {
                Some(v) => Ok(v),
                None => Err(self.error(format!("{flag} needs a value"))),
            },
        }
    }

    fn no_value(&self, flag: &str, inline: Option<&str>) -> Result<(), CliError> {
        match inline {
            Some(_) => Err(self.error(format!("{flag} takes no value"))),
            None => Ok(()),
        }
    }

    fn non_empty<'a>(&self, flag: &str, value: &'a str) -> Result<&'a str, CliError> {
        if value.is_empty() {
            return Err(self.error(format!("{flag} needs a non-empty value")));
        }
        Ok(value)
    }

    fn unknown(&self, flag: &str) -> CliError {
        self.error(format!("unknown option {flag}"))
    }

    fn serve(&self, args: &[String]) -> Result<Cli, CliError> {
        let mut options = ServeOptions::default();
        let mut rest = args.iter();
        while let Some(word) = rest.next() {
            match classify(word) {
                Word::EndOfOptions => {
                    let argv: Vec<String> = rest.by_ref().cloned().collect();
                    if argv.is_empty() {
                        return Err(self.error(
                            "-- must be followed by the command to serve, e.g. -- make test",
                        ));
                    }
                    options.adhoc = Some(argv);
                }
                Word::Flag("-h" | "--help", _) => return Ok(Cli::Help(help(self.program))),
                Word::Flag("-V" | "--version", _) => return Ok(Cli::Version),
                Word::Flag(flag @ "--config", inline) => {
                    let value = self.value(flag, inline, &mut rest)?;
                    options.config = Some(self.non_empty(flag, value)?.to_owned());
                }
                Word::Flag(flag @ "--listen", inline) => {
                    let value = self.value(flag, inline, &mut rest)?;
                    let addr = value.parse::<SocketAddr>().map_err(|_| {
                        self.error(format!(
                            "--listen {value:?} is not an IP address and port, such as 127.0.0.1:8080 or [::1]:8080"
                        ))
                    })?;
                    options.listen = Some(addr);
                }
                Word::Flag(flag @ "--data-dir", inline) => {
                    let value = self.value(flag, inline, &mut rest)?;
                    options.data_dir = Some(self.non_empty(flag, value)?.to_owned());
                }
                Word::Flag(flag @ "--memory", inline) => {
                    self.no_value(flag, inline)?;
                    options.memory = true;
                }
                Word::Flag(flag @ "--redis", inline) => {
                    let value = self.value(flag, inline, &mut rest)?;
                    let url = crate::cluster::RedisUrl::parse(value)
                        .map_err(|e| self.error(format!("--redis: {e}")))?;
                    options.redis = Some(url);
                }
                Word::Flag(flag @ "--insecure-no-auth", inline) => {
                    self.no_value(flag, inline)?;
                    options.insecure_no_auth = true;
                }
                Word::Flag(flag, _) => return Err(self.unknown(flag)),
                Word::Positional(word) => {
                    return Err(self.error(format!(
                        "unexpected {word:?}; to serve a single command, put -- before it: -- {word} ..."
                    )));
                }
            }
        }
        if options.config.is_some() && options.adhoc.is_some() {
            return Err(self.error(
                "--config and an ad-hoc command (-- CMD) cannot be combined; declare the command in the config file",
            ));
        }
        Ok(Cli::Serve(options))
    }

    fn run(&self, args: &[String]) -> Result<Cli, CliError> {
        let mut positionals: Vec<String> = Vec::new();
        let (mut token, mut kill_on_interrupt, mut json) = (None, false, false);
        let mut rest = args.iter();
        while let Some(word) = rest.next() {
            // Before COMMAND an unknown option is a mistake; after it, a word is
            // the command's argument unless it is one of run's own options.
            let have_command = positionals.len() >= 2;
            match classify(word) {
                Word::EndOfOptions => {
                    positionals.extend(rest.by_ref().cloned());
                }
                Word::Flag(flag @ "--token", inline) => {
                    let value = self.value(flag, inline, &mut rest)?;
                    token = Some(self.non_empty(flag, value)?.to_owned());
                }
                Word::Flag(flag @ "--kill-on-interrupt", inline) => {
                    self.no_value(flag, inline)?;
                    kill_on_interrupt = true;
                }
                Word::Flag(flag @ "--json", inline) => {
                    self.no_value(flag, inline)?;
                    json = true;
                }
                Word::Flag(_, _) if have_command => positionals.push(word.clone()),
                Word::Flag("-h" | "--help", _) => return Ok(Cli::Help(help(self.program))),
                Word::Flag(flag, _) => return Err(self.unknown(flag)),
                Word::Positional(_) => positionals.push(word.clone()),
            }
        }
        let mut positionals = positionals.into_iter();
        let (Some(server), Some(command)) = (positionals.next(), positionals.next()) else {
            return Err(self
                .error("run needs a server and a command: spout run http://127.0.0.1:8080 build"));
        };
        self.check_url("SERVER", &server)?;
        if command.is_empty() {
            return Err(self.error("run needs a command name"));
        }
        Ok(Cli::Run {
            server,
            command,
            args: positionals.collect(),
            token,
            kill_on_interrupt,
            json,
        })
    }

    fn tail(&self, args: &[String]) -> Result<Cli, CliError> {
        let mut url = None;
        let (mut token, mut from_start, mut last_event_id, mut json) = (None, false, None, false);
        let mut rest = args.iter();
        while let Some(word) = rest.next() {
            match classify(word) {
                Word::Flag("-h" | "--help", _) => return Ok(Cli::Help(help(self.program))),
                Word::Flag(flag @ "--token", inline) => {
                    let value = self.value(flag, inline, &mut rest)?;
                    token = Some(self.non_empty(flag, value)?.to_owned());
                }
                Word::Flag(flag @ "--from-start", inline) => {
                    self.no_value(flag, inline)?;
                    from_start = true;
                }
                Word::Flag(flag @ "--last-event-id", inline) => {
                    let value = self.value(flag, inline, &mut rest)?;
                    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                    let n = value
                        .parse::<u64>()
                        .ok()
                        .filter(|_| digits)
                        .ok_or_else(|| {
                            self.error(format!(
                                "--last-event-id {value:?} is not an event id (a whole number)"
                            ))
                        })?;
                    last_event_id = Some(n);
                }
                Word::Flag(flag @ "--json", inline) => {
                    self.no_value(flag, inline)?;
                    json = true;
                }
                Word::Flag(flag, _) => return Err(self.unknown(flag)),
                Word::EndOfOptions => return Err(self.unknown("--")),
                Word::Positional(word) => {
                    if url.is_some() {
                        return Err(
                            self.error(format!("unexpected {word:?}: tail follows one job URL"))
                        );
                    }
                    url = Some(word.to_owned());
                }
            }
        }
        let Some(url) = url else {
            return Err(
                self.error("tail needs a job URL: spout tail http://127.0.0.1:8080/jobs/ID")
            );
        };
        self.check_url("URL", &url)?;
        if from_start && last_event_id.is_some() {
            return Err(self.error("--from-start and --last-event-id cannot be combined; use one"));
        }
        Ok(Cli::Tail {
            url,
            token,
            from_start,
            last_event_id,
            json,
        })
    }

    fn check_url(&self, what: &str, url: &str) -> Result<(), CliError> {
        if url.starts_with("https://") {
            return Err(self.error(format!(
                "{what} {url:?}: the client speaks plain http:// only; reach a TLS server through an SSH tunnel or a local TLS proxy"
            )));
        }
        match url.strip_prefix("http://") {
            Some(h) if !h.is_empty() && !h.starts_with('/') => Ok(()),
            _ => Err(self.error(format!(
                "{what} {url:?} must be a URL such as http://127.0.0.1:8080"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn serve_opts(f: impl FnOnce(&mut ServeOptions)) -> Result<Cli, String> {
        let mut options = ServeOptions::default();
        f(&mut options);
        Ok(Cli::Serve(options))
    }

    fn run(
        server: &str,
        command: &str,
        args: &[&str],
        token: Option<&str>,
        kill: bool,
        json: bool,
    ) -> Result<Cli, String> {
        Ok(Cli::Run {
            server: server.into(),
            command: command.into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            token: token.map(str::to_owned),
            kill_on_interrupt: kill,
            json,
        })
    }

    fn tail(
        url: &str,
        token: Option<&str>,
        from_start: bool,
        last: Option<u64>,
        json: bool,
    ) -> Result<Cli, String> {
        Ok(Cli::Tail {
            url: url.into(),
            token: token.map(str::to_owned),
            from_start,
            last_event_id: last,
            json,
        })
    }

    #[test]
    fn spout_command_lines() {
        let local = "http://127.0.0.1:8080";
        let cases: Vec<(&str, Result<Cli, String>)> = vec![
            ("", serve_opts(|_| {})),
            ("serve", serve_opts(|_| {})),
            ("--memory", serve_opts(|o| o.memory = true)),
            ("serve --config spout.json", serve_opts(|o| o.config = Some("spout.json".into()))),
            ("serve --config=spout.json", serve_opts(|o| o.config = Some("spout.json".into()))),
            ("serve --listen 0.0.0.0:80 --insecure-no-auth", serve_opts(|o| {
                o.listen = Some("0.0.0.0:80".parse().unwrap());
                o.insecure_no_auth = true;
            })),
            ("serve --listen=[::1]:9 --data-dir /d --memory", serve_opts(|o| {
                o.listen = Some("[::1]:9".parse().unwrap());
                o.data_dir = Some("/d".into());
                o.memory = true;
            })),
            ("serve --listen 127.0.0.1:1 --listen 127.0.0.1:2", serve_opts(|o| o.listen = Some("127.0.0.1:2".parse().unwrap()))),
            ("serve -- make -C /srv/app test", serve_opts(|o| o.adhoc = Some(words("make -C /srv/app test")))),
            ("serve --memory -- ls --config x", serve_opts(|o| {
                o.memory = true;
                o.adhoc = Some(words("ls --config x"));
            })),
            ("-- ls", serve_opts(|o| o.adhoc = Some(words("ls")))),
            ("serve --lisen 1.2.3.4:5", Err("unknown option --lisen; see spout --help".into())),
            ("serve --listen", Err("--listen needs a value; see spout --help".into())),
            ("serve --listen localhost:80", Err("--listen \"localhost:80\" is not an IP address and port, such as 127.0.0.1:8080 or [::1]:8080; see spout --help".into())),
            ("serve --redis redis://10.0.0.5:6380/2", serve_opts(|o| {
                o.redis = Some(crate::cluster::RedisUrl::parse("redis://10.0.0.5:6380/2").unwrap());
            })),
            ("serve --redis=redis+unix:///run/r.sock --memory", serve_opts(|o| {
                o.redis = Some(crate::cluster::RedisUrl::parse("redis+unix:///run/r.sock").unwrap());
                o.memory = true;
            })),
            ("serve --redis", Err("--redis needs a value; see spout --help".into())),
            ("serve --redis http://x", Err("--redis: \"http://x\" is not a Redis URL; write redis://HOST:PORT[/DB] or redis+unix:///PATH; see spout --help".into())),
            ("serve --memory=yes", Err("--memory takes no value; see spout --help".into())),
            ("serve --config=", Err("--config needs a non-empty value; see spout --help".into())),
            ("serve --", Err("-- must be followed by the command to serve, e.g. -- make test; see spout --help".into())),
            ("serve make", Err("unexpected \"make\"; to serve a single command, put -- before it: -- make ...; see spout --help".into())),
            ("serve --config a.json -- ls", Err("--config and an ad-hoc command (-- CMD) cannot be combined; declare the command in the config file; see spout --help".into())),
            ("serve -x", Err("unknown option -x; see spout --help".into())),
            ("frobnicate", Err("unknown command \"frobnicate\"; see spout --help".into())),
            ("-V", Ok(Cli::Version)),
            ("--version", Ok(Cli::Version)),
            ("serve -V", Ok(Cli::Version)),
            ("demo", Ok(Cli::Demo(vec![]))),
            ("demo count 5 --json", Ok(Cli::Demo(words("count 5 --json")))),
            ("pty-exec sh -c --help", Ok(Cli::PtyExec(words("sh -c --help")))),
            ("pty-exec", Ok(Cli::PtyExec(vec![]))),
            // run
            ("run http://127.0.0.1:8080 build test", run(local, "build", &["test"], None, false, false)),
            ("run http://127.0.0.1:8080 build", run(local, "build", &[], None, false, false)),
            ("run --token s3cret --json http://127.0.0.1:8080 build", run(local, "build", &[], Some("s3cret"), false, true)),
            ("run http://127.0.0.1:8080 --token=t build a b", run(local, "build", &["a", "b"], Some("t"), false, false)),
            ("run http://127.0.0.1:8080 build test --kill-on-interrupt --json", run(local, "build", &["test"], None, true, true)),
            ("run http://127.0.0.1:8080 build -v --verbose", run(local, "build", &["-v", "--verbose"], None, false, false)),
            ("run http://127.0.0.1:8080 build -- --json --token x", run(local, "build", &["--json", "--token", "x"], None, false, false)),
            ("run -- http://127.0.0.1:8080 build --json", run(local, "build", &["--json"], None, false, false)),
            ("run http://127.0.0.1:8080", Err("run needs a server and a command: spout run http://127.0.0.1:8080 build; see spout --help".into())),
            ("run --bogus http://127.0.0.1:8080 build", Err("unknown option --bogus; see spout --help".into())),
            ("run 127.0.0.1:8080 build", Err("SERVER \"127.0.0.1:8080\" must be a URL such as http://127.0.0.1:8080; see spout --help".into())),
            ("run http://127.0.0.1:8080 build --token", Err("--token needs a value; see spout --help".into())),
            ("run http://127.0.0.1:8080 build --json=1", Err("--json takes no value; see spout --help".into())),
            // tail
            ("tail http://127.0.0.1:8080/jobs/ID", tail("http://127.0.0.1:8080/jobs/ID", None, false, None, false)),
            ("tail --from-start http://h/jobs/x --json --token t", tail("http://h/jobs/x", Some("t"), true, None, true)),
            ("tail http://h/jobs/x --last-event-id 42", tail("http://h/jobs/x", None, false, Some(42), false)),
            ("tail http://h/jobs/x --last-event-id=0", tail("http://h/jobs/x", None, false, Some(0), false)),
            ("tail http://h/jobs/x --last-event-id -1", Err("--last-event-id \"-1\" is not an event id (a whole number); see spout --help".into())),
            ("tail http://h/jobs/x --last-event-id +1", Err("--last-event-id \"+1\" is not an event id (a whole number); see spout --help".into())),
            ("tail http://h/jobs/x --from-start --last-event-id 3", Err("--from-start and --last-event-id cannot be combined; use one; see spout --help".into())),
            ("tail", Err("tail needs a job URL: spout tail http://127.0.0.1:8080/jobs/ID; see spout --help".into())),
            ("tail http://h/jobs/x http://h/jobs/y", Err("unexpected \"http://h/jobs/y\": tail follows one job URL; see spout --help".into())),
            ("tail http:// ", Err("URL \"http://\" must be a URL such as http://127.0.0.1:8080; see spout --help".into())),
            ("tail http://h/jobs/x --follow", Err("unknown option --follow; see spout --help".into())),
        ];
        for (line, want) in cases {
            let got = parse(&words(line), Program::Spout).map_err(|e| e.to_string());
            assert_eq!(got, want, "spout {line}");
        }
    }

    #[test]
    fn spout_blocking_has_no_client_commands() {
        let cases: Vec<(&str, Result<Cli, String>)> = vec![
            (
                "serve --config spout.json",
                serve_opts(|o| o.config = Some("spout.json".into())),
            ),
            ("", serve_opts(|_| {})),
            ("demo fast", Ok(Cli::Demo(words("fast")))),
            (
                "run http://h build",
                Err("unknown command \"run\"; see spout-blocking --help".into()),
            ),
            (
                "tail http://h/jobs/x",
                Err("unknown command \"tail\"; see spout-blocking --help".into()),
            ),
            (
                "serve --lisen x",
                Err("unknown option --lisen; see spout-blocking --help".into()),
            ),
        ];
        for (line, want) in cases {
            let got = parse(&words(line), Program::SpoutBlocking).map_err(|e| e.to_string());
            assert_eq!(got, want, "spout-blocking {line}");
        }
    }

    #[test]
    fn help_lists_every_flag_and_the_spec_examples() {
        for (line, program) in [
            ("--help", Program::Spout),
            ("-h", Program::Spout),
            ("help", Program::Spout),
            ("serve --help", Program::Spout),
            ("run -h", Program::Spout),
            ("tail --help", Program::Spout),
            ("-h", Program::SpoutBlocking),
        ] {
            assert_eq!(
                parse(&words(line), program),
                Ok(Cli::Help(help(program))),
                "{line}"
            );
        }
        let spout = help(Program::Spout);
        for needle in [
            "--config FILE",
            "--listen ADDR",
            "--data-dir DIR",
            "--memory",
            "--redis URL",
            "--insecure-no-auth",
            "-- CMD ARGS",
            "--token T",
            "--kill-on-interrupt",
            "--from-start",
            "--last-event-id N",
            "--json",
            "--version",
            "spout serve --config spout.json",
            "spout serve -- make -C /srv/app test",
            "spout run http://127.0.0.1:8080 build test",
            "spout tail http://127.0.0.1:8080/jobs/ID",
        ] {
            assert!(
                spout.contains(needle),
                "spout help lacks {needle:?}:\n{spout}"
            );
        }
        assert!(!spout.contains("demo ["), "the demo command is hidden");
        assert!(!spout.contains("pty-exec"), "the pty helper is hidden");
        let blocking = help(Program::SpoutBlocking);
        assert!(blocking.contains("spout-blocking serve --config spout.json"));
        assert!(!blocking.contains("spout run") && !blocking.contains("--kill-on-interrupt"));
    }

    #[test]
    fn run_help_after_command_is_an_argument() {
        let got = parse(&words("run http://h build --help"), Program::Spout);
        assert_eq!(
            got.map_err(|e| e.to_string()),
            run("http://h", "build", &["--help"], None, false, false)
        );
    }
}

//! The built-in demo commands of `spout serve` without a config, as data: the
//! [`config`] that declares them, and the [`script`] each one plays.
//!
//! The demo commands must work on any machine, so they run the spout binary itself
//! (`spout demo NAME [ARG]`, a hidden subcommand); the runtime executes the
//! [`Step`]s that [`script`] returns, writing to its own stdout and stderr.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{ArgsRule, CommandSpec, Config};
use crate::event::Stream;

/// The most lines `count` prints.
pub const MAX_COUNT: u64 = 1000;
/// The lines `count` prints without an argument.
pub const DEFAULT_COUNT: u64 = 20;
/// The pause between `count`'s lines.
pub const COUNT_INTERVAL: Duration = Duration::from_millis(200);
/// The most lines `spew` writes (100 MB of output).
pub const MAX_SPEW: u64 = 1_000_000;
/// The lines `spew` writes without an argument (10 MB of output).
pub const DEFAULT_SPEW: u64 = 100_000;
/// The length of every `spew` line, newline included.
pub const SPEW_LINE_LEN: usize = 100;
/// The exit code of `demo fail`.
pub const FAIL_CODE: i32 = 3;

/// One thing a demo script does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes to a stream, and flush.
    Write(Stream, Vec<u8>),
    /// Write `line` to `stream` `times` times, as fast as the stream takes it (the
    /// runtime may batch the copies into large writes).
    Repeat {
        /// The stream to write to.
        stream: Stream,
        /// The bytes to repeat.
        line: Vec<u8>,
        /// How many copies.
        times: u64,
    },
    /// Pause.
    Sleep(Duration),
    /// Exit with this code; always the last step.
    Exit(i32),
}

/// The configuration of `spout serve` without `--config` or `-- CMD`: the demo
/// commands, each running `[self_exe, "demo", NAME]` plus the user's argument.
#[must_use]
pub fn config(self_exe: &str) -> Config {
    let command = |name: &str, description: &str, args: ArgsRule| {
        let mut spec = CommandSpec::new(
            name,
            vec![self_exe.to_owned(), "demo".to_owned(), name.to_owned()],
        );
        spec.description = description.to_owned();
        spec.args = Some(args);
        // A demo must never outlive a forgotten browser tab by much.
        spec.timeout_s = Some(600);
        (name.to_owned(), spec)
    };
    let number = |max_len| ArgsRule {
        max: 1,
        max_len,
        allow: None,
        allow_options: false,
    };
    let commands: BTreeMap<String, CommandSpec> = [
        command(
            "demo",
            "coloured lines, a progress bar, stderr and unicode (arg: fail or fast)",
            ArgsRule {
                max: 1,
                max_len: 4,
                allow: Some(vec!["fail".to_owned(), "fast".to_owned()]),
                allow_options: false,
            },
        ),
        command("count", "numbered lines, one every 200 ms (arg: how many, 1-1000, default 20)", number(4)),
        command(
            "spew",
            "100-byte lines as fast as possible, for load tests (arg: how many, 1-1000000, default 100000)",
            number(7),
        ),
    ]
    .into_iter()
    .collect();
    Config::with_commands(commands)
}

/// The steps of `spout demo NAME [ARG]`; `args` are the words after `demo`.
///
/// # Errors
/// A message for stderr when the script name or its argument is unknown or out of
/// range (the demo commands' `args` rules cannot express ranges).
pub fn script(args: &[String]) -> Result<Vec<Step>, String> {
    let (name, arg) = match args {
        [name] => (name.as_str(), None),
        [name, arg] => (name.as_str(), Some(arg.as_str())),
        [] => return Err("usage: spout demo (demo [fail|fast] | count [N] | spew [N])".to_owned()),
        _ => return Err(format!("demo {:?} takes at most one argument", args[0])),
    };
    match name {
        "demo" => demo(arg),
        "count" => Ok(count(number("count", arg, DEFAULT_COUNT, MAX_COUNT)?)),
        "spew" => Ok(spew(number("spew", arg, DEFAULT_SPEW, MAX_SPEW)?)),
        other => Err(format!(
            "unknown demo {other:?}; expected demo, count or spew"
        )),
    }
}

fn number(name: &str, arg: Option<&str>, default: u64, max: u64) -> Result<u64, String> {
    let Some(text) = arg else { return Ok(default) };
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(n) if digits && (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{name}: {text:?} is not a number from 1 to {max}")),
    }
}

const RESET: &str = "\x1b[0m";

fn out(text: &str) -> Step {
    Step::Write(Stream::Stdout, text.as_bytes().to_vec())
}

fn err(text: &str) -> Step {
    Step::Write(Stream::Stderr, text.as_bytes().to_vec())
}

fn demo(arg: Option<&str>) -> Result<Vec<Step>, String> {
    let (fail, fast) = match arg {
        None => (false, false),
        Some("fail") => (true, false),
        Some("fast") => (false, true),
        Some(other) => {
            return Err(format!(
                "demo: unknown argument {other:?}; expected fail or fast"
            ))
        }
    };
    let pause = |ms: u64| (!fast).then_some(Step::Sleep(Duration::from_millis(ms)));
    let mut steps = Vec::new();
    let mut push = |step: Option<Step>| steps.extend(step);

    push(Some(out(
        "\x1b[1mspout demo\x1b[0m: coloured lines, a progress bar, stderr and unicode\n",
    )));
    push(pause(300));
    for (colour, word) in [
        ("31", "red"),
        ("32", "green"),
        ("33", "yellow"),
        ("1", "bold"),
    ] {
        push(Some(out(&format!(
            "this line is \x1b[{colour}m{word}{RESET}\n"
        ))));
        push(pause(150));
    }
    push(Some(out(
        "\x1b[1;32mbold green\x1b[0m and \x1b[1;31mbold red\x1b[0m on one line\n",
    )));
    push(pause(200));

    // A progress bar redrawn in place with `\r`, without newlines until it is done:
    // this exercises the partial-line delay on the server and in-place drawing in
    // the viewer.
    for tenth in 0..=10 {
        let bar = format!(
            "\r[{}{}] {:>3}%",
            "#".repeat(tenth),
            " ".repeat(10 - tenth),
            tenth * 10
        );
        push(Some(out(&bar)));
        push(pause(120));
    }
    push(Some(out("\n")));

    push(Some(err(
        "\x1b[33mwarning:\x1b[0m this line went to stderr\n",
    )));
    push(pause(150));
    push(Some(err(
        "stderr and stdout are told apart in the viewer\n",
    )));
    push(pause(200));

    // "é" is split across two writes so the server's incremental UTF-8 decoding
    // has to join it.
    push(Some(Step::Write(
        Stream::Stdout,
        b"unicode: caf\xc3".to_vec(),
    )));
    push(pause(100));
    let mut rest = vec![0xa9]; // the second byte of "é" (U+00E9, C3 A9)
    rest.extend_from_slice(", 日本語, 🚀 ✓\n".as_bytes());
    push(Some(Step::Write(Stream::Stdout, rest)));
    push(pause(200));

    if fail {
        push(Some(err(
            "\x1b[31merror:\x1b[0m failing on purpose (demo fail)\n",
        )));
        push(Some(Step::Exit(FAIL_CODE)));
    } else {
        push(Some(out("\x1b[32mdone\x1b[0m\n")));
        push(Some(Step::Exit(0)));
    }
    Ok(steps)
}

fn count(n: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    for i in 1..=n {
        if i > 1 {
            steps.push(Step::Sleep(COUNT_INTERVAL));
        }
        steps.push(out(&format!("line {i} of {n}\n")));
    }
    steps.push(Step::Exit(0));
    steps
}

fn spew(n: u64) -> Vec<Step> {
    let mut line = b"spout spew: ".to_vec();
    line.resize(SPEW_LINE_LEN - 1, b'x');
    line.push(b'\n');
    vec![
        Step::Repeat {
            stream: Stream::Stdout,
            line,
            times: n,
        },
        Step::Exit(0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    /// Concatenates what a script writes to one stream.
    fn written(steps: &[Step], stream: Stream) -> Vec<u8> {
        let mut bytes = Vec::new();
        for step in steps {
            match step {
                Step::Write(s, b) if *s == stream => bytes.extend_from_slice(b),
                Step::Repeat {
                    stream: s,
                    line,
                    times,
                } if *s == stream => {
                    for _ in 0..*times {
                        bytes.extend_from_slice(line);
                    }
                }
                _ => {}
            }
        }
        bytes
    }

    fn sleeps(steps: &[Step]) -> Duration {
        steps
            .iter()
            .map(|s| {
                if let Step::Sleep(d) = s {
                    *d
                } else {
                    Duration::ZERO
                }
            })
            .sum()
    }

    fn exit_code(steps: &[Step]) -> i32 {
        let exits: Vec<i32> = steps
            .iter()
            .filter_map(|s| {
                if let Step::Exit(c) = s {
                    Some(*c)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(exits.len(), 1, "one exit");
        assert!(matches!(steps.last(), Some(Step::Exit(_))), "exit is last");
        exits[0]
    }

    #[test]
    fn demo_shows_colours_progress_stderr_and_unicode() {
        let steps = script(&args("demo")).unwrap();
        assert_eq!(exit_code(&steps), 0);
        let stdout = String::from_utf8(written(&steps, Stream::Stdout)).unwrap();
        for sgr in ["\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[1m", "\x1b[0m"] {
            assert!(stdout.contains(sgr), "missing {sgr:?}");
        }
        assert!(stdout.contains("\r[#####     ]  50%"));
        assert!(stdout.contains("\r[##########] 100%\n"));
        assert!(stdout.contains("café, 日本語, 🚀"));
        let stderr = String::from_utf8(written(&steps, Stream::Stderr)).unwrap();
        assert!(stderr.contains("\x1b[33mwarning:"));
        assert_eq!(stderr.lines().count(), 2);
        // The "é" really is split between two writes.
        assert!(steps.contains(&Step::Write(Stream::Stdout, b"unicode: caf\xc3".to_vec())));
        let pause = sleeps(&steps);
        assert!(
            pause >= Duration::from_secs(2) && pause <= Duration::from_secs(5),
            "{pause:?}"
        );
        for step in &steps {
            if let Step::Sleep(d) = step {
                assert!((100..=300).contains(&d.as_millis()), "{d:?}");
            }
        }
    }

    #[test]
    fn demo_fast_and_fail() {
        let slow = script(&args("demo")).unwrap();
        let fast = script(&args("demo fast")).unwrap();
        assert_eq!(sleeps(&fast), Duration::ZERO);
        assert_eq!(exit_code(&fast), 0);
        assert_eq!(
            written(&fast, Stream::Stdout),
            written(&slow, Stream::Stdout)
        );
        let fail = script(&args("demo fail")).unwrap();
        assert_eq!(exit_code(&fail), FAIL_CODE);
        assert!(String::from_utf8(written(&fail, Stream::Stderr))
            .unwrap()
            .contains("error:"));
        assert_eq!(
            script(&args("demo slow")),
            Err("demo: unknown argument \"slow\"; expected fail or fast".into())
        );
    }

    #[test]
    fn count_prints_numbered_lines_every_200_ms() {
        let steps = script(&args("count")).unwrap();
        let stdout = String::from_utf8(written(&steps, Stream::Stdout)).unwrap();
        assert_eq!(stdout.lines().count(), 20);
        assert!(stdout.starts_with("line 1 of 20\n") && stdout.ends_with("line 20 of 20\n"));
        assert_eq!(sleeps(&steps), COUNT_INTERVAL * 19);
        assert_eq!(exit_code(&steps), 0);
        let three = script(&args("count 3")).unwrap();
        assert_eq!(
            written(&three, Stream::Stdout),
            b"line 1 of 3\nline 2 of 3\nline 3 of 3\n"
        );
        assert_eq!(script(&args("count 1000")).unwrap().len(), 1000 * 2);
        for bad in ["0", "1001", "-1", "+5", "x", "18446744073709551616"] {
            let err = script(&args(&format!("count {bad}"))).unwrap_err();
            assert_eq!(
                err,
                format!("count: {bad:?} is not a number from 1 to 1000")
            );
        }
    }

    #[test]
    fn spew_repeats_one_100_byte_line() {
        let steps = script(&args("spew")).unwrap();
        let Step::Repeat {
            stream,
            line,
            times,
        } = &steps[0]
        else {
            panic!("{steps:?}")
        };
        assert_eq!((*stream, *times), (Stream::Stdout, DEFAULT_SPEW));
        assert_eq!(line.len(), SPEW_LINE_LEN);
        assert!(line.ends_with(b"x\n") && line.iter().filter(|b| **b == b'\n').count() == 1);
        assert_eq!(exit_code(&steps), 0);
        assert_eq!(steps.len(), 2);
        assert_eq!(
            written(&script(&args("spew 3")).unwrap(), Stream::Stdout).len(),
            300
        );
        assert!(script(&args("spew 1000001")).is_err());
        assert!(script(&args("spew 1000000")).is_ok());
    }

    #[test]
    fn unknown_scripts_and_extra_args_are_refused() {
        assert!(script(&[]).unwrap_err().starts_with("usage:"));
        assert_eq!(
            script(&args("nope")),
            Err("unknown demo \"nope\"; expected demo, count or spew".into())
        );
        assert_eq!(
            script(&args("count 1 2")),
            Err("demo \"count\" takes at most one argument".into())
        );
    }

    #[test]
    fn config_declares_runnable_demo_commands() {
        let config = config("/usr/bin/spout");
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.check_listen(false), Ok(()));
        assert_eq!(
            config.commands.keys().collect::<Vec<_>>(),
            ["count", "demo", "spew"]
        );
        // Every argument the commands accept leads to a script that runs, and the
        // argv ends in exactly what `script` expects.
        for (name, user, ok) in [
            ("demo", vec![], true),
            ("demo", vec!["fast"], true),
            ("demo", vec!["fail"], true),
            ("demo", vec!["slow"], false),
            ("count", vec!["1000"], true),
            ("count", vec!["5"], true),
            ("count", vec!["10000"], false),
            ("count", vec!["-5"], false),
            ("spew", vec!["1000000"], true),
            ("spew", vec!["10000000"], false),
        ] {
            let user: Vec<String> = user.into_iter().map(str::to_owned).collect();
            let argv = config.commands[name].build_argv(&user);
            assert_eq!(argv.is_ok(), ok, "{name} {user:?}: {argv:?}");
            if let Ok(argv) = argv {
                assert_eq!(&argv[..2], ["/usr/bin/spout", "demo"]);
                assert!(script(&argv[2..]).is_ok(), "{argv:?}");
            }
        }
        assert!(config.commands["demo"].description.contains("progress bar"));
    }
}

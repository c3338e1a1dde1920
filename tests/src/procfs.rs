//! What `/proc` says about a process: CPU time, resident memory, threads and open
//! descriptors, for the hardening cases that check a server leaks nothing and does
//! not spin.

use std::time::Duration;

/// One reading of a process's resource use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// User plus system CPU time so far (`utime + stime` of `/proc/PID/stat`).
    pub cpu: Duration,
    /// Resident memory in KiB (`VmRSS:` of `/proc/PID/status`).
    pub rss_kib: u64,
    /// Number of threads (`Threads:` of `/proc/PID/status`).
    pub threads: u64,
    /// Number of open file descriptors (entries of `/proc/PID/fd`).
    pub fds: u64,
}

/// Clock ticks per second of `/proc/PID/stat` times. Linux reports `USER_HZ`, which
/// is 100 on every architecture it runs on (it is fixed by the ABI, not by `HZ`).
const USER_HZ: u64 = 100;

/// Reads the resource use of `pid`.
///
/// # Panics
/// When `/proc/PID` cannot be read (the process is gone) or is not in the expected
/// format; the message names the field.
pub fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces and parentheses) start at
    // field 3 (state); utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("a command name in parentheses") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("field {} of /proc/{pid}/stat: {stat:?}", i + 3))
    };
    let total = ticks(11) + ticks(12);
    let cpu = Duration::from_millis(total * 1000 / USER_HZ);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status: {status}"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or_else(|e| panic!("listing /proc/{pid}/fd: {e}"));
    Usage {
        cpu,
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds,
    }
}

/// The ids of every live process whose process group is `pgid` (zombies excluded).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            // state, ppid, pgrp
            fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_usage_is_readable() {
        let me = usage(std::process::id());
        assert!(me.threads >= 1 && me.rss_kib > 0 && me.fds >= 3, "{me:?}");
    }
}

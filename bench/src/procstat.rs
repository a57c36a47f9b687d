//! CPU time and resident memory of a process and its descendants, read from
//! `/proc/<pid>/stat`, `/proc/<pid>/status` and `/proc/<pid>/task/*/children`,
//! and of named threads of this process (`/proc/self/task/*`).

use std::time::Duration;

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// `pid` and every process below it.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let children =
                    std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// (utime + stime) from a `stat` line (fields 14 and 15, counted after the
/// parenthesised command name, which may contain spaces).
fn stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

/// CPU time (user + system) of `pid` and its descendants so far.
pub fn cpu_tree(pid: u32) -> Duration {
    tree(pid)
        .into_iter()
        .filter_map(|p| stat_cpu(&std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?))
        .sum()
}

/// CPU time of the live threads of `pid`, to the nanosecond (the first
/// field of each `/proc/<pid>/task/<tid>/schedstat`). Finer than
/// [`cpu_tree`]'s clock ticks, for short windows; a thread that exits
/// inside the window takes its time with it.
pub fn cpu_threads_ns(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(Duration::from_nanos)
        .sum()
}

/// CPU time of `pid` and its descendants so far, to the nanosecond
/// (their live threads' `schedstat`, as [`cpu_threads_ns`]).
pub fn cpu_tree_ns(pid: u32) -> Duration {
    tree(pid).into_iter().map(cpu_threads_ns).sum()
}

/// VmRSS in KiB of one process (0 if gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Summed VmRSS of `pid` and its descendants, in KiB (shared pages of
/// several processes count once per process).
pub fn rss_tree_kib(pid: u32) -> u64 {
    tree(pid).into_iter().map(rss_kib).sum()
}

/// CPU time of this process's threads whose name starts with `prefix`
/// (tokio runtimes name their threads).
pub fn cpu_threads(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .map(|c| c.trim_end().starts_with(prefix))
                .unwrap_or(false)
        })
        .filter_map(|t| stat_cpu(&std::fs::read_to_string(t.path().join("stat")).ok()?))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let hz = clock_ticks();
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(stat_cpu(line), Some(Duration::from_secs_f64(300.0 / hz)));
    }

    #[test]
    fn own_process_has_cpu_and_memory() {
        let me = std::process::id();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(rss_kib(me) > 0);
        assert!(cpu_threads_ns(me) > Duration::ZERO);
        assert!(tree(me).contains(&me));
    }
}

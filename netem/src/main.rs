//! The `ferry-netem` command: `ferry-netem delay --queue N --delay-ms MS`
//! serves NFQUEUE `N` in the current network namespace, holding every
//! packet `MS` milliseconds before accepting it, until SIGINT or SIGTERM.
//! Pair it with a rule such as
//! `iptables -A INPUT -i veth0 -j NFQUEUE --queue-num N --queue-bypass`
//! (run both under `ip netns exec` to delay what one namespace receives;
//! on `OUTPUT` the held packets would count against TCP Small Queues and
//! cap every TCP connection at about two packets per delay).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

const USAGE: &str = "usage: ferry-netem delay --queue N --delay-ms MS";

fn parse(args: &[String]) -> Option<(u16, Duration)> {
    let (mut queue, mut delay) = (None, None);
    let mut it = args.iter();
    if it.next()? != "delay" {
        return None;
    }
    while let Some(flag) = it.next() {
        let value = it.next()?;
        match flag.as_str() {
            "--queue" => queue = Some(value.parse().ok()?),
            "--delay-ms" => delay = Some(Duration::from_millis(value.parse().ok()?)),
            _ => return None,
        }
    }
    Some((queue?, delay?))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((queue, delay)) = parse(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let bound = || {
        println!(
            "{{\"ready\":true,\"queue\":{queue},\"delay_ms\":{}}}",
            delay.as_millis()
        )
    };
    match ferry_netem::delay::serve(queue, delay, &STOP, bound) {
        Ok(stats) => {
            eprintln!("ferry-netem: delayed {} packets", stats.packets);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry-netem: {e}");
            ExitCode::FAILURE
        }
    }
}

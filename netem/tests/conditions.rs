//! The conditions themselves, measured (as root): the delay shows in TCP
//! connect times, the loss in the rules' counters, blocked UDP stops UDP but
//! not TCP, and dropping the guards removes namespaces and rules.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_netem::{Impairment, TwoHosts};

fn root() {
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "these tests need root (namespaces, iptables); CI runs as root"
    );
}

/// Median time of `n` TCP connects from a to b.
fn connect_rtt(hosts: &TwoHosts, n: usize) -> Duration {
    let listener = hosts
        .b
        .tcp_listen(SocketAddr::new(hosts.ip_b.into(), 0))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = std::thread::spawn(move || {
        for _ in 0..n {
            drop(listener.accept());
        }
    });
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            hosts.a.tcp_connect(addr, Duration::from_secs(5)).unwrap();
            t.elapsed()
        })
        .collect();
    accept.join().unwrap();
    times.sort();
    times[n / 2]
}

#[test]
fn delay_shows_in_round_trips_and_goes_away() {
    root();
    let hosts = TwoHosts::create("nt-delay").unwrap();
    let before = connect_rtt(&hosts, 5);
    assert!(
        before < Duration::from_millis(10),
        "no delay yet: {before:?}"
    );
    let imp = hosts
        .impair(Impairment {
            loss: 0.0,
            delay: Duration::from_millis(25),
        })
        .unwrap();
    let during = connect_rtt(&hosts, 5);
    assert!(
        during >= Duration::from_millis(50) && during < Duration::from_millis(150),
        "two 25 ms one-way delays per connect: {during:?}"
    );
    let stats = imp.remove().unwrap();
    assert!(stats.packets >= 10, "packets delayed: {stats:?}");
    let after = connect_rtt(&hosts, 5);
    assert!(
        after < Duration::from_millis(10),
        "delay removed: {after:?}"
    );
}

#[test]
fn loss_drops_about_the_asked_fraction() {
    root();
    let hosts = TwoHosts::create("nt-loss").unwrap();
    let imp = hosts
        .impair(Impairment {
            loss: 0.2,
            delay: Duration::ZERO,
        })
        .unwrap();
    let rx = hosts
        .b
        .udp_bind(SocketAddr::new(hosts.ip_b.into(), 0))
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = hosts
        .a
        .udp_bind(SocketAddr::new(hosts.ip_a.into(), 0))
        .unwrap();
    let to = rx.local_addr().unwrap();
    // Count in a thread so the socket buffer never overflows.
    let counter = std::thread::spawn(move || {
        let mut got = 0u64;
        let mut buf = [0u8; 64];
        while rx.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    const N: u64 = 1000;
    for i in 0..N {
        tx.send_to(&i.to_be_bytes(), to).unwrap();
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let got = counter.join().unwrap();
    let dropped = imp.dropped().unwrap();
    assert_eq!(
        got + dropped,
        N,
        "every datagram arrived or was counted dropped"
    );
    assert!(
        (120..=280).contains(&dropped),
        "about 20% of {N} dropped: {dropped}"
    );
}

#[test]
fn blocked_udp_stops_udp_but_not_tcp() {
    root();
    let hosts = TwoHosts::create("nt-block").unwrap();
    let rx = hosts
        .b
        .udp_bind(SocketAddr::new(hosts.ip_b.into(), 0))
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = hosts
        .a
        .udp_bind(SocketAddr::new(hosts.ip_a.into(), 0))
        .unwrap();
    let to = rx.local_addr().unwrap();
    let mut buf = [0u8; 16];
    // The first datagram over a new pair can be lost while the link comes
    // up (neighbour resolution): resend until one arrives, within 3 s.
    let flows = (0..10).any(|_| {
        tx.send_to(b"before", to).unwrap();
        rx.recv(&mut buf).is_ok_and(|n| n == 6)
    });
    assert!(flows, "UDP flows before the block");
    // Nothing of the resends is left to read past the block.
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while rx.recv(&mut buf).is_ok() {}
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();

    let blocked = hosts.block_udp().unwrap();
    // A locally dropped datagram fails with EPERM, or vanishes.
    let _ = tx.send_to(b"during", to);
    assert!(rx.recv(&mut buf).is_err(), "UDP is dropped while blocked");
    assert_eq!(blocked.dropped().unwrap(), 1);

    let listener = hosts
        .b
        .tcp_listen(SocketAddr::new(hosts.ip_b.into(), 0))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
    });
    let mut c = hosts.a.tcp_connect(addr, Duration::from_secs(5)).unwrap();
    c.write_all(b"tcp").unwrap();
    let mut back = [0u8; 3];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"tcp", "TCP still flows while UDP is blocked");
    server.join().unwrap();

    blocked.remove().unwrap();
    tx.send_to(b"after", to).unwrap();
    assert_eq!(
        rx.recv(&mut buf).unwrap(),
        5,
        "UDP flows again once unblocked"
    );
}

#[test]
fn dropping_the_hosts_removes_the_namespaces() {
    root();
    let hosts = TwoHosts::create("nt-drop").unwrap();
    let names = [hosts.a.name().to_string(), hosts.b.name().to_string()];
    let _imp = hosts
        .impair(Impairment {
            loss: 0.01,
            delay: Duration::from_millis(1),
        })
        .unwrap();
    for n in &names {
        assert!(Path::new(&format!("/run/netns/{n}")).exists());
    }
    drop(_imp);
    drop(hosts);
    for n in &names {
        assert!(
            !Path::new(&format!("/run/netns/{n}")).exists(),
            "{n} is gone"
        );
    }
}

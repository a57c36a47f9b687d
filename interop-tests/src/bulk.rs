//! An integrity-checked bulk transfer over one TCP connection to an echo
//! application: pseudo-random bytes out (then FIN), everything read back,
//! SHA-256 on both sides.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::digest::{Pattern, Tally};

/// What a transfer sent and got back.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub sent: u64,
    pub sent_sha256: String,
    pub received: u64,
    pub received_sha256: String,
    pub elapsed: Duration,
}

/// Sends `size` bytes of [`Pattern`] `seed` on `stream` while reading the
/// echo, half-closes, and reads to the end. Each read or write may wait at
/// most `stall`; the test fails if the transfer stalls or errors.
pub fn echo_transfer(stream: TcpStream, size: u64, seed: u64, stall: Duration) -> Transfer {
    let start = Instant::now();
    stream.set_read_timeout(Some(stall)).expect("read timeout");
    stream
        .set_write_timeout(Some(stall))
        .expect("write timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let mut pattern = Pattern::new(seed);
        let mut tally = Tally::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            pattern.fill(&mut buf[..n]);
            if let Err(e) = writer.write_all(&buf[..n]) {
                return Err(format!("write after {} bytes: {e}", tally.bytes));
            }
            tally.update(&buf[..n]);
            left -= n as u64;
        }
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))?;
        Ok(tally)
    });
    let mut reader = stream;
    let mut got = Tally::default();
    let mut buf = vec![0u8; 64 * 1024];
    let read_err = loop {
        match reader.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => got.update(&buf[..n]),
            Err(e) => break Some(format!("read after {} bytes: {e}", got.bytes)),
        }
    };
    let sent = sender.join().expect("sender thread");
    let sent = match (sent, read_err) {
        (Ok(t), None) => t,
        (s, r) => panic!(
            "bulk transfer of {size} bytes failed after {:?}: send {:?}, receive {:?}",
            start.elapsed(),
            s.err(),
            r
        ),
    };
    Transfer {
        sent: sent.bytes,
        sent_sha256: sent.hex(),
        received: got.bytes,
        received_sha256: got.hex(),
        elapsed: start.elapsed(),
    }
}

impl Transfer {
    /// Asserts that every byte came back intact.
    pub fn assert_intact(&self, what: &str) {
        assert_eq!(self.received, self.sent, "{what}: bytes echoed");
        assert_eq!(
            self.received_sha256, self.sent_sha256,
            "{what}: SHA-256 of the echo"
        );
    }
}

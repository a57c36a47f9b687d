//! Integrity checks: deterministic pseudo-random payloads and SHA-256
//! digests, as hex, over everything sent and received.

use sha2::{Digest, Sha256};

/// Hex of a SHA-256 digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `data`, as hex.
pub fn sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// An endless deterministic pseudo-random byte stream (xorshift64*), so a
/// transfer of any size needs no buffer of that size.
pub struct Pattern(u64);

impl Pattern {
    /// A stream for `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Pattern(seed | 1)
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A running SHA-256 and byte count.
#[derive(Default, Clone)]
pub struct Tally {
    hasher: Sha256,
    pub bytes: u64,
}

impl Tally {
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// The digest so far, as hex.
    pub fn hex(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }
}

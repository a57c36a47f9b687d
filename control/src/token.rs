//! Bootstrap tokens: 32 random bytes, hex. The mesh file stores only their
//! SHA-256, so reading it does not let anyone certify as a workload.

use sha2::{Digest, Sha256};

/// A new random token and its SHA-256 (both hex).
pub fn generate() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = hex(&bytes);
    let hash = sha256_hex(&token);
    (token, hash)
}

/// The SHA-256 of a token, hex (what `token_sha256` holds).
pub fn sha256_hex(token: &str) -> String {
    hex(&Sha256::digest(token.trim().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_to_what_is_stored() {
        let (a, ha) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(sha256_hex(&a), ha);
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

//! Tenant API keys: `API_KEY_PREFIX` + 32 bytes from a CSPRNG, shown once, stored as a SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Characters of the key kept for display (`tk_1a2b3c4d`), enough to tell keys apart.
const DISPLAY_CHARS: usize = 8;

/// A freshly generated key: the secret goes to the caller once, the rest to the registry.
pub struct NewApiKey {
    pub key: String,
    pub hash: String,
    pub display_prefix: String,
}

pub fn generate(prefix: &str) -> NewApiKey {
    let key = random_secret(prefix);
    NewApiKey {
        hash: hash(&key),
        display_prefix: key[..prefix.len() + DISPLAY_CHARS].to_owned(),
        key,
    }
}

/// `prefix` + 32 bytes from a CSPRNG in hex: API keys and refresh tokens.
pub fn random_secret(prefix: &str) -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!("{prefix}{}", hex::encode(secret))
}

/// The stored form of a key (or of any [`random_secret`]). A fast hash is enough: the key has 256 bits of entropy, so there is
/// nothing to brute-force, and lookups by hash stay one index probe.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_stored_as_hashes() {
        let first = generate("tk_");
        let second = generate("tk_");
        assert!(first.key.starts_with("tk_"));
        assert_eq!(first.key.len(), 3 + 64);
        assert_ne!(first.key, second.key);
        assert_eq!(first.hash, hash(&first.key));
        assert!(!first.hash.contains(&first.key[3..]));
        assert!(first.key.starts_with(&first.display_prefix));
    }
}

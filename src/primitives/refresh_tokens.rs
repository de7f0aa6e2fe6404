//! Refresh tokens: `rt_` + 32 bytes from a CSPRNG in hex, handed out once per login or refresh
//! and stored only as a SHA-256. Nothing about one looks like a JWT, so neither kind of token can
//! be mistaken for the other.

use crate::primitives::api_keys::{hash as secret_hash, random_secret};

pub const PREFIX: &str = "rt_";
const SECRET_HEX_CHARS: usize = 64;

/// A fresh refresh token: the token goes to the client, the hash to the database.
pub struct NewRefreshToken {
    pub token: String,
    pub hash: String,
}

pub fn generate() -> NewRefreshToken {
    let token = random_secret(PREFIX);
    NewRefreshToken {
        hash: hash(&token),
        token,
    }
}

/// The stored form of a refresh token.
pub fn hash(token: &str) -> String {
    secret_hash(token)
}

/// Whether `token` has the shape of a refresh token (before any database work).
pub fn well_formed(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|secret| {
        secret.len() == SECRET_HEX_CHARS && secret.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_prefixed_random_and_stored_as_hashes() {
        let first = generate();
        let second = generate();
        assert!(well_formed(&first.token));
        assert_ne!(first.token, second.token);
        assert_eq!(first.hash, hash(&first.token));
        assert!(!first.hash.contains(&first.token[PREFIX.len()..]));
        for malformed in ["", "rt_", "rt_xyz", "eyJhbGciOiJIUzI1NiJ9.e30.sig", "tk_00"] {
            assert!(!well_formed(malformed), "{malformed}");
        }
    }
}

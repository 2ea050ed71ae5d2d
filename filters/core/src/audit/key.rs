//! The record-MAC key(s) from `HIPAA_AUDIT_HMAC_KEY` (never from the policy).
//!
//! Format: `HEX` or `KEYID:HEX`, HEX at least 64 hex characters (32 bytes); several keys may be
//! given separated by commas for rotation (`new:HEX,old:HEX`): the first one seals new records,
//! every one is accepted when verifying. Without an explicit id a key's id is `k` followed by 16
//! hex characters of HMAC-SHA256(key, "hipaa-mesh key id v1"): stable, and revealing nothing of
//! the key. The id is written into each record (`chain.keyId`) and covered by its MAC.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a MAC key was refused. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the audit MAC key is missing or empty")]
    Missing,
    #[error("the audit MAC key is not hexadecimal (expected HEX or KEYID:HEX)")]
    NotHex,
    #[error("the audit MAC key is {bytes} bytes; at least {MIN_KEY_BYTES} bytes (64 hex characters) are required")]
    TooShort { bytes: usize },
    #[error("the audit MAC key id is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -")]
    BadKeyId,
    #[error("the audit MAC key id {0:?} is given twice")]
    DuplicateKeyId(String),
}

/// One MAC key and its id. `Debug` never shows the key.
#[derive(Clone)]
pub struct MacKey {
    id: String,
    /// The keyed HMAC state; cloned for each use. The raw key is not kept.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MacKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MacKey {
    /// Parses one `HEX` or `KEYID:HEX` key.
    pub fn parse(text: &str) -> Result<MacKey, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Missing);
        }
        let (id, hex) = match text.split_once(':') {
            Some((id, hex)) => (Some(id), hex),
            None => (None, text),
        };
        let key = decode_hex(hex).ok_or(KeyError::NotHex)?;
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { bytes: key.len() });
        }
        let mac = keyed(&key).ok_or(KeyError::NotHex)?;
        let id = match id {
            Some(id) => {
                let valid = !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
                if !valid {
                    return Err(KeyError::BadKeyId);
                }
                id.to_string()
            }
            None => derived_id(&mac),
        };
        Ok(MacKey { id, mac })
    }

    /// A key from raw bytes with an explicit id (tests, tools).
    pub fn from_bytes(id: &str, key: &[u8]) -> Result<MacKey, KeyError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { bytes: key.len() });
        }
        if id.is_empty() || id.len() > 64 {
            return Err(KeyError::BadKeyId);
        }
        let mac = keyed(key).ok_or(KeyError::NotHex)?;
        Ok(MacKey {
            id: id.to_string(),
            mac,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn hmac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }
}

fn keyed(key: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(key).ok()
}

fn derived_id(keyed: &Hmac<Sha256>) -> String {
    let mut mac = keyed.clone();
    mac.update(b"hipaa-mesh key id v1");
    let tag = mac.finalize().into_bytes();
    let first = tag.first_chunk::<8>().map_or_else(String::new, hex::encode);
    format!("k{first}")
}

/// Key material of any even length, either case, surrounding whitespace ignored.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    hex::decode(s).ok()
}

/// The keys a verifier accepts; the first seals new records.
#[derive(Debug, Clone)]
pub struct MacKeyRing {
    current: MacKey,
    older: Vec<MacKey>,
}

impl MacKeyRing {
    /// Parses `HIPAA_AUDIT_HMAC_KEY`'s value: one key, or several separated by commas.
    pub fn parse(text: &str) -> Result<MacKeyRing, KeyError> {
        let mut keys: Vec<MacKey> = Vec::new();
        for part in text.split(',') {
            if part.trim().is_empty() {
                continue;
            }
            let key = MacKey::parse(part)?;
            if keys.iter().any(|k| k.id == key.id) {
                return Err(KeyError::DuplicateKeyId(key.id));
            }
            keys.push(key);
        }
        let mut keys = keys.into_iter();
        let current = keys.next().ok_or(KeyError::Missing)?;
        Ok(MacKeyRing {
            current,
            older: keys.collect(),
        })
    }

    pub fn single(key: MacKey) -> MacKeyRing {
        MacKeyRing {
            current: key,
            older: Vec::new(),
        }
    }

    /// The key new records are sealed with.
    pub fn current(&self) -> &MacKey {
        &self.current
    }

    pub fn get(&self, id: &str) -> Option<&MacKey> {
        std::iter::once(&self.current)
            .chain(self.older.iter())
            .find(|k| k.id == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.current)
            .chain(self.older.iter())
            .map(|k| k.id.as_str())
    }
}

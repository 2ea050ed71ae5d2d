//! `verification: envoy`: the proof that Envoy's native `jwt_authn` filter verified the very
//! token authn is looking at. jwt_authn (placed before authn, `payload_in_metadata` set)
//! writes the verified payload into the request's dynamic metadata, namespace
//! [`NAMESPACE`]; only Envoy filters can write there, never a client. authn still parses the
//! token itself and applies every other rule; this module only replaces the signature check
//! with "Envoy checked it, and its payload is this token's payload".
//!
//! How Envoy 1.40 hands the metadata to a Wasm filter (`get_property`, measured): the path
//! `metadata.filter_metadata.<NAMESPACE>.<key>.<claim>` returns one leaf of the payload
//! Struct: a string claim as its UTF-8 bytes, a number as 8 bytes (an IEEE-754 double,
//! little-endian: Struct numbers are doubles), a list as proxy-wasm pairs. Shorter paths
//! return nested proxy-wasm pairs (`metadata` alone: the serialized protobuf). A missing key
//! is "not found".

use super::{TokenError, VerifiedToken};
use crate::policy::schema::{Identity, Verification};

/// jwt_authn's dynamic-metadata namespace.
pub const NAMESPACE: &str = "envoy.filters.http.jwt_authn";

/// The `payload_in_metadata` key hipaa-mesh renders, and the one Istio's RequestAuthentication
/// renders for every provider (`filters.EnvoyJwtFilterPayload`). Istio releases before that
/// used the issuer as the key, so each envoy-mode provider's issuer is tried after it.
pub const PAYLOAD_KEY: &str = "payload";

/// The verified payload's claims authn cross-checks, as Envoy returned them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvoyPayload {
    /// `iss`, a string leaf.
    pub iss: Vec<u8>,
    /// The policy's subject claim (a string leaf), if present.
    pub subject: Option<Vec<u8>>,
    /// `exp` and `iat` as Envoy returned them (8 bytes, a little-endian double).
    pub exp: Option<Vec<u8>>,
    pub iat: Option<Vec<u8>>,
}

impl EnvoyPayload {
    /// Read the payload through `get(key, claim)` (the shell's `get_property` of
    /// `metadata.filter_metadata.<NAMESPACE>.<key>.<claim>`). No host call at all when no
    /// provider uses `verification: envoy`; None when jwt_authn left no verified payload.
    pub fn read(
        identity: &Identity,
        mut get: impl FnMut(&str, &str) -> Option<Vec<u8>>,
    ) -> Option<EnvoyPayload> {
        let envoy_issuers: Vec<&str> = identity
            .providers
            .iter()
            .filter(|p| p.verification == Verification::Envoy)
            .map(|p| p.issuer.as_str())
            .collect();
        if envoy_issuers.is_empty() {
            return None;
        }
        for key in std::iter::once(PAYLOAD_KEY).chain(envoy_issuers) {
            let Some(iss) = get(key, "iss") else {
                continue;
            };
            return Some(EnvoyPayload {
                iss,
                subject: get(key, &identity.subject_claim),
                exp: get(key, "exp"),
                iat: get(key, "iat"),
            });
        }
        None
    }
}

/// Envoy verified this token: its payload is present and names the same issuer, subject,
/// `exp` and `iat` as the token authn parsed.
pub fn check(payload: Option<&EnvoyPayload>, token: &VerifiedToken) -> Result<(), TokenError> {
    let payload = payload.ok_or(TokenError::UnverifiedByEnvoy)?;
    let same_number = |raw: &Option<Vec<u8>>, value: u64| {
        raw.as_deref()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(f64::from_le_bytes)
            // Integer NumericDates up to 2^40 are exact in a double.
            .is_some_and(|f| f == value as f64)
    };
    let same = payload.iss == token.issuer.as_bytes()
        && payload.subject.as_deref() == token.subject.as_deref().map(str::as_bytes)
        && same_number(&payload.exp, token.exp)
        && same_number(&payload.iat, token.iat);
    if same {
        Ok(())
    } else {
        Err(TokenError::EnvoyPayloadMismatch)
    }
}

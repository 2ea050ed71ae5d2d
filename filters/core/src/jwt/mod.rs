//! JWT access-token verification (RFC 7519, RFC 8725): key sets, token parsing, signatures,
//! claims. Pure: the clock is a parameter, keys come in as JSON text. Serves 164.312(d)
//! (person or entity authentication) for the authn filter.
//!
//! - `keys`: JWKS loading; each key checked and parsed once, bound to its algorithm(s).
//! - `token`: the compact form and the header rules (no `none`, no keys in the header, ...).
//! - `json`: strict JSON (objects only, no duplicate members).
//! - `claims`: `iss`, `aud`, time claims with clock skew, identity claims.
//! - `verify`: the pipeline, [`verify_token`] ([`verify_token_with`] for `verification: envoy`).
//! - `envoy`: the proof that Envoy's jwt_authn verified the token (`verification: envoy`).
//!
//! INTERFACE (fixed; other modules call these):
//! - `KeySet::from_jwks_json(text, allowed_algorithms) -> Result<KeySet, JwksError>`
//! - `verify_token(token, &identity, &[ProviderKeys], now_secs) -> Result<VerifiedToken, TokenError>`
//! - `verify_token_with(token, &identity, &[ProviderKeys], now_secs, Option<&EnvoyPayload>, may_check_signature)`

mod claims;
pub mod envoy;
mod json;
mod keys;
mod token;
mod verify;

#[cfg(test)]
mod known_answers;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod weak_keys;

pub use claims::MAX_NUMERIC_DATE;
pub use keys::{
    JwksError, KeyFingerprint, KeyProblem, KeyRef, KeySet, MAX_JWKS_BYTES, MAX_RSA_BITS,
    MIN_RSA_BITS,
};
pub use token::MAX_TOKEN_BYTES;
pub use verify::{verify_token, verify_token_with};

use crate::policy::schema::Provider;

/// One provider and its current keys (None: a remote JWKS not fetched yet).
pub struct ProviderKeys<'a> {
    pub provider: &'a Provider,
    pub keys: Option<&'a KeySet>,
}

/// The claims hipaa-mesh decides on, taken from a token whose signature and time claims passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Index of the provider in the slice given to [`verify_token`].
    pub provider: usize,
    pub issuer: String,
    /// The policy's `subjectClaim`; `Some("")` for an empty string (the caller refuses it).
    pub subject: Option<String>,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
    pub session: Option<String>,
    pub auth_time: Option<u64>,
    pub iat: u64,
    pub exp: u64,
    /// The key that verified the signature (None when Envoy's jwt_authn did): a JWKS refresh
    /// drops the cached identity only when this key left the set.
    pub key: Option<KeyFingerprint>,
}

/// Why a token was refused: one variant per reason. Display texts never contain the token or
/// any claim value (they may reach logs and response bodies); claim *names* come from the
/// policy or the RFCs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token header or payload names a JSON member twice")]
    DuplicateMember,
    #[error("token algorithm is not allowed")]
    AlgNotAllowed,
    #[error("token header carries `{0}`; keys named or carried by a token are never used")]
    HeaderKeyRefused(&'static str),
    #[error("token header has `crit`; no critical extension is supported")]
    CritUnsupported,
    #[error("token header has `zip`; compressed tokens are not supported")]
    ZipUnsupported,
    #[error("encrypted tokens (JWE) are not supported")]
    JweUnsupported,
    #[error("token issuer is not a configured provider")]
    UnknownIssuer,
    #[error("the provider's keys are not loaded yet")]
    KeysNotLoaded,
    #[error("no key of the provider matches the token's `kid`")]
    UnknownKid,
    #[error("the token's `kid` names a key that cannot verify tokens here")]
    KeyNotUsable,
    #[error("the selected key is not bound to the token's algorithm")]
    KeyAlgMismatch,
    #[error("token signature is not valid")]
    BadSignature,
    #[error("too many failed signature checks lately; the token was not checked")]
    SignatureShed,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("token was issued in the future (`iat`)")]
    IatInFuture,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token lifetime (`exp` - `iat`) exceeds the provider's maximum")]
    LifetimeTooLong,
    #[error("no verified payload from Envoy's jwt_authn for this token (`verification: envoy`)")]
    UnverifiedByEnvoy,
    #[error("Envoy's verified payload is not this token's payload (`verification: envoy`)")]
    EnvoyPayloadMismatch,
    #[error("required claim `{0}` is missing")]
    MissingClaim(String),
    #[error("claim `{0}` has the wrong type")]
    BadClaimType(String),
}

impl TokenError {
    /// A short snake_case reason for stats and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::TooLarge => "too_large",
            TokenError::DuplicateMember => "duplicate_member",
            TokenError::AlgNotAllowed => "alg_not_allowed",
            TokenError::HeaderKeyRefused(_) => "header_key_refused",
            TokenError::CritUnsupported => "crit_unsupported",
            TokenError::ZipUnsupported => "zip_unsupported",
            TokenError::JweUnsupported => "jwe_unsupported",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::KeysNotLoaded => "keys_not_loaded",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::KeyNotUsable => "key_not_usable",
            TokenError::KeyAlgMismatch => "key_alg_mismatch",
            TokenError::BadSignature => "bad_signature",
            TokenError::SignatureShed => "verification_shed",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IatInFuture => "iat_in_future",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::LifetimeTooLong => "lifetime_too_long",
            TokenError::UnverifiedByEnvoy => "unverified_by_envoy",
            TokenError::EnvoyPayloadMismatch => "envoy_payload_mismatch",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::BadClaimType(_) => "bad_claim_type",
        }
    }
}

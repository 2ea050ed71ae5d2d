//! JWT access-token verification (RFC 7519, RFC 8725): key sets, token parsing, signatures,
//! claims. Pure: the clock is a parameter, keys come in as JSON text.
//!
//! INTERFACE (fixed; other modules call these):
//! - `KeySet::from_jwks_json(text, allowed_algorithms) -> Result<KeySet, JwksError>`
//! - `verify_token(token, &[ProviderKeys], now_secs) -> Result<VerifiedToken, TokenError>`

use crate::policy::schema::{Algorithm, Identity, Provider};

/// A validated set of public keys, each bound to exactly one algorithm.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub(crate) keys: Vec<()>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not valid JSON with a `keys` array: {0}")]
    Malformed(String),
}

impl KeySet {
    pub fn from_jwks_json(_text: &str, _allowed: &[Algorithm]) -> Result<KeySet, JwksError> {
        Err(JwksError::Malformed("not implemented yet".into()))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One provider and its current keys (None: a remote JWKS not fetched yet).
pub struct ProviderKeys<'a> {
    pub provider: &'a Provider,
    pub keys: Option<&'a KeySet>,
}

/// The claims hipaa-mesh decides on, taken from a token whose signature and time claims passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub provider: usize,
    pub issuer: String,
    pub subject: Option<String>,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
    pub session: Option<String>,
    pub auth_time: Option<u64>,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
}

pub fn verify_token(
    _token: &str,
    _identity: &Identity,
    _providers: &[ProviderKeys<'_>],
    _now_secs: u64,
) -> Result<VerifiedToken, TokenError> {
    Err(TokenError::Malformed)
}

//! Registered claims (RFC 7519 section 4.1) judged against the provider and an injected clock,
//! and the identity claims hipaa-mesh decides on, taken by the names the policy gives.

use super::TokenError;
use crate::policy::schema::{Identity, Provider};
use serde_json::{Map, Value};

/// Time claims above this (about year 36812) are refused as absurd.
pub const MAX_NUMERIC_DATE: u64 = 1 << 40;

/// The time claims of a token that passed the time rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    pub(crate) auth_time: Option<u64>,
}

/// The identity claims, read by the policy's claim names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdentityClaims {
    pub(crate) subject: Option<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) amr: Vec<String>,
    pub(crate) session: Option<String>,
}

/// `iss`, read before the signature check to pick the provider (and so trusted for nothing
/// else until the provider's key has verified the token).
pub(crate) fn issuer(claims: &Map<String, Value>) -> Result<&str, TokenError> {
    match claims.get("iss") {
        Some(Value::String(iss)) => Ok(iss),
        Some(_) => Err(TokenError::BadClaimType("iss".into())),
        None => Err(TokenError::MissingClaim("iss".into())),
    }
}

/// `aud`: a string or an array of strings, one of which is an audience of the provider.
pub(crate) fn check_audience(
    claims: &Map<String, Value>,
    provider: &Provider,
) -> Result<(), TokenError> {
    let bad = || TokenError::BadClaimType("aud".into());
    let ours = |aud: &str| provider.audiences.iter().any(|a| a == aud);
    let found = match claims.get("aud") {
        None => return Err(TokenError::MissingClaim("aud".into())),
        Some(Value::String(aud)) => ours(aud),
        Some(Value::Array(auds)) => {
            let mut found = false;
            for aud in auds {
                found |= ours(aud.as_str().ok_or_else(bad)?);
            }
            found
        }
        Some(_) => return Err(bad()),
    };
    if found {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}

/// `exp` and `iat` required, `nbf` and `auth_time` optional, all integer NumericDates; the
/// provider's clock skew on every comparison; `exp - iat` within the provider's maximum.
pub(crate) fn check_times(
    claims: &Map<String, Value>,
    provider: &Provider,
    now: u64,
) -> Result<Times, TokenError> {
    let exp = numeric_date(claims, "exp")?.ok_or(TokenError::MissingClaim("exp".into()))?;
    let iat = numeric_date(claims, "iat")?.ok_or(TokenError::MissingClaim("iat".into()))?;
    let nbf = numeric_date(claims, "nbf")?;
    let auth_time = numeric_date(claims, "auth_time")?;
    let skew = provider.clock_skew_seconds;
    // RFC 7519 4.1.4: the current time must be before `exp`.
    if now >= exp.saturating_add(skew) {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(TokenError::NotYetValid);
    }
    if iat > now.saturating_add(skew) {
        return Err(TokenError::IatInFuture);
    }
    if exp.saturating_sub(iat) > provider.max_token_lifetime_seconds {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(Times {
        iat,
        exp,
        auth_time,
    })
}

/// Subject, roles, `amr` and session, by the names in the policy.
pub(crate) fn identity_claims(
    claims: &Map<String, Value>,
    identity: &Identity,
) -> Result<IdentityClaims, TokenError> {
    Ok(IdentityClaims {
        subject: optional_string(claims, &identity.subject_claim)?,
        roles: string_list(claims, &identity.roles_claim)?,
        amr: string_list(claims, "amr")?,
        session: optional_string(claims, &identity.session.session_claim)?,
    })
}

/// An integer NumericDate: a JSON number with no fraction, 0 ..= 2^40. Strings, booleans,
/// negative numbers and fractions are wrongly typed, not absent.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    let bad = || TokenError::BadClaimType(name.into());
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(bad());
    };
    let seconds = match number.as_u64() {
        Some(seconds) => seconds,
        None => match number.as_f64() {
            // `1.7e9` and `1700000000.0` are integers written another way.
            Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= MAX_NUMERIC_DATE as f64 => f as u64,
            _ => return Err(bad()),
        },
    };
    if seconds > MAX_NUMERIC_DATE {
        return Err(bad());
    }
    Ok(Some(seconds))
}

/// A string claim, if present (an empty string is returned as is; the caller judges it).
fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::BadClaimType(name.into())),
    }
}

/// A JSON array of strings, or one space-separated string (OAuth `scope` style); absent is empty.
fn string_list(claims: &Map<String, Value>, name: &str) -> Result<Vec<String>, TokenError> {
    let bad = || TokenError::BadClaimType(name.into());
    match claims.get(name) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

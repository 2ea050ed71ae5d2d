//! The JWS compact form (RFC 7515 section 7.1) and the header rules of RFC 8725: three
//! non-empty base64url segments, strict JSON objects, an allowed `alg`, and no header member
//! that would let the token choose its own key, compression or critical extensions.

use super::json::{parse_object, JsonError};
use super::TokenError;
use crate::policy::schema::Algorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Header members that carry or point at a key: never used, never fetched (RFC 8725 3.10).
const KEY_MEMBERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// A compact JWS split, its header checked, its payload decoded, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct Jws<'t> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    /// The payload octets (any bytes; a JWT's are a JSON object).
    pub(crate) payload: Vec<u8>,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'t str,
    /// The third segment, base64url (checked to decode).
    pub(crate) signature: &'t str,
}

/// A token split and parsed, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct Parsed<'t> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'t str,
    /// The third segment, base64url (checked to decode).
    pub(crate) signature: &'t str,
}

/// The compact form and the header rules, for any payload.
pub(crate) fn parse_jws(token: &str) -> Result<Jws<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    match token.bytes().filter(|b| *b == b'.').count() {
        2 => {}
        4 => return Err(TokenError::JweUnsupported),
        _ => return Err(TokenError::Malformed),
    }
    let mut segments = token.splitn(3, '.');
    let (Some(header), Some(payload_b64), Some(signature)) =
        (segments.next(), segments.next(), segments.next())
    else {
        return Err(TokenError::Malformed);
    };
    // The header first, so `alg: none` is named as such even with an empty signature.
    let (alg, kid) = header_rules(&object(&decode(header)?)?)?;
    let payload = decode(payload_b64)?;
    decode(signature)?;
    let signing_input = token
        .get(..header.len() + 1 + payload_b64.len())
        .ok_or(TokenError::Malformed)?;
    Ok(Jws {
        alg,
        kid,
        payload,
        signing_input,
        signature,
    })
}

/// A JWT: a JWS whose payload is a strict JSON object of claims.
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    let jws = parse_jws(token)?;
    let claims = object(&jws.payload)?;
    Ok(Parsed {
        alg: jws.alg,
        kid: jws.kid,
        claims,
        signing_input: jws.signing_input,
        signature: jws.signature,
    })
}

fn header_rules(header: &Map<String, Value>) -> Result<(Algorithm, Option<String>), TokenError> {
    if let Some(member) = KEY_MEMBERS.into_iter().find(|m| header.contains_key(*m)) {
        return Err(TokenError::HeaderKeyRefused(member));
    }
    if header.contains_key("enc") {
        return Err(TokenError::JweUnsupported);
    }
    // No extension is understood, so any `crit` must be refused (RFC 7515 4.1.11).
    if header.contains_key("crit") {
        return Err(TokenError::CritUnsupported);
    }
    if header.contains_key("zip") {
        return Err(TokenError::ZipUnsupported);
    }
    // RFC 7797 unencoded payloads are not supported (they would need `crit` anyway).
    if header.get("b64").is_some_and(|b| b != &Value::Bool(true)) {
        return Err(TokenError::Malformed);
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        _ => return Err(TokenError::Malformed),
    };
    // Case-sensitive and asymmetric only: `none` (any case) and HS* are not algorithms here.
    let alg = Algorithm::from_name(alg).ok_or(TokenError::AlgNotAllowed)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed),
    };
    Ok((alg, kid))
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, TokenError> {
    parse_object(bytes).map_err(|e| match e {
        JsonError::DuplicateMember => TokenError::DuplicateMember,
        JsonError::Syntax | JsonError::NotObject => TokenError::Malformed,
    })
}

/// Strict base64url: no padding, no other alphabet, no whitespace, canonical trailing bits.
fn decode(segment: &str) -> Result<Vec<u8>, TokenError> {
    if segment.is_empty() {
        return Err(TokenError::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

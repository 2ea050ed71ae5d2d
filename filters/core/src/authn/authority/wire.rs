//! The session authority's wire contract: JSON bodies and the MACs that bind them.
//!
//! Every call and every answer is authenticated with HMAC-SHA256 under the session-authority
//! key (`HIPAA_SESSION_AUTHORITY_KEY`, format of the audit key: `KEYID:HEX` or `HEX`, at least
//! 32 bytes, comma-separated for rotation; the first key signs). The collector's sidecar accepts
//! any certificate of the mesh CA, so without a key any workload could mark a stolen session
//! active or read who is revoked; without the answer's MAC a spoofed collector could answer
//! `active` or an empty revocation list. The answer's MAC covers the request's tag, so an
//! answer cannot be replayed to another request.
//!
//! `x-hipaa-session-mac: keyid=<id>; mac=<64 hex>` with
//! `mac = HMAC(key, label || for each part: u64-BE length || part)`; labels below.

use hmac::Mac;
use serde::{Deserialize, Serialize};

use crate::audit::{MacKey, MacKeyRing};

pub const CHECK_PATH: &str = "/v1/sessions/check";
pub const REVOCATIONS_PATH: &str = "/v1/revocations";
pub const REVOKE_PATH: &str = "/v1/sessions/revoke";
/// Request and answer header carrying the MAC.
pub const MAC_HEADER: &str = "x-hipaa-session-mac";
/// `GET /v1/revocations` request header: the caller's clock (Unix ms, decimal), covered by
/// the request MAC; the collector refuses it outside [`MAX_CLOCK_SKEW_MS`].
pub const TIME_HEADER: &str = "x-hipaa-session-time";
/// The longest issuer, session id, subject or revocation value accepted (bytes).
pub const MAX_FIELD_BYTES: usize = 256;
/// The largest check request body (four fields of 256 bytes, escaped, and numbers fit).
pub const MAX_CHECK_BODY: usize = 4096;
/// The largest check answer (`{"decision":"expired","lastActivityMs":-9223372036854775808}`).
pub const MAX_ANSWER_BYTES: usize = 128;
/// The most revocations in force at once: the collector refuses more, a filter refuses a
/// longer list (and keeps the one it has).
pub const MAX_REVOCATIONS: usize = 1024;
/// The largest revocation list body.
pub const MAX_REVOCATIONS_BODY: usize = 2 * 1024 * 1024;
/// How far a caller's clock (`nowMs`, `x-hipaa-session-time`) may be from the collector's.
pub const MAX_CLOCK_SKEW_MS: i64 = 60_000;
/// The longest a revocation can stay in force (a bound on memory, whatever is asked).
pub const MAX_REVOCATION_TTL_SECONDS: u64 = 7 * 86_400;

/// What a MAC is for: each purpose has its own label, so no tag serves another purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// parts: [request body]
    CheckRequest,
    /// parts: [request tag, answer body]
    CheckAnswer,
    /// parts: [x-hipaa-session-time value]
    RevocationsRequest,
    /// parts: [request tag, status ("200" / "304"), etag, body]
    RevocationsAnswer,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::CheckRequest => b"hipaa-mesh/session-check/v1",
            Purpose::CheckAnswer => b"hipaa-mesh/session-answer/v1",
            Purpose::RevocationsRequest => b"hipaa-mesh/revocations/v1",
            Purpose::RevocationsAnswer => b"hipaa-mesh/revocations-answer/v1",
        }
    }
}

/// Why bytes from the other side were refused. Never carries the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("body too large")]
    TooLarge,
    #[error("body is not the expected JSON")]
    Malformed,
    #[error("a field is empty, too long or out of range")]
    BadField,
    #[error("too many revocations")]
    TooMany,
    #[error("no MAC header, or not `keyid=..; mac=..`")]
    NoMac,
    #[error("the MAC names a key this side does not hold")]
    UnknownKey,
    #[error("the MAC does not verify")]
    BadMac,
}

fn tag(key: &MacKey, purpose: Purpose, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = key.hmac();
    mac.update(purpose.label());
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Seals `parts` for `purpose` with the ring's current key: the header value and the raw tag
/// (the answer to a request is bound to the request's tag).
pub fn seal(ring: &MacKeyRing, purpose: Purpose, parts: &[&[u8]]) -> (String, [u8; 32]) {
    let key = ring.current();
    let t = tag(key, purpose, parts);
    (format!("keyid={}; mac={}", key.id(), hex::encode(t)), t)
}

/// Splits `keyid=ID; mac=HEX` (either order, spaces around `;` allowed). Byte-safe.
fn parse_header(value: &[u8]) -> Option<(&str, [u8; 32])> {
    let text = std::str::from_utf8(value).ok()?;
    let (mut id, mut mac) = (None, None);
    for part in text.split(';') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "keyid" if id.is_none() => id = Some(v.trim()),
            "mac" if mac.is_none() => mac = Some(crate::hex32::decode_lower(v.trim().as_bytes())?),
            _ => return None,
        }
    }
    Some((id?, mac?))
}

/// Checks the MAC header of `parts` for `purpose` against every key of `ring` it names, in
/// constant time; the tag on success (to bind the answer to).
pub fn open(
    ring: &MacKeyRing,
    purpose: Purpose,
    header: Option<&[u8]>,
    parts: &[&[u8]],
) -> Result<[u8; 32], WireError> {
    let (id, given) = header.and_then(parse_header).ok_or(WireError::NoMac)?;
    let key = ring.get(id).ok_or(WireError::UnknownKey)?;
    let expected = tag(key, purpose, parts);
    if bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &given[..])) {
        Ok(expected)
    } else {
        Err(WireError::BadMac)
    }
}

fn field_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_FIELD_BYTES && !s.chars().any(char::is_control)
}

/// `POST /v1/sessions/check` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckRequest {
    /// The token's `iss`.
    pub issuer: String,
    /// The token's session id (`identity.session.sessionClaim`).
    pub session: String,
    /// The token's subject.
    pub subject: String,
    /// The last activity this Envoy saw for the session (Unix ms), null on first sight.
    pub local_last_activity_ms: Option<i64>,
    /// The caller's clock (Unix ms).
    pub now_ms: i64,
    pub idle_timeout_seconds: u64,
    pub absolute_timeout_seconds: u64,
    /// The token's `auth_time` (Unix ms; `iat` when the policy allows that), null if absent.
    pub auth_time_ms: Option<i64>,
}

/// Ten years, the longest timeout either side accepts (anything longer is a mistake).
const MAX_TIMEOUT_SECONDS: u64 = 10 * 366 * 86_400;

impl CheckRequest {
    /// The body bytes (the request MAC covers exactly these).
    pub fn encode(&self) -> Vec<u8> {
        // Strings and integers only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and bounds a body (the collector's side).
    pub fn parse(body: &[u8]) -> Result<CheckRequest, WireError> {
        if body.len() > MAX_CHECK_BODY {
            return Err(WireError::TooLarge);
        }
        let r: CheckRequest = serde_json::from_slice(body).map_err(|_| WireError::Malformed)?;
        let times_ok = r.now_ms > 0
            && r.local_last_activity_ms.is_none_or(|t| t >= 0)
            && r.auth_time_ms.is_none_or(|t| t >= 0);
        let fields_ok = field_ok(&r.issuer) && field_ok(&r.session) && field_ok(&r.subject);
        if !fields_ok
            || !times_ok
            || r.idle_timeout_seconds > MAX_TIMEOUT_SECONDS
            || r.absolute_timeout_seconds > MAX_TIMEOUT_SECONDS
        {
            return Err(WireError::BadField);
        }
        Ok(r)
    }
}

/// `POST /v1/sessions/check` answer (200).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckAnswer {
    pub decision: super::AuthorityDecision,
    /// The session's last activity as the mesh knows it (Unix ms); null when never seen.
    pub last_activity_ms: Option<i64>,
}

impl CheckAnswer {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses an answer (the filter's side): at most [`MAX_ANSWER_BYTES`].
    pub fn parse(body: &[u8]) -> Result<CheckAnswer, WireError> {
        if body.len() > MAX_ANSWER_BYTES {
            return Err(WireError::TooLarge);
        }
        serde_json::from_slice(body).map_err(|_| WireError::Malformed)
    }
}

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationTarget {
    /// Every session of a user (`sub`).
    Subject,
    /// One session id (`sid`).
    Session,
}

impl RevocationTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationTarget::Subject => "subject",
            RevocationTarget::Session => "session",
        }
    }
}

/// One revocation in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Revocation {
    pub target: RevocationTarget,
    pub value: String,
    /// Only tokens of this issuer; null: any issuer.
    pub issuer: Option<String>,
    pub revoked_at_ms: i64,
    pub expires_at_ms: i64,
}

impl Revocation {
    /// Fields within bounds (both sides check).
    pub fn is_valid(&self) -> bool {
        field_ok(&self.value)
            && self.issuer.as_deref().is_none_or(field_ok)
            && self.revoked_at_ms >= 0
            && self.expires_at_ms > self.revoked_at_ms
    }
}

/// `GET /v1/revocations` answer (200): every revocation in force, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevocationList {
    pub revocations: Vec<Revocation>,
}

impl RevocationList {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and bounds a list (the filter's side).
    pub fn parse(body: &[u8]) -> Result<RevocationList, WireError> {
        if body.len() > MAX_REVOCATIONS_BODY {
            return Err(WireError::TooLarge);
        }
        let list: RevocationList =
            serde_json::from_slice(body).map_err(|_| WireError::Malformed)?;
        if list.revocations.len() > MAX_REVOCATIONS {
            return Err(WireError::TooMany);
        }
        if !list.revocations.iter().all(Revocation::is_valid) {
            return Err(WireError::BadField);
        }
        Ok(list)
    }

    /// The list's entity tag: 32 hex of SHA-256 over the body (quoted, as HTTP writes it).
    pub fn etag(body: &[u8]) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(body);
        let head = digest.first_chunk::<16>().copied().unwrap_or([0; 16]);
        format!("\"{}\"", hex::encode(head))
    }
}

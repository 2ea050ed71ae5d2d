//! The read side's credential: `GET /v1/records` and `GET /v1/verify` return decrypted PHI,
//! so the collector itself checks a bearer JWT from the hospital's identity provider (hipaa-core's
//! verification: signature, issuer, audience, time claims) and requires the auditor role. Every
//! read that passes is itself recorded in the ledger ([`crate::trail_access`]).
//!
//! Answers never carry the token or a claim value: 401 (no or bad token) and 403 (no auditor
//! role) have fixed bodies.

use hipaa_core::jwt::{verify_token, KeySet, ProviderKeys};
use hipaa_core::policy::schema::Identity;
use serde_json::json;

/// Environment variables the collector reads the reader settings from (flags win).
pub const ENV_READER_JWKS_FILE: &str = "HIPAA_AUDIT_READER_JWKS_FILE";
pub const ENV_READER_ISSUER: &str = "HIPAA_AUDIT_READER_ISSUER";
pub const ENV_READER_AUDIENCE: &str = "HIPAA_AUDIT_READER_AUDIENCE";
pub const ENV_READER_ROLE: &str = "HIPAA_AUDIT_READER_ROLE";
/// The token `hipaa-mesh audit query|verify --collector` send (never printed).
pub const ENV_READER_TOKEN: &str = "HIPAA_AUDIT_TOKEN";
/// The role a reader's token must carry unless configured otherwise.
pub const DEFAULT_READER_ROLE: &str = "auditor";

/// Who may read the trail: one identity provider, its keys, one required role.
pub struct ReadAuth {
    identity: Identity,
    keys: KeySet,
    role: String,
}

impl std::fmt::Debug for ReadAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAuth")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The reader a token named (its subject and issuer): what the trail-access record keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub subject: String,
    pub issuer: String,
}

/// Why a read was refused: the status and a fixed body (no token, no claim value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no bearer token, or one that does not verify.
    Unauthenticated,
    /// 403: a valid token without the reader role.
    Forbidden,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::Unauthenticated => 401,
            Refusal::Forbidden => 403,
        }
    }

    pub fn body(self) -> serde_json::Value {
        match self {
            Refusal::Unauthenticated => json!({
                "error": "unauthorized",
                "error_description": "reading the audit trail needs a bearer token from the \
                                      auditors' identity provider"
            }),
            Refusal::Forbidden => json!({
                "error": "forbidden",
                "error_description": "the token does not carry the role that may read the \
                                      audit trail"
            }),
        }
    }
}

/// Constant-time equality of two byte strings (the length is not hidden).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ReadAuth {
    /// From a JWKS (JSON text), the issuer, the audience and the required role.
    pub fn new(jwks_json: &str, issuer: &str, audience: &str, role: &str) -> Result<Self, String> {
        if issuer.is_empty() || audience.is_empty() || role.is_empty() {
            return Err("the reader issuer, audience and role must not be empty".into());
        }
        let identity: Identity = serde_json::from_value(json!({
            "providers": [{
                "name": "trail-readers",
                "issuer": issuer,
                "audiences": [audience],
                "jwks": {"inline": "{\"keys\":[]}"}
            }]
        }))
        .map_err(|e| format!("reader identity: {e}"))?;
        let algorithms = identity
            .providers
            .first()
            .map(|p| p.algorithms.clone())
            .unwrap_or_default();
        let keys = KeySet::from_jwks_json(jwks_json, &algorithms)
            .map_err(|e| format!("reader JWKS: {e}"))?;
        Ok(ReadAuth {
            identity,
            keys,
            role: role.to_string(),
        })
    }

    /// Judges the `Authorization` header (raw bytes) at `now_secs`.
    pub fn check(&self, authorization: Option<&[u8]>, now_secs: u64) -> Result<Reader, Refusal> {
        let header = authorization.ok_or(Refusal::Unauthenticated)?;
        let token = header
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
            .and_then(|_| header.get(7..))
            .and_then(|t| std::str::from_utf8(t).ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Unauthenticated)?;
        let Some(provider) = self.identity.providers.first() else {
            return Err(Refusal::Unauthenticated);
        };
        let verified = verify_token(
            token,
            &self.identity,
            &[ProviderKeys {
                provider,
                keys: Some(&self.keys),
            }],
            now_secs,
        )
        .map_err(|_| Refusal::Unauthenticated)?;
        let subject = verified
            .subject
            .filter(|s| !s.is_empty())
            .ok_or(Refusal::Unauthenticated)?;
        // Every role is compared (no early exit on the first match).
        let allowed = verified.roles.iter().fold(false, |acc, r| {
            acc | ct_eq(r.as_bytes(), self.role.as_bytes())
        });
        if !allowed {
            return Err(Refusal::Forbidden);
        }
        Ok(Reader {
            subject,
            issuer: verified.issuer,
        })
    }
}

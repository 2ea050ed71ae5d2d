//! JWKS loading (RFC 7517, RFC 7518 section 6, RFC 8037): every key checked once, bound to its
//! algorithm(s), and parsed into the form the verifier uses, so no token pays for key parsing.

use super::json::{parse_object, JsonError};
use super::TokenError;
use crate::policy::schema::Algorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;

/// A key set larger than this is refused (real sets are a few kilobytes).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// RSA modulus bounds, in bits (RFC 8725 3.5; NIST SP 800-131A for the floor).
pub const MIN_RSA_BITS: usize = 2048;
pub const MAX_RSA_BITS: usize = 8192;
/// jsonwebtoken's RustCrypto backend builds RSA keys with the `rsa` crate's default cap of
/// 4096 bits; larger (accepted) keys are verified with the `rsa` crate directly.
const JWT_BACKEND_MAX_RSA_BITS: usize = 4096;
/// Largest public exponent the `rsa` crate accepts (2^33 - 1).
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

/// JWK members that only private (or symmetric) keys carry.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What checks a signature: a key parsed once at load.
#[derive(Debug, Clone)]
pub(crate) enum Verifier {
    /// Verified by jsonwebtoken (RSA up to 4096 bits, EC, Ed25519).
    Jwt(DecodingKey),
    /// An RSA key above 4096 bits, verified with the `rsa` crate.
    LargeRsa(rsa::RsaPublicKey),
}

/// One usable key.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    /// The algorithms this key may verify: exactly one, except an RSA key without `alg`,
    /// which serves the RSA algorithms of the provider's allow-list.
    pub(crate) algs: Vec<Algorithm>,
    pub(crate) verifier: Verifier,
    /// What makes this key this key: SHA-256 over its `kid`, its algorithms and its public
    /// material. A JWKS refresh keeps the identities verified by a key whose fingerprint is
    /// still in the set, and drops the others ([`KeySet::has_key`]).
    pub(crate) fingerprint: KeyFingerprint,
}

/// See [`Key::fingerprint`].
pub type KeyFingerprint = [u8; 32];

/// A validated set of public keys, each bound to its algorithm(s).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub(crate) keys: Vec<Key>,
    /// `kid`s of keys that were skipped as unusable here (encryption keys, algorithms outside
    /// the allow-list, unsupported curves), so a token naming one is refused without a refetch.
    pub(crate) unusable_kids: Vec<String>,
}

/// Which key of the set an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub index: usize,
    pub kid: Option<String>,
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keys[{}]", self.index)?;
        if let Some(kid) = &self.kid {
            write!(f, " (kid {:?})", clip(kid))?;
        }
        Ok(())
    }
}

/// Why a JWKS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not valid JSON with a `keys` array: {0}")]
    Malformed(String),
    #[error("JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("JWKS has no key usable with the allowed algorithms [{allowed}] (keys for encryption, other algorithms or unsupported curves are skipped)")]
    NoUsableKeys { allowed: String },
    #[error("JWKS {key}: {problem}")]
    Key { key: KeyRef, problem: KeyProblem },
}

/// The rule a key broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("is not a JSON object")]
    NotAnObject,
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("`{0}` must be a string")]
    NotAString(&'static str),
    #[error("`{0}` is not base64url without padding")]
    NotBase64Url(&'static str),
    #[error("carries private key material (`{0}`); a JWKS must hold public keys only")]
    PrivateKey(&'static str),
    #[error(
        "is a symmetric (`oct`) key; only public keys are accepted, HMAC algorithms are refused"
    )]
    Symmetric,
    #[error("has `use` {0:?}; only \"sig\" keys (or \"enc\" keys, which are skipped) may appear")]
    BadUse(String),
    #[error("`key_ops` must be an array of strings")]
    BadKeyOps,
    #[error("has `alg` {0:?}, which is never accepted (`none` and HMAC algorithms are refused)")]
    ForbiddenAlg(String),
    #[error("has `alg` {alg} but `kty` {kty:?}")]
    AlgKtyMismatch { alg: &'static str, kty: String },
    #[error("has `alg` {alg} but `crv` {crv:?}; {alg} needs {needs}")]
    WrongCurve {
        alg: &'static str,
        crv: String,
        needs: &'static str,
    },
    #[error("RSA modulus has {0} bits; accepted: {MIN_RSA_BITS} to {MAX_RSA_BITS}")]
    RsaModulusSize(usize),
    #[error("RSA modulus is even")]
    RsaModulusEven,
    #[error("RSA public exponent must be odd, at least 3 and below 2^33")]
    RsaExponent,
    #[error("is not a valid RSA public key")]
    RsaInvalid,
    #[error("`{member}` must be {bytes} bytes for {crv}")]
    CoordinateLength {
        member: &'static str,
        bytes: usize,
        crv: &'static str,
    },
    #[error("point is not on curve {0}")]
    NotOnCurve(&'static str),
    #[error("is not a valid Ed25519 public key")]
    InvalidEd25519,
    #[error("is a small-order (weak) Ed25519 key")]
    WeakEd25519,
    #[error("`kid` is already used by another key of the set")]
    DuplicateKid,
}

/// A key either loads, or is skipped because it cannot verify tokens for this provider.
enum Loaded {
    Usable(Key),
    Skipped,
}

impl KeySet {
    /// Parse and check a JWKS. `allowed` is the provider's algorithm allow-list.
    pub fn from_jwks_json(text: &str, allowed: &[Algorithm]) -> Result<KeySet, JwksError> {
        if text.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let top = parse_object(text.as_bytes()).map_err(|e| {
            JwksError::Malformed(
                match e {
                    JsonError::Syntax => "not valid JSON",
                    JsonError::NotObject => "not a JSON object",
                    JsonError::DuplicateMember => "an object names the same member twice",
                }
                .into(),
            )
        })?;
        let Some(Value::Array(entries)) = top.get("keys") else {
            return Err(JwksError::Malformed("no `keys` array".into()));
        };
        let mut set = KeySet::default();
        let mut kids = BTreeSet::new();
        for (index, entry) in entries.iter().enumerate() {
            let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
            let at = |problem| JwksError::Key {
                key: KeyRef {
                    index,
                    kid: kid.clone(),
                },
                problem,
            };
            let loaded = load_key(entry, allowed).map_err(at)?;
            if let Some(kid) = &kid {
                if !kids.insert(kid.clone()) {
                    return Err(at(KeyProblem::DuplicateKid));
                }
            }
            match loaded {
                Loaded::Usable(key) => set.keys.push(key),
                Loaded::Skipped => set.unusable_kids.extend(kid),
            }
        }
        if set.keys.is_empty() {
            let names: Vec<&str> = allowed.iter().map(|a| a.name()).collect();
            return Err(JwksError::NoUsableKeys {
                allowed: names.join(", "),
            });
        }
        Ok(set)
    }

    /// Whether a key with this fingerprint is in the set (a cached identity stays valid).
    pub fn has_key(&self, fingerprint: &KeyFingerprint) -> bool {
        self.keys.iter().any(|k| &k.fingerprint == fingerprint)
    }

    /// The same usable keys (kid, algorithms, material), in any order.
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().all(|k| other.has_key(&k.fingerprint))
    }

    /// Usable keys (skipped ones not counted).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token: `kid` selects it; without `kid`, the only key of the set, or the
    /// only key bound to the token's algorithm.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, TokenError> {
        let bound = |key: &Key| key.algs.contains(&alg);
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(key) if bound(key) => Ok(key),
                Some(_) => Err(TokenError::KeyAlgMismatch),
                None if self.unusable_kids.iter().any(|u| u == kid) => {
                    Err(TokenError::KeyNotUsable)
                }
                None => Err(TokenError::UnknownKid),
            },
            None => {
                if let [only] = self.keys.as_slice() {
                    return if bound(only) {
                        Ok(only)
                    } else {
                        Err(TokenError::KeyAlgMismatch)
                    };
                }
                let mut matching = self.keys.iter().filter(|k| bound(k));
                match (matching.next(), matching.next()) {
                    (Some(key), None) => Ok(key),
                    _ => Err(TokenError::UnknownKid),
                }
            }
        }
    }
}

fn load_key(entry: &Value, allowed: &[Algorithm]) -> Result<Loaded, KeyProblem> {
    let Value::Object(m) = entry else {
        return Err(KeyProblem::NotAnObject);
    };
    let kid = opt_str(m, "kid")?.map(str::to_owned);
    let kty = opt_str(m, "kty")?.ok_or(KeyProblem::Missing("kty"))?;
    if kty == "oct" {
        return Err(KeyProblem::Symmetric);
    }
    if let Some(member) = PRIVATE_MEMBERS.into_iter().find(|p| m.contains_key(*p)) {
        return Err(KeyProblem::PrivateKey(member));
    }
    match opt_str(m, "use")? {
        None | Some("sig") => {}
        // An encryption key (Keycloak publishes one beside its signing keys) cannot verify a
        // signature: skipped, not an error, so such sets still load.
        Some("enc") => return Ok(Loaded::Skipped),
        Some(other) => return Err(KeyProblem::BadUse(clip(other))),
    }
    if let Some(ops) = m.get("key_ops") {
        let Value::Array(ops) = ops else {
            return Err(KeyProblem::BadKeyOps);
        };
        if ops.iter().any(|op| !op.is_string()) {
            return Err(KeyProblem::BadKeyOps);
        }
        if !ops.iter().any(|op| op == "verify") {
            return Ok(Loaded::Skipped);
        }
    }
    let declared = match opt_str(m, "alg")? {
        None => None,
        Some(alg) if is_forbidden_alg(alg) => return Err(KeyProblem::ForbiddenAlg(clip(alg))),
        Some(alg) => match Algorithm::from_name(alg) {
            Some(alg) => Some(alg),
            // An algorithm we do not implement (ES512, RSA-OAEP, ...): this key cannot verify
            // our tokens, so it is skipped.
            None => return Ok(Loaded::Skipped),
        },
    };
    let (algs, verifier) = match kty {
        "RSA" => rsa_key(m, declared, allowed)?,
        "EC" => match ec_key(m, declared)? {
            Some(found) => found,
            None => return Ok(Loaded::Skipped),
        },
        "OKP" => match okp_key(m, declared)? {
            Some(found) => found,
            None => return Ok(Loaded::Skipped),
        },
        // Key types we do not implement cannot verify anything: skipped.
        _ => return Ok(Loaded::Skipped),
    };
    // A key whose algorithm the provider does not allow is unusable here: skipped.
    let algs: Vec<Algorithm> = algs.into_iter().filter(|a| allowed.contains(a)).collect();
    if algs.is_empty() {
        return Ok(Loaded::Skipped);
    }
    let fingerprint = fingerprint(m, kid.as_deref(), &algs);
    Ok(Loaded::Usable(Key {
        kid,
        algs,
        verifier,
        fingerprint,
    }))
}

/// [`Key::fingerprint`]: each part length-prefixed, so no two keys can run together.
fn fingerprint(m: &Map<String, Value>, kid: Option<&str>, algs: &[Algorithm]) -> KeyFingerprint {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(b"hipaa-mesh/jwk/v1");
    part(kid.unwrap_or_default().as_bytes());
    part(&[u8::from(kid.is_some())]);
    for alg in algs {
        part(alg.name().as_bytes());
    }
    for member in ["kty", "crv", "n", "e", "x", "y"] {
        part(member.as_bytes());
        part(
            m.get(member)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .as_bytes(),
        );
    }
    h.finalize().into()
}

fn rsa_key(
    m: &Map<String, Value>,
    declared: Option<Algorithm>,
    allowed: &[Algorithm],
) -> Result<(Vec<Algorithm>, Verifier), KeyProblem> {
    if let Some(alg) = declared.filter(|a| !is_rsa(*a)) {
        return Err(KeyProblem::AlgKtyMismatch {
            alg: alg.name(),
            kty: "RSA".into(),
        });
    }
    let n_raw = b64_member(m, "n")?;
    let e_raw = b64_member(m, "e")?;
    let n = strip_leading_zeros(&n_raw);
    let e = strip_leading_zeros(&e_raw);
    let bits = bit_len(n);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeyProblem::RsaModulusSize(bits));
    }
    if n.last().is_some_and(|b| b & 1 == 0) {
        return Err(KeyProblem::RsaModulusEven);
    }
    let exponent = be_u64(e).ok_or(KeyProblem::RsaExponent)?;
    if exponent < 3 || exponent % 2 == 0 || exponent > MAX_RSA_EXPONENT {
        return Err(KeyProblem::RsaExponent);
    }
    let public = rsa::RsaPublicKey::new_with_max_size(
        rsa::BigUint::from_bytes_be(n),
        rsa::BigUint::from_bytes_be(e),
        MAX_RSA_BITS,
    )
    .map_err(|_| KeyProblem::RsaInvalid)?;
    let verifier = if bits <= JWT_BACKEND_MAX_RSA_BITS {
        Verifier::Jwt(DecodingKey::from_rsa_raw_components(n, e))
    } else {
        Verifier::LargeRsa(public)
    };
    let algs = match declared {
        Some(alg) => vec![alg],
        None => allowed.iter().copied().filter(|a| is_rsa(*a)).collect(),
    };
    Ok((algs, verifier))
}

/// `Ok(None)`: a curve we do not implement (P-521, secp256k1), so the key is skipped.
fn ec_key(
    m: &Map<String, Value>,
    declared: Option<Algorithm>,
) -> Result<Option<(Vec<Algorithm>, Verifier)>, KeyProblem> {
    let crv = opt_str(m, "crv")?.ok_or(KeyProblem::Missing("crv"))?;
    if let Some(alg) = declared {
        let needs = match alg {
            Algorithm::ES256 => "P-256",
            Algorithm::ES384 => "P-384",
            _ => {
                return Err(KeyProblem::AlgKtyMismatch {
                    alg: alg.name(),
                    kty: "EC".into(),
                })
            }
        };
        if crv != needs {
            return Err(KeyProblem::WrongCurve {
                alg: alg.name(),
                crv: clip(crv),
                needs,
            });
        }
    }
    let (alg, crv, size) = match crv {
        "P-256" => (Algorithm::ES256, "P-256", 32),
        "P-384" => (Algorithm::ES384, "P-384", 48),
        _ => return Ok(None),
    };
    let mut sec1 = Vec::with_capacity(1 + 2 * size);
    sec1.push(0x04);
    for member in ["x", "y"] {
        let coordinate = b64_member(m, member)?;
        if coordinate.len() != size {
            return Err(KeyProblem::CoordinateLength {
                member,
                bytes: size,
                crv,
            });
        }
        sec1.extend_from_slice(&coordinate);
    }
    let on_curve = match alg {
        Algorithm::ES256 => p256::PublicKey::from_sec1_bytes(&sec1).is_ok(),
        _ => p384::PublicKey::from_sec1_bytes(&sec1).is_ok(),
    };
    if !on_curve {
        return Err(KeyProblem::NotOnCurve(crv));
    }
    Ok(Some((
        vec![alg],
        Verifier::Jwt(DecodingKey::from_ec_der(&sec1)),
    )))
}

/// `Ok(None)`: an OKP curve we do not implement (Ed448) or one for key agreement (X25519).
fn okp_key(
    m: &Map<String, Value>,
    declared: Option<Algorithm>,
) -> Result<Option<(Vec<Algorithm>, Verifier)>, KeyProblem> {
    if let Some(alg) = declared.filter(|a| *a != Algorithm::EdDSA) {
        return Err(KeyProblem::AlgKtyMismatch {
            alg: alg.name(),
            kty: "OKP".into(),
        });
    }
    if opt_str(m, "crv")?.ok_or(KeyProblem::Missing("crv"))? != "Ed25519" {
        return Ok(None);
    }
    let x = b64_member(m, "x")?;
    let bytes: [u8; 32] = x
        .as_slice()
        .try_into()
        .map_err(|_| KeyProblem::CoordinateLength {
            member: "x",
            bytes: 32,
            crv: "Ed25519",
        })?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| KeyProblem::InvalidEd25519)?;
    // Decompression accepts non-canonical encodings (y >= p, or a sign bit on x = 0); RFC 8032
    // 5.1.3 requires the canonical one, so the point must re-encode to exactly these bytes.
    if key.to_edwards().compress().to_bytes() != bytes {
        return Err(KeyProblem::InvalidEd25519);
    }
    if key.is_weak() {
        return Err(KeyProblem::WeakEd25519);
    }
    Ok(Some((
        vec![Algorithm::EdDSA],
        Verifier::Jwt(DecodingKey::from_ed_der(&bytes)),
    )))
}

pub(crate) fn is_rsa(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

/// `none` in any letter case, and every HMAC algorithm: never usable with a public key.
pub(crate) fn is_forbidden_alg(alg: &str) -> bool {
    alg.eq_ignore_ascii_case("none") || alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("hs"))
}

fn opt_str<'m>(
    m: &'m Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'m str>, KeyProblem> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyProblem::NotAString(name)),
    }
}

fn b64_member(m: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, KeyProblem> {
    let text = opt_str(m, name)?.ok_or(KeyProblem::Missing(name))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| KeyProblem::NotBase64Url(name))?;
    if bytes.is_empty() {
        return Err(KeyProblem::Missing(name));
    }
    Ok(bytes)
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// Bits in a big-endian unsigned integer without leading zero bytes.
fn bit_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Values from a key set quoted in an error: bounded, so a hostile set cannot flood a log.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

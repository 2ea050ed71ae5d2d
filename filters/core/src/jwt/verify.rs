//! The verification pipeline: parse, pick the provider by `iss`, pick the key by `kid`, check
//! the signature, then the claims. Nothing from the payload is returned unless the signature
//! held (checked here, or for `verification: envoy` proved by Envoy's verified payload, which
//! is checked last) and every claim rule passed.

use super::envoy::{self, EnvoyPayload};
use super::keys::{Key, Verifier};
use super::{claims, token, ProviderKeys, TokenError, VerifiedToken};
use crate::policy::schema::{Algorithm, Identity, Verification};

/// Verify a compact JWS access token against the providers' current keys at `now_secs`.
/// A token of a `verification: envoy` provider is refused here (no proof from Envoy is given).
pub fn verify_token(
    token: &str,
    identity: &Identity,
    providers: &[ProviderKeys<'_>],
    now_secs: u64,
) -> Result<VerifiedToken, TokenError> {
    verify_token_with(token, identity, providers, now_secs, None, &mut || true)
}

/// [`verify_token`], with what Envoy's jwt_authn verified for this request. For a provider
/// with `verification: wasm` the signature is checked here with its keys (`envoy_payload`
/// is ignored), after asking `may_check_signature` (once every cheap rule has passed; `false`
/// refuses the token with [`TokenError::SignatureShed`]); for `verification: envoy` it is not,
/// and the token passes only when every other rule holds and `envoy_payload` is this token's
/// payload ([`envoy::check`]).
pub fn verify_token_with(
    token: &str,
    identity: &Identity,
    providers: &[ProviderKeys<'_>],
    now_secs: u64,
    envoy_payload: Option<&EnvoyPayload>,
    may_check_signature: &mut dyn FnMut() -> bool,
) -> Result<VerifiedToken, TokenError> {
    let parsed = token::parse(token)?;
    let iss = claims::issuer(&parsed.claims)?;
    let (index, entry) = providers
        .iter()
        .enumerate()
        .find(|(_, p)| p.provider.issuer == iss)
        .ok_or(TokenError::UnknownIssuer)?;
    let provider = entry.provider;
    if !provider.algorithms.contains(&parsed.alg) {
        return Err(TokenError::AlgNotAllowed);
    }
    let mut verified_by = None;
    if provider.verification == Verification::Wasm {
        let keys = entry.keys.ok_or(TokenError::KeysNotLoaded)?;
        let key = keys.select(parsed.kid.as_deref(), parsed.alg)?;
        if !may_check_signature() {
            return Err(TokenError::SignatureShed);
        }
        check_signature(key, parsed.alg, parsed.signing_input, parsed.signature)?;
        verified_by = Some(key.fingerprint);
    }

    let times = claims::check_times(&parsed.claims, provider, now_secs)?;
    claims::check_audience(&parsed.claims, provider)?;
    let who = claims::identity_claims(&parsed.claims, identity)?;
    let verified = VerifiedToken {
        provider: index,
        issuer: provider.issuer.clone(),
        subject: who.subject,
        roles: who.roles,
        amr: who.amr,
        session: who.session,
        auth_time: times.auth_time,
        iat: times.iat,
        exp: times.exp,
        key: verified_by,
    };
    if provider.verification == Verification::Envoy {
        envoy::check(envoy_payload, &verified)?;
    }
    Ok(verified)
}

/// The signature alone, for any JWS payload (RFC 7515 and RFC 7520 examples are not JWTs):
/// the same compact-form and header rules, key selection and signature check as
/// [`verify_token`], no claims. Returns the payload octets. Used by the known-answer tests.
#[cfg(test)]
pub(crate) fn verify_signature(
    token: &str,
    keys: &super::KeySet,
    allowed: &[Algorithm],
) -> Result<Vec<u8>, TokenError> {
    let jws = token::parse_jws(token)?;
    if !allowed.contains(&jws.alg) {
        return Err(TokenError::AlgNotAllowed);
    }
    let key = keys.select(jws.kid.as_deref(), jws.alg)?;
    check_signature(key, jws.alg, jws.signing_input, jws.signature)?;
    Ok(jws.payload)
}

fn check_signature(
    key: &Key,
    alg: Algorithm,
    signing_input: &str,
    signature_b64: &str,
) -> Result<(), TokenError> {
    let valid = match &key.verifier {
        Verifier::Jwt(decoding_key) => jsonwebtoken::crypto::verify(
            signature_b64,
            signing_input.as_bytes(),
            decoding_key,
            jwt_algorithm(alg),
        )
        .unwrap_or(false),
        Verifier::LargeRsa(public) => large_rsa_verify(public, alg, signing_input, signature_b64),
    };
    if valid {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

/// RSA keys above 4096 bits, which jsonwebtoken's RustCrypto backend refuses to build.
fn large_rsa_verify(
    public: &rsa::RsaPublicKey,
    alg: Algorithm,
    signing_input: &str,
    signature_b64: &str,
) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use rsa::{Pkcs1v15Sign, Pss};
    use sha2::{Digest, Sha256, Sha384, Sha512};

    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature_b64) else {
        return false;
    };
    let msg = signing_input.as_bytes();
    let result = match alg {
        Algorithm::RS256 => public.verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(msg),
            &signature,
        ),
        Algorithm::RS384 => public.verify(
            Pkcs1v15Sign::new::<Sha384>(),
            &Sha384::digest(msg),
            &signature,
        ),
        Algorithm::RS512 => public.verify(
            Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(msg),
            &signature,
        ),
        Algorithm::PS256 => public.verify(Pss::new::<Sha256>(), &Sha256::digest(msg), &signature),
        Algorithm::PS384 => public.verify(Pss::new::<Sha384>(), &Sha384::digest(msg), &signature),
        Algorithm::PS512 => public.verify(Pss::new::<Sha512>(), &Sha512::digest(msg), &signature),
        Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => return false,
    };
    result.is_ok()
}

pub(crate) fn jwt_algorithm(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
        Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
        Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
        Algorithm::PS384 => jsonwebtoken::Algorithm::PS384,
        Algorithm::PS512 => jsonwebtoken::Algorithm::PS512,
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
    }
}

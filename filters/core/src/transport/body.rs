//! The bodies of an allowed request: what to verify and sign, and the two integrity steps.

use super::Denial;
use crate::integrity::{self, MacKeyRing, ResponseSigner, ResponseSigningKey};

/// What to do with the bodies of an allowed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodyPlan {
    /// Buffer the request body (up to `max_body_bytes`) and verify its signature header.
    pub verify_request: bool,
    /// Sign the response body as it streams; the signature goes in a trailer (a header when
    /// the response has no body).
    pub sign_response: bool,
    pub max_body_bytes: u32,
}

impl BodyPlan {
    /// A declared or buffered size over the limit.
    pub fn too_large(&self, len: u64) -> bool {
        len > u64::from(self.max_body_bytes)
    }
}

/// `verifyRequests`: the whole request body against its signature header (read before the
/// incoming `x-hipaa-*` headers were removed).
pub fn verify_request_body(
    keys: Option<&MacKeyRing>,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<(), Denial> {
    let keys = keys.ok_or(Denial::IntegrityKeyUnavailable)?;
    let header = signature_header.ok_or(Denial::RequestSignatureMissing)?;
    integrity::verify(keys, header, body).map_err(|_| Denial::RequestSignatureInvalid)
}

/// `signResponses`: a streaming signer for the response body with the response key (Ed25519;
/// the signature goes in a trailer, so nothing is buffered; see [`integrity`]).
pub fn response_signer(key: Option<&ResponseSigningKey>) -> Result<ResponseSigner, Denial> {
    key.map(ResponseSigner::new)
        .ok_or(Denial::IntegrityKeyUnavailable)
}

//! What this shell needs of the host, on the shared adapter `hipaa_host` (every host read as
//! bytes, no call that can panic): the claims Envoy verified, and the shared-data session store.

use hipaa_core::authn::session::{self, SessionKey, SessionState};
use hipaa_core::authn::{SessionStore, SessionStoreUnavailable};
use proxy_wasm::types::Status;

pub use hipaa_host::{count, shared_get, shared_set};

/// Unix seconds from Envoy's clock (0 if the host cannot say; every decision then fails closed
/// on time checks rather than passing).
pub fn now_secs() -> u64 {
    hipaa_host::unix_secs()
}

/// One claim of the payload Envoy's jwt_authn verified and stored under `key` in its
/// dynamic-metadata namespace (a string as its bytes, a number as a little-endian double).
pub fn envoy_claim(key: &str, claim: &str) -> Option<Vec<u8>> {
    hipaa_host::property(&[
        "metadata",
        "filter_metadata",
        hipaa_core::jwt::envoy::NAMESPACE,
        key,
        claim,
    ])
}

/// Sessions in proxy-wasm shared data: one bucket per key, updated with compare-and-swap so
/// concurrent workers never lose an update.
pub struct SharedSessions;

impl SessionStore for SharedSessions {
    fn touch(
        &mut self,
        key: &SessionKey,
        now: u64,
        idle_timeout: u64,
    ) -> Result<SessionState, SessionStoreUnavailable> {
        self.touch_seen(key, now, idle_timeout)
            .map(|(state, _)| state)
    }

    /// The touch, and the bucket's last sighting of the session read in the same pass (the
    /// session authority is told when this Envoy last saw it).
    fn touch_seen(
        &mut self,
        key: &SessionKey,
        now: u64,
        idle_timeout: u64,
    ) -> Result<(SessionState, Option<u64>), SessionStoreUnavailable> {
        let bucket_key = key.bucket_key();
        for _ in 0..16 {
            let (bytes, cas) =
                hipaa_host::shared_read(&bucket_key).map_err(|_| SessionStoreUnavailable)?;
            let bucket = bytes.as_deref().unwrap_or(&[]);
            let (state, updated) = session::touch_update(bucket, key, now, idle_timeout);
            // Only a session not active here is ever checked with the authority: the common
            // path does not decode the bucket twice.
            let last_seen = match state {
                SessionState::Active => None,
                _ => session::last_seen(bucket, key),
            };
            // Unchanged (same second): nothing to write.
            let Some(updated) = updated else {
                return Ok((state, last_seen));
            };
            match hipaa_host::shared_set(&bucket_key, &updated, cas) {
                Ok(()) => return Ok((state, last_seen)),
                Err(Status::CasMismatch) => continue,
                Err(_) => return Err(SessionStoreUnavailable),
            }
        }
        Err(SessionStoreUnavailable)
    }
}

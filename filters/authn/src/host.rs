//! Host adapter: proxy-wasm calls that never panic (the trait helpers unwrap internally),
//! the shared-data session store, and counters.

use hipaa_core::authn::session::{self, SessionKey, SessionState};
use hipaa_core::authn::{SessionStore, SessionStoreUnavailable};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

/// Unix seconds from Envoy's clock (0 if the host cannot say; every decision then fails closed
/// on time checks rather than passing).
pub fn now_secs() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// One claim of the payload Envoy's jwt_authn verified and stored under `key` in its
/// dynamic-metadata namespace (a string as its bytes, a number as a little-endian double).
pub fn envoy_claim(key: &str, claim: &str) -> Option<Vec<u8>> {
    hostcalls::get_property(vec![
        "metadata",
        "filter_metadata",
        hipaa_core::jwt::envoy::NAMESPACE,
        key,
        claim,
    ])
    .ok()
    .flatten()
}

pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
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
        let bucket_key = key.bucket_key();
        for _ in 0..16 {
            let (bytes, cas) =
                hostcalls::get_shared_data(&bucket_key).map_err(|_| SessionStoreUnavailable)?;
            let (state, updated) =
                session::touch(bytes.as_deref().unwrap_or(&[]), key, now, idle_timeout);
            match hostcalls::set_shared_data(&bucket_key, Some(&updated), cas) {
                Ok(()) => return Ok(state),
                Err(Status::CasMismatch) => continue,
                Err(_) => return Err(SessionStoreUnavailable),
            }
        }
        Err(SessionStoreUnavailable)
    }
}

thread_local! {
    static METRICS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Add one to the Envoy counter `name` (shown at /stats as `wasmcustom.<name>`).
pub fn count(name: &str) {
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        let id = match m.get(name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    m.insert(name.to_string(), id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    });
}

//! Remote JWKS: fetched by whichever worker's root context first claims a due fetch (CAS on
//! the shared fetch state), stored in shared data for every worker VM, the last good set kept
//! when a fetch fails. When to fetch is decided by `hipaa_core::authn::jwks_schedule`.

use crate::host;
use hipaa_core::authn::jwks_schedule::FetchState;
use hipaa_core::authn::Authenticator;
use hipaa_core::jwt::KeySet;
use hipaa_core::policy::{Algorithm, Policy};
use proxy_wasm::hostcalls;
use std::collections::HashMap;
use std::time::Duration;

/// A JWKS larger than this is refused rather than buffered.
const MAX_JWKS_BYTES: usize = 256 * 1024;
const DEFAULT_REFRESH: u64 = 300;
const DEFAULT_TIMEOUT_MS: u64 = 5000;

struct Remote {
    provider: usize,
    cluster: String,
    path: String,
    authority: String,
    refresh: u64,
    timeout_ms: u64,
    algorithms: Vec<Algorithm>,
    data_key: String,
    state_key: String,
    /// CAS of the shared JWKS this VM last applied.
    applied: Option<u32>,
}

pub struct JwksFetcher {
    remotes: Vec<Remote>,
    in_flight: HashMap<u32, usize>,
}

impl JwksFetcher {
    /// None when every provider's JWKS is inline.
    pub fn new(policy: &Policy) -> Option<JwksFetcher> {
        let remotes: Vec<Remote> = policy
            .spec
            .identity
            .providers
            .iter()
            .enumerate()
            // `verification: envoy`: Envoy's jwt_authn holds the keys, authn needs none.
            .filter(|(_, p)| p.verification.is_wasm())
            .filter_map(|(i, p)| {
                let cluster = p.jwks.cluster.clone()?;
                Some(Remote {
                    provider: i,
                    authority: p.jwks.authority.clone().unwrap_or_else(|| cluster.clone()),
                    path: p.jwks.path.clone().unwrap_or_default(),
                    refresh: p.jwks.refresh_seconds.unwrap_or(DEFAULT_REFRESH),
                    timeout_ms: p.jwks.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
                    algorithms: p.algorithms.clone(),
                    data_key: format!("hipaa.authn.jwks.{}", p.name),
                    state_key: format!("hipaa.authn.jwks.{}.state", p.name),
                    applied: None,
                    cluster,
                })
            })
            .collect();
        (!remotes.is_empty()).then_some(JwksFetcher {
            remotes,
            in_flight: HashMap::new(),
        })
    }

    pub fn tick(&mut self, now: u64, auth: &mut Authenticator) {
        for i in 0..self.remotes.len() {
            self.apply_shared(i, auth);
            let remote = &self.remotes[i];
            let (bytes, cas) = host::shared_get(&remote.state_key);
            let state = FetchState::decode(bytes.as_deref().unwrap_or_default());
            let in_flight_secs = remote.timeout_ms.div_ceil(1000) + 1;
            if !state.due(now, remote.refresh, in_flight_secs) {
                continue;
            }
            if host::shared_set(&remote.state_key, &state.claim(now).encode(), cas).is_err() {
                continue; // another worker claimed it
            }
            let headers = vec![
                (":method", "GET"),
                (":path", remote.path.as_str()),
                (":authority", remote.authority.as_str()),
                ("accept", "application/json"),
            ];
            match hostcalls::dispatch_http_call(
                &remote.cluster,
                headers,
                None,
                vec![],
                Duration::from_millis(remote.timeout_ms),
            ) {
                Ok(token) => {
                    self.in_flight.insert(token, i);
                }
                Err(_) => {
                    log::warn!(
                        "hipaa-authn: JWKS fetch could not be dispatched to cluster {}",
                        remote.cluster
                    );
                    self.record(i, now, false);
                }
            }
        }
    }

    pub fn on_response(&mut self, token: u32, body_size: usize, auth: &mut Authenticator) {
        let Some(i) = self.in_flight.remove(&token) else {
            return;
        };
        let now = host::now_secs();
        let status = hipaa_host::call_response_status();
        let body = hipaa_host::call_response_body(body_size, MAX_JWKS_BYTES);
        let remote = &self.remotes[i];
        let keys = match (status.as_deref(), &body) {
            (Some("200"), Some(body)) => std::str::from_utf8(body).ok().and_then(|text| {
                KeySet::from_jwks_json(text, &remote.algorithms)
                    .map_err(|e| {
                        log::warn!(
                            "hipaa-authn: JWKS from cluster {} refused: {e}",
                            remote.cluster
                        );
                    })
                    .ok()
            }),
            _ => None,
        };
        match (keys, body) {
            (Some(keys), Some(body)) => {
                if host::shared_set(&remote.data_key, &body, None).is_ok() {
                    auth.set_keys(remote.provider, keys);
                    let (_, cas) = host::shared_get(&remote.data_key);
                    self.remotes[i].applied = cas;
                }
                self.record(i, now, true);
            }
            _ => {
                log::warn!(
                    "hipaa-authn: JWKS fetch from cluster {} failed (status {}); keeping the last good set",
                    remote.cluster,
                    status.as_deref().unwrap_or("none")
                );
                self.record(i, now, false);
            }
        }
    }

    /// A token named an unknown `kid`: ask each remote set for one rate-limited refetch.
    pub fn request_refetch_all(&self, now: u64) {
        for remote in &self.remotes {
            let (bytes, cas) = host::shared_get(&remote.state_key);
            let state = FetchState::decode(bytes.as_deref().unwrap_or_default());
            if let Some(next) = state.request_refetch(now) {
                let _ = host::shared_set(&remote.state_key, &next.encode(), cas);
            }
        }
    }

    /// Adopt the set another worker fetched, if it changed since this VM last looked.
    pub fn apply_shared(&mut self, i: usize, auth: &mut Authenticator) {
        let remote = &self.remotes[i];
        let (bytes, cas) = host::shared_get(&remote.data_key);
        if cas.is_none() || cas == remote.applied {
            return;
        }
        let parsed = bytes
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|text| KeySet::from_jwks_json(text, &remote.algorithms).ok());
        if let Some(keys) = parsed {
            auth.set_keys(remote.provider, keys);
        }
        self.remotes[i].applied = cas;
    }

    /// Pick up shared keys for providers this VM has none for yet (a new worker, or the first
    /// fetch just landed).
    pub fn apply_missing(&mut self, auth: &mut Authenticator) {
        for i in 0..self.remotes.len() {
            if !auth.has_keys(self.remotes[i].provider) {
                self.apply_shared(i, auth);
            }
        }
    }

    fn record(&self, i: usize, now: u64, ok: bool) {
        let remote = &self.remotes[i];
        host::count(if ok {
            "hipaa_authn.jwks.fetch_ok"
        } else {
            "hipaa_authn.jwks.fetch_failed"
        });
        for _ in 0..8 {
            let (bytes, cas) = host::shared_get(&remote.state_key);
            let state = FetchState::decode(bytes.as_deref().unwrap_or_default());
            let next = if ok {
                state.succeeded(now)
            } else {
                state.failed(now)
            };
            if host::shared_set(&remote.state_key, &next.encode(), cas).is_ok() {
                return;
            }
        }
    }
}

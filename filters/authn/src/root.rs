//! Root context: load the policy (refuse to start on any error), keep the remote JWKS fresh
//! on a timer, and hand each request to an HTTP context.

use crate::authority::{Authority, RevocationPuller};
use crate::host;
use crate::http::{AuthnHttp, UnconfiguredHttp};
use crate::jwks::JwksFetcher;
use hipaa_core::authn::Authenticator;
use hipaa_core::policy::Policy;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// How often the root context looks at the remote JWKS schedule.
pub const JWKS_TICK: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct AuthnRoot {
    state: Option<Rc<Shared>>,
}

/// What the root context shares with the HTTP contexts of its VM.
pub struct Shared {
    pub policy: Rc<Policy>,
    pub auth: RefCell<Authenticator>,
    pub jwks: RefCell<Option<JwksFetcher>>,
    /// `identity.session.authority` and its key, if configured.
    pub authority: Option<Authority>,
    pub revocations: RefCell<RevocationPuller>,
}

impl AuthnRoot {
    /// Takes a parsed policy (the combined root parses it once for every stage); the tick
    /// period this stage needs (remote JWKS only), or None.
    /// Without a usable session-authority key the stage is left unconfigured (one log line
    /// naming the variable; `state()` is None and the root refuses to start).
    pub fn configure(&mut self, policy: Rc<Policy>) -> Option<Duration> {
        let authority = match Authority::load(&policy) {
            Ok(a) => a,
            Err(line) => {
                log::error!("hipaa-authn: {line}");
                self.state = None;
                return None;
            }
        };
        let auth = Authenticator::new(&policy);
        let fetcher = JwksFetcher::new(&policy);
        let jwks_tick = fetcher.is_some().then_some(JWKS_TICK);
        // Revocations are pulled every `revocationsRefreshMs` (the tick may be shorter).
        let pull_tick = authority
            .as_ref()
            .map(|a| Duration::from_millis(a.config.revocations_refresh_ms.min(500)));
        let tick = match (jwks_tick, pull_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.state = Some(Rc::new(Shared {
            auth: RefCell::new(auth),
            jwks: RefCell::new(fetcher),
            authority,
            revocations: RefCell::new(RevocationPuller::default()),
            policy,
        }));
        tick
    }

    /// The root's timer: the JWKS schedule and the revocation pull.
    pub fn tick(&self) {
        let Some(state) = &self.state else {
            return;
        };
        if let Some(fetcher) = state.jwks.borrow_mut().as_mut() {
            fetcher.tick(host::now_secs(), &mut state.auth.borrow_mut());
        }
        if let Some(authority) = &state.authority {
            state.revocations.borrow_mut().tick(
                authority,
                &state.auth.borrow().revocations,
                hipaa_host::unix_millis(),
            );
        }
    }

    pub fn state(&self) -> Option<Rc<Shared>> {
        self.state.clone()
    }
}

impl Context for AuthnRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(state) = &self.state {
            if let Some(authority) = &state.authority {
                let mut auth = state.auth.borrow_mut();
                if state.revocations.borrow_mut().on_response(
                    token,
                    body_size,
                    authority,
                    &mut auth.revocations,
                    hipaa_host::unix_millis(),
                ) {
                    return;
                }
            }
            if let Some(fetcher) = state.jwks.borrow_mut().as_mut() {
                fetcher.on_response(token, body_size, &mut state.auth.borrow_mut());
            }
        }
    }
}

impl RootContext for AuthnRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hipaa_host::plugin_configuration();
        let policy = match Policy::from_plugin_config(&config) {
            Ok(policy) => policy,
            Err(errors) => {
                log::error!("hipaa-authn: {}", errors.summary());
                return false;
            }
        };
        let tick = self.configure(Rc::new(policy));
        if self.state.is_none() {
            return false;
        }
        if let Some(period) = tick {
            if !hipaa_host::set_tick_period(period) {
                log::warn!(
                    "hipaa-authn: the host refused the tick period; remote JWKS are not refreshed"
                );
            }
        }
        log::info!("hipaa-authn: policy loaded");
        true
    }

    fn on_tick(&mut self) {
        self.tick();
    }

    /// Never None (the SDK panics on None): without a valid policy, a context that refuses
    /// every request with `filter_unconfigured`.
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.state.clone() {
            Some(state) => Some(Box::new(AuthnHttp::new(state))),
            None => Some(Box::new(UnconfiguredHttp)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

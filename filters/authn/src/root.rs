//! Root context: load the policy (refuse to start on any error), keep the remote JWKS fresh
//! on a timer, and hand each request to an HTTP context.

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
}

impl AuthnRoot {
    /// Takes a parsed policy (the combined root parses it once for every stage); the tick
    /// period this stage needs (remote JWKS only), or None.
    pub fn configure(&mut self, policy: Rc<Policy>) -> Option<Duration> {
        let auth = Authenticator::new(&policy);
        let fetcher = JwksFetcher::new(&policy);
        let tick = fetcher.is_some().then_some(JWKS_TICK);
        self.state = Some(Rc::new(Shared {
            auth: RefCell::new(auth),
            jwks: RefCell::new(fetcher),
            policy,
        }));
        tick
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
        if let Some(period) = self.configure(Rc::new(policy)) {
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
        if let Some(state) = &self.state {
            if let Some(fetcher) = state.jwks.borrow_mut().as_mut() {
                fetcher.tick(host::now_secs(), &mut state.auth.borrow_mut());
            }
        }
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

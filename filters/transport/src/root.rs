//! Root context: parse and validate the policy, load the integrity keys (one per purpose:
//! the request-body HMAC key and the response Ed25519 key, never the audit MAC key), hand them
//! to each request. An invalid policy or an unusable key refuses to start, with one log line.

use crate::host;
use crate::http::TransportHttp;
use hipaa_core::integrity::{self, MacKeyRing, ResponseSigningKey};
use hipaa_core::policy::Policy;
use hipaa_core::transport::Denial;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::rc::Rc;

/// What every request of this VM runs on.
pub struct Config {
    pub policy: Rc<Policy>,
    /// Present when some route verifies request bodies.
    pub request_keys: Option<MacKeyRing>,
    /// Present when some route signs responses.
    pub response_key: Option<ResponseSigningKey>,
}

#[derive(Default)]
pub struct TransportRoot {
    config: Option<Rc<Config>>,
}

impl Context for TransportRoot {}

impl TransportRoot {
    /// Takes a parsed policy (the combined root parses it once for every stage) and loads the
    /// keys of this stage's purpose; false (with one log line) when a key is unusable.
    pub fn configure(&mut self, policy: Rc<Policy>) -> bool {
        let env = |name: &str| std::env::var(name).ok();
        let keys = integrity::load_request_keys(
            &policy,
            env(integrity::request_key_env(&policy)).as_deref(),
        )
        .and_then(|request| {
            integrity::load_response_key(
                &policy,
                env(integrity::response_key_env(&policy)).as_deref(),
            )
            .map(|response| (request, response))
        });
        let (request_keys, response_key) = match keys {
            Ok(k) => k,
            Err(message) => {
                host::log_error(&format!("hipaa-transport: {message}"));
                return false;
            }
        };
        // Define every counter up front so /stats shows zeros rather than nothing.
        for name in host::COUNTERS
            .iter()
            .map(|c| c.to_string())
            .chain(Denial::CODES.iter().map(|c| host::denial_counter(c)))
        {
            host::define_counter(&name);
        }
        self.config = Some(Rc::new(Config {
            policy,
            request_keys,
            response_key,
        }));
        true
    }

    pub fn config(&self) -> Option<Rc<Config>> {
        self.config.clone()
    }
}

impl RootContext for TransportRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = host::buffer(BufferType::PluginConfiguration, plugin_configuration_size);
        let policy = match Policy::from_plugin_config(&bytes) {
            Ok(p) => p,
            Err(errors) => {
                host::log_error(&format!("hipaa-transport: {}", errors.summary()));
                return false;
            }
        };
        self.configure(Rc::new(policy))
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // on_configure returned false when there is no config, and Envoy then refuses the
        // plugin; should a context be asked for anyway, it refuses every request.
        Some(Box::new(TransportHttp::new(self.config.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

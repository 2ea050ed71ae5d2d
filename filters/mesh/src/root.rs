//! The combined root (`hipaa-mesh`): parses the policy once per VM, configures the three
//! stages from it (audit's chain and delivery, transport's keys, authn's key sets and JWKS
//! schedule) and hands every request to one [`MeshHttp`]. Refuses to start if any stage
//! would (no `spec.audit`, an unusable key): the chain runs whole or not at all.

use crate::connection;
use crate::http::MeshHttp;
use hipaa_audit::root::AuditRoot;
use hipaa_authn::http::UnconfiguredHttp;
use hipaa_authn::root::AuthnRoot;
use hipaa_core::policy::Policy;
use hipaa_transport::root::TransportRoot;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

/// What every request of this VM runs on.
pub struct Stages {
    pub audit: Rc<hipaa_audit::root::Shared>,
    pub transport: Rc<hipaa_transport::root::Config>,
    pub authn: Rc<hipaa_authn::root::Shared>,
    pub connections: RefCell<connection::Cache>,
}

impl Stages {
    /// The current connection's facts: read on its first request, remembered after.
    pub fn connection(&self) -> connection::Facts {
        let id = connection::current_id();
        match self.connections.try_borrow_mut() {
            Ok(mut cache) => cache.get_or_read(id, connection::Facts::read),
            Err(_) => connection::Facts::read(),
        }
    }
}

pub struct MeshRoot {
    audit: AuditRoot,
    transport: TransportRoot,
    authn: AuthnRoot,
    stages: Option<Rc<Stages>>,
}

impl MeshRoot {
    pub fn new(context_id: u32) -> MeshRoot {
        MeshRoot {
            audit: AuditRoot::new(context_id),
            transport: TransportRoot::default(),
            authn: AuthnRoot::default(),
            stages: None,
        }
    }
}

impl Context for MeshRoot {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        // Tokens are unique per VM: each stage answers only its own calls (the collector's
        // batch, a JWKS fetch).
        self.audit
            .on_http_call_response(token, headers, body, trailers);
        self.authn
            .on_http_call_response(token, headers, body, trailers);
    }

    fn on_done(&mut self) -> bool {
        self.audit.on_done()
    }
}

impl RootContext for MeshRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hipaa_host::plugin_configuration();
        let policy = match Policy::from_plugin_config(&config) {
            Ok(policy) => Rc::new(policy),
            Err(errors) => {
                log::error!("hipaa-mesh: {}", errors.summary());
                return false;
            }
        };
        let Some(audit_tick) = self.audit.configure(policy.clone()) else {
            return false;
        };
        if !self.transport.configure(policy.clone()) {
            return false;
        }
        let authn_tick = self.authn.configure(policy);
        let (Some(audit), Some(transport), Some(authn)) = (
            self.audit.shared(),
            self.transport.config(),
            self.authn.state(),
        ) else {
            return false;
        };
        let tick = authn_tick.map_or(audit_tick, |t| t.min(audit_tick));
        if !hipaa_host::set_tick_period(tick) {
            log::warn!("hipaa-mesh: the host refused the tick period; records are sent as the queue fills and remote JWKS are not refreshed");
        }
        self.stages = Some(Rc::new(Stages {
            audit,
            transport,
            authn,
            connections: RefCell::new(connection::Cache::default()),
        }));
        log::info!("hipaa-mesh: policy loaded; audit, transport and authn in one filter");
        true
    }

    fn on_tick(&mut self) {
        self.audit.on_tick();
        self.authn.on_tick();
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        self.audit.on_queue_ready(queue_id);
    }

    /// Never None (the SDK panics on None): without a configuration, a context that refuses
    /// every request with `filter_unconfigured`.
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.stages.clone() {
            Some(stages) => Some(Box::new(MeshHttp::new(stages))),
            None => Some(Box::new(UnconfiguredHttp)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

//! The root context of every plugin: the root id (`plugin_root_id`, known once the host
//! configures the plugin) picks the root it stands for, and every callback goes to it.

use crate::root::MeshRoot;
use hipaa_audit::root::AuditRoot;
use hipaa_authn::http::UnconfiguredHttp;
use hipaa_authn::root::AuthnRoot;
use hipaa_transport::root::TransportRoot;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

/// The root ids this module answers to.
pub const ROOT_IDS: [&str; 4] = [
    "hipaa-mesh",
    "hipaa-audit",
    "hipaa-transport",
    "hipaa-authn",
];

pub struct Dispatch {
    context_id: u32,
    inner: Option<Box<dyn RootContext>>,
}

impl Dispatch {
    pub fn new(context_id: u32) -> Dispatch {
        Dispatch {
            context_id,
            inner: None,
        }
    }
}

/// The root for a root id; None for an id this module does not know.
fn root_for(root_id: &str, context_id: u32) -> Option<Box<dyn RootContext>> {
    Some(match root_id {
        "hipaa-mesh" => Box::new(MeshRoot::new(context_id)),
        "hipaa-audit" => Box::new(AuditRoot::new(context_id)),
        "hipaa-transport" => Box::new(TransportRoot::default()),
        "hipaa-authn" => Box::new(AuthnRoot::default()),
        _ => return None,
    })
}

impl Context for Dispatch {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_http_call_response(token, headers, body, trailers);
        }
    }

    fn on_done(&mut self) -> bool {
        self.inner.as_mut().is_none_or(|inner| inner.on_done())
    }
}

impl RootContext for Dispatch {
    fn on_configure(&mut self, size: usize) -> bool {
        if self.inner.is_none() {
            let root_id = hipaa_host::string_property(&["plugin_root_id"]).unwrap_or_default();
            self.inner = root_for(&root_id, self.context_id);
            if self.inner.is_none() {
                log::error!(
                    "hipaa_mesh.wasm: unknown root_id `{root_id}`; use one of {}",
                    ROOT_IDS.join(", ")
                );
                return false;
            }
        }
        self.inner
            .as_mut()
            .is_some_and(|inner| inner.on_configure(size))
    }

    fn on_tick(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_tick();
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_queue_ready(queue_id);
        }
    }

    /// Never None (the SDK panics on None): an unknown root id refuses every request.
    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.inner.as_ref() {
            Some(inner) => inner.create_http_context(context_id),
            None => Some(Box::new(UnconfiguredHttp)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

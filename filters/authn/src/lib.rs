//! hipaa_authn.wasm: verifies the access token and enforces unique user identification,
//! MFA, session timeouts, break-the-glass and per-route roles (45 CFR 164.312(a), (d)).
//! A thin shell: it gathers facts from Envoy, asks `hipaa_core::authn::decide`, and applies
//! the verdict. No policy decision is made here.

mod host;
mod http;
mod jwks;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    hipaa_host::install_panic_hook("hipaa-authn");
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::AuthnRoot::default()) });
}}

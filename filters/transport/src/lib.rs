//! hipaa_transport.wasm: transmission security and integrity (45 CFR 164.312(e)(1), (c)(1),
//! and the mTLS half of (d)): refuses plaintext, weak TLS, missing client certificates and
//! unlisted SPIFFE peers inbound; refuses egress to hosts without a current BAA outbound; signs
//! response bodies and verifies request body signatures on the routes that ask for it.
//!
//! A thin shell: it reads Envoy's connection attributes and the request line, asks
//! `hipaa_core::transport::decide` and `hipaa_core::integrity`, and applies the answer.
//! No policy decision is made here, and nothing here may panic (a panic kills the worker's VM).

mod host;
mod http;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    hipaa_host::install_panic_hook("hipaa-transport");
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::TransportRoot::default()) });
}}

//! hipaa_audit.wasm: records every PHI access and every denied request, sealed into a per-VM
//! hash chain with an HMAC, and delivers the records to the collector without losing any
//! (45 CFR 164.312(b) audit controls). First in the filter chain, so it sees every outcome.
//! A thin shell: what is recorded, the record, the buffer and the delivery are decided in
//! `hipaa_core::audit`; see `root` for the queue / chain / delivery design.

mod host;
mod http;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    hipaa_host::install_panic_hook("hipaa-audit");
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> { Box::new(root::AuditRoot::new(context_id)) });
}}

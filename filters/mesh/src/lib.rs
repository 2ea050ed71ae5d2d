//! hipaa_mesh.wasm: the one module of hipaa-mesh. Its root id picks what a filter runs:
//!
//! - `hipaa-mesh`: the combined filter — transport, authn and audit as stages of one HTTP
//!   context (one VM per worker for the whole chain, the policy parsed once per VM, the request
//!   header map read once, connection facts read once per connection, no `x-hipaa-*` header
//!   handed between stages; only the identity headers reach the application).
//! - `hipaa-audit`, `hipaa-transport`, `hipaa-authn`: one stage alone, as the three modules
//!   used to be (audit alone is common), chained with `x-hipaa-*` request headers.
//!
//! Every decision is `hipaa_core`'s; the stages are the shells in `hipaa-audit`,
//! `hipaa-transport` and `hipaa-authn`.

mod connection;
mod dispatch;
mod http;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    hipaa_host::install_panic_hook("hipaa-mesh");
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> { Box::new(dispatch::Dispatch::new(context_id)) });
}}

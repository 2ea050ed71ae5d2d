//! What this shell needs of the host, on the shared adapter `hipaa_host` (every host read as
//! bytes, no call that can panic): its counters and its header reads (the local reply is `hipaa_host::send_reply`).

use proxy_wasm::types::MapType;

/// Counters besides one per denial reason (shown at /stats as `wasmcustom.<name>`).
pub const ALLOW_INBOUND: &str = "hipaa_transport.allow.inbound";
pub const ALLOW_EGRESS: &str = "hipaa_transport.allow.egress";
pub const SIGNED: &str = "hipaa_transport.integrity.signed";
pub const VERIFIED: &str = "hipaa_transport.integrity.verified";
pub const COUNTERS: [&str; 4] = [ALLOW_INBOUND, ALLOW_EGRESS, SIGNED, VERIFIED];

/// The prefix of the per-reason denial counters (`hipaa_transport.deny.<code>`).
pub const DENY: &str = "hipaa_transport.deny";

pub fn denial_counter(code: &str) -> String {
    format!("{DENY}.{code}")
}

pub use hipaa_host::{
    bool_property, buffer, count, define_counter, int_property, log_error, log_warn, remove_header,
    string_property,
};

/// Unix seconds from Envoy's clock; None if the host cannot say.
pub fn now_secs() -> Option<i64> {
    hipaa_host::since_epoch().and_then(|d| i64::try_from(d.as_secs()).ok())
}

pub fn set_header(map: MapType, name: &str, value: &str) {
    if !hipaa_host::set_header(map, name, Some(value)) {
        log_warn(&format!("hipaa-transport: could not set header {name}"));
    }
}

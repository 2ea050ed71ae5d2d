//! Host adapter: proxy-wasm calls that never panic on a host error (the SDK's trait helpers
//! unwrap internally), attribute decoding, and counters.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

/// Counters besides one per denial reason (shown at /stats as `wasmcustom.<name>`).
pub const ALLOW_INBOUND: &str = "hipaa_transport.allow.inbound";
pub const ALLOW_EGRESS: &str = "hipaa_transport.allow.egress";
pub const SIGNED: &str = "hipaa_transport.integrity.signed";
pub const VERIFIED: &str = "hipaa_transport.integrity.verified";
pub const COUNTERS: [&str; 4] = [ALLOW_INBOUND, ALLOW_EGRESS, SIGNED, VERIFIED];

pub fn denial_counter(code: &str) -> String {
    format!("hipaa_transport.deny.{code}")
}

pub fn log_error(message: &str) {
    let _ = hostcalls::log(LogLevel::Error, message);
}

pub fn log_warn(message: &str) {
    let _ = hostcalls::log(LogLevel::Warn, message);
}

/// Unix seconds from Envoy's clock; None if the host cannot say.
pub fn now_secs() -> Option<i64> {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// A whole buffer (plugin configuration, a body); empty if the host has none or fails.
pub fn buffer(kind: BufferType, size: usize) -> Vec<u8> {
    hostcalls::get_buffer(kind, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Raw bytes of a property; None when missing or unreadable.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// A string attribute (`connection.tls_version`, ...). Not UTF-8 counts as unreadable.
pub fn string_property(path: &[&str]) -> Option<String> {
    property(path).and_then(|b| String::from_utf8(b).ok())
}

/// A bool attribute: Envoy serialises a CEL bool as one byte.
pub fn bool_property(path: &[&str]) -> Option<bool> {
    decode_bool(&property(path)?)
}

/// An int64 attribute: eight bytes, little-endian.
pub fn int_property(path: &[&str]) -> Option<i64> {
    decode_i64(&property(path)?)
}

pub fn decode_bool(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }
}

pub fn decode_i64(bytes: &[u8]) -> Option<i64> {
    <[u8; 8]>::try_from(bytes).ok().map(i64::from_le_bytes)
}

/// One header value; a value that is not UTF-8 is treated as absent (the SDK's string getter
/// would panic on it).
pub fn header(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Header names of a map (values not needed, and not decoded).
pub fn header_names(map: MapType) -> Vec<String> {
    hostcalls::get_map_bytes(map)
        .map(|pairs| pairs.into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default()
}

pub fn set_header(map: MapType, name: &str, value: &str) {
    if hostcalls::set_map_value(map, name, Some(value)).is_err() {
        log_warn(&format!("hipaa-transport: could not set header {name}"));
    }
}

pub fn remove_header(map: MapType, name: &str) {
    let _ = hostcalls::remove_map_value(map, name);
}

/// The local reply; Envoy stops the filter chain for the request. It carries the reason as
/// `x-hipaa-denial` too (the body's `error` says the same to the client).
pub fn send_reply(status: u32, reason: &str, body: &str) {
    let headers = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("x-hipaa-denial", reason),
    ];
    if hostcalls::send_http_response(status, headers, Some(body.as_bytes())).is_err() {
        log_error("hipaa-transport: could not send the local reply");
    }
}

thread_local! {
    static METRICS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

pub fn define_counter(name: &str) -> Option<u32> {
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(id) = m.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
        m.insert(name.to_string(), id);
        Some(id)
    })
}

/// Add one to the counter `name`.
pub fn count(name: &str) {
    if let Some(id) = define_counter(name) {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_decoding() {
        assert_eq!(decode_bool(&[1]), Some(true));
        assert_eq!(decode_bool(&[0]), Some(false));
        assert_eq!(decode_bool(&[]), None);
        assert_eq!(decode_bool(&[1, 0]), None);
        assert_eq!(decode_i64(&2i64.to_le_bytes()), Some(2));
        assert_eq!(decode_i64(&[2, 0, 0]), None);
    }
}

//! Host adapter: proxy-wasm calls that never panic on a host error (the SDK's trait helpers
//! unwrap internally), attribute decoding, the shared buffered count, and counters.

use hipaa_core::audit::buffer;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

/// Records handed to the queue by requests.
pub const ENQUEUED: &str = "hipaa_audit.records.enqueued";
/// Records sent to the collector (each attempt of a batch counts its records).
pub const SENT: &str = "hipaa_audit.records.sent";
/// Records the collector acknowledged (durable).
pub const ACKED: &str = "hipaa_audit.records.acked";
/// Batches that failed (no answer, non-2xx, not dispatched) and will be retried.
pub const RETRIED: &str = "hipaa_audit.batches.retried";
/// PHI requests refused with 503 while the buffer was full (failClosed).
pub const BUFFER_FULL_503: &str = "hipaa_audit.buffer_full_503";
/// PHI requests let through unaudited while the buffer was full (failOpen).
pub const BUFFER_FULL_PASS: &str = "hipaa_audit.buffer_full_pass";
/// Records dropped past the hard limit.
pub const DROPPED: &str = "hipaa_audit.records.dropped";
/// Requests that arrived with `x-hipaa-*` headers (removed).
pub const SPOOFED: &str = "hipaa_audit.spoofed_headers";
pub const COUNTERS: [&str; 8] = [
    ENQUEUED,
    SENT,
    ACKED,
    RETRIED,
    BUFFER_FULL_503,
    BUFFER_FULL_PASS,
    DROPPED,
    SPOOFED,
];

/// The shared-data key of the Envoy-wide count of unacknowledged records.
pub const BUFFERED_KEY: &str = "hipaa.audit.buffered";
/// The shared-data key of the counter that makes chain ids unique per VM.
pub const VM_COUNTER_KEY: &str = "hipaa.audit.vm-counter";

/// Unix milliseconds from Envoy's clock (0 if the host cannot say).
pub fn now_millis() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Unix nanoseconds from Envoy's clock (0 if the host cannot say).
pub fn now_nanos() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// One header value; a value that is not UTF-8 is treated as absent.
pub fn header(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Every header of a map, names lowercase as Envoy keeps them.
pub fn header_pairs(map: MapType) -> Vec<(String, Vec<u8>)> {
    hostcalls::get_map_bytes(map).unwrap_or_default()
}

/// A header from [`header_pairs`], as [`header`] would answer it; values that are not UTF-8
/// are left out.
pub fn lookup(pairs: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    // A repeated header reads as its values joined by commas, as Envoy's single-header call
    // hands it over (so the record sees what the upstream sees).
    let values: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

pub fn remove_header(map: MapType, name: &str) {
    let _ = hostcalls::remove_map_value(map, name);
}

/// A string attribute; None when missing, unreadable or not UTF-8.
pub fn string_property(path: &[&str]) -> Option<String> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

/// A map attribute (e.g. `request.headers`), which the host hands over in the header-map pairs
/// encoding; None when missing, unreadable or not such a map.
pub fn map_property(path: &[&str]) -> Option<Vec<(String, Vec<u8>)>> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .and_then(|b| hipaa_core::headers::decode_pairs(&b))
}

/// An int64 attribute (eight bytes, little-endian).
pub fn int_property(path: &[&str]) -> Option<i64> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(i64::from_le_bytes)
}

/// The Envoy-wide count of records not yet acknowledged.
pub fn buffered() -> u64 {
    let (bytes, _) = hostcalls::get_shared_data(BUFFERED_KEY).unwrap_or((None, None));
    buffer::decode_count(bytes.as_deref())
}

/// Adds `delta` to a shared count with compare-and-swap (other workers update it too); the new
/// value, or None if the host kept refusing.
pub fn adjust_shared(key: &str, delta: i64) -> Option<u64> {
    for _ in 0..64 {
        let (bytes, cas) = hostcalls::get_shared_data(key).ok()?;
        let next = buffer::adjust(buffer::decode_count(bytes.as_deref()), delta);
        match hostcalls::set_shared_data(key, Some(&buffer::encode_count(next)), cas) {
            Ok(()) => return Some(next),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

thread_local! {
    static METRICS: RefCell<HashMap<&'static str, u32>> = RefCell::new(HashMap::new());
}

fn metric(name: &'static str) -> Option<u32> {
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(id) = m.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
        m.insert(name, id);
        Some(id)
    })
}

/// Defines every counter, so each shows at /stats (as 0) from the start.
pub fn define_counters() {
    for name in COUNTERS {
        let _ = metric(name);
    }
}

/// Add `n` to the counter `name` (shown at /stats as `wasmcustom.<name>`).
pub fn count_n(name: &'static str, n: u64) {
    if n == 0 {
        return;
    }
    if let Some(id) = metric(name) {
        let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

pub fn count(name: &'static str) {
    count_n(name, 1);
}

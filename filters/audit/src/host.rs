//! What this shell needs of the host, on the shared adapter `hipaa_host` (every host read as
//! bytes, no call that can panic): its counters, the shared buffered count, header reads.

use hipaa_core::audit::buffer;
use hipaa_host::Headers;
use proxy_wasm::types::MapType;

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
/// Requests refused with 503 because this filter has no valid configuration.
pub const UNCONFIGURED_503: &str = "hipaa_audit.unconfigured_503";
pub const COUNTERS: [&str; 9] = [
    ENQUEUED,
    SENT,
    ACKED,
    RETRIED,
    BUFFER_FULL_503,
    BUFFER_FULL_PASS,
    DROPPED,
    SPOOFED,
    UNCONFIGURED_503,
];

/// The shared-data key of the Envoy-wide count of unacknowledged records.
pub const BUFFERED_KEY: &str = "hipaa.audit.buffered";
/// The shared-data key of the counter that makes chain ids unique per VM.
pub const VM_COUNTER_KEY: &str = "hipaa.audit.vm-counter";

pub use hipaa_host::{count, count_n, int_property, remove_header, string_property};

/// Unix milliseconds from Envoy's clock (0 if the host cannot say).
pub fn now_millis() -> i64 {
    hipaa_host::unix_millis()
}

/// Unix nanoseconds from Envoy's clock (0 if the host cannot say).
pub fn now_nanos() -> u128 {
    hipaa_host::unix_nanos()
}

/// One header value; a value that is not UTF-8 is treated as absent.
pub fn header(map: MapType, name: &str) -> Option<String> {
    hipaa_host::header_text(map, name)
}

/// Every header of a map, names lowercase as Envoy keeps them, values as bytes.
pub fn header_pairs(map: MapType) -> Headers {
    Headers::read(map)
}

/// A header from [`header_pairs`], as [`header`] would answer it; values that are not UTF-8
/// are left out. A repeated header reads as its values joined by commas, as Envoy's
/// single-header call hands it over (so the record sees what the upstream sees).
pub fn lookup(pairs: &Headers, name: &str) -> Option<String> {
    pairs.text(name)
}

/// A map attribute (e.g. `request.headers`), which the host hands over in the header-map pairs
/// encoding; None when missing, unreadable or not such a map.
pub fn map_property(path: &[&str]) -> Option<Headers> {
    hipaa_host::map_property(path)
}

/// The Envoy-wide count of records not yet acknowledged.
pub fn buffered() -> u64 {
    let (bytes, _) = hipaa_host::shared_get(BUFFERED_KEY);
    buffer::decode_count(bytes.as_deref())
}

/// Adds `delta` to a shared count with compare-and-swap (other workers update it too); the new
/// value, or None if the host kept refusing.
pub fn adjust_shared(key: &str, delta: i64) -> Option<u64> {
    hipaa_host::shared_update(key, 64, |bytes| {
        let next = buffer::adjust(buffer::decode_count(Some(bytes)), delta);
        (buffer::encode_count(next).to_vec(), next)
    })
}

/// Defines every counter, so each shows at /stats (as 0) from the start.
pub fn define_counters() {
    for name in COUNTERS {
        let _ = hipaa_host::define_counter(name);
    }
}

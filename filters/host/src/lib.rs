//! The host adapter of the three filter shells, written once: every proxy-wasm call the shells
//! make goes through here, and none of them can panic on what the host hands over.
//!
//! The proxy-wasm SDK's string getters (`hostcalls::get_map`, `get_map_value`, the
//! `Context`/`HttpContext` helpers such as `get_http_request_header(s)`) turn each header value
//! into a `String` and unwrap: one header carrying an obs-text byte (0x80–0xFF, which HTTP/1.1
//! allows and Envoy forwards) panicked the VM, and under `FAIL_CLOSED` every later request of that
//! worker was a 503. The trait helpers unwrap every host status too. So here header values,
//! properties and call responses are read as bytes, each shell decides what a value that is not
//! UTF-8 means for it, and `clippy.toml` bans the SDK's unwrapping helpers in the filter crates.
//!
//! Header *names* come from the SDK's byte getter, which still decodes names as UTF-8: Envoy
//! refuses a request whose header name is not a token before any filter runs (the e2e suite
//! `hostile_bytes` sends one), and the filters never set such a name.

use hipaa_core::denial::LocalReply;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

pub use proxy_wasm::types::MapType as Map;

// ---------------------------------------------------------------- logging and the panic hook

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

pub fn log_error(message: &str) {
    log(LogLevel::Error, message);
}

pub fn log_warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Replaces the panic hook (the SDK's logs the whole panic message, which may carry a header
/// value or a token, and unwraps the log call) with one line naming the filter and the source
/// location only. A panic still ends the VM: Envoy's `failure_policy` decides what happens then.
pub fn install_panic_hook(filter: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = hostcalls::log(
            LogLevel::Critical,
            &format!("{filter}: panic at {at}; this VM stops (Envoy's failure_policy applies)"),
        );
    }));
}

// ---------------------------------------------------------------- the clock

/// Time since the Unix epoch from Envoy's clock; None when the host cannot say. Callers that
/// need a time for a decision fail closed on None (or on the 0 the helpers below give).
pub fn since_epoch() -> Option<Duration> {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
}

/// Unix seconds (0 when the host cannot say).
pub fn unix_secs() -> u64 {
    since_epoch().map_or(0, |d| d.as_secs())
}

/// Unix milliseconds (0 when the host cannot say).
pub fn unix_millis() -> i64 {
    since_epoch()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Unix nanoseconds (0 when the host cannot say).
pub fn unix_nanos() -> u128 {
    since_epoch().map_or(0, |d| d.as_nanos())
}

// ---------------------------------------------------------------- header maps

/// A header map as bytes: names as Envoy keeps them (lowercase), values exactly as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// The whole map in one host call; empty if the host refuses (outside the map's callback).
    pub fn read(map: MapType) -> Headers {
        Headers {
            pairs: hostcalls::get_map_bytes(map).unwrap_or_default(),
        }
    }

    /// A map in the host's pairs encoding (`proxy_get_header_map_pairs`, a map-valued
    /// property); None when the bytes are not such a map.
    pub fn decode(bytes: &[u8]) -> Option<Headers> {
        hipaa_core::headers::decode_pairs(bytes).map(Headers::from_pairs)
    }

    pub fn from_pairs(pairs: Vec<(String, Vec<u8>)>) -> Headers {
        Headers { pairs }
    }

    pub fn pairs(&self) -> &[(String, Vec<u8>)] {
        &self.pairs
    }

    pub fn into_pairs(self) -> Vec<(String, Vec<u8>)> {
        self.pairs
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    /// A header as text: a repeated header reads as its values joined by commas, as Envoy's
    /// single-header call hands it over; values that are not UTF-8 are left out (absent).
    pub fn text(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .pairs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// Every entry with its value as text, bytes that are not UTF-8 replaced by U+FFFD: a
    /// present value stays present (a garbled credential is still a credential, and refused).
    pub fn lossy(&self) -> impl Iterator<Item = (&str, String)> {
        self.pairs
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
    }
}

/// One header's value as bytes (one host call).
pub fn header_bytes(map: MapType, name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(map, name).ok().flatten()
}

/// One header's value as text; a value that is not UTF-8 counts as absent.
pub fn header_text(map: MapType, name: &str) -> Option<String> {
    header_bytes(map, name).and_then(|b| String::from_utf8(b).ok())
}

/// Sets (or, with None, removes) a header; false when the host refused.
pub fn set_header(map: MapType, name: &str, value: Option<&str>) -> bool {
    hostcalls::set_map_value(map, name, value).is_ok()
}

pub fn remove_header(map: MapType, name: &str) {
    let _ = hostcalls::remove_map_value(map, name);
}

// ---------------------------------------------------------------- properties

/// A property's raw bytes; None when missing or unreadable.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// A string attribute; not UTF-8 counts as unreadable.
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

/// A map attribute (e.g. `request.headers`), in the header-map pairs encoding.
pub fn map_property(path: &[&str]) -> Option<Headers> {
    Headers::decode(&property(path)?)
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

// ---------------------------------------------------------------- buffers and call responses

/// The first `size` bytes of a buffer (plugin configuration, a body); empty if the host has
/// none or fails.
pub fn buffer(kind: BufferType, size: usize) -> Vec<u8> {
    hostcalls::get_buffer(kind, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The plugin configuration, whole.
pub fn plugin_configuration() -> Vec<u8> {
    buffer(BufferType::PluginConfiguration, usize::MAX)
}

/// The `:status` of the http-call response being handled, as text (None when absent or not
/// UTF-8).
pub fn call_response_status() -> Option<String> {
    header_text(MapType::HttpCallResponseHeaders, ":status")
}

/// The http-call response body when it is at most `max` bytes; None when empty, larger or
/// unreadable.
pub fn call_response_body(size: usize, max: usize) -> Option<Vec<u8>> {
    if size == 0 || size > max {
        return None;
    }
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
}

// ---------------------------------------------------------------- shared data

/// A shared-data entry and its CAS; (None, None) when absent or the host refuses.
pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    shared_read(key).unwrap_or((None, None))
}

/// A shared-data entry and its CAS, the host's refusal kept apart from absence.
pub fn shared_read(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    hostcalls::get_shared_data(key)
}

/// Writes a shared-data entry if its CAS is still `cas` (None: unconditionally).
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
}

/// Read-modify-write of one shared entry with compare-and-swap, retried up to `attempts`
/// times against other workers; `update` maps the current bytes (empty when absent) to the
/// new bytes and a result. None when the host refused or every attempt lost the race.
pub fn shared_update<T>(
    key: &str,
    attempts: usize,
    mut update: impl FnMut(&[u8]) -> (Vec<u8>, T),
) -> Option<T> {
    for _ in 0..attempts {
        let (bytes, cas) = shared_read(key).ok()?;
        let (next, result) = update(bytes.as_deref().unwrap_or_default());
        match shared_set(key, &next, cas) {
            Ok(()) => return Some(result),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

// ---------------------------------------------------------------- replies and the tick

/// Sends a refusal core built (`hipaa_core::denial::LocalReply`, the one shape of every
/// filter's and stage's refusal); Envoy stops the filter chain for the request. False when the
/// host refused.
pub fn send_reply(reply: &LocalReply) -> bool {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes())).is_ok()
}

/// Resumes the request this HTTP context paused (e.g. for a call's answer); false when the
/// host refused (the stream is gone).
pub fn resume_request() -> bool {
    hostcalls::resume_http_request().is_ok()
}

/// The root context's tick period, clamped to what the host call carries (u32 milliseconds,
/// at least 1; the SDK would truncate a longer period). The SDK's setters panic on any status
/// but Ok, so the host function is called here directly. False when the host refused.
pub fn set_tick_period(period: Duration) -> bool {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX).max(1);
    tick::set(ms)
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod tick {
    #[link(wasm_import_module = "env")]
    extern "C" {
        // The SDK declares the same import returning its `Status` enum; a plain u32 here, so a
        // status the enum does not know is not undefined behaviour.
        #[allow(clashing_extern_declarations)]
        fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    }

    pub fn set(ms: u32) -> bool {
        // SAFETY: an integer in, an integer out; no memory is shared with the host.
        unsafe { proxy_set_tick_period_milliseconds(ms) == 0 }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod tick {
    /// Outside a Wasm VM (unit tests) there is no host to ask.
    pub fn set(_ms: u32) -> bool {
        false
    }
}

// ---------------------------------------------------------------- counters

thread_local! {
    static METRICS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Defines the counter `name` (shown at /stats as `wasmcustom.<name>`) once per VM; its id,
/// None when the host refused.
pub fn define_counter(name: &str) -> Option<u32> {
    METRICS.with(|m| {
        let mut m = m.try_borrow_mut().ok()?;
        if let Some(id) = m.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
        m.insert(name.to_string(), id);
        Some(id)
    })
}

/// Add `n` to the counter `name`.
pub fn count_n(name: &str, n: u64) {
    if n == 0 {
        return;
    }
    if let Some(id) = define_counter(name) {
        let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Add one to the counter `name`.
pub fn count(name: &str) {
    count_n(name, 1);
}

thread_local! {
    static REASON_METRICS: RefCell<HashMap<(&'static str, &'static str), u32>> =
        RefCell::new(HashMap::new());
}

/// Add one to the counter `<prefix>.<reason>` (e.g. `hipaa_authn.deny` and core's reason code
/// `missing_token`): the name is built and the metric defined on the first count only; every
/// later count finds its id by the two static strings, with no string built per request.
pub fn count_reason(prefix: &'static str, reason: &'static str) {
    let id = REASON_METRICS.with(|m| {
        let mut m = m.try_borrow_mut().ok()?;
        if let Some(id) = m.get(&(prefix, reason)) {
            return Some(*id);
        }
        let id = define_counter(&format!("{prefix}.{reason}"))?;
        m.insert((prefix, reason), id);
        Some(id)
    });
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn attribute_decoding() {
        assert_eq!(decode_bool(&[1]), Some(true));
        assert_eq!(decode_bool(&[0]), Some(false));
        assert_eq!(decode_bool(&[]), None);
        assert_eq!(decode_bool(&[1, 0]), None);
        assert_eq!(decode_i64(&2i64.to_le_bytes()), Some(2));
        assert_eq!(decode_i64(&[2, 0, 0]), None);
    }

    #[test]
    fn obs_text_values_are_bytes_text_skips_them_lossy_keeps_them() {
        let h = Headers::decode(&encode(&[
            (":path", b"/fhir/Patient/1"),
            ("x-note", b"caf\xe9"),
            ("authorization", b"Bearer \xff"),
            ("accept", b"a"),
            ("Accept", b"b"),
        ]))
        .unwrap();
        assert_eq!(h.text(":path").as_deref(), Some("/fhir/Patient/1"));
        assert_eq!(h.text("x-note"), None);
        assert_eq!(h.text("accept").as_deref(), Some("a,b"));
        let lossy: Vec<(&str, String)> = h.lossy().collect();
        assert_eq!(lossy[1], ("x-note", "caf\u{fffd}".to_string()));
        assert_eq!(lossy[2], ("authorization", "Bearer \u{fffd}".to_string()));
        assert_eq!(h.pairs()[1].1, b"caf\xe9".to_vec());
    }
}

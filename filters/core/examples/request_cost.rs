//! The core calls one request of the combined filter makes, in a loop, natively: for counting
//! instructions per request with callgrind (repeatable on a loaded machine, unlike wall-clock
//! time). Issue #15 item 4; `bench/callgrind.sh` runs it.
//!
//! ```text
//! request_cost PLUGIN_CONFIG_JSON TOKEN_FILE MAC_KEY STAGE ITERATIONS
//! ```
//!
//! STAGE: `authn` (authn's decision with a cached token, the session store in memory the way
//! the shell's shared-data adapter uses it), `audit` (the record's facts, build, seal),
//! `transport` (the inbound decision on an mTLS connection), `chain` (all three, in the
//! combined filter's order), `none` (setup only: subtract its count). The host calls (header
//! map reads, properties, counters, shared data) are not here: they are Envoy's, not core's.

use hipaa_core::audit::build::{self, ConnectionFacts as AuditConn, ResponseFacts};
use hipaa_core::audit::{buffer, response, ChainWriter, MacKey};
use hipaa_core::authn::session::{self, SessionKey, SessionState};
use hipaa_core::authn::{self, Authenticator, SessionStore, SessionStoreUnavailable};
use hipaa_core::policy::Policy;
use hipaa_core::transport::{self, ConnectionFacts, RequestLine};
use std::collections::HashMap;
use std::hint::black_box;

/// proxy-wasm shared data as the shell's `SharedSessions` uses it: read the bucket, decide,
/// write back (a copy each way, as the host call does); a write counts.
#[derive(Default)]
struct MemShared {
    buckets: HashMap<String, Vec<u8>>,
    writes: u64,
    write_always: bool,
}

impl SessionStore for MemShared {
    fn touch(
        &mut self,
        key: &SessionKey,
        now: u64,
        idle: u64,
    ) -> Result<SessionState, SessionStoreUnavailable> {
        self.touch_seen(key, now, idle).map(|(state, _)| state)
    }

    fn touch_seen(
        &mut self,
        key: &SessionKey,
        now: u64,
        idle: u64,
    ) -> Result<(SessionState, Option<u64>), SessionStoreUnavailable> {
        let bucket_key = key.bucket_key();
        let bytes = self.buckets.get(&bucket_key).cloned().unwrap_or_default();
        let (state, updated) = session::touch_update(&bytes, key, now, idle);
        let last_seen = match state {
            SessionState::Active => None,
            _ => session::last_seen(&bytes, key),
        };
        // REQUEST_COST_WRITE_ALWAYS: the write of every touch, as before issue #15.
        let updated = match updated {
            None if self.write_always => Some(bytes),
            other => other,
        };
        if let Some(updated) = updated {
            self.writes += 1;
            self.buckets.insert(bucket_key, updated);
        }
        Ok((state, last_seen))
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, token_file, mac_key, stage, iterations] = &args[..] else {
        return Err("usage: request_cost PLUGIN_CONFIG TOKEN_FILE MAC_KEY STAGE ITERATIONS".into());
    };
    let config = std::fs::read(config).map_err(|e| format!("plugin config: {e}"))?;
    let policy = Policy::from_plugin_config(&config).map_err(|e| e.summary())?;
    let token = std::fs::read_to_string(token_file).map_err(|e| format!("token: {e}"))?;
    let token = token.trim();
    let iterations: u64 = iterations.parse().map_err(|e| format!("iterations: {e}"))?;
    let key = MacKey::parse(mac_key).map_err(|e| format!("mac key: {e}"))?;
    let (mut chain, _) = ChainWriter::start("0123456789abcdef", key, 1_800_000_000_000)
        .map_err(|e| e.to_string())?;
    let mut auth = Authenticator::new(&policy);
    // The token was minted just now with an hour to live.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut sessions = MemShared {
        write_always: std::env::var_os("REQUEST_COST_WRITE_ALWAYS").is_some(),
        ..MemShared::default()
    };
    // The request as the load generators send it (oha / wrk), and Envoy's own headers.
    let bearer = format!("Bearer {token}");
    let headers: Vec<(String, String)> = [
        (":authority", "localhost:10000"),
        (":path", "/fhir/Patient/123"),
        (":method", "GET"),
        (":scheme", "https"),
        ("user-agent", "oha/1.4.5"),
        ("accept", "*/*"),
        ("authorization", bearer.as_str()),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "4f1c1d9e-3b9a-4b53-8f5a-0f0e2b1d6c3a"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let conn = ConnectionFacts {
        tls_version: Some("TLSv1.3".into()),
        mtls: Some(true),
        peer_uri_san: Some("spiffe://cluster.local/ns/bench/sa/loadgen".into()),
        direction: Some(1),
    };
    let audit_conn = AuditConn {
        source_address: Some("127.0.0.1:51234".into()),
        tls_version: conn.tls_version.clone(),
        peer_uri_san: conn.peer_uri_san.clone(),
    };
    let do_audit = matches!(stage.as_str(), "audit" | "chain");
    let do_transport = matches!(stage.as_str(), "transport" | "chain");
    let do_authn = matches!(stage.as_str(), "authn" | "chain");
    // The first request verifies the token (a miss); every counted one is a hit.
    let warm = authn_facts(&headers);
    let first = authn::decide(&warm, &policy, &mut auth, &mut sessions, start);
    if let Some(denial) = first.denial {
        return Err(format!("the token is refused: {}", denial.reason()));
    }
    let mut allowed = 0u64;
    for i in 0..iterations {
        // One request per 1,000 falls in a new second (1,000 req/s).
        let now = start + i / 1000;
        let mut annotations: Vec<(&'static str, String)> = Vec::new();
        let mut facts = None;
        if do_audit {
            let names: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
            let mut f = build::RequestFacts::gather(
                &policy.routes,
                &names,
                lookup,
                &audit_conn,
                (now * 1000) as i64,
            );
            f.egress = build::egress_facts(&policy.spec.egress, conn.direction, None);
            black_box(response::route_signs(&policy.routes, &f.method, &f.path));
            black_box(buffer::admit(
                f.class(),
                10,
                20_000,
                policy.spec.audit.as_ref().map_or(
                    hipaa_core::policy::schema::WhenCollectorDown::FailClosed,
                    |a| a.when_collector_down,
                ),
            ));
            facts = Some(f);
        }
        if do_transport {
            let method = lookup(":method").unwrap_or_default();
            let path = lookup(":path").unwrap_or_default();
            let authority = lookup(":authority");
            let line = RequestLine {
                method: &method,
                path: &path,
                authority: authority.as_deref(),
            };
            let d = transport::decide(&conn, &line, &policy, Some(now as i64));
            if !d.is_allowed() {
                return Err("transport refused the request".into());
            }
            annotations.extend(d.annotations);
        }
        if do_authn {
            let f = authn_facts(&headers);
            let verdict = authn::decide(&f, &policy, &mut auth, &mut sessions, now);
            if verdict.allowed() {
                allowed += 1;
            }
            annotations.extend(verdict.set_headers);
        }
        if let Some(request) = facts {
            let mut resp = ResponseFacts {
                code_details: Some("direct_response".into()),
                status: 200,
                bytes: 3,
                end_ms: (now * 1000) as i64 + 1,
                ..ResponseFacts::default()
            };
            resp.read_annotations(
                |n| {
                    annotations
                        .iter()
                        .find(|(k, _)| *k == n)
                        .map(|(_, v)| v.clone())
                },
                |_| None,
            );
            if build::should_record(request.class(), resp.denied(), false) {
                let record = build::build_record(&request, &resp);
                black_box(chain.seal_to_json(record).map_err(|e| e.to_string())?);
            }
        }
    }
    eprintln!(
        "{stage}: {iterations} requests, {allowed} allowed by authn, {} session writes",
        sessions.writes
    );
    Ok(())
}

/// What authn's shell gathers from the header map.
fn authn_facts(headers: &[(String, String)]) -> authn::RequestFacts {
    let mut facts = authn::RequestFacts::default();
    for (name, value) in headers {
        match name.as_str() {
            ":method" => facts.method = value.clone(),
            ":path" => facts.path = value.clone(),
            "authorization" => facts.authorization.push(value.clone()),
            _ => {}
        }
    }
    facts
}

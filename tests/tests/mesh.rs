//! hipaa_mesh.wasm's combined filter (root id `hipaa-mesh`) in the real Envoy 1.40 (V8): the
//! whole chain in one VM per worker (Envoy's own wasm stats say so), every stage in one HTTP
//! context, and a refusal by a filter in front of it (Envoy's jwt_authn, as Istio's
//! RequestAuthentication renders) still recorded — with the request's facts, never the
//! client's `x-hipaa-*` headers. The rendered topologies (`rendered.rs`) run the same filter
//! over mTLS as `policy render --target envoy` writes it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hipaa_e2e::collector::Collector;
use hipaa_e2e::envoy::{Envoy, Filter, Topology};
use hipaa_e2e::http::{self, get};
use hipaa_e2e::idp::{self, Keys, Upstream};
use serde_json::{json, Value};
use std::time::Duration;

const CLUSTER: &str = "audit-collector";

fn spec(jwks: &str) -> Value {
    json!({
        "identity": {
            "providers": [{
                "name": "demo-idp", "issuer": idp::ISSUER, "audiences": [idp::AUDIENCE],
                "jwks": {"inline": jwks}, "algorithms": ["RS256", "ES256", "EdDSA"]
            }]
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true, "allowPlaintext": true},
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": true,
             "allowRoles": ["clinician"], "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}}
        ],
        "audit": {
            "collector": {"cluster": CLUSTER, "path": "/v1/records", "timeoutMs": 1000},
            "flushIntervalMs": 100, "maxBatch": 100, "maxBuffered": 1000
        },
        "transport": {"minTlsVersion": "TLSv1.2", "requireMtls": true}
    })
}

fn topology(
    keys: &Keys,
    collector: &Collector,
    upstream: u16,
    filters: &[&'static str],
) -> Topology {
    let config = spec(&keys.jwks()).to_string();
    let mut t = Topology::new(
        upstream,
        filters
            .iter()
            .map(|name| Filter {
                name,
                config: config.clone(),
            })
            .collect(),
    );
    t.clusters.push((CLUSTER.to_string(), collector.port));
    t.vm_env = collector.vm_env();
    t.concurrency = 2;
    t
}

/// Envoy's gauge of live Wasm VMs (V8), from its own admin stats.
fn active_vms(envoy: &Envoy) -> u64 {
    envoy.stat("wasm.envoy.wasm.runtime.v8.active")
}

#[test]
fn the_combined_filter_runs_the_chain_in_one_vm_per_worker() {
    let keys = Keys::generate();
    let collector = Collector::start();
    let upstream = Upstream::start();
    // Some traffic first, so every worker has created its VM.
    let warm = |envoy: &Envoy| {
        for _ in 0..8 {
            assert_eq!(get(envoy.port, "/healthz", &[]).status, 200);
        }
    };
    let started = std::time::Instant::now();
    let chain = Envoy::start(&topology(
        &keys,
        &collector,
        upstream.port,
        &["audit", "transport", "authn"],
    ));
    let chain_ready = started.elapsed();
    warm(&chain);
    let three = active_vms(&chain);
    drop(chain);
    let started = std::time::Instant::now();
    let mesh = Envoy::start(&topology(&keys, &collector, upstream.port, &["mesh"]));
    let mesh_ready = started.elapsed();
    warm(&mesh);
    let one = active_vms(&mesh);
    let stats = http::get(mesh.admin_port, "/stats?filter=wasm", &[]).body;
    eprintln!("active V8 VMs with 2 workers: three filters {three}, combined {one}; Envoy ready in {chain_ready:?} (three filters) vs {mesh_ready:?} (combined)");
    // One VM per worker (2), plus the two Envoy keeps on the main thread (the base VM every
    // worker's is cloned from, and the main thread's own): the three-filter chain has three
    // times as many, one set per module.
    assert_eq!(one, 2 + 2, "combined: {one} VMs\n{stats}");
    assert_eq!(
        three,
        3 * one,
        "three filters: {three} VMs, combined: {one}"
    );
    // The single VM runs every stage: its counters are all there.
    for counter in [
        "wasmcustom.hipaa_audit.records.enqueued",
        "wasmcustom.hipaa_transport.allow.inbound",
    ] {
        assert!(
            stats.contains(counter) || mesh.counter(counter) > 0,
            "{counter}\n{stats}"
        );
    }
}

/// jwt_authn in front of the hipaa-mesh filter, refusing by itself as Istio's
/// RequestAuthentication does for a present but invalid token (no `allow_missing_or_failed`).
fn refusing_jwt_authn(jwks: &str) -> Value {
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"demo-idp": {
                "issuer": idp::ISSUER,
                "audiences": [idp::AUDIENCE],
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "forward": true,
                "payload_in_metadata": "payload",
                "local_jwks": {"inline_string": jwks}
            }},
            "rules": [{"match": {"prefix": "/fhir/"}, "requires": {"provider_name": "demo-idp"}}]
        }
    })
}

#[test]
fn a_refusal_in_front_of_the_combined_filter_is_recorded_with_the_request_facts() {
    let keys = Keys::generate();
    let collector = Collector::start();
    let upstream = Upstream::start();
    let t = topology(&keys, &collector, upstream.port, &["mesh"]);
    let jwks = keys.jwks();
    let envoy = Envoy::start_edited(&t, |config| {
        config
            .pointer_mut(
                "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
            )
            .and_then(Value::as_array_mut)
            .unwrap()
            .insert(0, refusing_jwt_authn(&jwks));
    });

    // A forged token: jwt_authn answers 401 before hipaa-mesh sees the request. The client's
    // own x-hipaa-* headers must not become the record's identity or reason.
    let forged = format!("{}x", keys.clinician("alice"));
    let r = get(
        envoy.port,
        "/fhir/Patient/p-jwt?x=1",
        &[
            ("authorization", &format!("Bearer {forged}")),
            ("x-request-id", "rid-jwt-authn"),
            ("x-hipaa-subject", "mallory"),
            ("x-hipaa-denial", "none"),
            ("user-agent", "mesh-test"),
        ],
    );
    assert_eq!(r.status, 401, "{}", r.body);

    // A valid token over plaintext: jwt_authn passes, the combined filter's transport stage
    // refuses (mTLS required) and authn never runs.
    let r2 = get(
        envoy.port,
        "/fhir/Patient/p-plain",
        &[
            (
                "authorization",
                &format!("Bearer {}", keys.clinician("alice")),
            ),
            ("x-request-id", "rid-plaintext"),
        ],
    );
    assert_eq!(r2.status, 403, "{}", r2.body);
    let transport_reason = r2.header("x-hipaa-denial").unwrap().to_string();

    let records = collector.wait_for("", 2, Duration::from_secs(20));
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r["requestId"] == id)
            .unwrap_or_else(|| panic!("no record for {id}: {records:?}"))
    };
    let jwt = by_id("rid-jwt-authn");
    assert_eq!(jwt["outcome"]["status"], 401, "{jwt}");
    assert_eq!(jwt["outcome"]["decision"], "deny", "{jwt}");
    assert_eq!(jwt["outcome"]["reason"], "jwt_authn_denied", "{jwt}");
    assert_eq!(jwt["action"]["route"], "patient-record", "{jwt}");
    assert_eq!(jwt["action"]["path"], "/fhir/Patient/p-jwt?x=1", "{jwt}");
    assert_eq!(jwt["resource"]["patient"], "p-jwt", "{jwt}");
    assert_eq!(jwt["source"]["userAgent"], "mesh-test", "{jwt}");
    assert!(jwt["actor"]["subject"].is_null(), "{jwt}");
    assert_eq!(envoy.counter("wasmcustom.hipaa_audit.spoofed_headers"), 1);

    let plain = by_id("rid-plaintext");
    assert_eq!(plain["outcome"]["status"], 403, "{plain}");
    assert_eq!(
        plain["outcome"]["reason"],
        transport_reason.as_str(),
        "{plain}"
    );
    // authn did not run: no identity in the record, no authn counter moved.
    assert!(plain["actor"]["subject"].is_null(), "{plain}");
    assert_eq!(envoy.counter("wasmcustom.hipaa_authn.allow"), 0);
    assert_eq!(envoy.counter("wasmcustom.hipaa_authn.deny"), 0);
    let (code, out) = collector.verify();
    assert_eq!(code, 0, "{out}");
}

#[test]
fn the_combined_filter_hands_nothing_on_as_headers_but_identity() {
    let keys = Keys::generate();
    let collector = Collector::start();
    let upstream = Upstream::start();
    let envoy = Envoy::start(&topology(&keys, &collector, upstream.port, &["mesh"]));
    // A public plaintext probe route: every stage passes; the upstream sees no x-hipaa-*
    // header at all (not the client's, not transport's connection facts).
    let r = get(
        envoy.port,
        "/healthz",
        &[("x-hipaa-subject", "mallory"), ("x-hipaa-tls", "TLSv1.3")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let echoed = r.json();
    let names: Vec<&String> = echoed["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("x-hipaa-"))
        .collect();
    assert!(names.is_empty(), "{names:?} reached the upstream: {echoed}");
    assert_eq!(envoy.counter("wasmcustom.hipaa_audit.spoofed_headers"), 1);
}

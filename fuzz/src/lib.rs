//! The fuzz entry points, shared by the libFuzzer targets (fuzz_targets/) and the replay test
//! (`cargo test`, tests below), which runs every committed corpus seed and regression input
//! through the same functions.
//!
//! Each entry point drives a production function with untrusted bytes and checks, beyond "no
//! panic, no unbounded work", a property that must hold for every input:
//! - `jwt_verify`: nothing but a token signed by a configured key is accepted, and no refusal
//!   carries anything from the token (only claim names from the RFCs or the policy).
//! - `jwks_load`: a key set loads or is refused with a bounded error text.
//! - `policy_parse`: YAML or JSON policy text and plugin configuration parse or are refused.
//! - `route_match`: a path not in normal form never matches a public route.
//! - `audit_record`: the canonical form of a record is stable when parsed back (the collector
//!   stores canonical bytes and re-verifies MACs from them).
//! - `collector_ingest`: a posted batch is stored or flagged record by record, and every
//!   record is accounted for.
//! - `host_headers`: a header map as the host encodes it (u32 count, u32 name/value sizes,
//!   NUL-terminated bytes; values may hold any byte, obs-text included) decodes through the
//!   shells' adapter (`hipaa_host::Headers`) or is refused, re-encodes to a map that decodes the
//!   same, and goes on into the authn decision and the audit request facts of every example
//!   policy without a panic; a denial's reply never carries a byte that is not valid UTF-8.
//! - `collector_query`: a `GET /v1/records` query string parses or is refused with a bounded
//!   message, never a panic.

use hipaa_core::audit::{
    authenticate, canonical_bytes, chain_link, mac_input, parse_rfc3339_millis, record_hash,
    verify_mac, AuditRecord, ChainVerifier, MacKey, MacKeyRing,
};
use hipaa_core::jwt::{verify_token, KeySet, ProviderKeys, TokenError};
use hipaa_core::policy::schema::{Algorithm, Identity, Route, UnmatchedRoutes};
use hipaa_core::policy::{Policy, PolicyDocument};
use hipaa_core::routes::{split_query, RouteClass, RouteMatch, RouteTable};
use serde_json::{json, Value};
use std::sync::{Mutex, OnceLock};

/// The clock of the token target; the seed tokens are valid at this instant.
pub const NOW: u64 = 1_800_000_000;
/// The issuers of the token target's two providers.
pub const ISSUER: &str = "https://idp.hospital.example";
pub const ISSUER_2: &str = "https://partner.example";
/// Every claim name a token refusal may name: the registered ones and the policy's (defaults).
const CLAIM_NAMES: &[&str] = &[
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "amr",
    "sub",
    "roles",
    "sid",
];
/// The audit MAC key of the record and ingest targets (the seed records are sealed with it).
pub const MAC_KEY_ID: &str = "k1";
pub const MAC_KEY: [u8; 32] = [0x5a; 32];

const FIXTURES: &[(&str, &str)] = &[
    (
        "rsa",
        include_str!("../../filters/core/tests/fixtures/jwt/rsa2048.jwk.json"),
    ),
    (
        "p256",
        include_str!("../../filters/core/tests/fixtures/jwt/p256.jwk.json"),
    ),
    (
        "p384",
        include_str!("../../filters/core/tests/fixtures/jwt/p384.jwk.json"),
    ),
    (
        "ed",
        include_str!("../../filters/core/tests/fixtures/jwt/ed25519.jwk.json"),
    ),
];

/// The example policies shipped in policies/ (demo.yaml as `make demo` runs it: see
/// [`example_policies`]).
const POLICIES: &[&str] = &[
    include_str!("../../policies/clinical-ai.yaml"),
    include_str!("../../policies/demo.yaml"),
    include_str!("../../policies/ehr-api.yaml"),
    include_str!("../../policies/internal-api.yaml"),
];

/// The example policies, with the demo policy's `__DEMO_JWKS__` placeholder filled in with the
/// fixture keys (as scripts/demo.sh fills it with the demo keys).
pub fn example_policies() -> Vec<String> {
    POLICIES
        .iter()
        .map(|text| text.replace("__DEMO_JWKS__", &fixture_jwks()))
        .collect()
}

/// A setup step that cannot fail for the fixed inputs above; if it does, the harness is broken,
/// which must stop the run loudly.
fn setup<T, E: std::fmt::Debug>(what: &str, r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("fuzz setup: {what}: {e:?}"),
    }
}

/// The fixture public keys as a JWKS, each with its `kid`.
pub fn fixture_jwks() -> String {
    let keys: Vec<Value> = FIXTURES
        .iter()
        .map(|(kid, text)| {
            let mut key: Value = setup("fixture JWK", serde_json::from_str(text));
            key["kid"] = json!(kid);
            key
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

struct TokenEnv {
    identity: Identity,
    sets: Vec<KeySet>,
}

fn token_env() -> &'static TokenEnv {
    static ENV: OnceLock<TokenEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let provider = |name: &str, issuer: &str, algs: &[Algorithm]| {
            let names: Vec<&str> = algs.iter().map(|a| a.name()).collect();
            json!({
                "name": name, "issuer": issuer, "audiences": ["ehr-api"],
                "jwks": {"cluster": "idp", "path": "/jwks"},
                "algorithms": names, "clockSkewSeconds": 30, "maxTokenLifetimeSeconds": 3600,
            })
        };
        let partner = [Algorithm::ES256, Algorithm::EdDSA];
        let identity: Identity = setup(
            "identity",
            serde_json::from_value(json!({"providers": [
                provider("idp", ISSUER, &Algorithm::ALL),
                provider("partner", ISSUER_2, &partner),
            ]})),
        );
        let jwks = fixture_jwks();
        let sets = vec![
            setup("key set", KeySet::from_jwks_json(&jwks, &Algorithm::ALL)),
            setup("key set", KeySet::from_jwks_json(&jwks, &partner)),
        ];
        TokenEnv { identity, sets }
    })
}

/// Token parsing and verification: `verify_token` against two providers and the fixture keys.
pub fn jwt_verify(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let env = token_env();
    let providers: Vec<ProviderKeys<'_>> = env
        .identity
        .providers
        .iter()
        .zip(&env.sets)
        .map(|(provider, keys)| ProviderKeys {
            provider,
            keys: Some(keys),
        })
        .collect();
    for now in [NOW, 0, u64::MAX] {
        match verify_token(token, &env.identity, &providers, now) {
            Ok(verified) => {
                // Only the seeds (signed with the fixture keys) can get here.
                assert!(verified.issuer == ISSUER || verified.issuer == ISSUER_2);
                assert!(verified.provider < providers.len());
                assert!(verified.exp > verified.iat || verified.exp == verified.iat);
                assert!(
                    now < verified.exp.saturating_add(30),
                    "expired token accepted"
                );
            }
            Err(err) => {
                // No part of the token reaches an error: the only variable a refusal carries
                // is a claim name, and it comes from the RFCs or the policy, never the token.
                if let TokenError::MissingClaim(name) | TokenError::BadClaimType(name) = &err {
                    assert!(CLAIM_NAMES.contains(&name.as_str()), "claim name {name:?}");
                }
                let text = err.to_string();
                assert!(text.len() < 200, "error text too long: {text}");
                assert!(!err.code().is_empty());
            }
        }
    }
}

/// JWKS loading with every algorithm allowed, and with a narrow allow-list.
pub fn jwks_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for allowed in [&Algorithm::ALL[..], &[Algorithm::ES256][..]] {
        match KeySet::from_jwks_json(text, allowed) {
            Ok(set) => assert!(!set.is_empty()),
            // Values quoted from the set are clipped: a hostile set cannot flood a log.
            Err(err) => assert!(err.to_string().len() < 512, "unbounded error text"),
        }
    }
}

/// Policy text (YAML or JSON, as `hipaa-mesh policy check` reads it) and plugin configuration
/// (JSON, as the filters read it).
pub fn policy_parse(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((doc, policy)) = PolicyDocument::compile(text) {
            // A valid policy's spec, handed to a filter as plugin configuration, is valid too.
            let spec = setup("spec to JSON", serde_json::to_vec(&doc.spec));
            let again = Policy::from_plugin_config(&spec);
            assert!(again.is_ok(), "compiled policy refused as plugin config");
            assert_eq!(policy.routes.routes().len(), doc.spec.routes.len());
        }
    }
    let _ = Policy::from_plugin_config(data);
}

fn example_tables() -> &'static Vec<RouteTable> {
    static TABLES: OnceLock<Vec<RouteTable>> = OnceLock::new();
    TABLES.get_or_init(|| {
        example_policies()
            .iter()
            .map(|text| {
                setup("example policy", PolicyDocument::compile(text))
                    .1
                    .routes
            })
            .collect()
    })
}

/// A path an attacker could use to reach a public route's prefix with a different meaning.
fn not_normal_form(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !path.starts_with('/')
        || path.contains("//")
        || path.contains('\\')
        || path.split('/').any(|s| s == ".." || s == ".")
        || ["%2f", "%5c", "%2e"].iter().any(|e| lower.contains(e))
}

/// Route matching. Input: `METHOD\nPATH\nHEADER` against the example policies' route tables,
/// or, when it starts with `[`, a first line of routes as JSON and then the same three lines.
pub fn route_match(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let custom;
    let (tables, rest): (&[RouteTable], &str) = if text.starts_with('[') {
        let (routes, rest) = text.split_once('\n').unwrap_or((text, ""));
        let Ok(routes) = serde_json::from_str::<Vec<Route>>(routes) else {
            return;
        };
        custom = [
            RouteTable::new(&routes, UnmatchedRoutes::Phi),
            RouteTable::new(&routes, UnmatchedRoutes::Deny),
        ];
        (&custom[..], rest)
    } else {
        (&example_tables()[..], text)
    };
    let mut lines = rest.splitn(3, '\n');
    let method = lines.next().unwrap_or("GET");
    let path = lines.next().unwrap_or("/");
    let header = lines.next().map(str::to_owned);
    let (path_only, _) = split_query(path);
    for table in tables {
        let found = table.find(method, path);
        if found.class() == RouteClass::Public {
            assert!(
                !not_normal_form(path_only),
                "path not in normal form matched public route {}",
                found.name()
            );
        }
        if let RouteMatch::Route(route) = found {
            if let Some(source) = &route.patient {
                let _ = source.extract(path, |_| header.clone());
            }
        }
    }
    let _ = hipaa_core::routes::PatientSource::from_template(path);
}

fn ring() -> &'static MacKeyRing {
    static RING: OnceLock<MacKeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        MacKeyRing::single(setup("MAC key", MacKey::from_bytes(MAC_KEY_ID, &MAC_KEY)))
    })
}

/// The audit record decoder, as the collector runs it on each record of a batch and again when
/// it verifies the stored ledger: typed decode, time, MAC, chain, canonical form.
pub fn audit_record(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(record) = serde_json::from_value::<AuditRecord>(value.clone()) {
        let _ = parse_rfc3339_millis(&record.time);
        let _ = record.patient();
        let _ = record.is_emergency();
    }
    let _ = verify_mac(ring(), &value);
    let _ = authenticate(ring(), &value);
    let _ = ChainVerifier::new("fuzz").feed(ring(), &value);
    let _ = mac_input(&value);
    let canonical = canonical_bytes(&value);
    let reparsed: Value = match serde_json::from_slice(&canonical) {
        Ok(v) => v,
        Err(e) => panic!("canonical bytes are not JSON: {e}"),
    };
    assert_eq!(
        canonical_bytes(&reparsed),
        canonical,
        "canonical form not stable"
    );
    assert_eq!(record_hash(&reparsed), record_hash(&value));
    assert_eq!(chain_link(&reparsed), chain_link(&value));
}

struct IngestEnv {
    store: Box<dyn hipaa_collector::Store>,
    collector: hipaa_collector::Collector,
    path: std::path::PathBuf,
    runs: u32,
}

fn open_ingest() -> IngestEnv {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("hipaa-fuzz-ingest-{}.sqlite", std::process::id()));
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = setup(
        "sqlite store",
        hipaa_collector::open_store(&format!("sqlite:{}", path.display())),
    );
    let collector = hipaa_collector::Collector {
        mac_keys: ring().clone(),
        encryption: setup(
            "encryption key",
            hipaa_collector::EncryptionKey::parse(&[0x33; 32]),
        ),
        clock: std::sync::Arc::new(|| 1_800_000_000_000),
    };
    IngestEnv {
        store,
        collector,
        path,
        runs: 0,
    }
}

/// The collector's batch ingest: the body of `POST /v1/records` parsed as the server does
/// (a JSON array) and stored in a fresh SQLite ledger (recreated every 200 batches, so the
/// database stays small).
pub fn collector_ingest(data: &[u8]) {
    static ENV: OnceLock<Mutex<Option<IngestEnv>>> = OnceLock::new();
    let Ok(Value::Array(batch)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let cell = ENV.get_or_init(|| Mutex::new(None));
    let mut guard = match cell.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if guard.as_ref().is_none_or(|env| env.runs >= 200) {
        if let Some(old) = guard.take() {
            let path = old.path.clone();
            drop(old);
            let _ = std::fs::remove_file(&path);
        }
        *guard = Some(open_ingest());
    }
    let Some(env) = guard.as_mut() else {
        return;
    };
    env.runs += 1;
    let summary = match hipaa_collector::ingest(env.store.as_mut(), &env.collector, &batch) {
        Ok(summary) => summary,
        Err(e) => panic!("ingest failed on a local SQLite store: {e}"),
    };
    // Every record is accepted, a duplicate, or flagged (an accepted record may add findings).
    assert!(
        summary.accepted + summary.duplicates + summary.flagged >= batch.len() as u64,
        "records unaccounted for: {summary:?} for {}",
        batch.len()
    );
}

/// The host's header-map pairs encoding (what `proxy_get_header_map_pairs` returns).
pub fn encode_pairs(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
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

#[derive(Default)]
struct MemSessions {
    buckets: std::collections::HashMap<String, Vec<u8>>,
}

impl hipaa_core::authn::SessionStore for MemSessions {
    fn touch(
        &mut self,
        key: &hipaa_core::authn::session::SessionKey,
        now: u64,
        idle: u64,
    ) -> Result<hipaa_core::authn::session::SessionState, hipaa_core::authn::SessionStoreUnavailable>
    {
        let bucket = self.buckets.entry(key.bucket_key()).or_default();
        let (state, bytes) = hipaa_core::authn::session::touch(bucket, key, now, idle);
        *bucket = bytes;
        Ok(state)
    }
}

fn example_compiled() -> &'static Vec<Policy> {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        example_policies()
            .iter()
            .map(|text| setup("example policy", PolicyDocument::compile(text)).1)
            .collect()
    })
}

/// A request's header map through the shells' byte handling and on into core: the authn shell
/// reads every value lossily (a garbled credential stays a credential), the audit shell reads
/// UTF-8 values only.
pub fn host_headers(data: &[u8]) {
    use hipaa_core::audit::build::{ConnectionFacts, RequestFacts as AuditFacts};
    use hipaa_core::authn::{self, Authenticator, RequestFacts};
    use hipaa_host::Headers;
    let Some(headers) = Headers::decode(data) else {
        return;
    };
    // The encoding round-trips: what the shell decoded is what the host sent.
    assert_eq!(
        Headers::decode(&encode_pairs(headers.pairs())).as_ref(),
        Some(&headers),
        "header map does not round-trip"
    );
    for policy in example_compiled() {
        let bg = policy
            .spec
            .identity
            .break_glass
            .as_ref()
            .map(|b| b.header.as_str());
        let mut facts = RequestFacts::default();
        let mut request_id = String::new();
        for (name, value) in headers.lossy() {
            match name {
                ":method" => facts.method = value,
                ":path" => facts.path = value,
                hipaa_core::headers::AUTHORIZATION => facts.authorization.push(value),
                hipaa_core::headers::REQUEST_ID => request_id = value,
                n if Some(n) == bg => facts.break_glass = Some(value),
                _ => {}
            }
        }
        let mut auth = Authenticator::new(policy);
        let verdict = authn::decide(&facts, policy, &mut auth, &mut MemSessions::default(), NOW);
        if let Some(denial) = verdict.denial {
            let reply = denial.reply(&request_id, &verdict.allowed_methods);
            assert!(
                serde_json::from_str::<Value>(&reply.body).is_ok(),
                "reply is not JSON"
            );
        }
        let names: Vec<String> = headers.names().map(str::to_string).collect();
        let _ = AuditFacts::gather(
            &policy.routes,
            &names,
            |n| headers.text(n),
            &ConnectionFacts::default(),
            0,
        );
    }
}

/// The collector's query-string parser, as `GET /v1/records?...` runs it.
pub fn collector_query(data: &[u8]) {
    let Ok(qs) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(message) = hipaa_collector::query::parse_query_string(qs) {
        assert!(message.len() <= 512 + 8 * qs.len(), "unbounded error text");
    }
}

#[cfg(test)]
mod replay;

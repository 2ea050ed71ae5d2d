//! Regression tests: every committed corpus seed (corpus/TARGET/seed-*) and every input that
//! once crashed a target (regressions/TARGET/*) goes through the target's entry point again.
//! Run by `make fuzz-replay` (part of `make fuzz-short`, so of `make test`).

use super::*;
use std::path::{Path, PathBuf};

type Entry = fn(&[u8]);

const TARGETS: &[(&str, Entry)] = &[
    ("jwt_verify", jwt_verify),
    ("jwks_load", jwks_load),
    ("policy_parse", policy_parse),
    ("route_match", route_match),
    ("audit_record", audit_record),
    ("collector_ingest", collector_ingest),
    ("host_headers", host_headers),
    ("collector_query", collector_query),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| !p.file_name().is_some_and(|n| n == ".gitkeep"))
        .collect();
    out.sort();
    out
}

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    files(&dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .collect()
}

fn regressions(target: &str) -> Vec<PathBuf> {
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("regressions")
            .join(target),
    )
}

#[test]
fn every_target_has_seeds_and_replays_them_and_its_regressions() {
    for (target, entry) in TARGETS {
        let seeds = seeds(target);
        assert!(seeds.len() >= 3, "{target}: only {} seeds", seeds.len());
        for path in seeds.iter().chain(regressions(target).iter()) {
            let data = std::fs::read(path).unwrap();
            entry(&data);
        }
    }
}

fn verify_at_now(
    token: &str,
) -> Result<hipaa_core::jwt::VerifiedToken, hipaa_core::jwt::TokenError> {
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
    verify_token(token, &env.identity, &providers, NOW)
}

#[test]
fn token_seeds_are_real_tokens() {
    // seed-valid-*: genuine tokens the target's providers accept at NOW, so the fuzzer starts
    // from inputs that reach the signature and claim checks; seed-bad-*: each refused.
    let mut valid = 0;
    for path in seeds("jwt_verify") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let token = std::fs::read_to_string(&path).unwrap();
        let result = verify_at_now(token.trim_end());
        if name.starts_with("seed-valid-") {
            assert!(result.is_ok(), "{name}: {result:?}");
            valid += 1;
        } else {
            assert!(result.is_err(), "{name} accepted");
        }
    }
    assert!(valid >= 5, "{valid} valid token seeds");
}

#[test]
fn policy_seeds_include_every_example_policy_and_they_compile() {
    let texts: Vec<String> = seeds("policy_parse")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let examples = example_policies();
    assert_eq!(examples.len(), 4);
    for example in &examples {
        assert!(
            texts.iter().any(|t| t == example),
            "an example policy is not a seed"
        );
        assert!(PolicyDocument::compile(example).is_ok());
    }
}

#[test]
fn record_seeds_are_sealed_records_the_collector_accepts() {
    let mut sealed = 0;
    for path in seeds("audit_record") {
        let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if matches!(
            verify_mac(ring(), &value),
            hipaa_core::audit::MacCheck::Valid
        ) {
            sealed += 1;
        }
    }
    assert!(sealed >= 3, "{sealed} sealed record seeds");
    // A fresh ledger accepts the seed batch of a whole chain.
    let batch: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/collector_ingest/seed-chain"),
        )
        .unwrap(),
    )
    .unwrap();
    let Value::Array(batch) = batch else {
        panic!("seed-chain is not an array");
    };
    let mut env = open_ingest();
    let summary = hipaa_collector::ingest(env.store.as_mut(), &env.collector, &batch).unwrap();
    assert_eq!(summary.accepted, batch.len() as u64);
    assert_eq!(summary.flagged, 0);
    // The same batch again: all duplicates.
    let again = hipaa_collector::ingest(env.store.as_mut(), &env.collector, &batch).unwrap();
    assert_eq!(again.duplicates, batch.len() as u64);
    let path = env.path.clone();
    drop(env);
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_public_route_is_not_reached_by_a_path_out_of_normal_form() {
    // The route target's oracle against the example policies, on hand-written probes.
    for probe in [
        "GET\n/healthz/../fhir/Patient/1",
        "GET\n//healthz",
        "GET\n/healthz%2F..%2Ffhir",
        "GET\n/./healthz",
        "GET\n/healthz\\..\\fhir",
    ] {
        route_match(probe.as_bytes());
    }
    let tables = example_tables();
    assert_eq!(tables.len(), example_policies().len());
    assert!(tables
        .iter()
        .any(|t| t.routes().iter().any(|r| r.class == RouteClass::Public)));
}

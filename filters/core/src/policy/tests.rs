use super::*;
use crate::test_support::remote_idp;
use serde_json::json;

/// A valid spec with a remote JWKS (no key material needed to validate it).
fn base_spec() -> serde_json::Value {
    json!({
        "identity": {
            "providers": [remote_idp()],
            "breakGlass": {"reasonCodes": ["patient-emergency"], "eligibleRoles": ["clinician"]}
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true, "allowPlaintext": true},
            {"name": "patient", "match": {"pathPrefix": "/fhir/Patient/", "methods": ["GET", "DELETE"]},
             "phi": true, "allowRoles": ["clinician"],
             "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}, "softDeleteOnly": true}
        ],
        "audit": {"collector": {"cluster": "audit-collector"}}
    })
}

fn errors_for(spec: serde_json::Value) -> Vec<String> {
    match Policy::from_spec_value(spec) {
        Ok(_) => vec![],
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn with(mut spec: serde_json::Value, pointer: &str, value: serde_json::Value) -> serde_json::Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = spec.pointer_mut(parent).unwrap();
    match target {
        serde_json::Value::Object(m) => {
            m.insert(key.to_string(), value);
        }
        serde_json::Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
        _ => panic!("bad pointer {pointer}"),
    }
    spec
}

#[test]
fn base_spec_is_valid_and_defaults_apply() {
    let p = Policy::from_spec_value(base_spec()).unwrap();
    let id = &p.spec.identity;
    assert_eq!(id.subject_claim, "sub");
    assert_eq!(id.roles_claim, "roles");
    assert_eq!(id.session.idle_timeout_seconds, 900);
    assert_eq!(id.session.absolute_timeout_seconds, 43_200);
    assert_eq!(id.session.session_claim, "sid");
    assert_eq!(id.providers[0].clock_skew_seconds, 30);
    assert_eq!(p.spec.unmatched_routes, UnmatchedRoutes::Deny);
    assert_eq!(p.spec.transport.min_tls_version, TlsVersion::Tls12);
    assert!(p.spec.transport.require_mtls);
    assert_eq!(p.spec.egress.unlisted_hosts, UnlistedHosts::Deny);
    let audit = p.spec.audit.as_ref().unwrap();
    assert_eq!(audit.when_collector_down, WhenCollectorDown::FailClosed);
    assert_eq!(audit.mac_key_env, "HIPAA_AUDIT_HMAC_KEY");
    assert_eq!(audit.collector.path, "/v1/records");
    assert_eq!(id.break_glass.as_ref().unwrap().header, "x-break-glass");
}

#[test]
fn plugin_config_accepts_spec_or_whole_document() {
    let spec = base_spec();
    assert!(Policy::from_plugin_config(spec.to_string().as_bytes()).is_ok());
    let doc = json!({"apiVersion": "hipaa-mesh/v1", "kind": "HipaaPolicy",
                     "metadata": {"name": "ehr"}, "spec": spec});
    assert!(Policy::from_plugin_config(doc.to_string().as_bytes()).is_ok());
    let err = Policy::from_plugin_config(b"{not json").unwrap_err();
    assert!(err.summary().contains("not valid JSON"));
}

#[test]
fn unknown_keys_are_errors_naming_the_path_and_choices() {
    let spec = with(base_spec(), "/routes/1/match/pathPrefx", json!("/x"));
    let errs = errors_for(spec);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("spec.routes[1].match.pathPrefx: unknown field"),
        "{errs:?}"
    );
    assert!(errs[0].contains("`pathPrefix`"));
}

#[test]
fn every_error_is_reported() {
    let mut spec = with(base_spec(), "/unmatchedRoutes", json!("public"));
    spec = with(spec, "/transport", json!({"minTlsVersion": "TLSv1.1"}));
    spec = with(
        spec,
        "/identity/providers/0/algorithms",
        json!(["RS256", "none", "HS256"]),
    );
    spec = with(spec, "/bogus", json!(1));
    let errs = errors_for(spec);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    let all = errs.join("\n");
    assert!(
        all.contains("spec.unmatchedRoutes: unknown variant `public`, expected `phi` or `deny`")
    );
    assert!(all.contains(
        "spec.transport.minTlsVersion: unknown variant `TLSv1.1`, expected `TLSv1.2` or `TLSv1.3`"
    ));
    assert!(all.contains("spec.identity.providers[0].algorithms[1]: unknown variant `none`"));
    assert!(all.contains("spec.identity.providers[0].algorithms[2]: unknown variant `HS256`"));
    assert!(all.contains("spec.bogus: unknown field"));
}

#[test]
fn a_provider_is_required() {
    let errs = errors_for(with(base_spec(), "/identity/providers", json!([])));
    assert_eq!(
        errs,
        vec!["spec.identity.providers: at least one identity provider is required"]
    );
    let errs = errors_for(json!({"routes": []}));
    assert_eq!(errs, vec!["spec.identity: is required"]);
}

#[test]
fn provider_fields_are_required_and_checked() {
    let errs = errors_for(with(
        base_spec(),
        "/identity/providers/0",
        json!({"name": "idp"}),
    ));
    let all = errs.join("\n");
    for key in ["issuer", "audiences", "jwks"] {
        assert!(
            all.contains(&format!("spec.identity.providers[0].{key}: is required")),
            "{all}"
        );
    }
    let errs = errors_for(with(
        base_spec(),
        "/identity/providers/0/clockSkewSeconds",
        json!(301),
    ));
    assert_eq!(
        errs,
        vec!["spec.identity.providers[0].clockSkewSeconds: 301 is above the maximum of 300"]
    );
    let errs = errors_for(with(
        base_spec(),
        "/identity/providers/0/audiences",
        json!([]),
    ));
    assert_eq!(errs.len(), 1);
    let errs = errors_for(with(
        base_spec(),
        "/identity/providers/0/maxTokenLifetimeSeconds",
        json!(0),
    ));
    assert!(errs[0].contains("maxTokenLifetimeSeconds"));
}

#[test]
fn jwks_source_rules() {
    let both = json!({"inline": "{}", "cluster": "idp", "path": "/j"});
    assert!(
        errors_for(with(base_spec(), "/identity/providers/0/jwks", both))[0].contains("not both")
    );
    assert!(
        errors_for(with(base_spec(), "/identity/providers/0/jwks", json!({})))[0]
            .contains("set `inline`")
    );
    let no_path = json!({"cluster": "idp"});
    assert!(
        errors_for(with(base_spec(), "/identity/providers/0/jwks", no_path))[0]
            .starts_with("spec.identity.providers[0].jwks.path")
    );
    let bad_inline = json!({"inline": "not json"});
    assert!(
        errors_for(with(base_spec(), "/identity/providers/0/jwks", bad_inline))[0]
            .starts_with("spec.identity.providers[0].jwks.inline")
    );
}

#[test]
fn failopen_needs_an_exception() {
    let spec = with(base_spec(), "/audit/whenCollectorDown", json!("failOpen"));
    let errs = errors_for(spec.clone());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("spec.audit.whenCollectorDown: `failOpen` needs an `exceptions` entry")
    );
    let ok = with(
        spec,
        "/exceptions",
        json!([{"safeguard": "audit-delivery", "justification": "lab-only replica, no real PHI"}]),
    );
    assert_eq!(errors_for(ok), Vec::<String>::new());
}

#[test]
fn idle_timeout_off_needs_an_exception() {
    let spec = with(
        base_spec(),
        "/identity/session",
        json!({"idleTimeoutSeconds": 0}),
    );
    assert!(errors_for(spec.clone())[0].contains("automatic-logoff"));
    let ok = with(
        spec,
        "/exceptions",
        json!([{"safeguard": "automatic-logoff", "justification": "kiosk behind badge-tap logout"}]),
    );
    assert_eq!(errors_for(ok), Vec::<String>::new());
}

#[test]
fn exceptions_need_a_real_justification() {
    let spec = with(
        base_spec(),
        "/exceptions",
        json!([{"safeguard": "integrity", "justification": ""}]),
    );
    assert!(errors_for(spec)[0].starts_with("spec.exceptions[0].justification"));
    let spec = with(
        base_spec(),
        "/exceptions",
        json!([{"safeguard": "encryption", "justification": "x"}]),
    );
    assert!(errors_for(spec)[0].contains("unknown variant `encryption`"));
}

#[test]
fn route_rules() {
    let cases = [
        (
            json!({"name": "a", "match": {}}),
            "spec.routes[1].match: set `path`",
        ),
        (
            json!({"name": "a", "match": {"path": "/a", "pathPrefix": "/a"}}),
            "not both",
        ),
        (
            json!({"name": "a", "match": {"path": "a"}}),
            "spec.routes[1].match.path: must start with '/'",
        ),
        (
            json!({"name": "a", "match": {"path": "/a", "methods": ["get"]}}),
            "spec.routes[1].match.methods[0]: `get` is not one of",
        ),
        (
            json!({"name": "a", "match": {"path": "/a"}, "public": true, "phi": true}),
            "both `public` and `phi`",
        ),
        (
            json!({"name": "a", "match": {"path": "/a"}, "allowPlaintext": true}),
            "spec.routes[1].allowPlaintext",
        ),
        (
            json!({"name": "a", "match": {"path": "/a"}, "public": true, "allowRoles": ["x"]}),
            "spec.routes[1].allowRoles",
        ),
        (
            json!({"name": "health", "match": {"path": "/a"}}),
            "duplicate route name `health`",
        ),
        (
            json!({"name": "a", "match": {"path": "/a"}, "inference": {"modelHeader": "x-m", "versionHeader": "x-v"}}),
            "set `phi: true`",
        ),
        (
            json!({"name": "a", "match": {"path": "/a"}, "phi": true, "patientFrom": {"header": "x-p", "query": "p"}}),
            "exactly one of",
        ),
        (
            json!({"name": "a", "match": {"path": "/a"}, "phi": true, "patientFrom": {"pathTemplate": "/a/{id}"}}),
            "spec.routes[1].patientFrom.pathTemplate",
        ),
    ];
    for (route, expected) in cases {
        let errs = errors_for(with(base_spec(), "/routes/1", route.clone()));
        assert!(
            errs.iter().any(|e| e.contains(expected)),
            "{route}: {errs:?}"
        );
    }
}

#[test]
fn transport_and_egress_rules() {
    let errs = errors_for(with(
        base_spec(),
        "/transport",
        json!({"allowedPeers": ["cluster.local/ns/a"]}),
    ));
    assert!(errs[0].starts_with("spec.transport.allowedPeers[0]"));
    let vendor = json!([{"host": "https://api.v.example", "baaId": "", "expires": "2027-02-30"}]);
    let errs = errors_for(with(base_spec(), "/egress", json!({"baaVendors": vendor})));
    assert_eq!(errs.len(), 3, "{errs:?}");
    let errs = errors_for(with(
        base_spec(),
        "/egress",
        json!({"unlistedHosts": "allow"}),
    ));
    assert!(errs[0].contains("unlisted-egress"));
}

#[test]
fn mesh_hosts_are_names_or_narrow_wildcards() {
    let ok = json!({"meshHosts": ["*.svc.cluster.local", "ledger.internal", "*.hospital.example"]});
    assert!(errors_for(with(base_spec(), "/egress", ok)).is_empty());
    for (bad, expected) in [
        ("*", "must be a host name"),
        ("*.com", "too broad"),
        ("*.local", "too broad"),
        ("http://svc.cluster.local", "must be a host name"),
        ("svc.cluster.local:80", "must be a host name"),
        ("a.*.cluster.local", "must be a host name"),
        ("", "must be a host name"),
    ] {
        let errs = errors_for(with(base_spec(), "/egress", json!({"meshHosts": [bad]})));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(errs[0].starts_with("spec.egress.meshHosts[0]"), "{errs:?}");
        assert!(errs[0].contains(expected), "{bad}: {errs:?}");
    }
    let both = json!({
        "baaVendors": [{"host": "api.v.example", "baaId": "B-1", "expires": "2027-01-01"}],
        "meshHosts": ["API.v.example"]
    });
    let errs = errors_for(with(base_spec(), "/egress", both));
    assert!(errs[0].contains("also a BAA vendor"), "{errs:?}");
}

#[test]
fn audit_bounds() {
    let audit = json!({"collector": {"cluster": "c", "timeoutMs": 0}, "maxBatch": 0, "maxBuffered": 0, "macKeyEnv": "lower"});
    let errs = errors_for(with(base_spec(), "/audit", audit));
    let all = errs.join("\n");
    for key in [
        "collector.timeoutMs",
        "maxBatch",
        "maxBuffered",
        "macKeyEnv",
    ] {
        assert!(all.contains(&format!("spec.audit.{key}")), "{key}: {all}");
    }
}

#[test]
fn break_glass_rules() {
    let bg = json!({"header": "X-Break", "reasonCodes": [], "eligibleRoles": []});
    let errs = errors_for(with(base_spec(), "/identity/breakGlass", bg));
    assert_eq!(errs.len(), 3, "{errs:?}");
}

#[test]
fn document_checks_api_version_kind_and_name() {
    let doc = json!({"apiVersion": "v2", "kind": "Other", "metadata": {"name": "Bad_Name"}, "spec": base_spec()});
    let errs = PolicyDocument::from_value(doc).unwrap_err();
    let all = errs.to_string();
    assert!(all.contains("apiVersion: `v2` is not supported"));
    assert!(all.contains("kind: `Other` is not supported"));
    assert!(all.contains("metadata.name: must be a DNS label"));
}

#[cfg(feature = "yaml")]
#[test]
fn example_policy_file_parses() {
    let text = include_str!("../../../../policies/ehr-api.yaml");
    let (doc, policy) = PolicyDocument::compile(text).unwrap();
    assert_eq!(doc.metadata.name, "ehr-api");
    assert_eq!(policy.routes.routes().len(), 4);
}

#[test]
fn the_signature_failure_budget_defaults_and_refuses_nonsense() {
    let p = Policy::from_spec_value(base_spec()).unwrap();
    let budget = p.spec.identity.signature_failure_budget;
    assert_eq!((budget.per_second, budget.burst), (20, 40));
    // Left at its default, it is not written into rendered configs.
    let rendered = serde_json::to_value(&p.spec).unwrap();
    assert!(rendered["identity"].get("signatureFailureBudget").is_none());

    let off = with(
        base_spec(),
        "/identity/signatureFailureBudget",
        json!({"perSecond": 0, "burst": 0}),
    );
    assert_eq!(errors_for(off), Vec::<String>::new());
    let errs = errors_for(with(
        base_spec(),
        "/identity/signatureFailureBudget",
        json!({"perSecond": 5, "burst": 0}),
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("spec.identity.signatureFailureBudget.burst: must be between 1"));
    let errs = errors_for(with(
        base_spec(),
        "/identity/signatureFailureBudget",
        json!({"perSecond": 200000}),
    ));
    assert!(
        errs[0].starts_with("spec.identity.signatureFailureBudget.perSecond:"),
        "{errs:?}"
    );
    let errs = errors_for(with(
        base_spec(),
        "/identity/signatureFailureBudget",
        json!({"perSecnd": 5}),
    ));
    assert!(errs[0].contains("unknown field `perSecnd`"), "{errs:?}");
}

#[test]
fn verification_defaults_to_wasm_and_accepts_envoy() {
    let p = Policy::from_spec_value(base_spec()).unwrap();
    assert_eq!(
        p.spec.identity.providers[0].verification,
        Verification::Wasm
    );
    let spec = with(
        base_spec(),
        "/identity/providers/0/verification",
        json!("envoy"),
    );
    let p = Policy::from_spec_value(spec).unwrap();
    assert_eq!(
        p.spec.identity.providers[0].verification,
        Verification::Envoy
    );
}

#[test]
fn verification_names_the_key_and_the_valid_choices() {
    let spec = with(
        base_spec(),
        "/identity/providers/0/verification",
        json!("native"),
    );
    let errs = errors_for(spec);
    assert_eq!(
        errs,
        vec![
            "spec.identity.providers[0].verification: unknown variant `native`, expected `wasm` or `envoy`"
        ]
    );
}

#[test]
fn verification_is_written_back_only_when_not_the_default() {
    // The rendered pluginConfig of a wasm-mode policy stays as it was.
    let p = Policy::from_spec_value(base_spec()).unwrap();
    let out = serde_json::to_value(&p.spec).unwrap();
    assert!(out.pointer("/identity/providers/0/verification").is_none());
    let spec = with(
        base_spec(),
        "/identity/providers/0/verification",
        json!("envoy"),
    );
    let p = Policy::from_spec_value(spec).unwrap();
    let out = serde_json::to_value(&p.spec).unwrap();
    assert_eq!(
        out.pointer("/identity/providers/0/verification"),
        Some(&json!("envoy"))
    );
}

#[test]
fn session_authority_rules() {
    let ok = with(
        base_spec(),
        "/identity/session",
        json!({"authority": {"cluster": "audit-collector", "onUnavailable": "deny"}}),
    );
    assert_eq!(errors_for(ok), Vec::<String>::new());
    let bad = with(
        base_spec(),
        "/identity/session",
        json!({"authority": {"cluster": " ", "timeoutMs": 0, "revocationsRefreshMs": 5000,
                             "keyEnv": "HIPAA_AUDIT_HMAC_KEY"}}),
    );
    let errs = errors_for(bad);
    for key in ["cluster", "timeoutMs", "revocationsRefreshMs", "keyEnv"] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("spec.identity.session.authority.{key}"))),
            "{key}: {errs:?}"
        );
    }
    assert!(errs.iter().any(|e| e.contains("key of its own")));
}

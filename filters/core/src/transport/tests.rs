//! The transport decision's tests: inbound rules, egress rules, body plans, denials.

use super::*;
use crate::integrity::{self, MacKeyRing};
use crate::test_support::remote_idp;
use serde_json::json;

const NOW: Option<i64> = Some(1_795_392_000 + 3600); // 2026-11-23T01:00:00Z

fn policy_with(transport: serde_json::Value, egress: serde_json::Value) -> Policy {
    let mut spec = json!({
        "identity": {"providers": [remote_idp()]},
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true, "allowPlaintext": true},
            {"name": "meta", "match": {"path": "/metadata"}, "public": true},
            {"name": "risk", "match": {"pathPrefix": "/ai/risk"}, "phi": true,
             "inference": {"modelHeader": "x-model-name", "versionHeader": "x-model-version"}},
            {"name": "orders", "match": {"pathPrefix": "/orders"}, "phi": true,
             "verifyRequests": true, "signResponses": true}
        ],
        "audit": {"collector": {"cluster": "audit-collector"}},
        "transport": transport,
        "egress": egress,
    });
    if spec["egress"]["unlistedHosts"] == "allow" {
        spec["exceptions"] = json!([{"safeguard": "unlisted-egress",
            "justification": "sandbox cluster without PHI"}]);
    }
    Policy::from_spec_value(spec).unwrap()
}

fn policy() -> Policy {
    policy_with(
        json!({"allowedPeers": ["spiffe://cluster.local/ns/ehr/sa/web"]}),
        json!({"baaVendors": [
            {"host": "api.llm-vendor.example", "baaId": "BAA-2026-014", "expires": "2027-06-30"},
            {"host": "old.vendor.example", "baaId": "BAA-2020-001", "expires": "2026-11-22"},
            {"host": "today.vendor.example", "baaId": "BAA-2025-007", "expires": "2026-11-23"}
        ]}),
    )
}

fn inbound(tls: Option<&str>, mtls: Option<bool>, peer: Option<&str>) -> ConnectionFacts {
    ConnectionFacts {
        tls_version: tls.map(String::from),
        mtls,
        peer_uri_san: peer.map(String::from),
        direction: Some(1),
    }
}

fn outbound() -> ConnectionFacts {
    ConnectionFacts {
        direction: Some(DIRECTION_OUTBOUND),
        ..Default::default()
    }
}

fn get(path: &str) -> RequestLine<'_> {
    RequestLine {
        method: "GET",
        path,
        authority: Some("ehr-api.ehr.svc"),
    }
}

fn to(authority: &str) -> RequestLine<'_> {
    RequestLine {
        method: "POST",
        path: "/v1/chat",
        authority: Some(authority),
    }
}

const WEB: &str = "spiffe://cluster.local/ns/ehr/sa/web";

fn denial(d: Decision) -> Denial {
    match d.verdict {
        Verdict::Deny(d) => d,
        Verdict::Allow(a) => panic!("allowed: {a:?}"),
    }
}

fn allowance(d: Decision) -> Allowance {
    match d.verdict {
        Verdict::Allow(a) => a,
        Verdict::Deny(d) => panic!("denied: {d:?}"),
    }
}

#[test]
fn allowed_peer_over_tls13_passes_with_annotations() {
    let d = decide(
        &inbound(Some("TLSv1.3"), Some(true), Some(WEB)),
        &get("/fhir/Patient/1"),
        &policy(),
        NOW,
    );
    assert_eq!(
        d.annotations,
        vec![(HEADER_TLS, "TLSv1.3".into()), (HEADER_PEER, WEB.into())]
    );
    let a = allowance(d);
    assert_eq!(a.direction, Direction::Inbound);
    assert_eq!(a.baa_id, None);
    assert!(!a.body.sign_response && !a.body.verify_request);
}

#[test]
fn tls12_meets_the_default_minimum() {
    let d = decide(
        &inbound(Some("TLSv1.2"), Some(true), Some(WEB)),
        &get("/x"),
        &policy(),
        NOW,
    );
    assert!(d.is_allowed());
}

#[test]
fn plaintext_is_refused_with_403() {
    let d = denial(decide(
        &inbound(None, Some(false), None),
        &get("/fhir/x"),
        &policy(),
        NOW,
    ));
    assert_eq!(d, Denial::PlaintextRefused);
    assert_eq!((d.status(), d.code()), (403, "plaintext_refused"));
}

#[test]
fn plaintext_is_refused_on_public_routes_without_allow_plaintext() {
    let d = denial(decide(
        &inbound(None, Some(false), None),
        &get("/metadata"),
        &policy(),
        NOW,
    ));
    assert_eq!(d, Denial::PlaintextRefused);
}

#[test]
fn allow_plaintext_public_route_passes_plaintext() {
    let d = decide(
        &inbound(None, Some(false), None),
        &get("/healthz"),
        &policy(),
        NOW,
    );
    assert!(d.is_allowed());
    assert!(d.annotations.is_empty());
    // Only the exact route: a suspicious spelling of it is not public.
    let d = decide(
        &inbound(None, Some(false), None),
        &get("//healthz"),
        &policy(),
        NOW,
    );
    assert_eq!(denial(d), Denial::PlaintextRefused);
}

#[test]
fn missing_attributes_are_denials() {
    let p = policy();
    let d = denial(decide(&inbound(None, None, None), &get("/x"), &p, NOW));
    assert_eq!(
        d,
        Denial::AttributeUnavailable {
            attribute: "connection.tls_version"
        }
    );
    assert_eq!(
        (d.status(), d.code()),
        (403, "connection_attribute_unavailable")
    );
    // TLS version missing but a certificate claimed: inconsistent, refused.
    let d = denial(decide(
        &inbound(None, Some(true), Some(WEB)),
        &get("/x"),
        &p,
        NOW,
    ));
    assert_eq!(d.code(), "connection_attribute_unavailable");
    // Empty string is not a version.
    let d = denial(decide(&inbound(Some(""), None, None), &get("/x"), &p, NOW));
    assert_eq!(d.code(), "connection_attribute_unavailable");
    let d = denial(decide(
        &inbound(Some("TLSv1.3"), None, Some(WEB)),
        &get("/x"),
        &p,
        NOW,
    ));
    assert_eq!(
        d,
        Denial::AttributeUnavailable {
            attribute: "connection.mtls"
        }
    );
    let d = denial(decide(
        &inbound(Some("TLSv1.3"), Some(true), None),
        &get("/x"),
        &p,
        NOW,
    ));
    assert_eq!(d, Denial::PeerNotAllowed { peer: None });
}

#[test]
fn old_tls_is_refused() {
    for v in ["TLSv1", "TLSv1.0", "TLSv1.1"] {
        let d = denial(decide(
            &inbound(Some(v), Some(true), Some(WEB)),
            &get("/x"),
            &policy(),
            NOW,
        ));
        assert_eq!(d, Denial::TlsVersionTooLow { version: v.into() });
        assert_eq!((d.status(), d.code()), (403, "tls_version_too_low"));
    }
}

#[test]
fn unknown_tls_version_is_refused() {
    for v in ["SSLv3", "unknown", "tlsv1.3", "TLSv1.4"] {
        let d = denial(decide(
            &inbound(Some(v), Some(true), Some(WEB)),
            &get("/x"),
            &policy(),
            NOW,
        ));
        assert_eq!(d.code(), "tls_version_unknown", "{v}");
    }
}

#[test]
fn tls13_minimum_refuses_tls12() {
    let p = policy_with(json!({"minTlsVersion": "TLSv1.3"}), json!({}));
    let d = denial(decide(
        &inbound(Some("TLSv1.2"), Some(true), None),
        &get("/x"),
        &p,
        NOW,
    ));
    assert_eq!(d.code(), "tls_version_too_low");
    assert!(decide(
        &inbound(Some("TLSv1.3"), Some(true), None),
        &get("/x"),
        &p,
        NOW
    )
    .is_allowed());
}

#[test]
fn no_client_certificate_is_refused_when_mtls_required() {
    let d = denial(decide(
        &inbound(Some("TLSv1.3"), Some(false), None),
        &get("/x"),
        &policy(),
        NOW,
    ));
    assert_eq!(d, Denial::ClientCertificateRequired);
    assert_eq!((d.status(), d.code()), (403, "client_certificate_required"));
}

#[test]
fn mtls_optional_allows_no_certificate_with_empty_peer_list() {
    let p = policy_with(json!({"requireMtls": false}), json!({}));
    assert!(decide(
        &inbound(Some("TLSv1.2"), Some(false), None),
        &get("/x"),
        &p,
        NOW
    )
    .is_allowed());
    // and does not need the mtls attribute at all
    assert!(decide(&inbound(Some("TLSv1.2"), None, None), &get("/x"), &p, NOW).is_allowed());
}

#[test]
fn allowed_peers_without_required_mtls_still_need_a_listed_peer() {
    let p = policy_with(
        json!({"requireMtls": false, "allowedPeers": [WEB]}),
        json!({}),
    );
    let d = denial(decide(
        &inbound(Some("TLSv1.3"), Some(false), Some(WEB)),
        &get("/x"),
        &p,
        NOW,
    ));
    // A SAN without a presented certificate is not believed.
    assert_eq!(d, Denial::PeerNotAllowed { peer: None });
    assert!(decide(
        &inbound(Some("TLSv1.3"), Some(true), Some(WEB)),
        &get("/x"),
        &p,
        NOW
    )
    .is_allowed());
}

#[test]
fn unlisted_peer_is_refused() {
    let other = "spiffe://cluster.local/ns/ehr/sa/batch";
    let d = denial(decide(
        &inbound(Some("TLSv1.3"), Some(true), Some(other)),
        &get("/x"),
        &policy(),
        NOW,
    ));
    assert_eq!(
        d,
        Denial::PeerNotAllowed {
            peer: Some(other.into())
        }
    );
    assert_eq!((d.status(), d.code()), (403, "peer_not_allowed"));
    // exact match only
    let d = denial(decide(
        &inbound(
            Some("TLSv1.3"),
            Some(true),
            Some("spiffe://cluster.local/ns/ehr/sa/web/x"),
        ),
        &get("/x"),
        &policy(),
        NOW,
    ));
    assert_eq!(d.code(), "peer_not_allowed");
}

#[test]
fn empty_peer_list_allows_any_certificate() {
    let p = policy_with(json!({}), json!({}));
    let d = decide(
        &inbound(Some("TLSv1.3"), Some(true), None),
        &get("/x"),
        &p,
        NOW,
    );
    assert!(d.is_allowed());
    let d = decide(
        &inbound(
            Some("TLSv1.3"),
            Some(true),
            Some("spiffe://other.example/sa/x"),
        ),
        &get("/x"),
        &p,
        NOW,
    );
    assert!(d.is_allowed());
}

#[test]
fn denials_carry_tls_facts_for_the_audit() {
    let d = decide(
        &inbound(Some("TLSv1.1"), Some(true), Some(WEB)),
        &get("/x"),
        &policy(),
        NOW,
    );
    assert!(!d.is_allowed());
    assert_eq!(
        d.annotations,
        vec![(HEADER_TLS, "TLSv1.1".into()), (HEADER_PEER, WEB.into())]
    );
}

#[test]
fn direction_unset_or_unreadable_gets_inbound_rules() {
    for dir in [None, Some(0), Some(1), Some(7)] {
        let mut f = inbound(None, Some(false), None);
        f.direction = dir;
        assert_eq!(
            denial(decide(&f, &get("/x"), &policy(), NOW)),
            Denial::PlaintextRefused
        );
    }
}

#[test]
fn body_plans_follow_the_route() {
    let ok = inbound(Some("TLSv1.3"), Some(true), Some(WEB));
    let p = policy();
    let a = allowance(decide(&ok, &get("/ai/risk"), &p, NOW));
    assert!(a.body.sign_response && !a.body.verify_request);
    assert_eq!(a.body.max_body_bytes, 1024 * 1024);
    let post = RequestLine {
        method: "POST",
        path: "/orders/1",
        authority: None,
    };
    let a = allowance(decide(&ok, &post, &p, NOW));
    assert!(a.body.sign_response && a.body.verify_request);
    // reads are not verified
    let a = allowance(decide(&ok, &get("/orders/1"), &p, NOW));
    assert!(a.body.sign_response && !a.body.verify_request);
    assert!(a.body.too_large(1024 * 1024 + 1));
    assert!(!a.body.too_large(1024 * 1024));
}

#[test]
fn egress_to_a_listed_vendor_yields_the_baa() {
    for host in [
        "api.llm-vendor.example",
        "API.LLM-Vendor.Example",
        "api.llm-vendor.example:443",
        "api.llm-vendor.example.",
    ] {
        let d = decide(&outbound(), &to(host), &policy(), NOW);
        assert_eq!(
            d.annotations,
            vec![(HEADER_BAA, "BAA-2026-014".into())],
            "{host}"
        );
        let a = allowance(d);
        assert_eq!(a.direction, Direction::Outbound);
        assert_eq!(a.baa_id.as_deref(), Some("BAA-2026-014"));
        assert_eq!(a.body, BodyPlan::default());
    }
}

#[test]
fn egress_to_mesh_hosts_needs_no_baa_and_never_widens() {
    let p = policy_with(
        json!({}),
        json!({"baaVendors": [], "meshHosts": ["*.svc.cluster.local", "ledger.internal"]}),
    );
    for host in [
        "results.lab.svc.cluster.local",
        "Results.Lab.SVC.cluster.local:8080",
        "ledger.internal",
        "LEDGER.internal:443",
    ] {
        let a = allowance(decide(&outbound(), &to(host), &p, NOW));
        assert_eq!(a.baa_id, None, "{host}");
        assert_eq!(a.direction, Direction::Outbound);
    }
    for host in [
        "svc.cluster.local",     // the suffix itself is not under its wildcard
        "evilsvc.cluster.local", // a suffix match must start at a label
        "svc.cluster.local.evil.example",
        "x.ledger.internal", // an exact entry is exact
        "api.openai.example",
    ] {
        let d = denial(decide(&outbound(), &to(host), &p, NOW));
        assert!(
            matches!(d, Denial::EgressHostNotListed { .. }),
            "{host}: {d:?}"
        );
    }
}

#[test]
fn egress_ignores_transport_rules() {
    // The app talks plaintext to its own sidecar; outbound rules are egress rules.
    let d = decide(&outbound(), &to("api.llm-vendor.example"), &policy(), NOW);
    assert!(d.is_allowed());
}

#[test]
fn egress_ipv6_literal_is_parsed_not_trusted() {
    // Policy validation lists host names only; a bracketed literal parses to its address
    // and is refused as unlisted, not as malformed.
    for a in ["[::1]:443", "[::1]"] {
        let d = denial(decide(&outbound(), &to(a), &policy(), NOW));
        assert_eq!(d, Denial::EgressHostNotListed { host: "::1".into() }, "{a}");
    }
}

#[test]
fn egress_to_an_unlisted_host_is_refused() {
    for host in [
        "api.other-llm.example",
        "llm-vendor.example",
        "api.llm-vendor.example.evil.com",
    ] {
        let d = denial(decide(&outbound(), &to(host), &policy(), NOW));
        assert_eq!(d.code(), "egress_host_not_listed");
        assert_eq!(d.status(), 403);
    }
}

#[test]
fn egress_without_a_usable_host_is_refused() {
    let p = policy();
    let none = RequestLine {
        method: "GET",
        path: "/",
        authority: None,
    };
    assert_eq!(
        denial(decide(&outbound(), &none, &p, NOW)),
        Denial::EgressHostMissing
    );
    for bad in [
        "",
        " ",
        "user@api.llm-vendor.example",
        "[::1",
        "api.llm-vendor.example:x",
        "a:",
    ] {
        assert_eq!(
            denial(decide(&outbound(), &to(bad), &p, NOW)),
            Denial::EgressHostMissing,
            "{bad}"
        );
    }
}

#[test]
fn egress_baa_is_valid_through_its_expiry_day() {
    let p = policy();
    let a = allowance(decide(&outbound(), &to("today.vendor.example"), &p, NOW));
    assert_eq!(a.baa_id.as_deref(), Some("BAA-2025-007"));
    let last_second = 1_795_392_000 + 86_399;
    assert!(decide(
        &outbound(),
        &to("today.vendor.example"),
        &p,
        Some(last_second)
    )
    .is_allowed());
    let next_day = 1_795_392_000 + 86_400;
    let d = denial(decide(
        &outbound(),
        &to("today.vendor.example"),
        &p,
        Some(next_day),
    ));
    assert_eq!(d.code(), "egress_baa_expired");
}

#[test]
fn egress_to_an_expired_vendor_is_refused() {
    let d = denial(decide(
        &outbound(),
        &to("old.vendor.example"),
        &policy(),
        NOW,
    ));
    assert_eq!(
        d,
        Denial::EgressBaaExpired {
            host: "old.vendor.example".into(),
            baa_id: "BAA-2020-001".into(),
            expires: "2026-11-22".into()
        }
    );
    assert_eq!(d.status(), 403);
    assert!(d.description().contains("BAA-2020-001"));
}

#[test]
fn egress_without_a_clock_refuses_listed_vendors() {
    let d = denial(decide(
        &outbound(),
        &to("api.llm-vendor.example"),
        &policy(),
        None,
    ));
    assert_eq!(d, Denial::AttributeUnavailable { attribute: "time" });
}

#[test]
fn unlisted_hosts_allow_passes_unlisted_but_not_expired() {
    let p = policy_with(
        json!({}),
        json!({"unlistedHosts": "allow", "baaVendors": [
            {"host": "old.vendor.example", "baaId": "BAA-2020-001", "expires": "2020-01-01"}
        ]}),
    );
    let d = decide(&outbound(), &to("anything.example"), &p, NOW);
    assert!(d.annotations.is_empty());
    assert_eq!(allowance(d).baa_id, None);
    let d = denial(decide(&outbound(), &to("old.vendor.example"), &p, NOW));
    assert_eq!(d.code(), "egress_baa_expired");
}

#[test]
fn baa_dates() {
    let now = 1_795_392_000 + 3600;
    assert!(baa_in_force("2026-11-23", now));
    assert!(!baa_in_force("2026-11-22", now));
    assert!(!baa_in_force("not-a-date", now));
}

#[test]
fn host_normalisation() {
    assert_eq!(
        normalize_host("Example.COM:8443").as_deref(),
        Some("example.com")
    );
    assert_eq!(
        normalize_host("[2001:DB8::1]:443").as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(normalize_host("10.0.0.1:80").as_deref(), Some("10.0.0.1"));
    assert_eq!(normalize_host("[::1]x"), None);
    assert_eq!(normalize_host("[]:443"), None);
    assert_eq!(normalize_host("a:123456"), None);
    assert_eq!(normalize_host("a b"), None);
    assert_eq!(normalize_host("::1"), None); // a bare IPv6 literal must be bracketed
}

#[test]
fn every_denial_has_one_status_and_code() {
    let all = [
        Denial::PlaintextRefused,
        Denial::AttributeUnavailable { attribute: "x" },
        Denial::TlsVersionTooLow {
            version: "TLSv1".into(),
        },
        Denial::TlsVersionUnknown {
            version: "?".into(),
        },
        Denial::ClientCertificateRequired,
        Denial::PeerNotAllowed { peer: None },
        Denial::EgressHostMissing,
        Denial::EgressHostNotListed { host: "h".into() },
        Denial::EgressBaaExpired {
            host: "h".into(),
            baa_id: "b".into(),
            expires: "2020-01-01".into(),
        },
        Denial::RequestSignatureMissing,
        Denial::RequestSignatureInvalid,
        Denial::RequestBodyTooLarge,
        Denial::IntegrityKeyUnavailable,
        Denial::Unconfigured,
    ];
    assert_eq!(all.len(), Denial::CODES.len());
    for (i, d) in all.iter().enumerate() {
        assert_eq!(d.index(), i);
        assert!(d
            .code()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_'));
        assert!(matches!(d.status(), 403 | 413 | 503));
    }
    assert_eq!(Denial::RequestBodyTooLarge.status(), 413);
    assert_eq!(Denial::IntegrityKeyUnavailable.status(), 503);
}

#[test]
fn request_verification_and_response_signing() {
    let keys = MacKeyRing::parse(&"ab".repeat(32)).unwrap();
    let good = integrity::sign(keys.current(), b"{}");
    assert_eq!(verify_request_body(Some(&keys), Some(&good), b"{}"), Ok(()));
    assert_eq!(
        verify_request_body(Some(&keys), Some(&good), b"{ }"),
        Err(Denial::RequestSignatureInvalid)
    );
    assert_eq!(
        verify_request_body(Some(&keys), Some("garbage"), b"{}"),
        Err(Denial::RequestSignatureInvalid)
    );
    assert_eq!(
        verify_request_body(Some(&keys), None, b"{}"),
        Err(Denial::RequestSignatureMissing)
    );
    assert_eq!(
        verify_request_body(None, Some(&good), b"{}"),
        Err(Denial::IntegrityKeyUnavailable)
    );
    // Responses are signed with the response key (Ed25519), never the request key.
    let response_key = integrity::ResponseSigningKey::from_seed("r1", &[5u8; 32]).unwrap();
    let mut signer = response_signer(Some(&response_key)).unwrap();
    signer.update(b"{");
    signer.update(b"}");
    let signed = signer.finish();
    assert_ne!(signed, good);
    let public = integrity::ResponseVerifyingKeys::parse(&response_key.public_key_text()).unwrap();
    assert_eq!(integrity::verify_response(&public, &signed, b"{}"), Ok(()));
    assert!(verify_request_body(Some(&keys), Some(&signed), b"{}").is_err());
    assert_eq!(
        response_signer(None).err(),
        Some(Denial::IntegrityKeyUnavailable)
    );
    assert_eq!(Denial::RequestSignatureMissing.status(), 403);
    assert_eq!(Denial::RequestSignatureInvalid.status(), 403);
}

#[test]
fn denial_reply_is_the_contract() {
    let reply = Denial::PlaintextRefused.reply("req-1");
    assert_eq!(reply.status, 403);
    let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(v["error"], "access_denied");
    assert_eq!(Denial::RequestBodyTooLarge.error(), "request_too_large");
    assert_eq!(Denial::Unconfigured.error(), "temporarily_unavailable");
    assert_eq!(v["request_id"], "req-1");
    assert!(v["error_description"].as_str().unwrap().contains("TLS"));
    assert_eq!(v.as_object().unwrap().len(), 3);
    // The headers transport's reply always had: the reason, never cached, JSON.
    assert_eq!(
        reply.headers,
        [
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
            ("x-hipaa-denial", "plaintext_refused"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(Denial::RequestBodyTooLarge.reply("r").status, 413);
}

//! Attacks through the real Envoy 1.40 (V8) with the chain audit → authn (→ transport where it
//! matters) delivering to the real collector: every attack is a 4xx (never a 5xx), never echoes
//! the token, is recorded by the collector as a denial with the specific `outcome.reason`, and
//! leaves Envoy and its Wasm VMs serving. The cases `authn.rs` already shows refused are here
//! again only where the audit record is the new assertion; the rest are new.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hipaa_e2e::chain::{Stack, CLUSTER};
use hipaa_e2e::collector::Collector;
use hipaa_e2e::faulty::{connection_manager, CountingListener};
use hipaa_e2e::forge::{
    ecdsa_sig, good_claims, p256_n_minus_1, rsa_public_pem, scalar, sign_raw, sign_with,
    with_signature, P256_N,
};
use hipaa_e2e::http::{request, try_request, Response};
use hipaa_e2e::idp::{self, Keys};
use hipaa_e2e::tls;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

fn spec() -> Value {
    json!({
        "identity": {
            "providers": [{
                "name": "demo-idp", "issuer": idp::ISSUER, "audiences": [idp::AUDIENCE],
                "jwks": {"inline": ""}, "algorithms": ["RS256", "ES256", "EdDSA"],
                "maxTokenLifetimeSeconds": 3600
            }],
            "sharedAccounts": {"denySubjects": ["admin", "shared"]},
            // Every case must reach its own check; the flood budget has its own test (authn.rs).
            "signatureFailureBudget": {"perSecond": 1000, "burst": 1000}
        },
        "routes": [
            {"name": "health", "match": {"path": "/healthz"}, "public": true, "allowPlaintext": true},
            {"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/", "methods": ["GET", "PUT"]},
             "phi": true, "allowRoles": ["clinician"],
             "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}}
        ],
        "audit": {
            "collector": {"cluster": CLUSTER, "path": "/v1/records", "timeoutMs": 1000},
            "flushIntervalMs": 100, "maxBatch": 100, "maxBuffered": 20000
        },
        "transport": {"minTlsVersion": "TLSv1.2", "requireMtls": true}
    })
}

/// The chain `stages` on the spec above, delivering to the collector; `plaintext` keeps the
/// listener plaintext even for the combined filter (the plaintext-refusal cases).
fn stack_with(stages: &[&'static str], plaintext: bool) -> Stack {
    Stack::start(
        stages,
        |keys| {
            let mut policy = spec();
            policy["identity"]["providers"][0]["jwks"]["inline"] = json!(keys.jwks());
            policy
        },
        |t| {
            if plaintext {
                t.tls = None;
            }
        },
        // As `policy render --target envoy` configures an inbound listener: Envoy takes the
        // client address from the connection. With Envoy's default (`use_remote_address:
        // false`, no trusted hops, as in the plain test Topology) the downstream address — the
        // `source.address` attribute the audit filter records as `source.ip` — is the last
        // X-Forwarded-For entry, so a client could write its own; the spoofing tests below
        // would catch that.
        |c| connection_manager(c)["use_remote_address"] = json!(true),
    )
}

fn stack(stages: &[&'static str]) -> Stack {
    stack_with(stages, false)
}

/// One attack: a request on its own patient id (so its record can be found), and what must
/// come back and be recorded.
struct Case {
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
    reason: &'static str,
    /// The secret that must not come back in the body (the token).
    secret: Option<String>,
}

struct Cases {
    list: Vec<Case>,
}

impl Cases {
    fn patient(&self) -> String {
        format!("adv-{}", self.list.len())
    }

    /// A token presented the ordinary way, expected to be refused with 401 `reason`.
    fn token(&mut self, name: &str, token: String, reason: &'static str) {
        let (status, error) = if reason == "multiple_credentials" {
            (400, "invalid_request")
        } else {
            (401, "invalid_token")
        };
        self.add(
            name,
            "GET",
            None,
            vec![("authorization".into(), format!("Bearer {token}"))],
            status,
            error,
            reason,
            Some(token),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &str,
        method: &'static str,
        query: Option<String>,
        headers: Vec<(String, String)>,
        status: u16,
        error: &'static str,
        reason: &'static str,
        secret: Option<String>,
    ) {
        let mut path = format!("/fhir/Patient/{}", self.patient());
        if let Some(q) = query {
            path.push('?');
            path.push_str(&q);
        }
        self.list.push(Case {
            name: name.to_string(),
            method,
            path,
            headers,
            body: Vec::new(),
            status,
            error,
            reason,
            secret,
        });
    }
}

fn header_text(v: &Value) -> String {
    v.to_string()
}

/// A header object text with one member replaced or added.
fn with(mut v: Value, key: &str, value: Value) -> String {
    v[key] = value;
    v.to_string()
}

fn rsa_header() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": "demo-rsa"})
}

/// Every token attack, each on its own patient id.
fn token_cases(keys: &Keys, jku: &CountingListener) -> Cases {
    let mut c = Cases { list: Vec::new() };
    let claims = good_claims("alice");
    let payload = claims.to_string();
    let good = sign_raw(keys, "RS256", &header_text(&rsa_header()), &payload);
    let good_sig = good.rsplit('.').next().unwrap().to_string();

    // alg none, every case, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = json!({"alg": alg, "typ": "JWT"}).to_string();
        let bare = format!("{}.{}.", B64.encode(&h), B64.encode(&payload));
        c.token(
            &format!("alg {alg}, empty signature"),
            bare,
            "alg_not_allowed",
        );
        let signed = format!("{}.{}.{good_sig}", B64.encode(&h), B64.encode(&payload));
        c.token(
            &format!("alg {alg}, with a signature"),
            signed,
            "alg_not_allowed",
        );
    }

    // Key confusion: HS256 with the RSA public key (PEM and JWK text) as the HMAC secret.
    let pem = rsa_public_pem(keys);
    let jwks: Value = serde_json::from_str(&keys.jwks()).unwrap();
    let rsa_jwk = jwks["keys"][0].to_string();
    for (what, secret) in [
        ("PEM", pem.as_bytes().to_vec()),
        ("JWK", rsa_jwk.as_bytes().to_vec()),
    ] {
        let key = jsonwebtoken::EncodingKey::from_secret(&secret);
        let hs = json!({"alg": "HS256", "typ": "JWT", "kid": "demo-rsa"}).to_string();
        c.token(
            &format!("HS256 signed with the RSA public key ({what})"),
            sign_with(&key, "HS256", &hs, &payload),
            "alg_not_allowed",
        );
    }

    // Keys named or carried by the token: never used, never fetched.
    let rogue = Keys::generate();
    let rogue_jwks: Value = serde_json::from_str(&rogue.jwks()).unwrap();
    let url = format!("http://127.0.0.1:{}/jwks.json", jku.port);
    let embedded = with(rsa_header(), "jwk", rogue_jwks["keys"][0].clone());
    c.token(
        "jwk: the attacker's own key embedded, signed with it",
        sign_raw(&rogue, "RS256", &embedded, &payload),
        "header_key_refused",
    );
    for (member, value) in [
        ("jku", json!(url)),
        ("x5u", json!(url)),
        ("x5c", json!([B64.encode(b"not a certificate")])),
    ] {
        c.token(
            &format!("{member} header"),
            sign_raw(keys, "RS256", &with(rsa_header(), member, value), &payload),
            "header_key_refused",
        );
    }
    let no_kid_jku = json!({"alg": "RS256", "jku": url}).to_string();
    c.token(
        "jku without kid",
        sign_raw(&rogue, "RS256", &no_kid_jku, &payload),
        "header_key_refused",
    );

    // Hostile kid values, signed with the real key (only the kid is wrong).
    let huge = "k".repeat(4000);
    for (what, kid) in [
        ("path traversal", "../../../../../../etc/passwd"),
        ("absolute path", "/dev/null"),
        ("SQL", "x' UNION SELECT 'secret' --"),
        ("NUL byte", "demo-rsa\u{0}"),
        ("trailing space", "demo-rsa "),
        ("other case", "DEMO-RSA"),
        ("empty", ""),
        ("huge", huge.as_str()),
        ("other key's kid", "demo-ec"),
    ] {
        let reason = if what == "other key's kid" {
            "key_alg_mismatch"
        } else {
            "unknown_kid"
        };
        c.token(
            &format!("kid {what}"),
            sign_raw(
                keys,
                "RS256",
                &with(rsa_header(), "kid", json!(kid)),
                &payload,
            ),
            reason,
        );
    }
    for (what, kid) in [
        ("number", json!(1)),
        ("null", Value::Null),
        ("bool", json!(true)),
        ("array", json!(["demo-rsa"])),
        ("object", json!({"kid": "demo-rsa"})),
    ] {
        c.token(
            &format!("kid as {what}"),
            sign_raw(keys, "RS256", &with(rsa_header(), "kid", kid), &payload),
            "malformed",
        );
    }
    let too_big_kid = "k".repeat(9000);
    c.token(
        "kid over the token size limit",
        sign_raw(
            keys,
            "RS256",
            &with(rsa_header(), "kid", json!(too_big_kid)),
            &payload,
        ),
        "too_large",
    );

    // ECDSA r and s at the edges of the group: 0, 1, n-1, n.
    let es_header = json!({"alg": "ES256", "typ": "JWT", "kid": "demo-ec"}).to_string();
    let edges = [
        ("0", scalar(0)),
        ("1", scalar(1)),
        ("n-1", p256_n_minus_1()),
        ("n", P256_N),
    ];
    for (rn, r) in &edges {
        for (sn, s) in &edges {
            let t = format!(
                "{}.{}.{}",
                B64.encode(&es_header),
                B64.encode(&payload),
                ecdsa_sig(r, s)
            );
            c.token(&format!("ES256 r={rn} s={sn}"), t, "bad_signature");
        }
    }

    // Signatures of the wrong length (valid ones, cut or padded), for each algorithm.
    let es_good = sign_raw(keys, "ES256", &es_header, &payload);
    let ed_header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "demo-ed25519"}).to_string();
    let ed_good = sign_raw(keys, "EdDSA", &ed_header, &payload);
    let rs_header = header_text(&rsa_header());
    for (alg, header, token) in [
        ("RS256", &rs_header, &good),
        ("ES256", &es_header, &es_good),
        ("EdDSA", &ed_header, &ed_good),
    ] {
        let sig = B64.decode(token.rsplit('.').next().unwrap()).unwrap();
        let mut longer = sig.clone();
        longer.push(0);
        let mut doubled = sig.clone();
        doubled.extend_from_slice(&sig);
        for (what, bytes) in [
            ("one byte short", sig[..sig.len() - 1].to_vec()),
            ("one byte long", longer),
            ("doubled", doubled),
            ("one byte", vec![1u8]),
        ] {
            c.token(
                &format!("{alg} signature {what}"),
                with_signature(header, &payload, &bytes),
                "bad_signature",
            );
        }
    }
    // ES256 in ASN.1 DER instead of r || s (RFC 7518 3.4 requires the raw form).
    let raw = B64.decode(es_good.rsplit('.').next().unwrap()).unwrap();
    let der_int = |v: &[u8]| {
        let mut v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let mut der_body = der_int(&raw[..32]);
    der_body.extend(der_int(&raw[32..]));
    let mut der = vec![0x30, der_body.len() as u8];
    der.extend(der_body);
    c.token(
        "ES256 signature in DER",
        with_signature(&es_header, &payload, &der),
        "bad_signature",
    );

    // Duplicate members, validly signed (only the duplicate is wrong).
    let rest = &payload[1..];
    for (what, header, body) in [
        (
            "header alg twice",
            r#"{"alg":"RS256","kid":"demo-rsa","alg":"RS256"}"#.to_string(),
            payload.clone(),
        ),
        (
            "header alg none after RS256",
            r#"{"alg":"RS256","kid":"demo-rsa","alg":"none"}"#.to_string(),
            payload.clone(),
        ),
        (
            "header kid twice",
            r#"{"alg":"RS256","kid":"demo-ec","kid":"demo-rsa"}"#.to_string(),
            payload.clone(),
        ),
        (
            "payload sub twice",
            rs_header.clone(),
            format!(r#"{{"sub":"admin",{rest}"#),
        ),
        (
            "payload iss twice, one escaped",
            rs_header.clone(),
            format!(r#"{{"\u0069ss":"https://evil.example",{rest}"#),
        ),
        (
            "payload roles twice",
            rs_header.clone(),
            format!(r#"{{"roles":["admin"],{rest}"#),
        ),
        (
            "payload nested duplicate",
            rs_header.clone(),
            format!(r#"{{"ctx":{{"a":1,"a":2}},{rest}"#),
        ),
    ] {
        c.token(
            &format!("duplicate member: {what}"),
            sign_raw(keys, "RS256", &header, &body),
            "duplicate_member",
        );
    }

    // Time claims of the wrong type or out of range, validly signed.
    let now = claims["iat"].as_u64().unwrap();
    let big = (1u64 << 40) + 1;
    let raw_claim = |name: &str, raw: &str| {
        let mut m = claims.as_object().unwrap().clone();
        m.remove(name);
        let text = Value::Object(m).to_string();
        format!("{{\"{name}\":{raw},{}", &text[1..])
    };
    for (what, name, raw, reason) in [
        (
            "exp as a string",
            "exp",
            format!("\"{}\"", now + 600),
            "bad_claim_type",
        ),
        (
            "exp as a fraction",
            "exp",
            format!("{}.5", now + 600),
            "bad_claim_type",
        ),
        ("exp 1e300", "exp", "1e300".into(), "bad_claim_type"),
        ("exp above 2^40", "exp", big.to_string(), "bad_claim_type"),
        (
            "exp above u64",
            "exp",
            "18446744073709551616".into(),
            "bad_claim_type",
        ),
        ("exp negative", "exp", "-1".into(), "bad_claim_type"),
        ("exp null", "exp", "null".into(), "bad_claim_type"),
        (
            "exp as an array",
            "exp",
            format!("[{}]", now + 600),
            "bad_claim_type",
        ),
        (
            "iat as a string",
            "iat",
            format!("\"{now}\""),
            "bad_claim_type",
        ),
        ("iat negative", "iat", "-600".into(), "bad_claim_type"),
        (
            "iat as a fraction",
            "iat",
            format!("{now}.25"),
            "bad_claim_type",
        ),
        (
            "nbf as a string",
            "nbf",
            format!("\"{now}\""),
            "bad_claim_type",
        ),
        ("nbf huge", "nbf", "1e20".into(), "bad_claim_type"),
        (
            "auth_time as a string",
            "auth_time",
            format!("\"{now}\""),
            "bad_claim_type",
        ),
        (
            "iat in the future",
            "iat",
            (now + 3000).to_string(),
            "iat_in_future",
        ),
        (
            "exp in the past",
            "exp",
            (now - 3600).to_string(),
            "expired",
        ),
        (
            "exp far future (lifetime)",
            "exp",
            (now + 86_400 * 365).to_string(),
            "lifetime_too_long",
        ),
    ] {
        c.token(
            &format!("time claim: {what}"),
            sign_raw(keys, "RS256", &rs_header, &raw_claim(name, &raw)),
            reason,
        );
    }
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    c.token(
        "time claim: exp missing",
        sign_raw(keys, "RS256", &rs_header, &no_exp.to_string()),
        "missing_claim",
    );

    // crit, zip, JWE.
    for (what, h, reason) in [
        (
            "crit [exp]",
            with(rsa_header(), "crit", json!(["exp"])),
            "crit_unsupported",
        ),
        (
            "crit []",
            with(rsa_header(), "crit", json!([])),
            "crit_unsupported",
        ),
        (
            "crit b64",
            {
                let mut h = rsa_header();
                h["b64"] = json!(false);
                h["crit"] = json!(["b64"]);
                h.to_string()
            },
            "crit_unsupported",
        ),
        (
            "zip DEF",
            with(rsa_header(), "zip", json!("DEF")),
            "zip_unsupported",
        ),
        (
            "enc in a JWS",
            with(rsa_header(), "enc", json!("A256GCM")),
            "jwe_unsupported",
        ),
    ] {
        c.token(what, sign_raw(keys, "RS256", &h, &payload), reason);
    }
    let jwe_header = B64.encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"demo-rsa"}"#);
    c.token(
        "JWE (5 segments)",
        format!(
            "{jwe_header}.{}.{}.{}.{}",
            B64.encode([7u8; 256]),
            B64.encode([1u8; 12]),
            B64.encode(b"ciphertext"),
            B64.encode([2u8; 16])
        ),
        "jwe_unsupported",
    );

    // Two credentials.
    let second = sign_raw(keys, "RS256", &rs_header, &good_claims("bob").to_string());
    c.add(
        "two Authorization headers",
        "GET",
        None,
        vec![
            ("authorization".into(), format!("Bearer {good}")),
            ("authorization".into(), format!("Bearer {second}")),
        ],
        400,
        "invalid_request",
        "multiple_credentials",
        Some(good.clone()),
    );
    c.add(
        "a token in the header and in access_token",
        "GET",
        Some(format!("access_token={second}")),
        vec![("authorization".into(), format!("Bearer {good}"))],
        400,
        "invalid_request",
        "multiple_credentials",
        Some(good.clone()),
    );
    c.add(
        "a token only in access_token",
        "GET",
        Some(format!("x=1&access_token={good}")),
        vec![],
        400,
        "invalid_request",
        "multiple_credentials",
        Some(good.clone()),
    );
    c.add(
        "two tokens in one Authorization header",
        "GET",
        None,
        vec![(
            "authorization".into(),
            format!("Bearer {good}, Bearer {second}"),
        )],
        400,
        "invalid_request",
        "multiple_credentials",
        Some(good.clone()),
    );

    // Size: a token over 8 KiB inside an ordinary header, and a large body on a refused request.
    c.token(
        "token of 40 KiB",
        format!("{good}{}", "A".repeat(40 * 1024)),
        "too_large",
    );
    c.add(
        "2 MiB body without a token",
        "PUT",
        None,
        vec![("content-type".into(), "application/json".into())],
        401,
        "invalid_token",
        "missing_token",
        None,
    );
    c.list.last_mut().unwrap().body = vec![b'{'; 2 * 1024 * 1024];
    c
}

fn send(port: u16, case: &Case) -> Response {
    let headers: Vec<(&str, &str)> = case
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if case.body.is_empty() {
        return match try_request(port, case.method, &case.path, &headers, b"") {
            Ok(r) => r,
            Err(e) => panic!("{}: {e}", case.name),
        };
    }
    upload(port, case.method, &case.path, &headers, &case.body)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

/// A request whose body the server may refuse before reading it: the body goes out from
/// another thread (a refused upload is answered, and the connection closed, before the body
/// is in), and the answer is what counts.
fn upload(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    use std::io::Write;
    let mut stream = hipaa_e2e::http::connect(port)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    let mut writer = stream.try_clone()?;
    let body = body.to_vec();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    let raw = hipaa_e2e::http::read_response(&mut stream);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    hipaa_e2e::http::parse_response(&raw?)
}

fn check_reply(case: &Case, r: &Response) {
    assert!(
        (400..500).contains(&r.status),
        "{}: got {} {}",
        case.name,
        r.status,
        r.body
    );
    assert_eq!(r.status, case.status, "{}: {}", case.name, r.body);
    let body = r.json();
    assert_eq!(body["error"], case.error, "{}: {}", case.name, r.body);
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{}: no request_id",
        case.name
    );
    if let Some(secret) = &case.secret {
        for part in secret.split('.').filter(|p| p.len() > 8) {
            assert!(
                !r.body.contains(part),
                "{}: the body echoes the token",
                case.name
            );
        }
    }
}

fn assert_still_serving(s: &mut Stack, patient: &str) {
    assert!(
        s.envoy.healthy(),
        "Envoy died under attack:\n{}",
        s.envoy.log()
    );
    let good = s.keys.clinician("alice");
    let r = request(
        s.envoy.port,
        "GET",
        &format!("/fhir/Patient/{patient}"),
        &[("authorization", &format!("Bearer {good}"))],
        b"",
    );
    assert_eq!(r.status, 200, "valid traffic no longer served: {}", r.body);
    s.envoy.assert_no_wasm_failure();
}

/// The collector's records, one per patient id (none twice).
fn records_by_patient(c: &Collector, expected: usize) -> HashMap<String, Value> {
    let all = c.wait_for("", expected, Duration::from_secs(30));
    let mut by = HashMap::new();
    for r in all {
        if let Some(p) = r["resource"]["patient"].as_str() {
            assert!(
                by.insert(p.to_string(), r.clone()).is_none(),
                "two records for {p}"
            );
        }
    }
    by
}

#[test]
fn token_attacks_are_refused_recorded_with_their_reason_and_never_fetch() {
    let jku = CountingListener::start();
    let mut s = stack(&["audit", "authn"]);
    let cases = token_cases(&s.keys, &jku);
    assert!(cases.list.len() > 90, "{} cases", cases.list.len());
    for case in &cases.list {
        check_reply(case, &send(s.envoy.port, case));
    }
    assert_still_serving(&mut s, "adv-good");

    let by = records_by_patient(&s.collector, cases.list.len() + 1);
    let mut wrong = Vec::new();
    for (i, case) in cases.list.iter().enumerate() {
        let Some(r) = by.get(&format!("adv-{i}")) else {
            wrong.push(format!("{}: no audit record", case.name));
            continue;
        };
        let got = (
            r["outcome"]["decision"].as_str().unwrap_or("-"),
            r["outcome"]["status"].as_u64().unwrap_or(0),
            r["outcome"]["reason"].as_str().unwrap_or("-"),
        );
        if got != ("deny", u64::from(case.status), case.reason) {
            wrong.push(format!(
                "{}: recorded {got:?}, expected reason {}",
                case.name, case.reason
            ));
        }
        if r["actor"]["subject"] != Value::Null {
            wrong.push(format!("{}: an unverified subject was recorded", case.name));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(by["adv-good"]["outcome"]["decision"], "allow");
    assert_eq!(
        by.len(),
        cases.list.len() + 1,
        "exactly one record per request"
    );
    assert_eq!(jku.connections(), 0, "a token made the filters fetch a URL");
    let (code, text) = s.collector.verify();
    assert_eq!(code, 0, "audit verify:\n{text}");
    assert!(
        !s.envoy
            .log()
            .contains(&cases.list[0].secret.clone().unwrap()[..40]),
        "a token reached the Envoy log"
    );
}

/// Headers a client may send to pass for a TLS peer, another client address or a verified user.
const SPOOFS: [(&str, &str); 12] = [
    ("x-hipaa-subject", "mallory"),
    ("x-hipaa-roles", "clinician,admin"),
    ("X-Hipaa-Break-Glass", "patient-emergency"),
    ("x-hipaa-denial", "none"),
    ("x-hipaa-tls", "TLSv1.3"),
    ("x-hipaa-peer", "spiffe://cluster.local/ns/ehr/sa/web"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-client-cert", "By=spiffe://cluster.local/ns/ehr/sa/ehr-api;Hash=00;URI=spiffe://cluster.local/ns/ehr/sa/web"),
    ("x-forwarded-for", "10.66.0.1"),
    ("forwarded", "for=10.66.0.2;proto=https"),
    ("x-real-ip", "10.66.0.3"),
    ("x-envoy-original-path", "/healthz"),
];

#[test]
fn spoofed_identity_tls_and_forwarding_headers_over_plaintext_are_refused_and_recorded_truthfully()
{
    // Plaintext on purpose, for the combined filter too: its transport stage refuses it.
    let mut s = stack_with(&["audit", "transport", "authn"], true);
    let token = s.keys.clinician("alice");
    let auth = format!("Bearer {token}");
    let mut headers: Vec<(&str, &str)> = SPOOFS.to_vec();
    headers.push(("authorization", auth.as_str()));

    // A PHI route over plaintext, every spoof at once and a valid token: refused by transport.
    let r = request(s.envoy.port, "GET", "/fhir/Patient/spoof-1", &headers, b"");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "access_denied");
    assert!(!r.body.contains(&token[..40]));
    // Without a token as well.
    let r = request(s.envoy.port, "GET", "/fhir/Patient/spoof-2", &SPOOFS, b"");
    assert_eq!(r.status, 403, "{}", r.body);

    // The public plaintext probe route passes, and none of the identity spoofs reach the
    // upstream; Envoy sanitises the client certificate header from a plaintext peer.
    let r = request(s.envoy.port, "GET", "/healthz", &SPOOFS, b"");
    assert_eq!(r.status, 200, "{}", r.body);
    for (name, _) in SPOOFS
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-hipaa-"))
    {
        assert_eq!(
            r.echoed_header(&name.to_ascii_lowercase()),
            None,
            "{name} reached the upstream"
        );
    }
    assert_eq!(
        r.echoed_header("x-forwarded-client-cert"),
        None,
        "a client-supplied XFCC reached the upstream"
    );

    let by = records_by_patient(&s.collector, 2);
    assert_eq!(by.len(), 2, "{by:#?}");
    for p in ["spoof-1", "spoof-2"] {
        let rec = &by[p];
        assert_eq!(rec["outcome"]["decision"], "deny", "{rec:#}");
        assert_eq!(rec["outcome"]["status"], 403, "{rec:#}");
        assert_eq!(rec["outcome"]["reason"], "plaintext_refused", "{rec:#}");
        assert_eq!(rec["actor"]["subject"], Value::Null, "{rec:#}");
        assert_eq!(
            rec["actor"]["peer"],
            Value::Null,
            "a spoofed peer was recorded: {rec:#}"
        );
        assert_eq!(
            rec["source"]["tls"],
            Value::Null,
            "a spoofed TLS version was recorded: {rec:#}"
        );
        assert_eq!(rec["emergency"], Value::Null, "{rec:#}");
        assert_eq!(
            rec["source"]["ip"], "127.0.0.1",
            "the recorded client address came from a forwarding header: {rec:#}"
        );
    }
    assert!(s.envoy.stat("wasmcustom.hipaa_audit.spoofed_headers") >= 3);
    s.envoy.assert_no_wasm_failure();
    let (code, text) = s.collector.verify();
    assert_eq!(code, 0, "audit verify:\n{text}");
}

#[test]
fn spoofed_identity_headers_with_a_valid_token_are_replaced_in_the_record() {
    let mut s = stack(&["audit", "authn"]);
    let token = s.keys.token(&[
        "--sub",
        "nina",
        "--roles",
        "clinician",
        "--amr",
        "pwd,otp",
        "--sid",
        "sid-nina",
    ]);
    let auth = format!("Bearer {token}");
    let mut headers: Vec<(&str, &str)> = SPOOFS.to_vec();
    headers.push(("authorization", auth.as_str()));
    let r = request(s.envoy.port, "GET", "/fhir/Patient/spoof-3", &headers, b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed_header("x-hipaa-subject").as_deref(), Some("nina"));
    assert_eq!(
        r.echoed_header("x-hipaa-roles").as_deref(),
        Some("clinician")
    );
    assert_eq!(r.echoed_header("x-hipaa-break-glass"), None);
    assert_eq!(r.echoed_header("x-hipaa-denial"), None);
    // A token refused while claiming to be someone else in headers.
    let r = request(s.envoy.port, "GET", "/fhir/Patient/spoof-4", &SPOOFS, b"");
    assert_eq!(r.status, 401, "{}", r.body);

    let by = records_by_patient(&s.collector, 2);
    let ok = &by["spoof-3"];
    assert_eq!(ok["actor"]["subject"], "nina", "{ok:#}");
    assert_eq!(ok["actor"]["roles"], json!(["clinician"]), "{ok:#}");
    assert_eq!(ok["emergency"], Value::Null, "{ok:#}");
    if s.envoy.tls {
        // Over mTLS the record has the connection's own facts, never the spoofed ones.
        assert_eq!(ok["source"]["tls"], "TLSv1.3", "{ok:#}");
        assert_eq!(ok["actor"]["peer"], tls::CLIENT_SPIFFE_ID, "{ok:#}");
    } else {
        assert_eq!(ok["source"]["tls"], Value::Null, "{ok:#}");
        assert_eq!(ok["actor"]["peer"], Value::Null, "{ok:#}");
    }
    assert_eq!(ok["source"]["ip"], "127.0.0.1", "{ok:#}");
    let denied = &by["spoof-4"];
    assert_eq!(denied["outcome"]["reason"], "missing_token", "{denied:#}");
    assert_eq!(denied["actor"]["subject"], Value::Null, "{denied:#}");
    assert_still_serving(&mut s, "spoof-5");
}

#[test]
fn oversized_headers_are_refused_by_envoy_before_the_filters_and_the_vm_keeps_serving() {
    let mut s = stack(&["audit", "authn"]);
    // Above Envoy's max_request_headers_kb (60 KiB by default): Envoy's codec answers 431
    // before any filter runs, so no filter can record it (Envoy's access log is the record).
    let huge = "A".repeat(70 * 1024);
    let r = request(
        s.envoy.port,
        "GET",
        "/fhir/Patient/big-1",
        &[("authorization", &format!("Bearer {huge}"))],
        b"",
    );
    assert_eq!(r.status, 431, "{}", r.body);
    let many: Vec<(String, String)> = (0..150)
        .map(|i| (format!("x-pad-{i}"), "v".repeat(500)))
        .collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = request(s.envoy.port, "GET", "/fhir/Patient/big-2", &many_refs, b"");
    assert_eq!(r.status, 431, "{}", r.body);
    // Just below the limit: the filters see it, refuse the token as too large, and record it.
    let below = "A".repeat(50 * 1024);
    let r = request(
        s.envoy.port,
        "GET",
        "/fhir/Patient/big-3",
        &[("authorization", &format!("Bearer {below}"))],
        b"",
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_still_serving(&mut s, "big-4");
    let by = records_by_patient(&s.collector, 2);
    assert_eq!(by["big-3"]["outcome"]["reason"], "too_large");
    assert!(
        !by.contains_key("big-1") && !by.contains_key("big-2"),
        "{by:#?}"
    );
}

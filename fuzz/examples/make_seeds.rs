//! Writes the committed seed corpora (corpus/TARGET/seed-*): tokens signed with the core test
//! fixture keys, the fixture JWKS and RFC example keys, the example policies in policies/,
//! requests against their routes, and audit records sealed the way the audit filter seals
//! them. Deterministic apart from ECDSA/PSS signatures. Re-run after changing a format:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example make_seeds

use hipaa_core::audit::{
    Action, Actor, AuditRecord, ChainWriter, Decision, Emergency, Inference, MacKey, Operation,
    Outcome, Resource, Source,
};
use hipaa_fuzz::{example_policies, fixture_jwks, ISSUER, ISSUER_2, MAC_KEY, MAC_KEY_ID, NOW};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../filters/core/tests/fixtures/jwt"
);

fn dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    dir
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn der(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}.der")).unwrap()
}

fn token(alg: Algorithm, fixture: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_der(&der(fixture)),
        Algorithm::EdDSA => EncodingKey::from_ed_der(&der(fixture)),
        _ => EncodingKey::from_rsa_der(&der(fixture)),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(iss: &str) -> Value {
    json!({
        "iss": iss, "aud": "ehr-api", "sub": "dr-house", "iat": NOW - 10, "exp": NOW + 600,
        "roles": ["clinician"], "amr": ["pwd", "otp"], "sid": "s-1", "auth_time": NOW - 100,
    })
}

fn tokens() {
    let d = dir("jwt_verify");
    let c = claims(ISSUER);
    write(
        &d,
        "valid-rs256",
        token(Algorithm::RS256, "rsa2048", Some("rsa"), &c),
    );
    write(
        &d,
        "valid-ps512",
        token(Algorithm::PS512, "rsa2048", Some("rsa"), &c),
    );
    write(
        &d,
        "valid-es256",
        token(Algorithm::ES256, "p256", Some("p256"), &c),
    );
    write(
        &d,
        "valid-es384",
        token(Algorithm::ES384, "p384", Some("p384"), &c),
    );
    write(
        &d,
        "valid-eddsa",
        token(Algorithm::EdDSA, "ed25519", Some("ed"), &c),
    );
    write(
        &d,
        "valid-eddsa-no-kid",
        token(Algorithm::EdDSA, "ed25519", None, &c),
    );
    let p = claims(ISSUER_2);
    write(
        &d,
        "valid-partner-es256",
        token(Algorithm::ES256, "p256", Some("p256"), &p),
    );
    // Refused ones, each for one reason.
    write(
        &d,
        "bad-rogue-key",
        token(Algorithm::RS256, "rsa2048_rogue", Some("rsa"), &c),
    );
    let mut expired = c.clone();
    expired["exp"] = json!(NOW - 100);
    expired["iat"] = json!(NOW - 200);
    write(
        &d,
        "bad-expired",
        token(Algorithm::ES256, "p256", Some("p256"), &expired),
    );
    write(
        &d,
        "bad-partner-rs256",
        token(Algorithm::RS256, "rsa2048", Some("rsa"), &p),
    );
    write(
        &d,
        "bad-alg-none",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lkcC5ob3NwaXRhbC5leGFtcGxlIn0.",
    );
    write(&d, "bad-jwe", "a.b.c.d.e");
}

fn jwks() {
    let d = dir("jwks_load");
    write(&d, "fixtures", fixture_jwks());
    for name in ["rsa2048", "rsa8192", "p256", "p384", "ed25519", "rsa1024"] {
        let key = std::fs::read_to_string(format!("{FIXTURES}/{name}.jwk.json")).unwrap();
        write(&d, name, format!("{{\"keys\":[{}]}}", key.trim()));
    }
    // RFC 7515 A.2 / A.3 and RFC 8037 A.2 public keys, RFC 7520 figure 3 with kid and use.
    write(
        &d,
        "rfc-keys",
        json!({"keys": [
            {"kty": "RSA", "e": "AQAB", "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"},
            {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "RSA", "kid": "bilbo.baggins@hobbiton.example", "use": "sig", "e": "AQAB", "n": "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw"},
            {"kty": "oct", "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}
        ]})
        .to_string(),
    );
}

fn policies() {
    let d = dir("policy_parse");
    for (i, text) in example_policies().iter().enumerate() {
        write(&d, &format!("example-{i}.yaml"), text);
        let (doc, _) = hipaa_core::policy::PolicyDocument::compile(text).unwrap();
        write(
            &d,
            &format!("example-{i}.plugin.json"),
            serde_json::to_vec(&doc.spec).unwrap(),
        );
    }
}

fn routes() {
    let d = dir("route_match");
    let mut n = 0;
    for text in &example_policies() {
        let (doc, _) = hipaa_core::policy::PolicyDocument::compile(text).unwrap();
        for route in &doc.spec.routes {
            let path = route
                .matcher
                .path
                .clone()
                .or_else(|| route.matcher.path_prefix.clone())
                .unwrap_or_default();
            let method = route
                .matcher
                .methods
                .first()
                .cloned()
                .unwrap_or("GET".into());
            let path = path.replace("{patient}", "p-123");
            write(
                &d,
                &format!("{n}"),
                format!("{method}\n{path}/x?patient=p-9\np-7"),
            );
            n += 1;
        }
        if let Some(route) = doc.spec.routes.first() {
            let routes = serde_json::to_string(&doc.spec.routes).unwrap();
            let path = route.matcher.path.clone().unwrap_or("/".into());
            write(
                &d,
                &format!("{n}-custom"),
                format!("{routes}\nGET\n{path}\np-1"),
            );
            n += 1;
        }
    }
    write(&d, "dotdot", "GET\n/healthz/../fhir/Patient/1\n");
}

fn access(n: i64, patient: &str, model: bool, emergency: bool) -> AuditRecord {
    let ms = NOW as i64 * 1000 + n;
    let mut r = AuditRecord::access(ms, Some(format!("req-{n}")));
    r.actor = Some(Actor {
        subject: Some("dr-house".into()),
        roles: Some(vec!["clinician".into()]),
        session: Some("s-1".into()),
        amr: Some(vec!["pwd".into(), "otp".into()]),
        peer: Some("spiffe://cluster.local/ns/ehr/sa/frontend".into()),
    });
    r.action = Some(Action {
        method: "GET".into(),
        path: format!("/fhir/Patient/{patient}"),
        route: Some("patient-record".into()),
        operation: if model {
            Operation::Inference
        } else {
            Operation::Read
        },
    });
    r.resource = Some(Resource {
        patient: Some(patient.into()),
        resource_type: Some("Patient".into()),
    });
    r.inference = model.then(|| Inference {
        model: Some("sepsis-risk".into()),
        version: Some("2.1.0".into()),
        ..Inference::default()
    });
    r.source = Some(Source {
        ip: Some("10.1.2.3".into()),
        user_agent: Some("curl/8".into()),
        tls: Some("TLSv1.3".into()),
    });
    r.emergency = emergency.then(|| Emergency {
        reason: "patient-emergency".into(),
    });
    r.outcome = Some(Outcome {
        decision: Decision::Allow,
        status: 200,
        reason: None,
        bytes: 512,
        duration_ms: 3,
    });
    r
}

fn records() {
    let key = MacKey::from_bytes(MAC_KEY_ID, &MAC_KEY).unwrap();
    let (mut w, start) = ChainWriter::start("c0ffee", key, NOW as i64 * 1000).unwrap();
    let mut chain = vec![serde_json::to_value(start).unwrap()];
    chain.push(serde_json::to_value(w.seal(access(1, "p-1", false, false)).unwrap()).unwrap());
    chain.push(serde_json::to_value(w.seal(access(2, "p-2", true, false)).unwrap()).unwrap());
    chain.push(serde_json::to_value(w.seal(access(3, "p-3", false, true)).unwrap()).unwrap());
    let d = dir("audit_record");
    for (i, record) in chain.iter().enumerate() {
        write(
            &d,
            &format!("sealed-{i}"),
            serde_json::to_vec(record).unwrap(),
        );
    }
    let mut forged = chain[1].clone();
    forged["resource"]["patient"] = json!("p-999");
    write(&d, "forged", serde_json::to_vec(&forged).unwrap());
    let d = dir("collector_ingest");
    write(&d, "chain", serde_json::to_vec(&chain).unwrap());
    write(
        &d,
        "gap-and-forged",
        serde_json::to_vec(&json!([chain[0], chain[2], forged])).unwrap(),
    );
    write(
        &d,
        "malformed",
        serde_json::to_vec(&json!(["not a record", {"v": 1}, {"v": 2, "kind": "access"}])).unwrap(),
    );
}

fn main() {
    tokens();
    jwks();
    policies();
    routes();
    records();
    println!("seeds written under {}/corpus", env!("CARGO_MANIFEST_DIR"));
}

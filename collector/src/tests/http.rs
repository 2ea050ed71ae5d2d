//! The HTTP API over a real socket: a real server on an ephemeral port, a plain TCP client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey};

use super::{chain, collector, refuse_chain_seq, Backend, TestDb, NOW};
use crate::keys::CheckpointSigner;
use crate::read_auth::ReadAuth;
use crate::server::{start, ServerConfig};

const READER_ISS: &str = "https://idp.hospital.test";
const READER_AUD: &str = "hipaa-audit";

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The hospital identity provider's key (EdDSA) for these tests, and its JWKS.
fn idp_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn jwks(key: &SigningKey) -> String {
    serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "idp-1", "alg": "EdDSA",
        "use": "sig", "x": b64url(key.verifying_key().as_bytes())}]})
    .to_string()
}

/// Who may read in these tests: tokens of the test IdP with role `auditor`.
pub(crate) fn reader_auth() -> Arc<ReadAuth> {
    Arc::new(ReadAuth::new(&jwks(&idp_key(9)), READER_ISS, READER_AUD, "auditor").unwrap())
}

/// A token signed by `key` for `sub` with `roles`, valid around the tests' clock.
fn token_by(key: &SigningKey, sub: &str, roles: &[&str]) -> String {
    let header = b64url(br#"{"alg":"EdDSA","kid":"idp-1","typ":"JWT"}"#);
    let iat = NOW / 1000 - 10;
    let claims = serde_json::json!({"iss": READER_ISS, "aud": READER_AUD, "sub": sub,
        "roles": roles, "iat": iat, "exp": iat + 600});
    let payload = b64url(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&sig.to_bytes()))
}

pub(crate) fn auditor_token() -> String {
    token_by(&idp_key(9), "officer-jane", &["auditor"])
}

/// A server config for `url` whose read side accepts [`reader_auth`].
pub(crate) fn config_for(url: &str) -> ServerConfig {
    let mut config = ServerConfig::new("127.0.0.1:0", url);
    config.read_auth = Some(reader_auth());
    config
}

/// Sends one HTTP/1.1 request (with the auditor's bearer token) and returns (status, headers,
/// body).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    http_as(addr, method, path, body, Some(&auditor_token()))
}

/// [`http`] with this bearer token (None: no Authorization header).
pub(crate) fn http_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    token: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

pub(crate) fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
}

pub(crate) fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

fn server_round_trip(backend: Backend) {
    let db = TestDb::new(backend);
    let mut config = config_for(&db.url);
    config.max_body = 64 * 1024;
    config.checkpoint_seconds = 1;
    let signer = CheckpointSigner::generate();
    let public = signer.verifying_key();
    let server = start(config, collector(), signer, vec![]).unwrap();
    let addr = server.addr();

    let (status, _, body) = http(addr, "GET", "/healthz", b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let batch = chain("c-http", 4);
    let payload = serde_json::to_vec(&batch).unwrap();
    let (status, _, body) = http(addr, "POST", "/v1/records", &payload);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        json(&body),
        serde_json::json!({"accepted": 5, "duplicates": 0, "flagged": 0})
    );
    // A retry is acknowledged as duplicates.
    let (status, _, body) = http(addr, "POST", "/v1/records", &payload);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["duplicates"], 5);

    let (status, headers, body) = http(addr, "GET", "/v1/records?patient=p1&limit=1", b"");
    assert_eq!(status, 200);
    let records = json(&body);
    assert_eq!(records.as_array().unwrap().len(), 1);
    assert_eq!(records[0], batch[1]);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("x-hipaa-next-after: 2"),
        "{headers}"
    );
    let (_, _, body) = http(addr, "GET", "/v1/records?patient=p1&after=2", b"");
    assert_eq!(json(&body).as_array().unwrap().len(), 1);
    // kind=all: the 5 records and the 2 reads before this one (each read is recorded).
    let (_, _, body) = http(addr, "GET", "/v1/records?kind=all", b"");
    assert_eq!(json(&body).as_array().unwrap().len(), 7);

    let (status, _, body) = http(addr, "GET", "/v1/records?patient=p1&bogus=1", b"");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = http(addr, "POST", "/v1/records", b"{\"not\": \"an array\"}");
    assert_eq!(status, 400);
    let (status, _, _) = http(addr, "POST", "/v1/records", &vec![b' '; 64 * 1024 + 1]);
    assert_eq!(status, 413);
    let (status, _, _) = http(addr, "DELETE", "/v1/records", b"");
    assert_eq!(status, 405);
    let (status, _, _) = http(addr, "GET", "/nope", b"");
    assert_eq!(status, 404);

    // The checkpoint thread signs within a couple of seconds.
    std::thread::sleep(Duration::from_millis(2500));
    let (status, _, body) = http(addr, "GET", "/v1/verify", b"");
    let report = json(&body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["intact"], true);
    // 5 records and 3 recorded reads (a refused query is not a read).
    assert_eq!(report["rows"], 8);
    assert!(report["checkpoints"].as_u64().unwrap() >= 1, "{report}");

    server.shutdown().unwrap();
    // The final checkpoint covers everything, signed by the key whose public half we hold.
    let mut s = db.open();
    let cps = s.checkpoints().unwrap();
    let last = cps.last().unwrap();
    // ... and the verify itself.
    assert_eq!(last.ledger_count, 9);
    crate::checkpoint::check_signature(last, &[public]).unwrap();
}

#[test]
fn server_round_trip_sqlite() {
    server_round_trip(Backend::Sqlite);
}

#[test]
fn server_round_trip_postgres() {
    server_round_trip(Backend::Postgres);
}

/// Senders posting at once to one collector: the writer may store several of their batches in
/// one transaction, and each sender still gets its own batch's summary, after the commit.
fn concurrent_senders_get_their_own_summaries(backend: Backend) {
    let db = TestDb::new(backend);
    let mut config = config_for(&db.url);
    config.checkpoint_seconds = 0;
    let server = start(config, collector(), CheckpointSigner::generate(), vec![]).unwrap();
    let addr = server.addr();
    let clients: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                let records = chain(&format!("vm-{t}"), 40);
                // Each batch repeats the last record of the one before (a partial retry).
                let mut from = 0;
                while from < records.len() {
                    let to = (from + 7).min(records.len());
                    let start = from.saturating_sub(1);
                    let (status, _, body) = http(
                        addr,
                        "POST",
                        "/v1/records",
                        &serde_json::to_vec(&records[start..to]).unwrap(),
                    );
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    assert_eq!(
                        json(&body),
                        serde_json::json!({
                            "accepted": to - from,
                            "duplicates": from - start,
                            "flagged": 0
                        })
                    );
                    from = to;
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let (status, _, body) = http(addr, "GET", "/v1/verify", b"");
    let report = json(&body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rows"], 6 * 41);
    assert_eq!(report["chains"], 6);
    server.shutdown().unwrap();
}

/// A transaction that fails is answered 503 (nothing stored); the writer reconnects and the
/// retried batch goes in whole.
fn failed_store_is_503_then_retry_succeeds(backend: Backend) {
    let db = TestDb::new(backend);
    let mut config = config_for(&db.url);
    config.checkpoint_seconds = 0;
    let server = start(config, collector(), CheckpointSigner::generate(), vec![]).unwrap();
    let addr = server.addr();
    let (refuse, allow) = refuse_chain_seq(backend, 2);
    let mut s = db.open();
    s.execute_sql(&refuse).unwrap();
    let payload = serde_json::to_vec(&chain("c-fail", 3)).unwrap();
    let (status, _, body) = http(addr, "POST", "/v1/records", &payload);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["error"], "store_unavailable");
    let (_, _, body) = http(addr, "GET", "/v1/records?kind=all", b"");
    assert_eq!(json(&body).as_array().unwrap().len(), 0, "nothing stored");
    s.execute_sql(&allow).unwrap();
    let (status, _, body) = http(addr, "POST", "/v1/records", &payload);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        json(&body),
        serde_json::json!({"accepted": 4, "duplicates": 0, "flagged": 0})
    );
    server.shutdown().unwrap();
}

#[test]
fn concurrent_senders_get_their_own_summaries_sqlite() {
    concurrent_senders_get_their_own_summaries(Backend::Sqlite);
}

#[test]
fn concurrent_senders_get_their_own_summaries_postgres() {
    concurrent_senders_get_their_own_summaries(Backend::Postgres);
}

#[test]
fn failed_store_is_503_then_retry_succeeds_sqlite() {
    failed_store_is_503_then_retry_succeeds(Backend::Sqlite);
}

#[test]
fn failed_store_is_503_then_retry_succeeds_postgres() {
    failed_store_is_503_then_retry_succeeds(Backend::Postgres);
}

/// Two collectors on one PostgreSQL database, posting concurrently: one ledger, nothing lost.
#[test]
fn two_collectors_share_one_postgres_database() {
    let db = TestDb::new(Backend::Postgres);
    let servers: Vec<_> = (0..2)
        .map(|_| {
            let mut config = config_for(&db.url);
            config.checkpoint_seconds = 0;
            start(config, collector(), CheckpointSigner::generate(), vec![]).unwrap()
        })
        .collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr()).collect();
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let addr = addrs[t % 2];
            std::thread::spawn(move || {
                let records = chain(&format!("vm-{t}"), 30);
                for piece in records.chunks(7) {
                    let (status, _, body) = http(
                        addr,
                        "POST",
                        "/v1/records",
                        &serde_json::to_vec(piece).unwrap(),
                    );
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    assert_eq!(json(&body)["flagged"], 0);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let (status, _, body) = http(addrs[1], "GET", "/v1/records?kind=all", b"");
    assert_eq!(status, 200);
    assert_eq!(json(&body).as_array().unwrap().len(), 4 * 31);
    for s in servers {
        s.shutdown().unwrap();
    }
    // Both final checkpoints verify (each collector signed with its own key).
    let (status, _, body) = {
        let mut config = config_for(&db.url);
        config.checkpoint_seconds = 0;
        let mut s = db.open();
        let cps = s.checkpoints().unwrap();
        assert_eq!(cps.len(), 2);
        // 124 records and the recorded read above.
        assert!(cps.iter().all(|c| c.ledger_count == 125));
        let server = start(config, collector(), CheckpointSigner::generate(), vec![]).unwrap();
        let r = http(server.addr(), "GET", "/v1/verify", b"");
        server.shutdown().unwrap();
        r
    };
    // The verifying collector does not hold the two earlier keys: it says so, by checkpoint.
    assert_eq!(status, 409);
    let report = json(&body);
    assert_eq!(report["rows"], 125);
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["problem"] == "checkpoint"));
}

#[test]
fn reads_need_an_auditor_token_and_are_recorded_sqlite() {
    reads_need_an_auditor_token_and_are_recorded(Backend::Sqlite);
}

#[test]
fn reads_need_an_auditor_token_and_are_recorded_postgres() {
    reads_need_an_auditor_token_and_are_recorded(Backend::Postgres);
}

/// `GET /v1/records` and `GET /v1/verify` answer decrypted PHI only to a bearer token of the
/// configured IdP with the auditor role; every answered read is a `trail-access` record in the
/// ledger, which `audit verify` covers.
fn reads_need_an_auditor_token_and_are_recorded(backend: Backend) {
    let db = TestDb::new(backend);
    let mut config = config_for(&db.url);
    config.checkpoint_seconds = 0;
    let signer = CheckpointSigner::generate();
    let public = signer.verifying_key();
    let server = start(config, collector(), signer, vec![]).unwrap();
    let addr = server.addr();
    let payload = serde_json::to_vec(&chain("c-read", 3)).unwrap();
    assert_eq!(http(addr, "POST", "/v1/records", &payload).0, 200);

    let nurse = token_by(&idp_key(9), "nurse-bob", &["clinician"]);
    let forged = token_by(&idp_key(13), "mallory", &["auditor"]);
    for path in ["/v1/records?patient=p1", "/v1/verify"] {
        for (token, status) in [
            (None, 401),
            (Some("not-a-jwt"), 401),
            (Some(forged.as_str()), 401),
            (Some(nurse.as_str()), 403),
        ] {
            let (got, headers, body) = http_as(addr, "GET", path, b"", token);
            assert_eq!(got, status, "{path} {token:?}");
            let text = String::from_utf8_lossy(&body);
            assert!(!text.contains("p1") && !text.contains("req-"), "{text}");
            assert!(
                !text.contains("mallory") && !text.contains("nurse"),
                "{text}"
            );
            if status == 401 {
                assert!(headers
                    .to_ascii_lowercase()
                    .contains("www-authenticate: bearer"));
            }
        }
    }
    // Without a configured reader, nobody reads.
    let db2 = TestDb::new(backend);
    let mut closed = ServerConfig::new("127.0.0.1:0", &db2.url);
    closed.checkpoint_seconds = 0;
    let closed = start(closed, collector(), CheckpointSigner::generate(), vec![]).unwrap();
    let (status, _, _) = http(closed.addr(), "GET", "/v1/records?kind=all", b"");
    assert_eq!(status, 401);
    closed.shutdown().unwrap();

    // The auditor reads; the refused attempts left no trace, the read does.
    let (status, _, body) = http(addr, "GET", "/v1/records?patient=p1", b"");
    assert_eq!(status, 200);
    assert_eq!(json(&body).as_array().unwrap().len(), 2);
    let (status, _, body) = http(
        addr,
        "GET",
        "/v1/records?kind=trail-access&subject=officer-jane",
        b"",
    );
    assert_eq!(status, 200);
    let reads = json(&body);
    let reads = reads.as_array().unwrap();
    assert_eq!(reads.len(), 1, "{reads:?}");
    let access = &reads[0]["trailAccess"];
    assert_eq!(access["subject"], "officer-jane");
    assert_eq!(access["issuer"], READER_ISS);
    assert_eq!(access["endpoint"], "GET /v1/records");
    assert_eq!(access["filter"], "patient=p1");
    assert_eq!(access["rows"], 2);
    let (status, _, body) = http(addr, "GET", "/v1/verify", b"");
    let report = json(&body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rows"], 6, "{report}");
    // The report names the keys it trusted, by fingerprint.
    assert_eq!(
        report["checkpointKeys"][0],
        crate::keys::public_key_fingerprint(&public).as_str()
    );
    server.shutdown().unwrap();

    // The read records are in the signed ledger: erasing who looked is caught.
    let mut s = db.open();
    let c = collector();
    let keys = [public];
    let vk = crate::verify::VerifyKeys {
        mac_keys: &c.mac_keys,
        encryption: &c.encryption,
        checkpoint_keys: &keys,
    };
    let r = crate::verify::verify(s.as_mut(), &vk, NOW).unwrap();
    assert!(r.intact, "{:?}", r.findings);
    db.drop_triggers(s.as_mut());
    s.execute_sql("UPDATE audit_records SET bi_subject = NULL WHERE kind = 'trail-access'")
        .unwrap();
    let r = crate::verify::verify(s.as_mut(), &vk, NOW).unwrap();
    assert!(
        r.findings
            .iter()
            .any(|f| f.problem == crate::verify::Problem::Modified),
        "{:?}",
        r.findings
    );
    s.execute_sql("DELETE FROM audit_records WHERE ledger_seq = 7")
        .unwrap();
    let r = crate::verify::verify(s.as_mut(), &vk, NOW).unwrap();
    assert!(r
        .findings
        .iter()
        .any(|f| f.problem == crate::verify::Problem::Truncated));
}

#[test]
fn alerts_api_sqlite() {
    alerts_api(Backend::Sqlite);
}

#[test]
fn alerts_api_postgres() {
    alerts_api(Backend::Postgres);
}

/// The detectors run inside the server: a break-glass record becomes an alert within seconds,
/// readable, acknowledgeable and closable through `/v1/alerts` with the auditor's token only,
/// and every call is recorded as trail-access.
fn alerts_api(backend: Backend) {
    use hipaa_core::audit::ChainWriter;
    let db = TestDb::new(backend);
    let mut config = config_for(&db.url);
    config.detect = Some(crate::alerts::DetectConfig {
        poll_millis: 100,
        ..Default::default()
    });
    let server = start(config, collector(), CheckpointSigner::generate(), vec![]).unwrap();
    let addr = server.addr();
    let (mut w, start_rec) = ChainWriter::start("c-alerts", super::mac_key(), NOW).unwrap();
    let emergency = w.seal(super::access(1, "dr-er", "p9", None, true)).unwrap();
    let batch = serde_json::json!([start_rec, emergency]);
    let (status, _, _) = http(addr, "POST", "/v1/records", batch.to_string().as_bytes());
    assert_eq!(status, 200);
    let mut alerts = Value::Null;
    for _ in 0..50 {
        let (status, _, body) = http(addr, "GET", "/v1/alerts?kind=break_glass", b"");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        alerts = json(&body);
        if alerts.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let alerts = alerts.as_array().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let id = alerts[0]["id"].as_str().unwrap().to_string();
    assert_eq!(alerts[0]["status"], "open");
    assert_eq!(alerts[0]["patient"], "p9");
    assert_eq!(alerts[0]["records"][0], "req-dr-er-1");

    // The credential: none → 401, a clinician → 403; nothing answered.
    let (status, _, _) = http_as(addr, "GET", "/v1/alerts", b"", None);
    assert_eq!(status, 401);
    let clinician = token_by(&idp_key(9), "dr-who", &["clinician"]);
    let (status, _, _) = http_as(
        addr,
        "GET",
        &format!("/v1/alerts/{id}"),
        b"",
        Some(&clinician),
    );
    assert_eq!(status, 403);
    let (status, _, _) = http_as(
        addr,
        "POST",
        &format!("/v1/alerts/{id}/status"),
        br#"{"status":"closed"}"#,
        Some(&clinician),
    );
    assert_eq!(status, 403);

    let (status, _, body) = http(addr, "GET", &format!("/v1/alerts/{id}"), b"");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["id"], id.as_str());
    let (status, _, _) = http(
        addr,
        "GET",
        "/v1/alerts/0123456789abcdef0123456789abcdef",
        b"",
    );
    assert_eq!(status, 404);
    let (status, _, _) = http(addr, "GET", "/v1/alerts?kind=snooping", b"");
    assert_eq!(status, 400);
    let (status, _, _) = http(
        addr,
        "POST",
        &format!("/v1/alerts/{id}/status"),
        br#"{"status":"open"}"#,
    );
    assert_eq!(status, 400);
    let (status, _, body) = http(
        addr,
        "POST",
        &format!("/v1/alerts/{id}/status"),
        br#"{"status":"acknowledged","note":"calling the ED"}"#,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["status"], "acknowledged");
    let (_, _, body) = http(addr, "GET", "/v1/alerts?status=open", b"");
    assert_eq!(json(&body).as_array().unwrap().len(), 0);
    let (_, _, body) = http(
        addr,
        "GET",
        "/v1/alerts?status=acknowledged&subject=dr-er",
        b"",
    );
    assert_eq!(json(&body).as_array().unwrap().len(), 1);

    // Who looked and who acknowledged are in the trail.
    let (_, _, body) = http(addr, "GET", "/v1/records?kind=alert-status", b"");
    let statuses = json(&body);
    assert_eq!(statuses[0]["alertStatus"]["by"], "officer-jane");
    assert_eq!(statuses[0]["alertStatus"]["note"], "calling the ED");
    let (_, _, body) = http(
        addr,
        "GET",
        "/v1/records?kind=trail-access&subject=officer-jane",
        b"",
    );
    let endpoints: Vec<String> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trailAccess"]["endpoint"].as_str().unwrap().to_string())
        .collect();
    assert!(
        endpoints.iter().any(|e| e == "GET /v1/alerts"),
        "{endpoints:?}"
    );
    assert!(
        endpoints.iter().any(|e| e == "POST /v1/alerts/{id}/status"),
        "{endpoints:?}"
    );
    server.shutdown().unwrap();
}

/// With `--read-listen`, the mesh-facing port answers only ingest and health: a read there is
/// 404 even with an auditor's token (nothing on that port decrypts records), and the read
/// port answers reads (with the token) but takes no records.
#[test]
fn a_read_listener_keeps_reads_off_the_ingest_port() {
    let db = TestDb::new(Backend::Sqlite);
    let mut config = config_for(&db.url);
    config.checkpoint_seconds = 0;
    config.read_listen = Some("127.0.0.1:0".into());
    let server = start(config, collector(), CheckpointSigner::generate(), vec![]).unwrap();
    let (ingest, read) = (server.addr(), server.read_addr().unwrap());
    assert_ne!(ingest, read);
    let payload = serde_json::to_vec(&chain("c-split", 2)).unwrap();
    let (status, _, body) = http(ingest, "POST", "/v1/records", &payload);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    for path in ["/v1/records?kind=all", "/v1/verify"] {
        let (status, _, _) = http(ingest, "GET", path, b"");
        assert_eq!(status, 404, "GET {path} on the ingest port");
    }
    assert_eq!(http(ingest, "GET", "/healthz", b"").0, 200);
    let (status, _, body) = http(read, "GET", "/v1/records?kind=all", b"");
    assert_eq!(status, 200);
    assert_eq!(json(&body).as_array().unwrap().len(), 3);
    assert_eq!(http_as(read, "GET", "/v1/verify", b"", None).0, 401);
    assert_eq!(http(read, "POST", "/v1/records", &payload).0, 404);
    assert_eq!(http(read, "GET", "/healthz", b"").0, 200);
    server.shutdown().unwrap();
}

/// A sender that floods records nobody can trust spends its own budget and then gets 429
/// with Retry-After (before its body is read); a good sender from another identity is not
/// slowed, and the flood's rows are bounded copies.
#[test]
fn a_garbage_flood_is_rate_limited_per_source() {
    let db = TestDb::new(Backend::Sqlite);
    let mut config = config_for(&db.url);
    config.checkpoint_seconds = 0;
    config.garbage = Arc::new(crate::ingest_limit::GarbageLimiter::new(1, 20, 16));
    let server = start(config, collector(), CheckpointSigner::generate(), vec![]).unwrap();
    let addr = server.addr();
    let post_as = |peer: &str, body: &[u8]| -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /v1/records HTTP/1.1\r\nHost: c\r\nx-forwarded-client-cert: By=spiffe://td/c;URI={peer}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).to_string();
        (text[9..12].parse().unwrap(), text)
    };
    let garbage = |batch: usize| {
        let records: Vec<Value> = (0..10)
            .map(|i| serde_json::json!({"v": 1, "junk": [batch, i], "pad": "x".repeat(10_000)}))
            .collect();
        serde_json::to_vec(&records).unwrap()
    };
    let mallory = "spiffe://td/ns/x/sa/mallory";
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for batch in 0..5 {
        let (status, text) = post_as(mallory, &garbage(batch));
        if status == 429 {
            retry_after = text.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after: ")
                    .map(str::to_string)
            });
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..2], &[200, 200], "the burst is stored (flagged)");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s.trim().parse::<u64>().unwrap() >= 1));
    // A good sender with another identity is not limited.
    let good = serde_json::to_vec(&chain("c-good", 2)).unwrap();
    let (status, text) = post_as("spiffe://td/ns/ehr/sa/ehr-api", &good);
    assert_eq!(status, 200, "{text}");
    // An unreadable body counts too.
    let (status, _) = post_as("spiffe://td/ns/x/sa/other", b"not json");
    assert_eq!(status, 400);
    let (_, _, body) = http(addr, "GET", "/v1/records?kind=integrity", b"");
    let rows = json(&body);
    assert_eq!(
        rows.as_array().unwrap().len(),
        20,
        "two batches of garbage, no more"
    );
    assert!(
        rows.to_string().len() < 20 * 2048,
        "bounded copies, not 200 KB of junk"
    );
    server.shutdown().unwrap();
}

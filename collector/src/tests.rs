//! Collector tests, each run against SQLite and against a real PostgreSQL (a fresh database per
//! test, dropped afterwards). PostgreSQL comes from `HIPAA_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); when it is unreachable the tests fail, they
//! are never skipped.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use hipaa_core::audit::{
    Action, Actor, AuditRecord, ChainWriter, Decision, Emergency, Inference, MacKey, MacKeyRing,
    Operation, Outcome, Resource, Source,
};
use serde_json::{json, Value};

use crate::checkpoint::sign_checkpoint;
use crate::ingest::{ingest, Collector, IngestSummary};
use crate::keys::{CheckpointSigner, EncryptionKey};
use crate::purge::{purge, six_years_before, PurgeError};
use crate::query::{query, Query};
use crate::store::{open_store, RowFilter, Store, StoreError};
use crate::verify::{verify, Problem, VerifyKeys, VerifyReport};

mod http;

const MAC_KEY: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const ENC_KEY: [u8; 32] = [7u8; 32];
pub(crate) const NOW: i64 = 1_795_451_828_123; // 2026-11-23T16:37:08.123Z
pub(crate) const YEAR_MS: i64 = 365 * 86_400_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A database made for one test and removed after it.
pub(crate) struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<TempDir>,
    pg_name: Option<String>,
}

pub(crate) struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn temp_dir() -> TempDir {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("hipaa-collector-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn pg_server_url() -> String {
    std::env::var("HIPAA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

fn pg_admin() -> ::postgres::Client {
    let url = pg_server_url();
    ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL tests need a server: cannot connect to {url} ({e}). Start one (`make test` \
             does) or point HIPAA_TEST_POSTGRES_URL at one."
        )
    })
}

impl TestDb {
    pub(crate) fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = temp_dir();
                let url = format!("sqlite:{}", dir.0.join("audit.db").display());
                TestDb {
                    backend,
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst);
                let name = format!("hipaa_test_{}_{n}", std::process::id());
                let mut admin = pg_admin();
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .unwrap();
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap();
                TestDb {
                    backend,
                    url: with_database(&pg_server_url(), &name),
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub(crate) fn open(&self) -> Box<dyn Store> {
        open_store(&self.url).unwrap()
    }

    /// Drops the append-only triggers, as an attacker with database access would.
    pub(crate) fn drop_triggers(&self, store: &mut dyn Store) {
        let sql = match self.backend {
            Backend::Sqlite => {
                "DROP TRIGGER audit_records_no_update; \
                                DROP TRIGGER audit_records_no_young_delete;"
            }
            Backend::Postgres => {
                "DROP TRIGGER audit_records_no_update ON audit_records; \
                                  DROP TRIGGER audit_records_no_young_delete ON audit_records;"
            }
        };
        store.execute_sql(sql).unwrap();
    }

    fn bytes_literal(&self, b: &[u8]) -> String {
        let hex = hex::encode(b);
        match self.backend {
            Backend::Sqlite => format!("X'{hex}'"),
            Backend::Postgres => format!("'\\x{hex}'::bytea"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut admin) = ::postgres::Client::connect(&pg_server_url(), ::postgres::NoTls)
            {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// SQL that makes the store refuse (and then accept again) any row with this chain seq: a
/// store failure in the middle of a transaction.
pub(crate) fn refuse_chain_seq(backend: Backend, seq: i64) -> (String, String) {
    match backend {
        Backend::Sqlite => (
            format!(
                "CREATE TRIGGER refuse_seq BEFORE INSERT ON audit_records \
                 WHEN NEW.chain_seq = {seq} BEGIN SELECT RAISE(ABORT, 'refused'); END;"
            ),
            "DROP TRIGGER refuse_seq;".into(),
        ),
        Backend::Postgres => (
            format!(
                "CREATE FUNCTION refuse_seq() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.chain_seq = {seq} THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$; \
                 CREATE TRIGGER refuse_seq BEFORE INSERT ON audit_records \
                 FOR EACH ROW EXECUTE FUNCTION refuse_seq();"
            ),
            "DROP TRIGGER refuse_seq ON audit_records;".into(),
        ),
    }
}

pub(crate) fn mac_key() -> MacKey {
    MacKey::parse(MAC_KEY).unwrap()
}

pub(crate) fn fixed_clock(at: Arc<AtomicI64>) -> crate::ingest::Clock {
    Arc::new(move || at.load(Ordering::SeqCst))
}

pub(crate) fn collector_at(at: Arc<AtomicI64>) -> Collector {
    Collector {
        mac_keys: MacKeyRing::single(mac_key()),
        encryption: EncryptionKey::parse(&ENC_KEY).unwrap(),
        clock: fixed_clock(at),
    }
}

pub(crate) fn collector() -> Collector {
    collector_at(Arc::new(AtomicI64::new(NOW)))
}

/// An access record by `subject` on `patient`, optionally an inference and break-glass.
pub(crate) fn access(
    n: i64,
    subject: &str,
    patient: &str,
    model: Option<(&str, &str)>,
    emergency: bool,
) -> AuditRecord {
    let mut r = AuditRecord::access(NOW + n, Some(format!("req-{subject}-{n}")));
    r.actor = Some(Actor {
        subject: Some(subject.into()),
        roles: Some(vec!["clinician".into()]),
        session: Some("sess".into()),
        amr: Some(vec!["pwd".into(), "otp".into()]),
        peer: None,
    });
    r.action = Some(Action {
        method: "GET".into(),
        path: format!("/fhir/Patient/{patient}"),
        route: Some("patient-record".into()),
        operation: if model.is_some() {
            Operation::Inference
        } else {
            Operation::Read
        },
    });
    r.resource = Some(Resource {
        patient: Some(patient.into()),
        resource_type: Some("Patient".into()),
    });
    r.inference = model.map(|(m, v)| Inference {
        model: Some(m.into()),
        version: Some(v.into()),
        ..Inference::default()
    });
    r.source = Some(Source {
        ip: Some("10.1.2.3".into()),
        user_agent: Some("test".into()),
        tls: Some("TLSv1.3".into()),
    });
    r.emergency = emergency.then(|| Emergency {
        reason: "patient-emergency".into(),
    });
    r.outcome = Some(Outcome {
        decision: Decision::Allow,
        status: 200,
        reason: None,
        bytes: 10,
        duration_ms: 1,
    });
    r
}

/// A chain: chain-start then `n` access records on patients p1/p2 by dr-a/dr-b.
pub(crate) fn chain(id: &str, n: usize) -> Vec<Value> {
    let (mut w, start) = ChainWriter::start(id, mac_key(), NOW).unwrap();
    let mut out = vec![serde_json::to_value(start).unwrap()];
    for i in 0..n {
        let patient = if i % 2 == 0 { "p1" } else { "p2" };
        let subject = if i % 3 == 0 { "dr-a" } else { "dr-b" };
        let r = access(i as i64 + 1, subject, patient, None, false);
        out.push(serde_json::to_value(w.seal(r).unwrap()).unwrap());
    }
    out
}

pub(crate) fn verify_db(store: &mut dyn Store, signer: Option<&CheckpointSigner>) -> VerifyReport {
    let c = collector();
    let keys: Vec<_> = signer.map(|s| vec![s.verifying_key()]).unwrap_or_default();
    verify(
        store,
        &VerifyKeys {
            mac_keys: &c.mac_keys,
            encryption: &c.encryption,
            checkpoint_keys: &keys,
        },
        crate::ingest::system_clock()(),
    )
    .unwrap()
}

fn count_rows(store: &mut dyn Store) -> usize {
    store
        .rows(&RowFilter {
            limit: 100_000,
            ..RowFilter::default()
        })
        .unwrap()
        .len()
}

fn q() -> Query {
    Query::default()
}

fn integrity_findings(store: &mut dyn Store) -> Vec<String> {
    query(
        store,
        &collector().encryption,
        &Query {
            kind: Some("integrity".into()),
            ..q()
        },
    )
    .unwrap()
    .records
    .iter()
    .map(|r| r["integrity"]["finding"].as_str().unwrap().to_string())
    .collect()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Backend::Postgres) } )*
        }
    };
}

mod alerts;
mod batch;
mod canonical;
mod incidents;
mod sessions;
mod trail;

both_backends!(
    ingest_good_batch,
    ingest_duplicate_is_acknowledged_not_stored_twice,
    ingest_gap_is_flagged_and_late_record_kept,
    ingest_bad_mac_is_flagged_never_clean,
    ingest_malformed_and_unknown_key_are_flagged,
    an_untrusted_record_is_kept_bounded_not_whole,
    ingest_seq_conflict_is_flagged,
    chain_state_survives_a_restart,
    a_v1_trail_from_an_older_filter_ingests_continues_and_verifies,
    a_copy_of_a_record_cannot_take_its_dedup_key,
    store_refuses_update_and_young_delete,
    purge_rules,
    records_are_encrypted_at_rest,
    blind_index_queries,
    an_inference_answer_is_stored_and_returned,
    verify_catches_a_bit_flip,
    verify_catches_a_deleted_middle_row,
    verify_catches_a_deleted_tail_by_checkpoint,
    verify_catches_reordered_rows,
    verify_catches_forged_checkpoint_and_changed_index,
    concurrent_writers_keep_one_ledger,
);

fn ingest_good_batch(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let batch = chain("c1", 5);
    let sum = ingest(s.as_mut(), &collector(), &batch).unwrap();
    assert_eq!(
        sum,
        IngestSummary {
            accepted: 6,
            duplicates: 0,
            flagged: 0
        }
    );
    let page = query(s.as_mut(), &collector().encryption, &q()).unwrap();
    assert_eq!(page.records.len(), 5, "kind defaults to access");
    assert_eq!(page.records[0], batch[1], "stored exactly as received");
    let all = query(
        s.as_mut(),
        &collector().encryption,
        &Query { kind: None, ..q() },
    )
    .unwrap();
    assert_eq!(all.records, batch);
    let report = verify_db(s.as_mut(), None);
    assert!(report.intact, "{:?}", report.findings);
    assert_eq!(report.rows, 6);
    assert_eq!(report.chains, 1);
    assert!(report.ingest_flags.is_empty());
}

fn ingest_duplicate_is_acknowledged_not_stored_twice(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let batch = chain("c1", 3);
    ingest(s.as_mut(), &collector(), &batch[..2]).unwrap();
    // A retried batch that overlaps what was stored.
    let sum = ingest(s.as_mut(), &collector(), &batch).unwrap();
    assert_eq!(
        sum,
        IngestSummary {
            accepted: 2,
            duplicates: 2,
            flagged: 0
        }
    );
    // The same record twice in one batch.
    let sum = ingest(
        s.as_mut(),
        &collector(),
        &[batch[3].clone(), batch[3].clone()],
    )
    .unwrap();
    assert_eq!(sum.duplicates, 2);
    assert_eq!(count_rows(s.as_mut()), 4);
    // Member order and whitespace do not defeat dedup.
    let reordered: Value =
        serde_json::from_str(&serde_json::to_string_pretty(&batch[1]).unwrap()).unwrap();
    assert_eq!(
        ingest(s.as_mut(), &collector(), &[reordered])
            .unwrap()
            .duplicates,
        1
    );
    assert!(verify_db(s.as_mut(), None).intact);
}

fn ingest_gap_is_flagged_and_late_record_kept(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let batch = chain("c1", 4);
    let sum = ingest(
        s.as_mut(),
        &collector(),
        &[batch[0].clone(), batch[1].clone(), batch[3].clone()],
    )
    .unwrap();
    assert_eq!(
        sum,
        IngestSummary {
            accepted: 3,
            duplicates: 0,
            flagged: 1
        }
    );
    assert_eq!(integrity_findings(s.as_mut()), ["gap"]);
    let recs = query(
        s.as_mut(),
        &collector().encryption,
        &Query {
            kind: Some("integrity".into()),
            ..q()
        },
    )
    .unwrap()
    .records;
    assert_eq!(recs[0]["integrity"]["chainId"], "c1");
    assert_eq!(recs[0]["integrity"]["seq"], 3);
    assert_eq!(recs[0]["integrity"]["record"], Value::Null);
    // The missing record arrives late: stored, and noted.
    let sum = ingest(
        s.as_mut(),
        &collector(),
        &[batch[2].clone(), batch[4].clone()],
    )
    .unwrap();
    assert_eq!(sum.accepted, 2);
    assert_eq!(integrity_findings(s.as_mut()), ["gap", "late"]);
    // seq 4 followed seq 3 cleanly; verify sees an intact store with two ingest flags.
    let report = verify_db(s.as_mut(), None);
    assert!(report.intact, "{:?}", report.findings);
    assert_eq!(report.ingest_flags.len(), 2);
    // A chain that starts without its chain-start is a gap from 0.
    let other = chain("c2", 2);
    let sum = ingest(s.as_mut(), &collector(), &other[1..]).unwrap();
    assert_eq!(sum.flagged, 1);
}

fn ingest_bad_mac_is_flagged_never_clean(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let mut batch = chain("c1", 3);
    batch[2]["resource"]["patient"] = json!("p9");
    let sum = ingest(s.as_mut(), &collector(), &batch).unwrap();
    // seq 2 is flagged (bad MAC) and not stored as a record; seq 3 then shows seq 2 missing.
    assert_eq!(
        sum,
        IngestSummary {
            accepted: 3,
            duplicates: 0,
            flagged: 2
        }
    );
    assert_eq!(integrity_findings(s.as_mut()), ["bad-mac", "gap"]);
    let by_p9 = query(
        s.as_mut(),
        &collector().encryption,
        &Query {
            patient: Some("p9".into()),
            kind: None,
            ..q()
        },
    )
    .unwrap();
    assert!(
        by_p9.records.is_empty(),
        "a forged record is never indexed as clean"
    );
    let flagged = query(
        s.as_mut(),
        &collector().encryption,
        &Query {
            kind: Some("integrity".into()),
            ..q()
        },
    )
    .unwrap()
    .records;
    // Kept as its hash, length and a bounded excerpt, never whole.
    let kept = &flagged[0]["integrity"]["record"]["received"];
    assert_eq!(kept["sha256"], hipaa_core::audit::record_hash(&batch[2]));
    assert!(kept["bytes"].as_u64().unwrap() > 0);
    assert!(kept["excerpt"].as_str().unwrap().starts_with('{'));
    assert_eq!(flagged[0]["requestId"], batch[2]["requestId"]);
    // Retrying the forged record does not store it twice.
    assert_eq!(
        ingest(s.as_mut(), &collector(), &batch[2..3])
            .unwrap()
            .duplicates,
        1
    );
    assert!(verify_db(s.as_mut(), None).intact);
}

/// A sender without the MAC key posts a 2 MiB "record" (and one with a 1 MiB request id): the
/// trail keeps a hash, the length and 1 KiB of it, and verify still checks the row's hash.
fn an_untrusted_record_is_kept_bounded_not_whole(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let huge = json!({"v": 1, "kind": "access", "note": "x".repeat(2 << 20)});
    let long_id = json!({"v": 1, "requestId": "r".repeat(1 << 20), "chain": {"id": "c".repeat(1 << 20), "seq": 3}});
    let sum = ingest(s.as_mut(), &collector(), &[huge.clone(), long_id]).unwrap();
    assert_eq!(sum.flagged, 2);
    let flagged = query(
        s.as_mut(),
        &collector().encryption,
        &Query {
            kind: Some("integrity".into()),
            ..q()
        },
    )
    .unwrap()
    .records;
    assert_eq!(flagged.len(), 2);
    for row in &flagged {
        let stored = row.to_string().len();
        assert!(
            stored < 4096,
            "stored {stored} bytes of an untrusted record"
        );
        assert_eq!(
            row["requestId"],
            Value::Null,
            "a 1 MiB request id is no hint"
        );
        assert_eq!(row["integrity"]["chainId"], Value::Null);
    }
    let kept = &flagged[0]["integrity"]["record"]["received"];
    assert_eq!(
        kept["bytes"].as_u64().unwrap(),
        hipaa_core::audit::canonical_bytes(&huge).len() as u64
    );
    assert_eq!(kept["sha256"], hipaa_core::audit::record_hash(&huge));
    let report = verify_db(s.as_mut(), None);
    assert!(report.intact, "{:?}", report.findings);
    // Retried: acknowledged as a duplicate, not stored again.
    assert_eq!(
        ingest(s.as_mut(), &collector(), &[huge])
            .unwrap()
            .duplicates,
        1
    );
}

fn ingest_malformed_and_unknown_key_are_flagged(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let batch = chain("c1", 1);
    let mut unknown = batch[1].clone();
    unknown["chain"]["keyId"] = json!("k-rotated-away");
    let mut v2 = batch[1].clone();
    v2["v"] = json!(3);
    let mut integ = batch[1].clone();
    integ["kind"] = json!("integrity");
    let sum = ingest(
        s.as_mut(),
        &collector(),
        &[json!("not a record"), json!({"v": 1}), v2, integ, unknown],
    )
    .unwrap();
    assert_eq!(sum.flagged, 5);
    assert_eq!(sum.accepted, 0);
    assert_eq!(
        integrity_findings(s.as_mut()),
        [
            "malformed",
            "malformed",
            "malformed",
            "malformed",
            "unknown-key"
        ]
    );
    assert!(verify_db(s.as_mut(), None).intact);
}

fn ingest_seq_conflict_is_flagged(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let a = chain("c1", 2);
    // A second writer claiming the same chain id (e.g. a cloned VM) with different records.
    let (mut w, _) = ChainWriter::start("c1", mac_key(), NOW + 99).unwrap();
    let b1 = serde_json::to_value(w.seal(access(50, "dr-x", "p3", None, false)).unwrap()).unwrap();
    ingest(s.as_mut(), &collector(), &a).unwrap();
    let sum = ingest(s.as_mut(), &collector(), std::slice::from_ref(&b1)).unwrap();
    assert_eq!(sum.flagged, 1);
    assert_eq!(integrity_findings(s.as_mut()), ["seq-conflict"]);
    // Kept whole under its chain link (v2: its MAC), which verify checks.
    let r = verify_db(s.as_mut(), None);
    assert!(r.intact, "{:?}", r.findings);
}

/// Anyone who reaches the ingest port and saw a record (a retry in flight, a peer) can post
/// copies of it first. No copy may make the collector take the real record for a duplicate and
/// drop it: the copy without `chain.mac` (whose bytes are exactly what v2's MAC covers), with
/// another MAC, with `mac: null`. Each is flagged, the real record is stored, verify is intact.
fn a_copy_of_a_record_cannot_take_its_dedup_key(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let records = chain("c1", 3);
    let real = &records[2];
    let mut without_mac = real.clone();
    without_mac["chain"].as_object_mut().unwrap().remove("mac");
    let mut other_mac = real.clone();
    other_mac["chain"]["mac"] = records[1]["chain"]["mac"].clone();
    let mut null_mac = real.clone();
    null_mac["chain"]["mac"] = Value::Null;
    ingest(s.as_mut(), &collector(), &records[..2]).unwrap();
    let sum = ingest(
        s.as_mut(),
        &collector(),
        &[without_mac.clone(), other_mac, null_mac],
    )
    .unwrap();
    assert_eq!((sum.accepted, sum.flagged, sum.duplicates), (0, 3, 0));
    let sum = ingest(s.as_mut(), &collector(), &records[2..]).unwrap();
    assert_eq!(
        (sum.accepted, sum.flagged, sum.duplicates),
        (2, 0, 0),
        "the real records are stored, not taken for duplicates"
    );
    let page = query(s.as_mut(), &collector().encryption, &q()).unwrap();
    assert!(page.records.contains(real));
    // The copy posted after the real record is flagged again, never silently absorbed.
    let sum = ingest(s.as_mut(), &collector(), &[without_mac]).unwrap();
    assert_eq!(
        sum.duplicates, 1,
        "the same refused bytes again are a duplicate of themselves"
    );
    let r = verify_db(s.as_mut(), None);
    assert!(r.intact, "{:?}", r.findings);
}

/// Filters before the one-pass sealing wrote v1 records (MAC over the canonical bytes, prev the
/// whole previous record's hash): a collector keeps taking them, continues their chains across a
/// restart, verifies them beside v2 chains, and still sees a gap in one.
fn a_v1_trail_from_an_older_filter_ingests_continues_and_verifies(b: Backend) {
    let db = TestDb::new(b);
    let old = hipaa_core::audit::reseal_v1(&chain("old", 5), &mac_key());
    let new = chain("new", 3);
    {
        let mut s = db.open();
        let sum = ingest(s.as_mut(), &collector(), &old[..3]).unwrap();
        assert_eq!((sum.accepted, sum.flagged), (3, 0));
    }
    let mut s = db.open();
    let sum = ingest(s.as_mut(), &collector(), &old[3..4]).unwrap();
    assert_eq!(
        (sum.accepted, sum.flagged),
        (1, 0),
        "v1 chain continues from the database"
    );
    let sum = ingest(s.as_mut(), &collector(), &new).unwrap();
    assert_eq!((sum.accepted, sum.flagged), (4, 0));
    // A re-sent v1 record is a duplicate, as before.
    let sum = ingest(s.as_mut(), &collector(), &old[1..2]).unwrap();
    assert_eq!(sum.duplicates, 1);
    // Each clean row's source hash is its chain link: v1 the whole hash, v2 the MAC.
    let rows = s
        .rows(&RowFilter {
            limit: 100,
            ..RowFilter::default()
        })
        .unwrap();
    for (record, whole) in old[..4]
        .iter()
        .map(|r| (r, true))
        .chain(new.iter().map(|r| (r, false)))
    {
        let link = hipaa_core::audit::chain_link(record);
        assert_eq!(link == hipaa_core::audit::record_hash(record), whole);
        assert!(rows
            .iter()
            .any(|row| row.source_hash.as_deref() == Some(link.as_str())));
    }
    let r = verify_db(s.as_mut(), None);
    assert!(r.intact, "{:?}", r.findings);
    // Seq 4 of the v1 chain never arrives: seq 5 is a gap, on ingest and in verify.
    let sum = ingest(s.as_mut(), &collector(), &old[5..]).unwrap();
    assert_eq!((sum.accepted, sum.flagged), (1, 1));
    assert_eq!(integrity_findings(s.as_mut()), ["gap"]);
}

fn chain_state_survives_a_restart(b: Backend) {
    let db = TestDb::new(b);
    let batch = chain("c1", 4);
    {
        let mut s = db.open();
        ingest(s.as_mut(), &collector(), &batch[..3]).unwrap();
    }
    let mut s = db.open();
    let sum = ingest(s.as_mut(), &collector(), &batch[3..]).unwrap();
    assert_eq!(sum.flagged, 0, "continues the chain from the database");
    assert_eq!(sum.accepted, 2);
    // A forged continuation with the right seq but a wrong prev is caught after restart too.
    let mut s = db.open();
    let (mut w, _) = ChainWriter::start("c1", mac_key(), NOW + 1).unwrap();
    let mut forged = None;
    for i in 1..=5 {
        forged = Some(w.seal(access(i, "dr-z", "p7", None, false)).unwrap());
    }
    // seq 5 of another history under the same chain id: its prev does not match ours.
    let forged = serde_json::to_value(forged.unwrap()).unwrap();
    let sum = ingest(s.as_mut(), &collector(), &[forged]).unwrap();
    assert_eq!(sum.flagged, 1);
    assert_eq!(integrity_findings(s.as_mut()), ["prev-mismatch"]);
}

fn store_refuses_update_and_young_delete(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    ingest(s.as_mut(), &collector(), &chain("c1", 2)).unwrap();
    let signer = CheckpointSigner::generate();
    sign_checkpoint(s.as_mut(), &signer, NOW).unwrap();
    for sql in [
        "UPDATE audit_records SET kind = 'access' WHERE ledger_seq = 1",
        "UPDATE audit_records SET stored_at_ms = 0",
        "UPDATE checkpoints SET ledger_count = 0",
        "DELETE FROM checkpoints",
    ] {
        let err = s.execute_sql(sql).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let err = s
        .execute_sql("DELETE FROM audit_records WHERE ledger_seq = 2")
        .unwrap_err()
        .to_string();
    assert!(err.contains("younger than 6 years"), "{err}");
    if b == Backend::Postgres {
        let err = s
            .execute_sql("TRUNCATE audit_records")
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{err}");
        let err = s
            .execute_sql("TRUNCATE checkpoints")
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{err}");
    }
    assert_eq!(count_rows(s.as_mut()), 3);
    // Reopening (schema creation again) keeps everything and the triggers.
    let mut s = db.open();
    assert!(s
        .execute_sql("UPDATE audit_records SET kind = 'x'")
        .is_err());
    assert!(verify_db(s.as_mut(), Some(&signer)).intact);
}

fn purge_rules(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let signer = CheckpointSigner::generate();
    // Real "now": the database trigger compares with its own clock.
    let now = crate::ingest::system_clock()();
    let clock = Arc::new(AtomicI64::new(now - 7 * YEAR_MS));
    let old = collector_at(clock.clone());
    ingest(s.as_mut(), &old, &chain("old", 3)).unwrap();
    sign_checkpoint(s.as_mut(), &signer, now - 7 * YEAR_MS + 1000).unwrap();
    clock.store(now, Ordering::SeqCst);
    ingest(s.as_mut(), &old, &chain("new", 2)).unwrap();
    sign_checkpoint(s.as_mut(), &signer, now).unwrap();

    // Less than 6 years ago: refused by the command.
    let err = purge(
        s.as_mut(),
        &signer,
        &collector().encryption,
        now - 5 * YEAR_MS,
        now,
    )
    .unwrap_err();
    assert!(matches!(err, PurgeError::TooRecent { .. }), "{err}");
    assert!(purge(
        s.as_mut(),
        &signer,
        &collector().encryption,
        six_years_before(now) + 1,
        now
    )
    .is_err());
    // Even the database refuses to delete the young rows.
    let err = s
        .execute_sql("DELETE FROM audit_records WHERE chain_id = 'new'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("younger than 6 years"), "{err}");

    let before = six_years_before(now) - 86_400_000;
    let out = purge(s.as_mut(), &signer, &collector().encryption, before, now).unwrap();
    assert_eq!(out.deleted, 4);
    assert_eq!(out.through_seq, 4);
    assert_eq!(count_rows(s.as_mut()), 3);
    // Nothing more to purge; the second run is a no-op.
    assert_eq!(
        purge(s.as_mut(), &signer, &collector().encryption, before, now)
            .unwrap()
            .deleted,
        0
    );
    let report = verify_db(s.as_mut(), Some(&signer));
    assert!(report.intact, "{:?}", report.findings);
    assert!(report.notes.iter().any(|n| n.contains("retention purge")));
    // The purge marks are append-only too.
    for sql in ["UPDATE purges SET through_seq = 1", "DELETE FROM purges"] {
        let err = s.execute_sql(sql).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    // New records continue the ledger after a purge.
    ingest(s.as_mut(), &old, &chain("later", 1)).unwrap();
    assert!(verify_db(s.as_mut(), Some(&signer)).intact);
}

fn records_are_encrypted_at_rest(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let batch = vec![serde_json::to_value(
        ChainWriter::start("c1", mac_key(), NOW)
            .map(|(mut w, _)| w.seal(access(1, "dr-secret", "patient-4711", None, false)))
            .unwrap()
            .unwrap(),
    )
    .unwrap()];
    ingest(s.as_mut(), &collector(), &batch).unwrap();
    let rows = s
        .rows(&RowFilter {
            limit: 10,
            ..RowFilter::default()
        })
        .unwrap();
    let row = &rows[0];
    assert_eq!(row.nonce.len(), 12);
    for needle in ["patient-4711", "dr-secret", "/fhir/Patient"] {
        assert!(
            !row.ciphertext
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "{needle} in ciphertext"
        );
        for col in [&row.bi_patient, &row.bi_subject] {
            assert!(!col.as_deref().unwrap_or("").contains(needle));
        }
    }
    let enc = EncryptionKey::parse(&ENC_KEY).unwrap();
    let plain = enc
        .decrypt(row.ledger_seq, &row.nonce, &row.ciphertext)
        .unwrap();
    let value: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(value, batch[0]);
    // Bound to its ledger position, and to the key.
    assert!(enc
        .decrypt(row.ledger_seq + 1, &row.nonce, &row.ciphertext)
        .is_none());
    let other = EncryptionKey::parse(&[8u8; 32]).unwrap();
    assert!(other
        .decrypt(row.ledger_seq, &row.nonce, &row.ciphertext)
        .is_none());
    // Random nonces: the same plaintext encrypts differently.
    let (n1, c1) = enc.encrypt(1, b"same").unwrap();
    let (n2, c2) = enc.encrypt(1, b"same").unwrap();
    assert_ne!((n1, c1), (n2, c2));
}

#[test]
fn encryption_key_file_formats() {
    let hex: String = ENC_KEY.iter().map(|b| format!("{b:02x}")).collect();
    let a = EncryptionKey::parse(&ENC_KEY).unwrap();
    let b = EncryptionKey::parse(format!("{hex}\n").as_bytes()).unwrap();
    assert_eq!(a.blind_index("patient", "x"), b.blind_index("patient", "x"));
    assert_ne!(a.blind_index("patient", "x"), a.blind_index("subject", "x"));
    for bad in [
        &b"short"[..],
        &[1u8; 31][..],
        &[1u8; 33][..],
        &hex.as_bytes()[..62],
    ] {
        let err = EncryptionKey::parse(bad).unwrap_err().to_string();
        assert!(err.contains("32 raw bytes or 64 hex"), "{err}");
    }
}

fn blind_index_queries(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let (mut w, start) = ChainWriter::start("c1", mac_key(), NOW).unwrap();
    let mut batch = vec![serde_json::to_value(start).unwrap()];
    let specs = [
        ("dr-a", "p1", None, false),
        ("dr-a", "p2", Some(("sepsis-risk", "4.2.0")), false),
        ("dr-b", "p1", Some(("sepsis-risk", "4.1.0")), true),
        ("dr-b", "p3", Some(("other", "4.2.0")), false),
        ("dr-c", "p1", None, true),
    ];
    for (i, (sub, pat, model, em)) in specs.iter().enumerate() {
        let r = access(i as i64 * 1000, sub, pat, *model, *em);
        batch.push(serde_json::to_value(w.seal(r).unwrap()).unwrap());
    }
    ingest(s.as_mut(), &collector(), &batch).unwrap();
    let enc = collector().encryption;
    let mut run = |q: Query| -> Vec<String> {
        query(s.as_mut(), &enc, &q)
            .unwrap()
            .records
            .iter()
            .map(|r| r["requestId"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    assert_eq!(
        run(Query {
            patient: Some("p1".into()),
            ..q()
        }),
        ["req-dr-a-0", "req-dr-b-2000", "req-dr-c-4000"]
    );
    assert_eq!(
        run(Query {
            subject: Some("dr-b".into()),
            ..q()
        }),
        ["req-dr-b-2000", "req-dr-b-3000"]
    );
    assert_eq!(
        run(Query {
            model: Some("sepsis-risk".into()),
            ..q()
        }),
        ["req-dr-a-1000", "req-dr-b-2000"]
    );
    assert_eq!(
        run(Query {
            model: Some("sepsis-risk".into()),
            version: Some("4.2.0".into()),
            ..q()
        }),
        ["req-dr-a-1000"]
    );
    assert_eq!(
        run(Query {
            version: Some("4.2.0".into()),
            ..q()
        }),
        ["req-dr-a-1000", "req-dr-b-3000"]
    );
    assert_eq!(
        run(Query {
            emergency: Some(true),
            ..q()
        }),
        ["req-dr-b-2000", "req-dr-c-4000"]
    );
    assert_eq!(
        run(Query {
            from_ms: Some(NOW + 1000),
            to_ms: Some(NOW + 3000),
            ..q()
        }),
        ["req-dr-a-1000", "req-dr-b-2000"]
    );
    assert!(run(Query {
        patient: Some("P1".into()),
        ..q()
    })
    .is_empty());
    assert_eq!(
        run(Query {
            kind: Some("chain-start".into()),
            ..q()
        }),
        ["-"],
        "chain-start has no request id but is found by kind"
    );
    // Paging with limit / after.
    let first = query(s.as_mut(), &enc, &Query { limit: 2, ..q() }).unwrap();
    assert_eq!(first.records.len(), 2);
    let second = query(
        s.as_mut(),
        &enc,
        &Query {
            limit: 2,
            after: first.last_ledger_seq.unwrap(),
            ..q()
        },
    )
    .unwrap();
    assert_eq!(second.records[0]["requestId"], "req-dr-b-2000");
}

/// Issue #15 item 5: `inference.responseSha256` / `responseSignatureKeyId` are stored as sent
/// (under the MAC, so a clean record) and returned by a model/version query; the blind
/// indexes are those of the same record without them.
fn an_inference_answer_is_stored_and_returned(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let (mut w, start) = ChainWriter::start("c1", mac_key(), NOW).unwrap();
    let plain = access(1000, "dr-a", "p1", Some(("sepsis-risk", "4.2.0")), false);
    let mut answered = plain.clone();
    let sha = "659a88af9bab93095dfc32b80529411885a3cc9dd4d30165f452df2eb5bd0691";
    if let Some(i) = answered.inference.as_mut() {
        i.response_sha256 = Some(sha.into());
        i.response_signature_key_id = Some("r1".into());
    }
    let enc = collector().encryption;
    assert_eq!(
        crate::ingest::blind_indexes(&enc, &plain),
        crate::ingest::blind_indexes(&enc, &answered)
    );
    let batch = [
        serde_json::to_value(start).unwrap(),
        serde_json::to_value(w.seal(answered).unwrap()).unwrap(),
    ];
    let summary = ingest(s.as_mut(), &collector(), &batch).unwrap();
    assert_eq!(summary.flagged, 0, "{summary:?}");
    let found = query(
        s.as_mut(),
        &enc,
        &Query {
            model: Some("sepsis-risk".into()),
            version: Some("4.2.0".into()),
            ..q()
        },
    )
    .unwrap()
    .records;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0]["inference"],
        json!({"model": "sepsis-risk", "version": "4.2.0",
               "responseSha256": sha, "responseSignatureKeyId": "r1"})
    );
}

/// Ingests a chain and signs a checkpoint; returns the signer.
fn populated(s: &mut dyn Store) -> CheckpointSigner {
    ingest(s, &collector(), &chain("c1", 5)).unwrap();
    ingest(s, &collector(), &chain("c2", 2)).unwrap();
    let signer = CheckpointSigner::generate();
    sign_checkpoint(s, &signer, NOW).unwrap();
    assert!(verify_db(s, Some(&signer)).intact);
    signer
}

/// The findings about rows (the dropped triggers' own `schema` findings left out).
fn problems(r: &VerifyReport) -> Vec<(Problem, Option<i64>)> {
    r.findings
        .iter()
        .filter(|f| f.problem != Problem::Schema)
        .map(|f| (f.problem, f.ledger_seq))
        .collect()
}

fn verify_catches_a_bit_flip(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let signer = populated(s.as_mut());
    let row = s
        .rows(&RowFilter {
            after: 2,
            limit: 1,
            ..RowFilter::default()
        })
        .unwrap()
        .remove(0);
    let mut ct = row.ciphertext.clone();
    ct[5] ^= 0x01;
    db.drop_triggers(s.as_mut());
    s.execute_sql(&format!(
        "UPDATE audit_records SET ciphertext = {} WHERE ledger_seq = 3",
        db.bytes_literal(&ct)
    ))
    .unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(!r.intact);
    let rows: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.problem != Problem::Schema)
        .collect();
    assert!(rows
        .iter()
        .all(|f| f.problem == Problem::Modified && f.ledger_seq == Some(3)));
    let f = rows[0];
    assert_eq!(f.chain_id.as_deref(), Some("c1"));
    assert_eq!(f.seq, Some(2));
    assert!(r.findings.iter().any(|f| f.detail.contains("ciphertext")));
    // A changed plain column is caught too.
    s.execute_sql("UPDATE audit_records SET time_ms = time_ms + 1 WHERE ledger_seq = 5")
        .unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(r.findings.iter().any(|f| f.ledger_seq == Some(5)));
}

fn verify_catches_a_deleted_middle_row(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let signer = populated(s.as_mut());
    db.drop_triggers(s.as_mut());
    s.execute_sql("DELETE FROM audit_records WHERE ledger_seq = 4")
        .unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(!r.intact);
    let deleted: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.problem == Problem::Deleted)
        .collect();
    assert!(
        deleted.iter().any(|f| f.ledger_seq == Some(4)),
        "{deleted:?}"
    );
    // Read in pages of 2 rows: the same findings.
    let c = collector();
    let keys = [signer.verifying_key()];
    let paged = crate::verify::verify_paged(
        s.as_mut(),
        &VerifyKeys {
            mac_keys: &c.mac_keys,
            encryption: &c.encryption,
            checkpoint_keys: &keys,
        },
        crate::ingest::system_clock()(),
        2,
    )
    .unwrap();
    assert_eq!(paged.findings, r.findings);
    assert_eq!(paged.rows, r.rows);
    // Named by chain and seq too: c1 seq 3 is gone.
    assert!(
        deleted.iter().any(|f| f.chain_id.as_deref() == Some("c1")
            && f.seq == Some(3)
            && f.detail.contains("seq 3 missing")),
        "{deleted:?}"
    );
}

fn verify_catches_a_deleted_tail_by_checkpoint(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let signer = populated(s.as_mut()); // 9 rows, checkpoint at 9
    db.drop_triggers(s.as_mut());
    s.execute_sql("DELETE FROM audit_records WHERE ledger_seq >= 8")
        .unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert_eq!(
        problems(&r),
        [(Problem::Truncated, Some(8))],
        "{:?}",
        r.findings
    );
    assert!(r.findings[0].detail.contains("#8..=#9"));
    // Without the checkpoint a hash chain alone could not tell.
    let db2 = TestDb::new(b);
    let mut s2 = db2.open();
    ingest(s2.as_mut(), &collector(), &chain("c1", 5)).unwrap();
    db2.drop_triggers(s2.as_mut());
    s2.execute_sql("DELETE FROM audit_records WHERE ledger_seq = 6")
        .unwrap();
    let r = verify_db(s2.as_mut(), None);
    assert!(problems(&r).is_empty(), "{:?}", r.findings);
    assert!(r.notes.iter().any(|n| n.contains("not yet covered")));
    // Only the dropped triggers show.
    assert!(r.findings.iter().all(|f| f.problem == Problem::Schema));
    assert!(!r.intact);
}

fn verify_catches_reordered_rows(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let signer = populated(s.as_mut());
    db.drop_triggers(s.as_mut());
    s.execute_sql(
        "UPDATE audit_records SET ledger_seq = -ledger_seq WHERE ledger_seq IN (3, 4); \
         UPDATE audit_records SET ledger_seq = 4 WHERE ledger_seq = -3; \
         UPDATE audit_records SET ledger_seq = 3 WHERE ledger_seq = -4;",
    )
    .unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert_eq!(
        problems(&r),
        [(Problem::Reordered, Some(3)), (Problem::Reordered, Some(4))],
        "{:?}",
        r.findings
    );
    assert!(r.findings[0].detail.contains("written as #4"));
    assert!(r.findings[1].detail.contains("written as #3"));
    assert_eq!(r.findings[1].request_id.as_deref(), Some("req-dr-b-2"));
}

fn verify_catches_forged_checkpoint_and_changed_index(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let signer = populated(s.as_mut());
    // A checkpoint signed by some other key.
    let mallory = CheckpointSigner::generate();
    sign_checkpoint(s.as_mut(), &mallory, NOW + 1).unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert_eq!(problems(&r), [(Problem::Checkpoint, None)]);
    // Re-pointing a row's blind index hides it from a patient query; verify sees it.
    let db2 = TestDb::new(b);
    let mut s2 = db2.open();
    let signer2 = populated(s2.as_mut());
    db2.drop_triggers(s2.as_mut());
    s2.execute_sql("UPDATE audit_records SET bi_patient = 'x' WHERE ledger_seq = 2")
        .unwrap();
    let r = verify_db(s2.as_mut(), Some(&signer2));
    assert!(r
        .findings
        .iter()
        .any(|f| f.ledger_seq == Some(2) && f.detail.contains("blind index")));
    let _ = StoreError::BadUrl;
}

fn concurrent_writers_keep_one_ledger(b: Backend) {
    let db = TestDb::new(b);
    let _ = db.open(); // schema
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let mut s = open_store(&url).unwrap();
                let records = chain(&format!("w{t}"), 20);
                for piece in records.chunks(3) {
                    let sum = ingest(s.as_mut(), &collector(), piece).unwrap();
                    assert_eq!(sum.flagged, 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut s = db.open();
    let signer = CheckpointSigner::generate();
    sign_checkpoint(s.as_mut(), &signer, NOW).unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(r.intact, "{:?}", r.findings);
    assert_eq!(r.rows, 84);
    assert_eq!(r.chains, 4);
}

#[test]
fn signing_key_file_and_public_key_publication() {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let dir = temp_dir();
    let generated = CheckpointSigner::generate();
    assert!(generated.generated);
    let pem = generated.key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let key_file = dir.0.join("signing.pem");
    std::fs::write(&key_file, pem.as_bytes()).unwrap();
    let loaded = CheckpointSigner::from_pem_file(&key_file).unwrap();
    assert!(!loaded.generated);
    assert_eq!(loaded.key_id(), generated.key_id());
    assert!(!format!("{loaded:?}").contains("BEGIN"));
    std::fs::write(dir.0.join("bad.pem"), "not a key").unwrap();
    assert!(CheckpointSigner::from_pem_file(&dir.0.join("bad.pem")).is_err());

    // Appended once per key; earlier keys stay, so old checkpoints stay verifiable.
    let pub_file = crate::keys::default_public_key_path(&format!(
        "sqlite:{}",
        dir.0.join("audit.db").display()
    ))
    .unwrap();
    assert!(pub_file.ends_with("audit.db.checkpoint-keys.pem"));
    loaded.publish_public_key(&pub_file).unwrap();
    loaded.publish_public_key(&pub_file).unwrap();
    let other = CheckpointSigner::generate();
    other.publish_public_key(&pub_file).unwrap();
    let keys = crate::keys::load_public_keys(&pub_file).unwrap();
    assert_eq!(keys, vec![loaded.verifying_key(), other.verifying_key()]);
    let text = std::fs::read_to_string(&pub_file).unwrap();
    assert!(!text.contains("PRIVATE"));
}

/// Hostile query parameters (a reviewer's URL) are refused with a message, never a panic:
/// non-ASCII bytes inside a timestamp (`+0é00` sliced the offset inside the `é`), broken
/// percent-encoding, a sign where a hex digit belongs.
#[test]
fn hostile_query_parameters_are_refused_without_panicking() {
    use crate::query::parse_query_string;
    for qs in [
        "from=2026-01-01T00:00:00%2B0%C3%A900",
        "to=2026-01-01T00:00:00-%C3%A9:00",
        "from=2026-01-01T%C3%A9%C3%A9:00:00Z",
        "from=2026-01-01T00:00:00.%C3%A9Z",
        "from=%C3%A9026-01-01",
        "from=%FF%FE",
        "from=%",
        "from=%2",
        "from=%+1",
        "from=%-1",
        "from=%C3",
        "patient=%C3%28",
        "limit=%C3%A9",
        "%C3%A9=1",
    ] {
        assert!(parse_query_string(qs).is_err(), "{qs}");
    }
    assert_eq!(
        parse_query_string("patient=caf%C3%A9+x")
            .unwrap()
            .patient
            .as_deref(),
        Some("café x")
    );
}

/// Form decoding of query keys and values: `+` is a space and `%2B` a plus; a `%` without two
/// hex digits and bytes that are not UTF-8 are refused, each with its own message.
#[test]
fn query_percent_decoding_refuses_what_it_cannot_read() {
    use crate::query::percent_decode;
    assert_eq!(percent_decode("caf%C3%a9+x%2B1").unwrap(), "café x+1");
    assert_eq!(percent_decode("%4a%4A").unwrap(), "JJ");
    for bad in ["%", "%4", "x%", "%ZZ", "%4G", "%+1", "%%41"] {
        assert_eq!(
            percent_decode(bad).unwrap_err(),
            "bad percent-encoding in the query string",
            "{bad:?}"
        );
    }
    assert_eq!(
        percent_decode("%C3%28").unwrap_err(),
        "query string is not UTF-8"
    );
}

/// An ingested record's `time` reaches the timestamp parser before its MAC is checked: a
/// hostile one is kept as an integrity record (malformed), never a panic.
#[test]
fn hostile_record_times_are_flagged_not_a_panic() {
    let db = TestDb::new(Backend::Sqlite);
    let mut s = db.open();
    let mut batch = chain("hostile-times", 7);
    let times = [
        "2026-01-01T00:00:00+0é00",
        "2026-01-01T00:00:00-é:00",
        "2026-01-01Té0:00:00Z",
        "2026-01-01T00:00:00.éZ",
        "2026-01-0é",
        "é026-01-01",
        "2026-01-01T00:00:00+00:0é",
    ];
    for (record, time) in batch.iter_mut().skip(1).zip(times) {
        record["time"] = json!(time);
    }
    let sum = ingest(s.as_mut(), &collector(), &batch).unwrap();
    assert_eq!(sum.accepted, 1, "{sum:?}");
    assert!(sum.flagged >= times.len() as u64, "{sum:?}");
}

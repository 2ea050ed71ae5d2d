//! The trail against its own operators: someone with database access (but not the checkpoint
//! signing key) drops the append-only triggers, inserts purge marks, copies signed values and
//! deletes rows; `audit verify` must not answer `intact`. Each case runs on SQLite and
//! PostgreSQL.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::{chain, collector, collector_at, verify_db, Backend, TestDb, YEAR_MS};
use crate::checkpoint::sign_checkpoint;
use crate::ingest::{ingest, system_clock};
use crate::keys::CheckpointSigner;
use crate::purge::six_years_before;
use crate::store::{RowFilter, Store};
use crate::verify::{Problem, VerifyReport};

both_backends!(
    forged_purge_dated_in_the_future_is_caught,
    forged_purge_without_its_checkpoint_is_caught,
    unsigned_purge_mark_is_caught,
    purge_mark_with_copied_signature_is_caught,
    dropped_or_altered_trigger_is_a_finding,
);

/// A ledger of 9 rows, stored now, with a signed checkpoint over all of them.
fn recent(s: &mut dyn Store) -> CheckpointSigner {
    let at = Arc::new(AtomicI64::new(system_clock()()));
    ingest(s, &collector_at(at.clone()), &chain("c1", 5)).unwrap();
    ingest(s, &collector_at(at), &chain("c2", 2)).unwrap();
    let signer = CheckpointSigner::generate();
    sign_checkpoint(s, &signer, system_clock()()).unwrap();
    signer
}

fn row_hash_at(s: &mut dyn Store, seq: i64) -> String {
    s.rows(&RowFilter {
        after: seq - 1,
        limit: 1,
        ..RowFilter::default()
    })
    .unwrap()
    .remove(0)
    .ledger_hash
}

/// Drops the delete trigger, inserts the mark (unsigned columns only, as any SQL client can),
/// deletes the rows it claims were purged.
fn forge_purge(db: &TestDb, s: &mut dyn Store, created: i64, before: i64, through: i64) {
    let hash = row_hash_at(s, through);
    let drop = match db.backend {
        Backend::Sqlite => "DROP TRIGGER audit_records_no_young_delete;",
        Backend::Postgres => "DROP TRIGGER audit_records_no_young_delete ON audit_records;",
    };
    s.execute_sql(drop).unwrap();
    s.execute_sql(&format!(
        "INSERT INTO purges (created_ms, before_ms, through_seq, through_hash) \
         VALUES ({created}, {before}, {through}, '{hash}'); \
         DELETE FROM audit_records WHERE ledger_seq <= {through};"
    ))
    .unwrap();
}

fn purge_findings(r: &VerifyReport) -> usize {
    r.findings
        .iter()
        .filter(|f| f.problem == Problem::Purge)
        .count()
}

/// The attack: a mark dated six years ahead, cut-off "now", the last checkpoint's head.
fn forged_purge_dated_in_the_future_is_caught(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let signer = recent(s.as_mut());
    let now = system_clock()();
    forge_purge(&db, s.as_mut(), now + 6 * YEAR_MS + 2 * 86_400_000, now, 9);
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(!r.intact, "forged purge passed: {:?}", r.notes);
    assert_eq!(purge_findings(&r), 1, "{:?}", r.findings);
}

/// A mark through a row no checkpoint signed (the rows before the last checkpoint's head).
fn forged_purge_without_its_checkpoint_is_caught(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let signer = recent(s.as_mut());
    let now = system_clock()();
    forge_purge(&db, s.as_mut(), now + 7 * YEAR_MS, now, 4);
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(!r.intact, "forged purge passed: {:?}", r.notes);
    assert!(purge_findings(&r) >= 1, "{:?}", r.findings);
}

/// Old rows, an old signed checkpoint: a purge the rules would allow, but written by SQL
/// (unsigned) rather than by `audit purge` with the signing key.
fn unsigned_purge_mark_is_caught(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let now = system_clock()();
    let clock = Arc::new(AtomicI64::new(now - 7 * YEAR_MS));
    ingest(s.as_mut(), &collector_at(clock.clone()), &chain("old", 3)).unwrap();
    let signer = CheckpointSigner::generate();
    sign_checkpoint(s.as_mut(), &signer, now - 7 * YEAR_MS + 1000).unwrap();
    clock.store(now, Ordering::SeqCst);
    ingest(s.as_mut(), &collector_at(clock), &chain("new", 2)).unwrap();
    sign_checkpoint(s.as_mut(), &signer, now).unwrap();
    forge_purge(&db, s.as_mut(), now, six_years_before(now) - 86_400_000, 4);
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(!r.intact, "unsigned purge passed: {:?}", r.notes);
    assert_eq!(purge_findings(&r), 1, "{:?}", r.findings);
}

/// A real, signed purge mark's signature copied onto a mark that claims more rows.
fn purge_mark_with_copied_signature_is_caught(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    let now = system_clock()();
    let clock = Arc::new(AtomicI64::new(now - 7 * YEAR_MS));
    ingest(s.as_mut(), &collector_at(clock.clone()), &chain("old", 3)).unwrap();
    let signer = CheckpointSigner::generate();
    sign_checkpoint(s.as_mut(), &signer, now - 7 * YEAR_MS + 1000).unwrap();
    clock.store(now, Ordering::SeqCst);
    ingest(s.as_mut(), &collector_at(clock), &chain("new", 2)).unwrap();
    sign_checkpoint(s.as_mut(), &signer, now).unwrap();
    let legit = crate::purge::purge(
        s.as_mut(),
        &signer,
        &collector().encryption,
        six_years_before(now) - 86_400_000,
        now,
    )
    .unwrap();
    assert_eq!(legit.through_seq, 4);
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(r.intact, "{:?}", r.findings);
    let mark = s.purges().unwrap().remove(0);
    let hash = row_hash_at(s.as_mut(), 7);
    let drop = match db.backend {
        Backend::Sqlite => "DROP TRIGGER audit_records_no_young_delete;",
        Backend::Postgres => "DROP TRIGGER audit_records_no_young_delete ON audit_records;",
    };
    s.execute_sql(drop).unwrap();
    s.execute_sql(&format!(
        "INSERT INTO purges (created_ms, before_ms, through_seq, through_hash, key_id, signature) \
         VALUES ({}, {}, 7, '{hash}', '{}', '{}'); \
         DELETE FROM audit_records WHERE ledger_seq <= 7;",
        mark.created_ms, mark.before_ms, mark.key_id, mark.signature
    ))
    .unwrap();
    let r = verify_db(s.as_mut(), Some(&signer));
    assert!(!r.intact);
    assert_eq!(purge_findings(&r), 1, "{:?}", r.findings);
}

/// Dropping, disabling or rewriting an append-only trigger is reported even when no row was
/// touched yet (and also by a store opened afterwards, which recreates the trigger).
fn dropped_or_altered_trigger_is_a_finding(b: Backend) {
    let db = TestDb::new(b);
    let mut s = db.open();
    ingest(s.as_mut(), &collector(), &chain("c1", 2)).unwrap();
    let signer = CheckpointSigner::generate();
    sign_checkpoint(s.as_mut(), &signer, super::NOW).unwrap();
    assert!(verify_db(s.as_mut(), Some(&signer)).intact);
    let schema = |r: &VerifyReport| -> Vec<String> {
        r.findings
            .iter()
            .filter(|f| f.problem == Problem::Schema)
            .map(|f| f.detail.clone())
            .collect()
    };
    let attacks: &[&str] = match b {
        Backend::Sqlite => &[
            "DROP TRIGGER purges_no_delete;",
            "DROP TRIGGER audit_records_no_update; \
             CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records \
             WHEN 0 BEGIN SELECT RAISE(ABORT, 'x'); END;",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER purges_no_change ON purges;",
            "ALTER TABLE audit_records DISABLE TRIGGER audit_records_no_update;",
            "CREATE OR REPLACE FUNCTION hipaa_audit_refuse_young_delete() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$;",
        ],
    };
    for sql in attacks {
        let db = TestDb::new(b);
        let mut s = db.open();
        ingest(s.as_mut(), &collector(), &chain("c1", 2)).unwrap();
        sign_checkpoint(s.as_mut(), &signer, super::NOW).unwrap();
        s.execute_sql(sql).unwrap();
        let r = verify_db(s.as_mut(), Some(&signer));
        assert!(!r.intact, "{sql}");
        assert!(!schema(&r).is_empty(), "{sql}: {:?}", r.findings);
        // A store opened later (which restores the schema) still reports what it found.
        let mut again = db.open();
        let r = verify_db(again.as_mut(), Some(&signer));
        assert!(
            !schema(&r).is_empty(),
            "{sql} after reopen: {:?}",
            r.findings
        );
    }
}

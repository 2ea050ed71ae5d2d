//! SQLite: the embedded default. WAL, `synchronous=FULL` (a commit is on disk before the
//! collector answers), `BEGIN IMMEDIATE` as the ledger lock. See [`PRAGMAS`].

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, TransactionBehavior};

use std::collections::BTreeMap;

use super::{
    append_only_diff, filter_sql, merge_problems, Checkpoint, LedgerTx, Param, PurgeMark,
    RevocationRow, RowFilter, Store, StoreError, StoredRow, WriteFn, REVOCATION_COLUMNS,
    ROW_COLUMNS, SESSION_SCHEMA,
};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_records (
    ledger_seq   INTEGER PRIMARY KEY,
    ledger_prev  TEXT    NOT NULL,
    ledger_hash  TEXT    NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    time_ms      INTEGER,
    emergency    INTEGER NOT NULL,
    chain_id     TEXT,
    chain_seq    INTEGER,
    source_hash  TEXT,
    bi_patient   TEXT,
    bi_subject   TEXT,
    bi_model     TEXT,
    bi_version   TEXT,
    nonce        BLOB    NOT NULL,
    ciphertext   BLOB    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_records_chain ON audit_records (chain_id, chain_seq);
CREATE UNIQUE INDEX IF NOT EXISTS audit_records_source ON audit_records (source_hash);
CREATE INDEX IF NOT EXISTS audit_records_patient ON audit_records (bi_patient);
CREATE INDEX IF NOT EXISTS audit_records_subject ON audit_records (bi_subject);
CREATE INDEX IF NOT EXISTS audit_records_model ON audit_records (bi_model, bi_version);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time_ms);
CREATE TABLE IF NOT EXISTS checkpoints (
    id           INTEGER PRIMARY KEY,
    created_ms   INTEGER NOT NULL,
    ledger_count INTEGER NOT NULL,
    head_hash    TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    signature    TEXT    NOT NULL
);
-- The only mutable table: progress markers of background work (the alert detector's and the
-- alert webhook's ledger positions). Not evidence: losing it re-runs work idempotently.
CREATE TABLE IF NOT EXISTS collector_state (
    name  TEXT   PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS purges (
    id           INTEGER PRIMARY KEY,
    created_ms   INTEGER NOT NULL,
    before_ms    INTEGER NOT NULL,
    through_seq  INTEGER NOT NULL,
    through_hash TEXT    NOT NULL,
    key_id       TEXT    NOT NULL DEFAULT '',
    signature    TEXT    NOT NULL DEFAULT ''
);
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'hipaa-mesh: audit_records is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_young_delete BEFORE DELETE ON audit_records
WHEN OLD.stored_at_ms > CAST(strftime('%s', 'now', '-6 years') AS INTEGER) * 1000
BEGIN SELECT RAISE(ABORT, 'hipaa-mesh: audit records younger than 6 years cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'hipaa-mesh: checkpoints are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'hipaa-mesh: checkpoints are append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS purges_no_update BEFORE UPDATE ON purges
BEGIN SELECT RAISE(ABORT, 'hipaa-mesh: purges are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS purges_no_delete BEFORE DELETE ON purges
BEGIN SELECT RAISE(ABORT, 'hipaa-mesh: purges are append-only: DELETE refused'); END;
"#;

/// WAL with `synchronous = FULL`: every commit is fsync'd before the collector answers (durable
/// across a power loss, not only an application crash). The page cache (64 MiB, grown only as
/// used) holds a whole ingest transaction: with SQLite's default 2 MiB, a group of batches
/// dirtying thousands of index pages spilled them to the WAL mid-transaction and read them back,
/// nearly doubling what was written. Checkpointing at 10,000 WAL pages (~40 MiB) rather than
/// 1,000 writes each hot page (table tail, time and chain indexes) into the database once per
/// several commits instead of after every one. Both only change how much is written, not when
/// a commit is durable. Measured with `ingest-profile`: about 48 -> 44 µs of CPU per record.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 10000;";

/// One SQLite connection.
pub struct SqliteStore {
    conn: Connection,
    /// Append-only triggers found missing or altered when this connection was opened.
    at_open: Vec<String>,
}

/// The append-only triggers as stored in `sqlite_master`, by `trigger NAME`.
fn triggers(conn: &Connection) -> Result<BTreeMap<String, String>, StoreError> {
    let e = |e| StoreError::db("read triggers", e);
    let mut stmt = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        .map_err(e)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                format!("trigger {}", r.get::<_, String>(0)?),
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .map_err(e)?;
    rows.collect::<Result<BTreeMap<_, _>, _>>().map_err(e)
}

/// The triggers [`SCHEMA`] defines, as SQLite stores them (made in a private in-memory
/// database, so the comparison never depends on the file under check).
fn expected_triggers() -> Result<BTreeMap<String, String>, StoreError> {
    let mem = Connection::open_in_memory().map_err(|e| StoreError::db("schema check", e))?;
    mem.execute_batch(SCHEMA)
        .map_err(|e| StoreError::db("schema check", e))?;
    triggers(&mem)
}

fn has_table(conn: &Connection, table: &str) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
    .map_err(|e| StoreError::db("schema check", e))
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
    .map_err(|e| StoreError::db("schema check", e))
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(|e| StoreError::db("open sqlite", e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| StoreError::db("sqlite busy_timeout", e))?;
        conn.execute_batch(PRAGMAS)
            .map_err(|e| StoreError::db("sqlite pragmas", e))?;
        let mut store = SqliteStore {
            conn,
            at_open: Vec::new(),
        };
        let expected = expected_triggers()?;
        let tx = store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::db("sqlite schema", e))?;
        // An existing database: judge its triggers before the schema recreates dropped ones.
        let at_open = if has_table(&tx, "audit_records")? {
            append_only_diff(&triggers(&tx)?, &expected)
        } else {
            Vec::new()
        };
        tx.execute_batch(SCHEMA)
            .map_err(|e| StoreError::db("sqlite schema", e))?;
        tx.execute_batch(SESSION_SCHEMA)
            .map_err(|e| StoreError::db("sqlite schema", e))?;
        // Databases made before purge marks were signed.
        for column in ["key_id", "signature"] {
            if !has_column(&tx, "purges", column)? {
                tx.execute_batch(&format!(
                    "ALTER TABLE purges ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"
                ))
                .map_err(|e| StoreError::db("sqlite schema", e))?;
            }
        }
        tx.commit()
            .map_err(|e| StoreError::db("sqlite schema", e))?;
        store.at_open = at_open;
        Ok(store)
    }
}

fn ph(i: usize) -> String {
    format!("?{i}")
}

fn read_row(r: &Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        ledger_seq: r.get(0)?,
        ledger_prev: r.get(1)?,
        ledger_hash: r.get(2)?,
        stored_at_ms: r.get(3)?,
        kind: r.get(4)?,
        time_ms: r.get(5)?,
        emergency: r.get(6)?,
        chain_id: r.get(7)?,
        chain_seq: r.get(8)?,
        source_hash: r.get(9)?,
        bi_patient: r.get(10)?,
        bi_subject: r.get(11)?,
        bi_model: r.get(12)?,
        bi_version: r.get(13)?,
        nonce: r.get(14)?,
        ciphertext: r.get(15)?,
    })
}

/// Raises each session's last activity (see `Store::record_session_activity`).
fn upsert_activity(conn: &Connection, activity: &[(String, i64)]) -> Result<(), StoreError> {
    let e = |e| StoreError::db("record session activity", e);
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO session_activity (session_key, last_activity_ms) VALUES (?1, ?2) \
             ON CONFLICT (session_key) DO UPDATE \
             SET last_activity_ms = max(last_activity_ms, excluded.last_activity_ms)",
        )
        .map_err(e)?;
    for (key, ms) in activity {
        stmt.execute(params![key, ms]).map_err(e)?;
    }
    Ok(())
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

fn head_of(conn: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    let row = conn
        .query_row(
            "SELECT ledger_seq, ledger_hash FROM audit_records ORDER BY ledger_seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| StoreError::db("read ledger head", e))?;
    if row.is_some() {
        return Ok(row);
    }
    conn.query_row(
        "SELECT through_seq, through_hash FROM purges ORDER BY through_seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(|e| StoreError::db("read purge head", e))
}

impl LedgerTx for SqliteTx<'_> {
    fn head(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        head_of(self.tx)
    }

    fn existing_sources(&mut self, source_hashes: &[&str]) -> Result<Vec<String>, StoreError> {
        let e = |e| StoreError::db("dedup lookup", e);
        let mut stmt = self
            .tx
            .prepare_cached("SELECT 1 FROM audit_records WHERE source_hash = ?1")
            .map_err(e)?;
        let mut found = Vec::new();
        for h in source_hashes {
            if stmt.exists([h]).map_err(e)? {
                found.push((*h).to_string());
            }
        }
        Ok(found)
    }

    fn chain_heads(
        &mut self,
        chain_ids: &[&str],
    ) -> Result<Vec<(String, i64, String)>, StoreError> {
        let e = |e| StoreError::db("chain state", e);
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT chain_seq, source_hash FROM audit_records WHERE chain_id = ?1 \
                 ORDER BY chain_seq DESC LIMIT 1",
            )
            .map_err(e)?;
        let mut heads = Vec::new();
        for id in chain_ids {
            let head: Option<(i64, String)> = stmt
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(e)?;
            if let Some((seq, hash)) = head {
                heads.push(((*id).to_string(), seq, hash));
            }
        }
        Ok(heads)
    }

    fn existing_chain_seqs(
        &mut self,
        keys: &[(&str, i64)],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let e = |e| StoreError::db("chain lookup", e);
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT 1 FROM audit_records WHERE chain_id = ?1 AND chain_seq = ?2 \
                 AND source_hash IS NOT NULL",
            )
            .map_err(e)?;
        let mut found = Vec::new();
        for (id, seq) in keys {
            if stmt.exists(params![id, seq]).map_err(e)? {
                found.push(((*id).to_string(), *seq));
            }
        }
        Ok(found)
    }

    fn insert_rows(&mut self, rows: &[StoredRow]) -> Result<(), StoreError> {
        let e = |e| StoreError::db("insert record", e);
        let mut stmt = self
            .tx
            .prepare_cached(&format!(
                "INSERT INTO audit_records ({ROW_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            ))
            .map_err(e)?;
        for row in rows {
            stmt.execute(params![
                row.ledger_seq,
                row.ledger_prev,
                row.ledger_hash,
                row.stored_at_ms,
                row.kind,
                row.time_ms,
                row.emergency,
                row.chain_id,
                row.chain_seq,
                row.source_hash,
                row.bi_patient,
                row.bi_subject,
                row.bi_model,
                row.bi_version,
                row.nonce,
                row.ciphertext
            ])
            .map_err(e)?;
        }
        Ok(())
    }

    fn record_session_activity(&mut self, activity: &[(String, i64)]) -> Result<(), StoreError> {
        upsert_activity(self.tx, activity)
    }

    fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO checkpoints (created_ms, ledger_count, head_hash, key_id, signature) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    cp.created_ms,
                    cp.ledger_count,
                    cp.head_hash,
                    cp.key_id,
                    cp.signature
                ],
            )
            .map(|_| ())
            .map_err(|e| StoreError::db("insert checkpoint", e))
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn write(&mut self, f: &mut WriteFn<'_>) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::db("begin", e))?;
        {
            let mut ltx = SqliteTx { tx: &tx };
            f(&mut ltx)?;
        }
        tx.commit().map_err(|e| StoreError::db("commit", e))
    }

    fn rows(&mut self, filter: &RowFilter) -> Result<Vec<StoredRow>, StoreError> {
        let (sql, params) = filter_sql(filter, ph);
        let values: Vec<rusqlite::types::Value> = params
            .into_iter()
            .map(|p| match p {
                Param::Text(s) => rusqlite::types::Value::Text(s),
                Param::Int(i) => rusqlite::types::Value::Integer(i),
                Param::Bool(b) => rusqlite::types::Value::Integer(i64::from(b)),
            })
            .collect();
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(|e| StoreError::db("query records", e))?;
        let rows = stmt
            .query_map(params_from_iter(values), read_row)
            .map_err(|e| StoreError::db("query records", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::db("read records", e))
    }

    fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, created_ms, ledger_count, head_hash, key_id, signature \
                 FROM checkpoints ORDER BY id",
            )
            .map_err(|e| StoreError::db("read checkpoints", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Checkpoint {
                    id: r.get(0)?,
                    created_ms: r.get(1)?,
                    ledger_count: r.get(2)?,
                    head_hash: r.get(3)?,
                    key_id: r.get(4)?,
                    signature: r.get(5)?,
                })
            })
            .map_err(|e| StoreError::db("read checkpoints", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::db("read checkpoints", e))
    }

    fn purges(&mut self) -> Result<Vec<PurgeMark>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, created_ms, before_ms, through_seq, through_hash, key_id, signature \
                 FROM purges ORDER BY id",
            )
            .map_err(|e| StoreError::db("read purges", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PurgeMark {
                    id: r.get(0)?,
                    created_ms: r.get(1)?,
                    before_ms: r.get(2)?,
                    through_seq: r.get(3)?,
                    through_hash: r.get(4)?,
                    key_id: r.get(5)?,
                    signature: r.get(6)?,
                })
            })
            .map_err(|e| StoreError::db("read purges", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::db("read purges", e))
    }

    fn purge_through(&mut self, mark: &PurgeMark) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::db("begin purge", e))?;
        let deleted = tx
            .execute(
                "DELETE FROM audit_records WHERE ledger_seq <= ?1",
                [mark.through_seq],
            )
            .map_err(|e| StoreError::db("purge", e))?;
        tx.execute(
            "INSERT INTO purges (created_ms, before_ms, through_seq, through_hash, key_id, \
             signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                mark.created_ms,
                mark.before_ms,
                mark.through_seq,
                mark.through_hash,
                mark.key_id,
                mark.signature
            ],
        )
        .map_err(|e| StoreError::db("record purge", e))?;
        tx.commit().map_err(|e| StoreError::db("commit purge", e))?;
        Ok(deleted as u64)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.conn
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(|e| StoreError::db("ping", e))
    }

    fn append_only_problems(&mut self) -> Result<Vec<String>, StoreError> {
        let mut out = self.at_open.clone();
        merge_problems(
            &mut out,
            append_only_diff(&triggers(&self.conn)?, &expected_triggers()?),
        );
        Ok(out)
    }

    fn state(&mut self, name: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM collector_state WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| StoreError::db("read collector state", e))
    }

    fn advance_state(&mut self, name: &str, value: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO collector_state (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
                rusqlite::params![name, value],
            )
            .map(|_| ())
            .map_err(|e| StoreError::db("write collector state", e))
    }

    fn execute_sql(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| StoreError::db("execute", e))
    }

    fn record_session_activity(&mut self, activity: &[(String, i64)]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| StoreError::db("record session activity", e))?;
        upsert_activity(&tx, activity)?;
        tx.commit()
            .map_err(|e| StoreError::db("record session activity", e))
    }

    fn session_activity(&mut self, key: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .prepare_cached("SELECT last_activity_ms FROM session_activity WHERE session_key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| StoreError::db("read session activity", e))
    }

    fn prune_sessions(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "DELETE FROM session_activity WHERE last_activity_ms < ?1",
                [before_ms],
            )
            .map(|n| n as u64)
            .map_err(|e| StoreError::db("prune sessions", e))
    }

    fn insert_revocation(&mut self, row: &RevocationRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO session_revocations ({REVOCATION_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    row.ledger_seq,
                    row.target,
                    row.value,
                    row.issuer,
                    row.revoked_at_ms,
                    row.expires_at_ms
                ],
            )
            .map(|_| ())
            .map_err(|e| StoreError::db("insert revocation", e))
    }

    fn revocations(&mut self, now_ms: i64) -> Result<Vec<RevocationRow>, StoreError> {
        let e = |e| StoreError::db("read revocations", e);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {REVOCATION_COLUMNS} FROM session_revocations \
                 WHERE expires_at_ms > ?1 ORDER BY ledger_seq"
            ))
            .map_err(e)?;
        let rows = stmt
            .query_map([now_ms], |r| {
                Ok(RevocationRow {
                    ledger_seq: r.get(0)?,
                    target: r.get(1)?,
                    value: r.get(2)?,
                    issuer: r.get(3)?,
                    revoked_at_ms: r.get(4)?,
                    expires_at_ms: r.get(5)?,
                })
            })
            .map_err(e)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(e)
    }

    fn is_revoked(
        &mut self,
        issuer: &str,
        subject: &str,
        session: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT 1 FROM session_revocations WHERE expires_at_ms > ?1 \
                 AND ((target = 'subject' AND value = ?2) OR (target = 'session' AND value = ?3)) \
                 AND (issuer IS NULL OR issuer = ?4) LIMIT 1",
            )
            .and_then(|mut s| s.exists(params![now_ms, subject, session, issuer]))
            .map_err(|e| StoreError::db("read revocations", e))
    }

    fn prune_revocations(&mut self, now_ms: i64) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "DELETE FROM session_revocations WHERE expires_at_ms <= ?1",
                [now_ms],
            )
            .map(|n| n as u64)
            .map_err(|e| StoreError::db("prune revocations", e))
    }
}

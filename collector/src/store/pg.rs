//! PostgreSQL: for a cluster of collectors writing one database. The ledger lock is a
//! transaction-scoped advisory lock, so concurrent collectors append one after another.

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};

use std::collections::BTreeMap;

use super::{
    append_only_diff, filter_sql, merge_problems, Checkpoint, LedgerTx, Param, PurgeMark,
    RevocationRow, RowFilter, Store, StoreError, StoredRow, WriteFn, REVOCATION_COLUMNS,
    ROW_COLUMNS, SESSION_SCHEMA,
};

/// The advisory lock key that serialises ledger writers ("HIPAALDG").
const LEDGER_LOCK: i64 = 0x4849_5041_414c_4447;

/// Rows per INSERT statement (bounds one message's size; a transaction may hold several).
const INSERT_CHUNK: usize = 5000;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_records (
    ledger_seq   BIGINT  PRIMARY KEY,
    ledger_prev  TEXT    NOT NULL,
    ledger_hash  TEXT    NOT NULL,
    stored_at_ms BIGINT  NOT NULL,
    kind         TEXT    NOT NULL,
    time_ms      BIGINT,
    emergency    BOOLEAN NOT NULL,
    chain_id     TEXT,
    chain_seq    BIGINT,
    source_hash  TEXT,
    bi_patient   TEXT,
    bi_subject   TEXT,
    bi_model     TEXT,
    bi_version   TEXT,
    nonce        BYTEA   NOT NULL,
    ciphertext   BYTEA   NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_records_chain ON audit_records (chain_id, chain_seq);
CREATE UNIQUE INDEX IF NOT EXISTS audit_records_source ON audit_records (source_hash);
CREATE INDEX IF NOT EXISTS audit_records_patient ON audit_records (bi_patient);
CREATE INDEX IF NOT EXISTS audit_records_subject ON audit_records (bi_subject);
CREATE INDEX IF NOT EXISTS audit_records_model ON audit_records (bi_model, bi_version);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time_ms);
CREATE TABLE IF NOT EXISTS checkpoints (
    id           BIGSERIAL PRIMARY KEY,
    created_ms   BIGINT NOT NULL,
    ledger_count BIGINT NOT NULL,
    head_hash    TEXT   NOT NULL,
    key_id       TEXT   NOT NULL,
    signature    TEXT   NOT NULL
);
-- The only mutable table: progress markers of background work (the alert detector's and the
-- alert webhook's ledger positions). Not evidence: losing it re-runs work idempotently.
CREATE TABLE IF NOT EXISTS collector_state (
    name  TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS purges (
    id           BIGSERIAL PRIMARY KEY,
    created_ms   BIGINT NOT NULL,
    before_ms    BIGINT NOT NULL,
    through_seq  BIGINT NOT NULL,
    through_hash TEXT   NOT NULL,
    key_id       TEXT   NOT NULL DEFAULT '',
    signature    TEXT   NOT NULL DEFAULT ''
);
ALTER TABLE purges ADD COLUMN IF NOT EXISTS key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE purges ADD COLUMN IF NOT EXISTS signature TEXT NOT NULL DEFAULT '';
CREATE OR REPLACE FUNCTION hipaa_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'hipaa-mesh: % is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE OR REPLACE FUNCTION hipaa_audit_refuse_young_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.stored_at_ms > (EXTRACT(EPOCH FROM (now() - INTERVAL '6 years')) * 1000)::BIGINT THEN
        RAISE EXCEPTION 'hipaa-mesh: audit records younger than 6 years cannot be deleted';
    END IF;
    RETURN OLD;
END $$;
CREATE OR REPLACE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION hipaa_audit_refuse_change();
CREATE OR REPLACE TRIGGER audit_records_no_young_delete BEFORE DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION hipaa_audit_refuse_young_delete();
CREATE OR REPLACE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION hipaa_audit_refuse_change();
CREATE OR REPLACE TRIGGER checkpoints_no_change BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION hipaa_audit_refuse_change();
CREATE OR REPLACE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION hipaa_audit_refuse_change();
CREATE OR REPLACE TRIGGER purges_no_change BEFORE UPDATE OR DELETE ON purges
    FOR EACH ROW EXECUTE FUNCTION hipaa_audit_refuse_change();
CREATE OR REPLACE TRIGGER purges_no_truncate BEFORE TRUNCATE ON purges
    FOR EACH STATEMENT EXECUTE FUNCTION hipaa_audit_refuse_change();
"#;

/// The append-only triggers on the ledger's tables (enabled state and definition) and the
/// functions they run (body), in the current schema, keyed `trigger NAME` / `function NAME`.
const APPEND_ONLY_STATE: &str = "\
SELECT 'trigger ' || t.tgname, t.tgenabled::text || ' ' || pg_get_triggerdef(t.oid) \
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
 WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace \
   AND c.relname IN ('audit_records', 'checkpoints', 'purges') \
UNION ALL \
SELECT 'function ' || p.proname, p.prosrc FROM pg_proc p \
 WHERE p.pronamespace = current_schema()::regnamespace \
   AND p.proname IN ('hipaa_audit_refuse_change', 'hipaa_audit_refuse_young_delete')";

fn append_only_state(
    tx: &mut postgres::Transaction<'_>,
) -> Result<BTreeMap<String, String>, StoreError> {
    Ok(tx
        .query(APPEND_ONLY_STATE, &[])
        .map_err(err("read triggers"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Judges the append-only objects inside `tx`: reads them, applies [`SCHEMA`] (which replaces
/// every one of them with its definition) and reads them again. The caller commits (repair) or
/// rolls back (check only).
fn check_and_apply_schema(tx: &mut postgres::Transaction<'_>) -> Result<Vec<String>, StoreError> {
    let existed: bool = tx
        .query_one("SELECT to_regclass('audit_records') IS NOT NULL", &[])
        .map_err(err("postgres schema"))?
        .get(0);
    let found = append_only_state(tx)?;
    tx.batch_execute(SCHEMA).map_err(err("postgres schema"))?;
    tx.batch_execute(SESSION_SCHEMA)
        .map_err(err("postgres schema"))?;
    if !existed {
        return Ok(Vec::new());
    }
    Ok(append_only_diff(&found, &append_only_state(tx)?))
}

/// One PostgreSQL connection.
pub struct PgStore {
    client: Client,
    /// Append-only triggers found missing or altered when this connection was opened.
    at_open: Vec<String>,
}

fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

fn err(op: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| StoreError::db(op, db_message(&e))
}

impl PgStore {
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(err("connect to postgres"))?;
        let mut tx = client.transaction().map_err(err("postgres schema"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK])
            .map_err(err("postgres schema lock"))?;
        let at_open = check_and_apply_schema(&mut tx)?;
        tx.commit().map_err(err("postgres schema"))?;
        Ok(PgStore { client, at_open })
    }
}

fn ph(i: usize) -> String {
    format!("${i}")
}

fn read_row(r: &Row) -> Result<StoredRow, postgres::Error> {
    Ok(StoredRow {
        ledger_seq: r.try_get(0)?,
        ledger_prev: r.try_get(1)?,
        ledger_hash: r.try_get(2)?,
        stored_at_ms: r.try_get(3)?,
        kind: r.try_get(4)?,
        time_ms: r.try_get(5)?,
        emergency: r.try_get(6)?,
        chain_id: r.try_get(7)?,
        chain_seq: r.try_get(8)?,
        source_hash: r.try_get(9)?,
        bi_patient: r.try_get(10)?,
        bi_subject: r.try_get(11)?,
        bi_model: r.try_get(12)?,
        bi_version: r.try_get(13)?,
        nonce: r.try_get(14)?,
        ciphertext: r.try_get(15)?,
    })
}

/// Raises each session's last activity, in one statement (see `Store::record_session_activity`).
fn upsert_activity(
    client: &mut impl postgres::GenericClient,
    activity: &[(String, i64)],
) -> Result<(), StoreError> {
    if activity.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = activity.iter().map(|(k, _)| k.as_str()).collect();
    let times: Vec<i64> = activity.iter().map(|(_, t)| *t).collect();
    client
        .execute(
            "INSERT INTO session_activity (session_key, last_activity_ms) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (session_key) DO UPDATE SET last_activity_ms = \
             GREATEST(session_activity.last_activity_ms, EXCLUDED.last_activity_ms)",
            &[&keys, &times],
        )
        .map(|_| ())
        .map_err(err("record session activity"))
}

struct PgTx<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
}

impl LedgerTx for PgTx<'_, '_> {
    fn head(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        let row = self
            .tx
            .query_opt(
                "SELECT ledger_seq, ledger_hash FROM audit_records ORDER BY ledger_seq DESC LIMIT 1",
                &[],
            )
            .map_err(err("read ledger head"))?;
        if let Some(r) = row {
            return Ok(Some((r.get(0), r.get(1))));
        }
        let row = self
            .tx
            .query_opt(
                "SELECT through_seq, through_hash FROM purges ORDER BY through_seq DESC LIMIT 1",
                &[],
            )
            .map_err(err("read purge head"))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn existing_sources(&mut self, source_hashes: &[&str]) -> Result<Vec<String>, StoreError> {
        let rows = self
            .tx
            .query(
                "SELECT source_hash FROM audit_records WHERE source_hash = ANY($1::text[])",
                &[&source_hashes],
            )
            .map_err(err("dedup lookup"))?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<String>, _>>()
            .map_err(err("dedup lookup"))
    }

    fn chain_heads(
        &mut self,
        chain_ids: &[&str],
    ) -> Result<Vec<(String, i64, String)>, StoreError> {
        // One index probe per chain id (newest seq first), in one statement.
        let rows = self
            .tx
            .query(
                "SELECT k.id, h.chain_seq, h.source_hash FROM unnest($1::text[]) AS k(id) \
                 CROSS JOIN LATERAL (SELECT chain_seq, source_hash FROM audit_records \
                 WHERE chain_id = k.id ORDER BY chain_seq DESC LIMIT 1) AS h",
                &[&chain_ids],
            )
            .map_err(err("chain state"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<_>, postgres::Error>>()
            .map_err(err("chain state"))
    }

    fn existing_chain_seqs(
        &mut self,
        keys: &[(&str, i64)],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let ids: Vec<&str> = keys.iter().map(|(id, _)| *id).collect();
        let seqs: Vec<i64> = keys.iter().map(|(_, seq)| *seq).collect();
        let rows = self
            .tx
            .query(
                "SELECT a.chain_id, a.chain_seq FROM unnest($1::text[], $2::bigint[]) AS k(id, seq) \
                 JOIN audit_records a ON a.chain_id = k.id AND a.chain_seq = k.seq \
                 WHERE a.source_hash IS NOT NULL",
                &[&ids, &seqs],
            )
            .map_err(err("chain lookup"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, postgres::Error>>()
            .map_err(err("chain lookup"))
    }

    fn insert_rows(&mut self, rows: &[StoredRow]) -> Result<(), StoreError> {
        // One statement for the whole transaction: a column array per column, unnested.
        for chunk in rows.chunks(INSERT_CHUNK) {
            let col = |f: fn(&StoredRow) -> i64| chunk.iter().map(f).collect::<Vec<i64>>();
            let text = |f: fn(&StoredRow) -> &str| chunk.iter().map(f).collect::<Vec<&str>>();
            let opt_text = |f: fn(&StoredRow) -> Option<&str>| {
                chunk.iter().map(f).collect::<Vec<Option<&str>>>()
            };
            let bytes = |f: fn(&StoredRow) -> &[u8]| chunk.iter().map(f).collect::<Vec<&[u8]>>();
            let ledger_seq = col(|r| r.ledger_seq);
            let ledger_prev = text(|r| &r.ledger_prev);
            let ledger_hash = text(|r| &r.ledger_hash);
            let stored_at_ms = col(|r| r.stored_at_ms);
            let kind = text(|r| &r.kind);
            let time_ms: Vec<Option<i64>> = chunk.iter().map(|r| r.time_ms).collect();
            let emergency: Vec<bool> = chunk.iter().map(|r| r.emergency).collect();
            let chain_id = opt_text(|r| r.chain_id.as_deref());
            let chain_seq: Vec<Option<i64>> = chunk.iter().map(|r| r.chain_seq).collect();
            let source_hash = opt_text(|r| r.source_hash.as_deref());
            let bi_patient = opt_text(|r| r.bi_patient.as_deref());
            let bi_subject = opt_text(|r| r.bi_subject.as_deref());
            let bi_model = opt_text(|r| r.bi_model.as_deref());
            let bi_version = opt_text(|r| r.bi_version.as_deref());
            let nonce = bytes(|r| &r.nonce);
            let ciphertext = bytes(|r| &r.ciphertext);
            self.tx
                .execute(
                    &format!(
                        "INSERT INTO audit_records ({ROW_COLUMNS}) SELECT * FROM unnest(\
                         $1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
                         $6::bigint[], $7::boolean[], $8::text[], $9::bigint[], $10::text[], \
                         $11::text[], $12::text[], $13::text[], $14::text[], $15::bytea[], \
                         $16::bytea[]) ORDER BY 1"
                    ),
                    &[
                        &ledger_seq,
                        &ledger_prev,
                        &ledger_hash,
                        &stored_at_ms,
                        &kind,
                        &time_ms,
                        &emergency,
                        &chain_id,
                        &chain_seq,
                        &source_hash,
                        &bi_patient,
                        &bi_subject,
                        &bi_model,
                        &bi_version,
                        &nonce,
                        &ciphertext,
                    ],
                )
                .map_err(err("insert record"))?;
        }
        Ok(())
    }

    fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO checkpoints (created_ms, ledger_count, head_hash, key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &cp.created_ms,
                    &cp.ledger_count,
                    &cp.head_hash,
                    &cp.key_id,
                    &cp.signature,
                ],
            )
            .map(|_| ())
            .map_err(err("insert checkpoint"))
    }

    fn record_session_activity(&mut self, activity: &[(String, i64)]) -> Result<(), StoreError> {
        upsert_activity(self.tx, activity)
    }
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn write(&mut self, f: &mut WriteFn<'_>) -> Result<(), StoreError> {
        let mut tx = self.client.transaction().map_err(err("begin"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK])
            .map_err(err("ledger lock"))?;
        {
            let mut ltx = PgTx { tx: &mut tx };
            f(&mut ltx)?;
        }
        tx.commit().map_err(err("commit"))
    }

    fn rows(&mut self, filter: &RowFilter) -> Result<Vec<StoredRow>, StoreError> {
        let (sql, params) = filter_sql(filter, ph);
        let boxed: Vec<Box<dyn ToSql + Sync>> = params
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync> {
                match p {
                    Param::Text(s) => Box::new(s),
                    Param::Int(i) => Box::new(i),
                    Param::Bool(b) => Box::new(b),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self
            .client
            .query(sql.as_str(), &refs)
            .map_err(err("query records"))?;
        rows.iter()
            .map(read_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(err("read records"))
    }

    fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT id, created_ms, ledger_count, head_hash, key_id, signature \
                 FROM checkpoints ORDER BY id",
                &[],
            )
            .map_err(err("read checkpoints"))?;
        Ok(rows
            .iter()
            .map(|r| Checkpoint {
                id: r.get(0),
                created_ms: r.get(1),
                ledger_count: r.get(2),
                head_hash: r.get(3),
                key_id: r.get(4),
                signature: r.get(5),
            })
            .collect())
    }

    fn purges(&mut self) -> Result<Vec<PurgeMark>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT id, created_ms, before_ms, through_seq, through_hash, key_id, signature \
                 FROM purges ORDER BY id",
                &[],
            )
            .map_err(err("read purges"))?;
        Ok(rows
            .iter()
            .map(|r| PurgeMark {
                id: r.get(0),
                created_ms: r.get(1),
                before_ms: r.get(2),
                through_seq: r.get(3),
                through_hash: r.get(4),
                key_id: r.get(5),
                signature: r.get(6),
            })
            .collect())
    }

    fn purge_through(&mut self, mark: &PurgeMark) -> Result<u64, StoreError> {
        let mut tx = self.client.transaction().map_err(err("begin purge"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK])
            .map_err(err("ledger lock"))?;
        let deleted = tx
            .execute(
                "DELETE FROM audit_records WHERE ledger_seq <= $1",
                &[&mark.through_seq],
            )
            .map_err(err("purge"))?;
        tx.execute(
            "INSERT INTO purges (created_ms, before_ms, through_seq, through_hash, key_id, \
             signature) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &mark.created_ms,
                &mark.before_ms,
                &mark.through_seq,
                &mark.through_hash,
                &mark.key_id,
                &mark.signature,
            ],
        )
        .map_err(err("record purge"))?;
        tx.commit().map_err(err("commit purge"))?;
        Ok(deleted)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.client
            .simple_query("SELECT 1")
            .map(|_| ())
            .map_err(err("ping"))
    }

    fn append_only_problems(&mut self) -> Result<Vec<String>, StoreError> {
        let mut tx = self.client.transaction().map_err(err("schema check"))?;
        let now = check_and_apply_schema(&mut tx)?;
        // A check only: the repair is left to the next collector start.
        tx.rollback().map_err(err("schema check"))?;
        let mut out = self.at_open.clone();
        merge_problems(&mut out, now);
        Ok(out)
    }

    fn state(&mut self, name: &str) -> Result<Option<i64>, StoreError> {
        self.client
            .query_opt(
                "SELECT value FROM collector_state WHERE name = $1",
                &[&name],
            )
            .map(|r| r.map(|r| r.get(0)))
            .map_err(err("read collector state"))
    }

    fn advance_state(&mut self, name: &str, value: i64) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO collector_state (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = GREATEST(collector_state.value, excluded.value)",
                &[&name, &value],
            )
            .map(|_| ())
            .map_err(err("write collector state"))
    }

    fn execute_sql(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(err("execute"))
    }

    fn record_session_activity(&mut self, activity: &[(String, i64)]) -> Result<(), StoreError> {
        upsert_activity(&mut self.client, activity)
    }

    fn session_activity(&mut self, key: &str) -> Result<Option<i64>, StoreError> {
        self.client
            .query_opt(
                "SELECT last_activity_ms FROM session_activity WHERE session_key = $1",
                &[&key],
            )
            .map(|r| r.map(|r| r.get(0)))
            .map_err(err("read session activity"))
    }

    fn prune_sessions(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        self.client
            .execute(
                "DELETE FROM session_activity WHERE last_activity_ms < $1",
                &[&before_ms],
            )
            .map_err(err("prune sessions"))
    }

    fn insert_revocation(&mut self, row: &RevocationRow) -> Result<(), StoreError> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO session_revocations ({REVOCATION_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6)"
                ),
                &[
                    &row.ledger_seq,
                    &row.target,
                    &row.value,
                    &row.issuer,
                    &row.revoked_at_ms,
                    &row.expires_at_ms,
                ],
            )
            .map(|_| ())
            .map_err(err("insert revocation"))
    }

    fn revocations(&mut self, now_ms: i64) -> Result<Vec<RevocationRow>, StoreError> {
        Ok(self
            .client
            .query(
                &format!(
                    "SELECT {REVOCATION_COLUMNS} FROM session_revocations \
                     WHERE expires_at_ms > $1 ORDER BY ledger_seq"
                ),
                &[&now_ms],
            )
            .map_err(err("read revocations"))?
            .iter()
            .map(|r| RevocationRow {
                ledger_seq: r.get(0),
                target: r.get(1),
                value: r.get(2),
                issuer: r.get(3),
                revoked_at_ms: r.get(4),
                expires_at_ms: r.get(5),
            })
            .collect())
    }

    fn is_revoked(
        &mut self,
        issuer: &str,
        subject: &str,
        session: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.client
            .query_opt(
                "SELECT 1 FROM session_revocations WHERE expires_at_ms > $1 \
                 AND ((target = 'subject' AND value = $2) OR (target = 'session' AND value = $3)) \
                 AND (issuer IS NULL OR issuer = $4) LIMIT 1",
                &[&now_ms, &subject, &session, &issuer],
            )
            .map(|r| r.is_some())
            .map_err(err("read revocations"))
    }

    fn prune_revocations(&mut self, now_ms: i64) -> Result<u64, StoreError> {
        self.client
            .execute(
                "DELETE FROM session_revocations WHERE expires_at_ms <= $1",
                &[&now_ms],
            )
            .map_err(err("prune revocations"))
    }
}

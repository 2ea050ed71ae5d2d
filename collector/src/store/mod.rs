//! Storage: one trait, two backends (SQLite embedded, PostgreSQL for a cluster), one schema.
//!
//! Append-only is enforced by the database itself: triggers refuse every UPDATE of
//! `audit_records`, `checkpoints` and `purges`, every DELETE of a record stored less than 6 years
//! ago, every DELETE of a checkpoint or purge mark, and (PostgreSQL) every TRUNCATE. The
//! retention purge ([`Store::purge_through`]) is the only delete path.
//!
//! Every write to the ledger runs in [`Store::write`]: one transaction that holds the ledger lock
//! (SQLite `BEGIN IMMEDIATE`; PostgreSQL `pg_advisory_xact_lock`), so several collectors can append
//! to one PostgreSQL database without forking the ledger, and nothing is acknowledged before the
//! transaction has committed.

mod pg;
mod sqlite;

pub use pg::PgStore;
pub use sqlite::SqliteStore;

/// The store's own error: a message naming the operation, never record contents (values are
/// always bound as parameters, and stored encrypted).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL (use sqlite:PATH or postgres://...)")]
    BadUrl,
    #[error("{op}: {message}")]
    Db { op: &'static str, message: String },
}

impl StoreError {
    pub(crate) fn db(op: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            op,
            message: e.to_string(),
        }
    }
}

/// One stored row of `audit_records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// Position in the collector's ledger: 1, 2, 3, ... with no holes (until a purge).
    pub ledger_seq: i64,
    /// `ledger_hash` of the row before (64 zeros for the first).
    pub ledger_prev: String,
    /// See [`crate::ledger::row_hash`].
    pub ledger_hash: String,
    /// When the collector stored it (Unix ms, collector clock): what retention counts from.
    pub stored_at_ms: i64,
    /// `access`, `chain-start` or `integrity`.
    pub kind: String,
    /// The record's own `time` (Unix ms), for range queries.
    pub time_ms: Option<i64>,
    pub emergency: bool,
    /// Chain id and seq of a clean (MAC-verified) record; null for integrity rows.
    pub chain_id: Option<String>,
    pub chain_seq: Option<i64>,
    /// Hex SHA-256 of the canonical bytes of the received record this row stores or stands in
    /// for (dedup key; for a clean record also the chain's `prev` of the next one).
    pub source_hash: Option<String>,
    pub bi_patient: Option<String>,
    pub bi_subject: Option<String>,
    pub bi_model: Option<String>,
    pub bi_version: Option<String>,
    /// AES-256-GCM nonce (12 bytes) and ciphertext+tag of the record's canonical JSON.
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// A signed checkpoint: the ledger's count and head hash at `created_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub id: i64,
    pub created_ms: i64,
    pub ledger_count: i64,
    pub head_hash: String,
    /// Identifies the Ed25519 public key (see [`crate::keys::public_key_id`]).
    pub key_id: String,
    /// Hex Ed25519 signature over [`crate::checkpoint::message`].
    pub signature: String,
}

/// A retention purge: rows with `ledger_seq <= through_seq` were removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeMark {
    pub id: i64,
    pub created_ms: i64,
    pub before_ms: i64,
    pub through_seq: i64,
    /// `ledger_hash` of row `through_seq`: the `ledger_prev` of the first row kept.
    pub through_hash: String,
    /// The checkpoint key that signed this mark ([`crate::purge::message`]); empty on a mark
    /// written before marks were signed (or by SQL): `audit verify` reports it.
    pub key_id: String,
    /// Hex Ed25519 signature over [`crate::purge::message`].
    pub signature: String,
}

/// Which rows to read, in ledger order.
#[derive(Debug, Clone, Default)]
pub struct RowFilter {
    pub bi_patient: Option<String>,
    pub bi_subject: Option<String>,
    pub bi_model: Option<String>,
    pub bi_version: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub emergency: Option<bool>,
    /// None: every kind.
    pub kind: Option<String>,
    /// Only rows with `ledger_seq > after`.
    pub after: i64,
    pub limit: i64,
}

/// The operations available inside one ledger transaction. The lookups take a whole batch's
/// keys at once (PostgreSQL answers each in one round trip); every answer includes rows the
/// transaction has inserted itself.
pub trait LedgerTx {
    /// (ledger_seq, ledger_hash) of the newest row, None when empty (or all purged: then the
    /// newest purge mark's through_seq / through_hash).
    fn head(&mut self) -> Result<Option<(i64, String)>, StoreError>;
    /// Which of `source_hashes` some row (clean or integrity) already carries.
    fn existing_sources(&mut self, source_hashes: &[&str]) -> Result<Vec<String>, StoreError>;
    /// For each chain id of `chain_ids` that has a clean row: (chain id, seq, source hash) of its
    /// newest (highest seq) clean row.
    fn chain_heads(&mut self, chain_ids: &[&str])
        -> Result<Vec<(String, i64, String)>, StoreError>;
    /// Which of the (chain id, seq) pairs hold a clean row.
    fn existing_chain_seqs(
        &mut self,
        keys: &[(&str, i64)],
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Inserts rows (in the order given).
    fn insert_rows(&mut self, rows: &[StoredRow]) -> Result<(), StoreError>;
    /// Inserts a checkpoint (its `id` is assigned by the store).
    fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), StoreError>;
    /// [`Store::record_session_activity`] inside this transaction: ingest records its batches'
    /// session activity in the transaction that stores them (no extra commit; one statement on
    /// PostgreSQL).
    fn record_session_activity(&mut self, activity: &[(String, i64)]) -> Result<(), StoreError>;
}

/// A revocation in force, as the operational table `session_revocations` holds it (the ledger
/// holds its `session-revocation` record at `ledger_seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    pub ledger_seq: i64,
    /// `subject` or `session`.
    pub target: String,
    pub value: String,
    pub issuer: Option<String>,
    pub revoked_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A ledger write: runs inside one transaction holding the ledger lock.
pub type WriteFn<'a> = dyn FnMut(&mut dyn LedgerTx) -> Result<(), StoreError> + 'a;

/// One connection to the audit database.
pub trait Store: Send {
    fn backend(&self) -> &'static str;
    /// Runs `f` in one transaction holding the ledger lock; commits (durably) iff it returns Ok.
    fn write(&mut self, f: &mut WriteFn<'_>) -> Result<(), StoreError>;
    fn rows(&mut self, filter: &RowFilter) -> Result<Vec<StoredRow>, StoreError>;
    fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError>;
    fn purges(&mut self) -> Result<Vec<PurgeMark>, StoreError>;
    /// Deletes rows with `ledger_seq <= mark.through_seq` and records `mark`, in one transaction
    /// holding the ledger lock. The database's own trigger still refuses any row younger than
    /// 6 years. Returns the number of rows deleted.
    fn purge_through(&mut self, mark: &PurgeMark) -> Result<u64, StoreError>;
    /// Cheap liveness check.
    fn ping(&mut self) -> Result<(), StoreError>;
    /// The append-only triggers (and, on PostgreSQL, their functions) that are missing, disabled
    /// or not as the schema defines them: found when this connection was opened (before the
    /// schema was applied again, which restores them) and now. Empty when all are intact.
    fn append_only_problems(&mut self) -> Result<Vec<String>, StoreError>;
    /// A progress marker of background work (`collector_state`), None when never set.
    fn state(&mut self, name: &str) -> Result<Option<i64>, StoreError>;
    /// Raises the marker `name` to `value` (never lowers it: two collectors advancing the same
    /// marker keep the furthest).
    fn advance_state(&mut self, name: &str, value: i64) -> Result<(), StoreError>;
    /// Runs raw SQL statements (tests and operators' tooling only; the triggers still apply).
    fn execute_sql(&mut self, sql: &str) -> Result<(), StoreError>;

    // Operational session state (`crate::sessions`): small mutable tables beside the ledger,
    // not part of it. Each call is its own short transaction, never under the ledger lock.

    /// Raises each session's last activity to at least the time given (one statement per
    /// call on PostgreSQL). `activity` must be sorted by key with each key once
    /// (`crate::sessions::merge_activity`), so concurrent collectors lock rows in one order.
    fn record_session_activity(&mut self, activity: &[(String, i64)]) -> Result<(), StoreError>;
    /// A session's last activity (Unix ms), None when unknown.
    fn session_activity(&mut self, key: &str) -> Result<Option<i64>, StoreError>;
    /// Forgets sessions whose last activity is before `before_ms`; how many.
    fn prune_sessions(&mut self, before_ms: i64) -> Result<u64, StoreError>;
    fn insert_revocation(&mut self, row: &RevocationRow) -> Result<(), StoreError>;
    /// The revocations in force at `now_ms`, oldest first.
    fn revocations(&mut self, now_ms: i64) -> Result<Vec<RevocationRow>, StoreError>;
    /// Whether a revocation in force at `now_ms` names this subject or session (with no issuer,
    /// or this one).
    fn is_revoked(
        &mut self,
        issuer: &str,
        subject: &str,
        session: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes revocations expired at `now_ms` (their ledger records stay); how many.
    fn prune_revocations(&mut self, now_ms: i64) -> Result<u64, StoreError>;
}

/// The operational tables' SQL, shared by both backends (`BIGINT` is an integer in SQLite).
pub(crate) const SESSION_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS session_activity (
    session_key      TEXT   PRIMARY KEY,
    last_activity_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS session_activity_last ON session_activity (last_activity_ms);
CREATE TABLE IF NOT EXISTS session_revocations (
    ledger_seq    BIGINT PRIMARY KEY,
    target        TEXT   NOT NULL,
    value         TEXT   NOT NULL,
    issuer        TEXT,
    revoked_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS session_revocations_value ON session_revocations (value);
"#;

pub(crate) const REVOCATION_COLUMNS: &str =
    "ledger_seq, target, value, issuer, revoked_at_ms, expires_at_ms";

/// Opens `sqlite:PATH` or `postgres://...` (also `postgresql://`), creating the schema if absent.
pub fn open_store(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(StoreError::BadUrl);
        }
        Ok(Box::new(SqliteStore::open(std::path::Path::new(path))?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(PgStore::open(url)?))
    } else {
        Err(StoreError::BadUrl)
    }
}

/// The SQLite file path of a `sqlite:` URL.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite:")?;
    let path = path.strip_prefix("//").unwrap_or(path);
    (!path.is_empty()).then(|| std::path::PathBuf::from(path))
}

/// What differs between the append-only objects `found` in a database and those the schema
/// defines (`expected`), both keyed by `trigger NAME` / `function NAME`: one line per object
/// missing or changed (objects the schema does not define are not judged).
pub(crate) fn append_only_diff(
    found: &std::collections::BTreeMap<String, String>,
    expected: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    expected
        .iter()
        .filter_map(|(name, def)| match found.get(name) {
            None => Some(format!("append-only {name} is missing (dropped)")),
            Some(d) if d != def => Some(format!(
                "append-only {name} is disabled or not as the schema defines it (altered)"
            )),
            Some(_) => None,
        })
        .collect()
}

/// Merges `more` into `into`, keeping each line once.
pub(crate) fn merge_problems(into: &mut Vec<String>, more: Vec<String>) {
    for m in more {
        if !into.contains(&m) {
            into.push(m);
        }
    }
}

/// Six years, as the SQL of both backends counts it (calendar years).
pub const RETENTION_YEARS: i32 = 6;

/// The column list, in the order every backend selects it.
pub(crate) const ROW_COLUMNS: &str = "ledger_seq, ledger_prev, ledger_hash, stored_at_ms, kind, \
     time_ms, emergency, chain_id, chain_seq, source_hash, bi_patient, bi_subject, bi_model, \
     bi_version, nonce, ciphertext";

/// A bound query parameter, for the filter SQL both backends share.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// `WHERE ... ORDER BY ledger_seq LIMIT n` for `filter`, with placeholders from `ph(index)`
/// (1-based): `?1` for SQLite, `$1` for PostgreSQL.
pub(crate) fn filter_sql(filter: &RowFilter, ph: fn(usize) -> String) -> (String, Vec<Param>) {
    let mut clauses = vec![];
    let mut params = vec![];
    let mut add = |clause: &str, p: Param| {
        params.push(p);
        clauses.push(clause.replace('#', &ph(params.len())));
    };
    add("ledger_seq > #", Param::Int(filter.after));
    for (column, value) in [
        ("bi_patient", &filter.bi_patient),
        ("bi_subject", &filter.bi_subject),
        ("bi_model", &filter.bi_model),
        ("bi_version", &filter.bi_version),
        ("kind", &filter.kind),
    ] {
        if let Some(v) = value {
            add(&format!("{column} = #"), Param::Text(v.clone()));
        }
    }
    if let Some(from) = filter.from_ms {
        add("time_ms >= #", Param::Int(from));
    }
    if let Some(to) = filter.to_ms {
        add("time_ms < #", Param::Int(to));
    }
    if let Some(e) = filter.emergency {
        add("emergency = #", Param::Bool(e));
    }
    let limit = filter.limit.max(1);
    params.push(Param::Int(limit));
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM audit_records WHERE {} ORDER BY ledger_seq LIMIT {}",
        clauses.join(" AND "),
        ph(params.len())
    );
    (sql, params)
}

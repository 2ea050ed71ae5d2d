//! The detectors' loop: reads what the collector has stored since its cursor (ledger order),
//! decrypts the access and integrity records, feeds the detectors, stores the alerts they
//! raise, then advances the cursor (`collector_state` row `detect`).
//!
//! Ingest's hot path is untouched: detection reads the ledger on its own connection and
//! thread. It works from the ledger, not from what this process received, so every collector
//! on one PostgreSQL database sees the same records in the same order and raises the same
//! alerts with the same ids; each alert is stored once (its dedupe key). On start it re-reads
//! the lookback (twice the longest window; the baseline history through blind indexes only)
//! without storing again what the cursor says is stored, then continues from the cursor: a
//! restart neither loses nor re-raises an alert.

use hipaa_core::audit::{AuditRecord, IntegrityRecord};

use super::config::DetectConfig;
use super::detect::{Detector, Indexes};
use super::ledger::append_alert;
use super::model::Alert;
use crate::keys::EncryptionKey;
use crate::store::{RowFilter, Store, StoreError, StoredRow};

/// The `collector_state` name of the detectors' cursor.
pub const CURSOR: &str = "detect";
/// Rows read per step.
pub const STEP_ROWS: i64 = 2000;

pub struct Runner {
    detector: Detector,
    cursor: i64,
}

/// What one step did.
#[derive(Debug, Default)]
pub struct Step {
    pub rows: usize,
    /// Alerts this step stored (not those another collector had stored first).
    pub stored: Vec<Alert>,
}

/// Feeds one stored row to the detectors: decrypted and parsed straight into its typed record
/// (no intermediate JSON value: this runs for every stored record).
fn feed(detector: &mut Detector, enc: &EncryptionKey, row: &StoredRow, now_ms: i64) -> Vec<Alert> {
    let time_ms = row.time_ms.unwrap_or(row.stored_at_ms);
    if row.kind != "access" && row.kind != "integrity" {
        return Vec::new();
    }
    let Some(plain) = enc.decrypt(row.ledger_seq, &row.nonce, &row.ciphertext) else {
        // `audit verify` reports it; no record contents here.
        eprintln!(
            "hipaa-collector: detect: ledger #{} does not decrypt; skipped (run audit verify)",
            row.ledger_seq
        );
        return Vec::new();
    };
    if row.kind == "integrity" {
        return match serde_json::from_slice::<IntegrityRecord>(&plain) {
            Ok(rec) => detector.integrity(row.ledger_seq, &rec, time_ms, now_ms),
            Err(_) => Vec::new(),
        };
    }
    match serde_json::from_slice::<AuditRecord>(&plain) {
        Ok(rec) => detector.access(
            &rec,
            time_ms,
            Indexes {
                subject: row.bi_subject.as_deref(),
                patient: row.bi_patient.as_deref(),
            },
            now_ms,
        ),
        Err(_) => Vec::new(),
    }
}

/// Every row of `filter`, a page at a time, to `f`.
fn each_row(
    store: &mut dyn Store,
    mut filter: RowFilter,
    f: &mut dyn FnMut(&StoredRow),
) -> Result<(), StoreError> {
    filter.limit = STEP_ROWS;
    loop {
        let page = store.rows(&filter)?;
        let Some(last) = page.last().map(|r| r.ledger_seq) else {
            return Ok(());
        };
        for row in &page {
            f(row);
        }
        if (page.len() as i64) < STEP_ROWS {
            return Ok(());
        }
        filter.after = last;
    }
}

impl Runner {
    /// Rebuilds the detectors' state from the lookback, up to the stored cursor.
    pub fn start(
        store: &mut dyn Store,
        enc: &EncryptionKey,
        cfg: DetectConfig,
        now_ms: i64,
    ) -> Result<Runner, StoreError> {
        let cursor = store.state(CURSOR)?.unwrap_or(0);
        let history_from = now_ms.saturating_sub(cfg.lookback_ms());
        let longest_ms = i64::try_from(
            cfg.failed_auth
                .window_seconds
                .max(cfg.patient_volume.window_seconds)
                .max(cfg.exfiltration.window_seconds)
                .max(86_400),
        )
        .unwrap_or(86_400)
            * 2000;
        let windows_from = now_ms.saturating_sub(longest_ms);
        let mut detector = Detector::new(cfg);
        if cursor > 0 {
            // The baseline history: blind indexes only, nothing decrypted.
            each_row(
                store,
                RowFilter {
                    kind: Some("access".into()),
                    from_ms: Some(history_from),
                    to_ms: Some(windows_from),
                    ..RowFilter::default()
                },
                &mut |row| {
                    if row.ledger_seq <= cursor {
                        if let Some(t) = row.time_ms {
                            detector.history(
                                t,
                                Indexes {
                                    subject: row.bi_subject.as_deref(),
                                    patient: row.bi_patient.as_deref(),
                                },
                            );
                        }
                    }
                },
            )?;
            // The open windows, fed in full; their alerts are already stored.
            each_row(
                store,
                RowFilter {
                    from_ms: Some(windows_from),
                    ..RowFilter::default()
                },
                &mut |row| {
                    if row.ledger_seq <= cursor {
                        feed(&mut detector, enc, row, now_ms);
                    }
                },
            )?;
        }
        Ok(Runner { detector, cursor })
    }

    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Reads up to [`STEP_ROWS`] rows after the cursor, stores the alerts they raise, advances
    /// the cursor. Nothing is skipped on error: the cursor moves only after the alerts are stored.
    pub fn step(
        &mut self,
        store: &mut dyn Store,
        enc: &EncryptionKey,
        now_ms: i64,
    ) -> Result<Step, StoreError> {
        let rows = store.rows(&RowFilter {
            after: self.cursor,
            limit: STEP_ROWS,
            ..RowFilter::default()
        })?;
        let mut step = Step {
            rows: rows.len(),
            ..Step::default()
        };
        let Some(last) = rows.last().map(|r| r.ledger_seq) else {
            return Ok(step);
        };
        let mut raised = Vec::new();
        for row in &rows {
            raised.extend(feed(&mut self.detector, enc, row, now_ms));
        }
        for alert in raised {
            if append_alert(store, enc, &alert, now_ms)? {
                // Kind, severity and id only: no subject, no patient.
                eprintln!(
                    "hipaa-collector: alert {} {} {}",
                    alert.id,
                    alert.kind.as_str(),
                    serde_json::to_value(alert.severity)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                );
                step.stored.push(alert);
            }
        }
        store.advance_state(CURSOR, last)?;
        self.cursor = last;
        self.detector.prune(now_ms);
        Ok(step)
    }

    /// Steps until nothing new is stored (tests, and catching up after a pause).
    pub fn run_until_idle(
        &mut self,
        store: &mut dyn Store,
        enc: &EncryptionKey,
        now_ms: i64,
    ) -> Result<Vec<Alert>, StoreError> {
        let mut all = Vec::new();
        loop {
            let step = self.step(store, enc, now_ms)?;
            all.extend(step.stored);
            if step.rows == 0 {
                return Ok(all);
            }
        }
    }
}

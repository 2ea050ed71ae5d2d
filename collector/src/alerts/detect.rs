//! The detectors: pure functions of the stored records, fed one at a time in ledger order.
//!
//! Windows are tumbling, aligned to the Unix epoch (a 5-minute window starts at :00, :05, ...),
//! and counted by the record's own time: whoever feeds the same records gets the same alerts,
//! with the same ids (`model::alert_id` of kind, key and window start), whether that is a
//! restarted collector re-reading its lookback or a second collector on the same database.
//! A burst that straddles a window boundary is counted in two windows (the price of that
//! determinism; halve the window to tighten it).
//!
//! Keys are blind indexes (never a plaintext subject or patient), so an alert id reveals
//! nothing. Memory is bounded: state older than the lookback is pruned, and each map holds at
//! most [`MAX_KEYS`] entries (new keys beyond that are not tracked, and counted in `dropped`).

use std::collections::{BTreeMap, HashMap, HashSet};

use hipaa_core::audit::{AuditRecord, Decision, FindingKind, IntegrityRecord};
use hipaa_core::calendar::rfc3339_millis;

use super::config::{parse_hhmm, DetectConfig};
use super::model::{alert_id, Alert, AlertKind, Severity, Status, Window, MAX_ALERT_RECORDS};

/// The most entries one detector map holds.
pub const MAX_KEYS: usize = 200_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// The blind indexes of a stored record's subject and patient (its row's columns).
#[derive(Debug, Clone, Copy, Default)]
pub struct Indexes<'a> {
    pub subject: Option<&'a str>,
    pub patient: Option<&'a str>,
}

/// Request ids behind one window, bounded.
#[derive(Debug, Default, Clone)]
struct Records {
    ids: Vec<String>,
    truncated: bool,
}

impl Records {
    fn push(&mut self, id: Option<&str>) {
        let Some(id) = id else { return };
        if self.ids.len() < MAX_ALERT_RECORDS {
            self.ids.push(id.to_string());
        } else {
            self.truncated = true;
        }
    }
}

#[derive(Debug, Default)]
struct FailBucket {
    count: u64,
    records: Records,
    fired: bool,
    success_fired: bool,
}

#[derive(Debug, Default)]
struct VolumeBucket {
    patients: HashSet<u64>,
    records: Records,
    fired: bool,
    baseline_fired: bool,
}

#[derive(Debug, Default)]
struct BytesBucket {
    bytes: u64,
    records: Records,
    fired: bool,
}

/// The running state of every detector.
pub struct Detector {
    cfg: DetectConfig,
    sensitive_patients: HashSet<String>,
    sensitive_routes: HashSet<String>,
    failures: HashMap<(String, i64), FailBucket>,
    volume: HashMap<(String, i64), VolumeBucket>,
    /// Per subject index: distinct patients per hour (the baseline's history).
    hourly: HashMap<String, BTreeMap<i64, HashSet<u64>>>,
    bytes: HashMap<(String, i64), BytesBucket>,
    /// (kind, key, window start) of once-per-window alerts already raised.
    raised: HashSet<(AlertKind, String, i64)>,
    newest_ms: i64,
    /// Keys not tracked because a map was full.
    pub dropped: u64,
}

/// A short stable number for a patient's blind index (sets of these are small).
fn short(index: &str) -> u64 {
    let hex = index.get(..16).unwrap_or(index);
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| {
        index.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    })
}

fn bucket(time_ms: i64, window_ms: i64) -> i64 {
    time_ms.div_euclid(window_ms.max(1)) * window_ms.max(1)
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Room for `key` in `map` (present, or below the cap).
fn room<K: std::hash::Hash + Eq, V>(map: &HashMap<K, V>, key: &K, dropped: &mut u64) -> bool {
    if map.contains_key(key) || map.len() < MAX_KEYS {
        true
    } else {
        *dropped += 1;
        false
    }
}

/// What an alert is about, and the facts it carries.
struct Draft<'a> {
    kind: AlertKind,
    key: String,
    severity: Severity,
    subject: Option<&'a str>,
    patient: Option<&'a str>,
    source_ip: Option<&'a str>,
    from_ms: i64,
    to_ms: i64,
    count: u64,
    threshold: u64,
    records: Records,
    summary: String,
}

impl Draft<'_> {
    fn alert(self, now_ms: i64) -> Alert {
        let from = rfc3339_millis(self.from_ms);
        Alert {
            id: alert_id(self.kind, &self.key, &from),
            kind: self.kind,
            severity: self.severity,
            subject: self.subject.map(str::to_string),
            patient: self.patient.map(str::to_string),
            source_ip: self.source_ip.map(str::to_string),
            window: Window {
                from,
                to: rfc3339_millis(self.to_ms),
            },
            count: self.count,
            threshold: self.threshold,
            records: self.records.ids,
            records_truncated: self.records.truncated,
            summary: self.summary,
            status: Status::Open,
            created_at: rfc3339_millis(now_ms),
        }
    }
}

/// A one-record window.
fn single(request_id: Option<&str>) -> Records {
    let mut r = Records::default();
    r.push(request_id);
    r
}

/// The key of one record that alerts on its own: its chain position (unique and the same on
/// every collector), else its request id.
fn record_key(rec: &AuditRecord) -> String {
    if rec.chain.id.is_empty() {
        format!("request:{}", rec.request_id.as_deref().unwrap_or_default())
    } else {
        format!("chain:{}:{}", rec.chain.id, rec.chain.seq)
    }
}

impl Detector {
    pub fn new(cfg: DetectConfig) -> Detector {
        Detector {
            sensitive_patients: cfg.sensitive_record.patients.iter().cloned().collect(),
            sensitive_routes: cfg.sensitive_record.routes.iter().cloned().collect(),
            cfg,
            failures: HashMap::new(),
            volume: HashMap::new(),
            hourly: HashMap::new(),
            bytes: HashMap::new(),
            raised: HashSet::new(),
            newest_ms: i64::MIN,
            dropped: 0,
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// One stored `access` record (decrypted); the alerts it raises.
    pub fn access(
        &mut self,
        rec: &AuditRecord,
        time_ms: i64,
        idx: Indexes<'_>,
        now_ms: i64,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        if !self.cfg.enabled {
            return out;
        }
        self.newest_ms = self.newest_ms.max(time_ms);
        self.failed_auth(rec, time_ms, idx, now_ms, &mut out);
        self.patient_volume(rec, time_ms, idx, now_ms, &mut out);
        self.break_glass(rec, time_ms, now_ms, &mut out);
        self.sensitive(rec, time_ms, idx, now_ms, &mut out);
        self.after_hours(rec, time_ms, idx, now_ms, &mut out);
        self.exfiltration(rec, time_ms, idx, now_ms, &mut out);
        out
    }

    /// An access record older than the windows, read on start only for the baseline history
    /// (no decryption needed: the blind indexes suffice).
    pub fn history(&mut self, time_ms: i64, idx: Indexes<'_>) {
        if let (Some(s), Some(p)) = (idx.subject, idx.patient) {
            self.note_hourly(s, p, time_ms);
        }
    }

    /// One stored `integrity` record: every finding at ingest is an alert.
    pub fn integrity(
        &mut self,
        ledger_seq: i64,
        rec: &IntegrityRecord,
        time_ms: i64,
        now_ms: i64,
    ) -> Vec<Alert> {
        if !self.cfg.enabled || !self.cfg.integrity.enabled {
            return Vec::new();
        }
        let finding = rec.integrity.finding;
        let severity = match finding {
            FindingKind::BadMac
            | FindingKind::SeqConflict
            | FindingKind::PrevMismatch
            | FindingKind::UnknownKey => Severity::Critical,
            FindingKind::Gap | FindingKind::ChainStartMisplaced | FindingKind::Malformed => {
                Severity::High
            }
            FindingKind::Late => Severity::Medium,
        };
        let draft = Draft {
            kind: AlertKind::Integrity,
            key: format!("ledger:{ledger_seq}"),
            severity,
            subject: None,
            patient: None,
            source_ip: None,
            from_ms: time_ms,
            to_ms: time_ms,
            count: 1,
            threshold: 1,
            records: single(rec.request_id.as_deref()),
            summary: format!(
                "integrity finding at ingest: {} (chain {}, seq {})",
                finding.as_str(),
                rec.integrity.chain_id.as_deref().unwrap_or("-"),
                rec.integrity
                    .seq
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into())
            ),
        };
        vec![draft.alert(now_ms)]
    }

    /// Forgets windows that ended before the lookback (relative to the newest record seen, and
    /// never later than `now_ms`: one record from the future cannot wipe the state).
    pub fn prune(&mut self, now_ms: i64) {
        let horizon = self
            .newest_ms
            .min(now_ms)
            .saturating_sub(self.cfg.lookback_ms());
        self.failures.retain(|(_, b), _| *b >= horizon);
        self.volume.retain(|(_, b), _| *b >= horizon);
        self.bytes.retain(|(_, b), _| *b >= horizon);
        self.raised.retain(|(_, _, b)| *b >= horizon);
        for hours in self.hourly.values_mut() {
            *hours = hours.split_off(&horizon);
        }
        self.hourly.retain(|_, h| !h.is_empty());
    }

    fn once(&mut self, kind: AlertKind, key: &str, from_ms: i64) -> bool {
        let k = (kind, key.to_string(), from_ms);
        if self.raised.contains(&k) {
            return false;
        }
        if self.raised.len() >= MAX_KEYS {
            self.dropped += 1;
            return false;
        }
        self.raised.insert(k)
    }

    fn failed_auth(
        &mut self,
        rec: &AuditRecord,
        time_ms: i64,
        idx: Indexes<'_>,
        now_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        let cfg = self.cfg.failed_auth.clone();
        if !cfg.enabled {
            return;
        }
        let Some(outcome) = &rec.outcome else { return };
        let ip = rec.source.as_ref().and_then(|s| s.ip.as_deref());
        let window = secs_ms(cfg.window_seconds);
        let from = bucket(time_ms, window);
        let by_subject = idx.subject.map(|s| format!("subject:{s}"));
        let by_ip = ip.map(|i| format!("ip:{i}"));
        if outcome.decision == Decision::Deny && outcome.status == 401 {
            // A subject when the token named one (step-up, idle session), else the source.
            let Some(key) = by_subject.or(by_ip) else {
                return;
            };
            let k = (key.clone(), from);
            if !room(&self.failures, &k, &mut self.dropped) {
                return;
            }
            let b = self.failures.entry(k).or_default();
            b.count += 1;
            b.records.push(rec.request_id.as_deref());
            if b.count >= cfg.threshold && !b.fired {
                b.fired = true;
                let draft = Draft {
                    kind: AlertKind::FailedAuthBurst,
                    key,
                    severity: Severity::High,
                    subject: rec.subject(),
                    patient: None,
                    source_ip: ip,
                    from_ms: from,
                    to_ms: from.saturating_add(window),
                    count: b.count,
                    threshold: cfg.threshold,
                    records: b.records.clone(),
                    summary: format!(
                        "{} authentication denials in {} s",
                        b.count, cfg.window_seconds
                    ),
                };
                out.push(draft.alert(now_ms));
            }
            return;
        }
        if outcome.decision != Decision::Allow || rec.subject().is_none() {
            return;
        }
        // A success after failures, from the same subject or the same source.
        for key in [by_subject, by_ip].into_iter().flatten() {
            let Some(b) = self.failures.get_mut(&(key.clone(), from)) else {
                continue;
            };
            if b.count < cfg.then_success_threshold || b.success_fired {
                continue;
            }
            b.success_fired = true;
            let mut records = b.records.clone();
            records.push(rec.request_id.as_deref());
            let draft = Draft {
                kind: AlertKind::FailedAuthBurst,
                key: format!("then-success:{key}"),
                severity: Severity::Critical,
                subject: rec.subject(),
                patient: None,
                source_ip: ip,
                from_ms: from,
                to_ms: from.saturating_add(window),
                count: b.count,
                threshold: cfg.then_success_threshold,
                records,
                summary: format!(
                    "a success after {} authentication denials in {} s",
                    b.count, cfg.window_seconds
                ),
            };
            out.push(draft.alert(now_ms));
            return;
        }
    }

    fn note_hourly(&mut self, subject: &str, patient: &str, time_ms: i64) -> usize {
        if !self.hourly.contains_key(subject) && self.hourly.len() >= MAX_KEYS {
            self.dropped += 1;
            return 0;
        }
        let hours = self.hourly.entry(subject.to_string()).or_default();
        let set = hours.entry(bucket(time_ms, HOUR_MS)).or_default();
        if set.len() < MAX_KEYS {
            set.insert(short(patient));
        }
        set.len()
    }

    /// The subject's own ceiling for the hour of `time_ms`: median distinct patients in the same
    /// hour of its previous active days, times the factor (at least the floor); None without
    /// enough history.
    fn baseline(&self, subject: &str, time_ms: i64) -> Option<u64> {
        let cfg = &self.cfg.patient_volume;
        let hours = self.hourly.get(subject)?;
        let hour = bucket(time_ms, HOUR_MS);
        let mut samples = Vec::new();
        for d in 1..=i64::try_from(cfg.baseline_days).unwrap_or(0) {
            let day_start = bucket(hour - d * DAY_MS, DAY_MS);
            let active = hours.range(day_start..day_start + DAY_MS).next().is_some();
            if active {
                let n = hours.get(&(hour - d * DAY_MS)).map_or(0, HashSet::len);
                samples.push(n as u64);
            }
        }
        if (samples.len() as u64) < cfg.min_baseline_days.max(1) {
            return None;
        }
        samples.sort_unstable();
        let median = samples.get(samples.len() / 2).copied().unwrap_or(0);
        Some(
            median
                .saturating_mul(cfg.baseline_factor)
                .max(cfg.baseline_floor),
        )
    }

    fn patient_volume(
        &mut self,
        rec: &AuditRecord,
        time_ms: i64,
        idx: Indexes<'_>,
        now_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        let cfg = self.cfg.patient_volume.clone();
        if !cfg.enabled {
            return;
        }
        let allowed = rec
            .outcome
            .as_ref()
            .is_some_and(|o| o.decision == Decision::Allow);
        let (Some(subject_idx), Some(patient_idx), true) = (idx.subject, idx.patient, allowed)
        else {
            return;
        };
        let hour_count = self.note_hourly(subject_idx, patient_idx, time_ms) as u64;
        let window = secs_ms(cfg.window_seconds);
        let from = bucket(time_ms, window);
        let k = (subject_idx.to_string(), from);
        if !room(&self.volume, &k, &mut self.dropped) {
            return;
        }
        let b = self.volume.entry(k).or_default();
        if b.patients.len() < MAX_KEYS && b.patients.insert(short(patient_idx)) {
            b.records.push(rec.request_id.as_deref());
        }
        let count = b.patients.len() as u64;
        if count > cfg.ceiling && !b.fired {
            b.fired = true;
            let draft = Draft {
                kind: AlertKind::PatientVolume,
                key: format!("ceiling:{subject_idx}"),
                severity: Severity::High,
                subject: rec.subject(),
                patient: None,
                source_ip: rec.source.as_ref().and_then(|s| s.ip.as_deref()),
                from_ms: from,
                to_ms: from.saturating_add(window),
                count,
                threshold: cfg.ceiling,
                records: b.records.clone(),
                summary: format!(
                    "{count} distinct patients in {} s (ceiling {})",
                    cfg.window_seconds, cfg.ceiling
                ),
            };
            out.push(draft.alert(now_ms));
            return;
        }
        if b.fired || b.baseline_fired {
            return;
        }
        let Some(own) = self.baseline(subject_idx, time_ms) else {
            return;
        };
        if hour_count <= own {
            return;
        }
        let hour = bucket(time_ms, HOUR_MS);
        if !self.once(
            AlertKind::PatientVolume,
            &format!("baseline:{subject_idx}"),
            hour,
        ) {
            return;
        }
        if let Some(b) = self.volume.get_mut(&(subject_idx.to_string(), from)) {
            b.baseline_fired = true;
        }
        let records = self
            .volume
            .get(&(subject_idx.to_string(), from))
            .map(|b| b.records.clone())
            .unwrap_or_default();
        let draft = Draft {
            kind: AlertKind::PatientVolume,
            key: format!("baseline:{subject_idx}"),
            severity: Severity::Medium,
            subject: rec.subject(),
            patient: None,
            source_ip: rec.source.as_ref().and_then(|s| s.ip.as_deref()),
            from_ms: hour,
            to_ms: hour + HOUR_MS,
            count: hour_count,
            threshold: own,
            records,
            summary: format!(
                "{hour_count} distinct patients this hour, above the subject's own baseline ({own})"
            ),
        };
        out.push(draft.alert(now_ms));
    }

    fn break_glass(&mut self, rec: &AuditRecord, time_ms: i64, now_ms: i64, out: &mut Vec<Alert>) {
        if !self.cfg.break_glass.enabled {
            return;
        }
        let Some(emergency) = &rec.emergency else {
            return;
        };
        let draft = Draft {
            kind: AlertKind::BreakGlass,
            key: record_key(rec),
            severity: Severity::Medium,
            subject: rec.subject(),
            patient: rec.patient(),
            source_ip: rec.source.as_ref().and_then(|s| s.ip.as_deref()),
            from_ms: time_ms,
            to_ms: time_ms,
            count: 1,
            threshold: 1,
            records: single(rec.request_id.as_deref()),
            summary: format!(
                "emergency access (break-glass), reason {}",
                emergency.reason
            ),
        };
        out.push(draft.alert(now_ms));
    }

    fn sensitive(
        &mut self,
        rec: &AuditRecord,
        time_ms: i64,
        idx: Indexes<'_>,
        now_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        let patient_hit = rec
            .patient()
            .is_some_and(|p| self.sensitive_patients.contains(p));
        let route = rec.action.as_ref().and_then(|a| a.route.as_deref());
        let route_hit = route.is_some_and(|r| self.sensitive_routes.contains(r));
        if !patient_hit && !route_hit {
            return;
        }
        let who = idx
            .subject
            .map(|s| format!("subject:{s}"))
            .or_else(|| rec.source.as_ref()?.ip.as_ref().map(|i| format!("ip:{i}")))
            .unwrap_or_default();
        let target = match (patient_hit, idx.patient) {
            (true, Some(p)) => format!("patient:{p}"),
            _ => format!("route:{}", route.unwrap_or_default()),
        };
        // One alert per reader, record and hour.
        let hour = bucket(time_ms, HOUR_MS);
        let key = format!("{who}\n{target}");
        if !self.once(AlertKind::SensitiveRecord, &key, hour) {
            return;
        }
        let what = if patient_hit {
            "a patient marked sensitive"
        } else {
            "a route marked sensitive"
        };
        let draft = Draft {
            kind: AlertKind::SensitiveRecord,
            key,
            severity: Severity::Medium,
            subject: rec.subject(),
            patient: rec.patient(),
            source_ip: rec.source.as_ref().and_then(|s| s.ip.as_deref()),
            from_ms: hour,
            to_ms: hour + HOUR_MS,
            count: 1,
            threshold: 1,
            records: single(rec.request_id.as_deref()),
            summary: format!("access to {what}"),
        };
        out.push(draft.alert(now_ms));
    }

    fn after_hours(
        &mut self,
        rec: &AuditRecord,
        time_ms: i64,
        idx: Indexes<'_>,
        now_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        let cfg = &self.cfg.after_hours;
        if cfg.roles.is_empty() {
            return;
        }
        let allowed = rec
            .outcome
            .as_ref()
            .is_some_and(|o| o.decision == Decision::Allow);
        let (Some(subject_idx), true) = (idx.subject, allowed) else {
            return;
        };
        let roles = rec.actor.as_ref().and_then(|a| a.roles.as_ref());
        let offset_ms = cfg.utc_offset_minutes * 60_000;
        let local = time_ms + offset_ms;
        let minute = local.rem_euclid(DAY_MS) / 60_000;
        // 1970-01-01 was a Thursday: day 0 → weekday 3 (Monday 0).
        let weekday = (local.div_euclid(DAY_MS) + 3).rem_euclid(7);
        let outside = roles.into_iter().flatten().find_map(|role| {
            let hours = cfg.roles.get(role)?;
            let (start, end) = (parse_hhmm(&hours.start)?, parse_hhmm(&hours.end)?);
            let inside = if start <= end {
                (start..end).contains(&minute)
            } else {
                minute >= start || minute < end
            };
            let weekend = hours.weekdays_only && weekday >= 5;
            (!inside || weekend).then(|| (role.clone(), hours.start.clone(), hours.end.clone()))
        });
        let Some((role, start, end)) = outside else {
            return;
        };
        // One alert per subject and local day.
        let day_from = bucket(local, DAY_MS) - offset_ms;
        let key = format!("subject:{subject_idx}");
        if !self.once(AlertKind::AfterHours, &key, day_from) {
            return;
        }
        let draft = Draft {
            kind: AlertKind::AfterHours,
            key,
            severity: Severity::Low,
            subject: rec.subject(),
            patient: rec.patient(),
            source_ip: rec.source.as_ref().and_then(|s| s.ip.as_deref()),
            from_ms: day_from,
            to_ms: day_from + DAY_MS,
            count: 1,
            threshold: 1,
            records: single(rec.request_id.as_deref()),
            summary: format!("access outside the working hours of role {role} ({start}-{end})"),
        };
        out.push(draft.alert(now_ms));
    }

    fn exfiltration(
        &mut self,
        rec: &AuditRecord,
        time_ms: i64,
        idx: Indexes<'_>,
        now_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        let cfg = self.cfg.exfiltration.clone();
        if !cfg.enabled {
            return;
        }
        let Some(outcome) = &rec.outcome else { return };
        let host = rec.egress.as_ref().and_then(|e| e.host.as_deref());
        let ip = rec.source.as_ref().and_then(|s| s.ip.as_deref());
        let refused_egress = outcome.decision == Decision::Deny
            && outcome
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("egress_"));
        if refused_egress {
            if cfg.refused_egress {
                let draft = Draft {
                    kind: AlertKind::Exfiltration,
                    key: format!("refused-egress:{}", record_key(rec)),
                    severity: Severity::High,
                    subject: rec.subject(),
                    patient: rec.patient(),
                    source_ip: ip,
                    from_ms: time_ms,
                    to_ms: time_ms,
                    count: 1,
                    threshold: 1,
                    records: single(rec.request_id.as_deref()),
                    summary: format!(
                        "egress refused ({}) to host {}",
                        outcome.reason.as_deref().unwrap_or_default(),
                        host.unwrap_or("-")
                    ),
                };
                out.push(draft.alert(now_ms));
            }
            return;
        }
        if outcome.decision != Decision::Allow || outcome.bytes == 0 {
            return;
        }
        let window = secs_ms(cfg.window_seconds);
        let from = bucket(time_ms, window);
        let mut keys = Vec::new();
        if let Some(s) = idx.subject {
            keys.push((format!("subject:{s}"), cfg.subject_bytes, "subject"));
        }
        if let Some(h) = host {
            keys.push((format!("vendor:{h}"), cfg.vendor_bytes, "vendor"));
        }
        for (key, ceiling, what) in keys {
            let k = (key.clone(), from);
            if !room(&self.bytes, &k, &mut self.dropped) {
                continue;
            }
            let b = self.bytes.entry(k).or_default();
            b.bytes = b.bytes.saturating_add(outcome.bytes);
            b.records.push(rec.request_id.as_deref());
            if b.bytes <= ceiling || b.fired {
                continue;
            }
            b.fired = true;
            let summary = match what {
                "vendor" => format!(
                    "{} bytes to vendor host {} in {} s (ceiling {ceiling})",
                    b.bytes,
                    host.unwrap_or("-"),
                    cfg.window_seconds
                ),
                _ => format!(
                    "{} response bytes to one subject in {} s (ceiling {ceiling})",
                    b.bytes, cfg.window_seconds
                ),
            };
            let draft = Draft {
                kind: AlertKind::Exfiltration,
                key,
                severity: Severity::High,
                subject: rec.subject(),
                patient: None,
                source_ip: ip,
                from_ms: from,
                to_ms: from.saturating_add(window),
                count: b.bytes,
                threshold: ceiling,
                records: b.records.clone(),
                summary,
            };
            out.push(draft.alert(now_ms));
        }
    }
}

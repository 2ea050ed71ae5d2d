//! Detector thresholds: `hipaa-mesh collector --detect-config FILE` (YAML or JSON). Every key is
//! optional and defaults to what a hospital can start with; an unknown key refuses to start,
//! naming it (a misspelt threshold must not silently fall back to its default).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DetectConfig {
    /// false: no detector runs (alerts already stored stay readable).
    pub enabled: bool,
    /// How often the detectors look for newly stored records.
    pub poll_millis: u64,
    pub failed_auth: FailedAuth,
    pub patient_volume: PatientVolume,
    pub break_glass: Toggle,
    pub sensitive_record: SensitiveRecord,
    pub after_hours: AfterHours,
    pub exfiltration: Exfiltration,
    pub integrity: Toggle,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            enabled: true,
            poll_millis: 1000,
            failed_auth: FailedAuth::default(),
            patient_volume: PatientVolume::default(),
            break_glass: Toggle::default(),
            sensitive_record: SensitiveRecord::default(),
            after_hours: AfterHours::default(),
            exfiltration: Exfiltration::default(),
            integrity: Toggle::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Toggle {
    pub enabled: bool,
}

impl Default for Toggle {
    fn default() -> Self {
        Toggle { enabled: true }
    }
}

/// Authentication denials (401) per subject, or per source IP when no subject was verified.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FailedAuth {
    pub enabled: bool,
    pub window_seconds: u64,
    /// Denials in one window that raise an alert.
    pub threshold: u64,
    /// A success after at least this many denials in the same window raises one too.
    pub then_success_threshold: u64,
}

impl Default for FailedAuth {
    fn default() -> Self {
        FailedAuth {
            enabled: true,
            window_seconds: 300,
            threshold: 10,
            then_success_threshold: 5,
        }
    }
}

/// Distinct patients one subject touches in a window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PatientVolume {
    pub enabled: bool,
    pub window_seconds: u64,
    /// More distinct patients than this in one window always raises an alert.
    pub ceiling: u64,
    /// Baseline: the subject's distinct patients in the same hour of day on each of its last
    /// `baselineDays` active days; its median times `baselineFactor` (and at least
    /// `baselineFloor`) is the subject's own ceiling for the hour. Used only with at least
    /// `minBaselineDays` days of history.
    pub baseline_days: u64,
    pub min_baseline_days: u64,
    pub baseline_factor: u64,
    pub baseline_floor: u64,
}

impl Default for PatientVolume {
    fn default() -> Self {
        PatientVolume {
            enabled: true,
            window_seconds: 3600,
            ceiling: 50,
            baseline_days: 14,
            min_baseline_days: 7,
            baseline_factor: 5,
            baseline_floor: 20,
        }
    }
}

/// Patients and routes the operator marks sensitive (VIPs, employees, behavioural health...).
/// The patient ids are compared in memory and never logged; the file itself holds them, so
/// protect it like the trail.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SensitiveRecord {
    pub patients: Vec<String>,
    /// Policy route names (`action.route`).
    pub routes: Vec<String>,
}

/// Working hours per role, in one time zone offset; an access outside them raises an alert.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AfterHours {
    /// Minutes east of UTC (e.g. -300 for US Eastern standard time).
    pub utc_offset_minutes: i64,
    /// Role name → working hours. Roles not listed are never flagged.
    pub roles: BTreeMap<String, Hours>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hours {
    /// `HH:MM` local, inclusive.
    pub start: String,
    /// `HH:MM` local, exclusive; earlier than `start` for a night shift.
    pub end: String,
    /// Also flag Saturdays and Sundays (local), whatever the time.
    #[serde(default)]
    pub weekdays_only: bool,
}

/// Response bytes per subject and per egress vendor in a window; refused egress.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Exfiltration {
    pub enabled: bool,
    pub window_seconds: u64,
    pub subject_bytes: u64,
    pub vendor_bytes: u64,
    /// Every refused egress (PHI headed to a host without a current BAA) raises an alert.
    pub refused_egress: bool,
}

impl Default for Exfiltration {
    fn default() -> Self {
        Exfiltration {
            enabled: true,
            window_seconds: 3600,
            subject_bytes: 200 * 1024 * 1024,
            vendor_bytes: 50 * 1024 * 1024,
            refused_egress: true,
        }
    }
}

/// Minutes after local midnight of `HH:MM`.
pub fn parse_hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

impl DetectConfig {
    /// Parses a YAML or JSON document; the error names the offending key.
    pub fn parse(text: &str) -> Result<DetectConfig, String> {
        let value: Value = serde_norway::from_str(text)
            .map_err(|e| format!("detect config is not YAML or JSON: {e}"))?;
        let value = if value.is_null() {
            Value::Object(Default::default())
        } else {
            value
        };
        let config: DetectConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            format!("detect config: {path}: {}", e.into_inner())
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: &std::path::Path) -> Result<DetectConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        DetectConfig::parse(&text)
    }

    fn validate(&self) -> Result<(), String> {
        let windows = [
            ("failedAuth.windowSeconds", self.failed_auth.window_seconds),
            (
                "patientVolume.windowSeconds",
                self.patient_volume.window_seconds,
            ),
            (
                "exfiltration.windowSeconds",
                self.exfiltration.window_seconds,
            ),
        ];
        for (name, w) in windows {
            if !(1..=7 * 86_400).contains(&w) {
                return Err(format!("detect config: {name}: must be 1..=604800 seconds"));
            }
        }
        if !(100..=60_000).contains(&self.poll_millis) {
            return Err("detect config: pollMillis: must be 100..=60000".into());
        }
        if self.patient_volume.baseline_days > 60 {
            return Err("detect config: patientVolume.baselineDays: at most 60".into());
        }
        if self.after_hours.utc_offset_minutes.abs() > 14 * 60 {
            return Err("detect config: afterHours.utcOffsetMinutes: within ±840".into());
        }
        for (role, hours) in &self.after_hours.roles {
            for (what, v) in [("start", &hours.start), ("end", &hours.end)] {
                if parse_hhmm(v).is_none() {
                    return Err(format!(
                        "detect config: afterHours.roles.{role}.{what}: use HH:MM (24 h)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// How far back the detectors must re-read on start so their windows are whole: twice the
    /// longest window, and the baseline history.
    pub fn lookback_ms(&self) -> i64 {
        let longest = self
            .failed_auth
            .window_seconds
            .max(self.patient_volume.window_seconds)
            .max(self.exfiltration.window_seconds)
            .max(86_400);
        let secs = (2 * longest).max(self.patient_volume.baseline_days * 86_400 + 86_400);
        i64::try_from(secs).unwrap_or(i64::MAX / 2000) * 1000
    }
}

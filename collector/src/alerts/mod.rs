//! Examining the trail (45 CFR 164.312(b) "record and examine"): detectors that run on what the
//! collector has stored, alerts they raise, and how alerts reach people and tools.
//!
//! * [`model`]: the alert (the JSON contract of DESIGN.md) and its deterministic id.
//! * [`config`]: thresholds (`--detect-config FILE`), with defaults a hospital can start with.
//! * [`detect`]: pure detectors fed with one stored record at a time.
//! * [`ledger`]: alert and alert-status rows in the tamper-evident ledger, read back and checked.
//! * [`runner`]: the background loop that feeds the detectors from the ledger.
//! * [`http`]: `GET /v1/alerts`, `GET /v1/alerts/{id}`, `POST /v1/alerts/{id}/status`.
//! * [`webhook`]: a signed JSON POST per alert, retried until acknowledged.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

pub mod config;
pub mod detect;
pub mod http;
pub mod ledger;
pub mod model;
pub mod runner;
pub mod webhook;

pub use config::DetectConfig;
pub use model::{Alert, AlertKind, Severity, Status};

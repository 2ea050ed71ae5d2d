//! Incident tracking (issue #14 item 3): an incident is opened from an alert or by hand, noted,
//! assessed with the four-factor risk assessment of 45 CFR 164.402(2) and closed with a breach
//! determination. Every step is an event appended to the tamper-evident ledger (own records of
//! kind `incident`), so incidents and their history are append-only, kept with the trail (a
//! purge never takes an incident less than 6 years after its last event, nor an open one) and
//! covered by `audit verify`.
//!
//! * [`model`]: the stored events and the checks on operator input;
//! * [`fold`]: an incident from its events (pure);
//! * [`deadlines`]: notification deadlines from the discovery date (pure);
//! * [`ledger`]: events in and out of the ledger, the affected individuals, retention;
//! * [`api`]: the operator API (`/v1/incidents...`) the server routes to;
//! * [`report`]: the breach report, Markdown or HTML.

mod alert_reader;
pub mod api;
pub mod deadlines;
pub mod fold;
pub mod ledger;
pub mod model;
pub mod report;

pub use ledger::KIND;

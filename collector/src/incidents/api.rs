//! The incidents family of the operator API, independent of the HTTP server: the server checks
//! the reader's credential, reads the (bounded) body, hands the call here, records the call as
//! trail-access and sends the answer.
//!
//! * `POST /v1/incidents` opens one (from an alert and/or by hand);
//! * `GET /v1/incidents[?status=open|assessed|closed]` lists them;
//! * `GET /v1/incidents/{id}` the incident folded from its events (patients included: the
//!   caller holds the read credential);
//! * `POST /v1/incidents/{id}/events` a note, an assessment or a close;
//! * `GET /v1/incidents/{id}/report?format=md|html` the breach report, as JSON
//!   `{"id","format","contentType","report"}` (the collector never serves HTML itself).
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use std::collections::BTreeMap;

use hipaa_core::calendar::Date;
use serde::Deserialize;
use serde_json::{json, Value};

use super::alert_reader::find_alert;
use super::fold::{fold, Incident};
use super::ledger::{self, ReadError};
use super::model::{
    check_name, check_states, check_text, new_id, valid_id, Assessment, Event, EventBody, Links,
    Notified, Outcome, Scope, MAX_LINKED_RECORDS,
};
use super::report;
use crate::keys::EncryptionKey;
use crate::own_records::Appended;
use crate::read_auth::Reader;
use crate::store::Store;

/// The path every route of this family starts with.
pub const PREFIX: &str = "/v1/incidents";
/// The largest request body (an assessment with every text at its maximum fits).
pub const MAX_BODY: usize = 64 * 1024;
/// How far in the future a discovery time may be (clock skew between operator and collector).
const DISCOVERY_SKEW_MS: i64 = 5 * 60 * 1000;

/// Whether `path` belongs to this family.
pub fn owns(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// One call, as the server read it.
#[derive(Debug)]
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    pub reader: &'a Reader,
    pub now_ms: i64,
}

/// The answer, and what the trail-access record of the call says.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// `POST /v1/incidents`, `GET /v1/incidents/{id}`, ...: the route, not the id.
    pub endpoint: String,
    /// What the call named (id, query): the trail-access record's `filter`.
    pub filter: String,
    /// Incidents (or events) returned.
    pub rows: u64,
    /// The store failed: the server renews its connection.
    pub store_failed: bool,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        endpoint: String::new(),
        filter: String::new(),
        rows: 0,
        store_failed: false,
    }
}

fn error(status: u16, code: &str, description: &str) -> Answer {
    answer(
        status,
        json!({"error": code, "error_description": description}),
    )
}

fn read_error(e: ReadError) -> Answer {
    match e {
        ReadError::Store(e) => {
            eprintln!("hipaa-collector: incidents: {e}");
            Answer {
                store_failed: true,
                ..error(503, "store_unavailable", "the audit database failed; retry")
            }
        }
        ReadError::Tampered(l) => error(
            500,
            "tampered",
            &format!("stored record at ledger #{l} fails authentication; run audit verify"),
        ),
        ReadError::TooBroad => error(400, "bad_request", &e.to_string()),
    }
}

/// Handles one call of the family.
pub fn handle(store: &mut dyn Store, enc: &EncryptionKey, call: &Call<'_>) -> Answer {
    let rest = call.path.strip_prefix(PREFIX).unwrap_or_default();
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    let (endpoint, mut out) = match (call.method, parts.as_slice()) {
        ("POST", []) => ("POST /v1/incidents", open(store, enc, call)),
        ("GET", []) => ("GET /v1/incidents", list(store, enc, call)),
        ("GET", [id]) => ("GET /v1/incidents/{id}", show(store, enc, call, id)),
        ("POST", [id, "events"]) => (
            "POST /v1/incidents/{id}/events",
            add_event(store, enc, call, id),
        ),
        ("GET", [id, "report"]) => (
            "GET /v1/incidents/{id}/report",
            report_of(store, enc, call, id),
        ),
        (_, [] | [_] | [_, "events" | "report"]) => {
            ("", error(405, "method_not_allowed", "method not allowed"))
        }
        _ => ("", error(404, "not_found", "no such endpoint")),
    };
    out.endpoint = endpoint.to_string();
    if out.filter.is_empty() {
        out.filter = match parts.first() {
            Some(id) if valid_id(id) => format!("id={id}{}{}", amp(call.query), call.query),
            _ => call.query.to_string(),
        };
    }
    out
}

fn amp(q: &str) -> &'static str {
    if q.is_empty() {
        ""
    } else {
        "&"
    }
}

fn today(now_ms: i64) -> Date {
    Date::from_unix(now_ms.div_euclid(1000))
}

/// The query string's parameters (values used as given: the accepted ones are plain words).
fn params(qs: &str) -> Vec<(&str, &str)> {
    qs.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Answer> {
    serde_json::from_slice(body).map_err(|e| {
        // serde's message names the field, never echoes a value longer than a token.
        error(400, "bad_request", &format!("invalid body: {e}"))
    })
}

fn parse_time(what: &str, s: &str) -> Result<i64, Answer> {
    hipaa_core::audit::parse_rfc3339_millis(s).ok_or_else(|| {
        error(
            400,
            "bad_request",
            &format!("{what} must be a date YYYY-MM-DD or an RFC 3339 time"),
        )
    })
}

/// Loads and folds one incident: 404 when unknown.
fn load(
    store: &mut dyn Store,
    enc: &EncryptionKey,
    id: &str,
    now_ms: i64,
) -> Result<Incident, Answer> {
    if !valid_id(id) {
        return Err(error(404, "not_found", "no such incident"));
    }
    let mut all = ledger::events(store, enc, Some(id)).map_err(read_error)?;
    let events = all
        .remove(id)
        .ok_or_else(|| error(404, "not_found", "no such incident"))?;
    fold(&events, today(now_ms)).map_err(|e| {
        error(
            500,
            "malformed_incident",
            &format!("the incident's events do not fold ({e}); run audit verify"),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenRequest {
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    records: Vec<String>,
    #[serde(default)]
    scope: Option<Scope>,
    summary: String,
    /// `YYYY-MM-DD` or RFC 3339; default: now.
    #[serde(default)]
    discovered: Option<String>,
}

fn open(store: &mut dyn Store, enc: &EncryptionKey, call: &Call<'_>) -> Answer {
    match try_open(store, enc, call) {
        Ok(a) | Err(a) => a,
    }
}

fn try_open(store: &mut dyn Store, enc: &EncryptionKey, call: &Call<'_>) -> Result<Answer, Answer> {
    let req: OpenRequest = parse_body(call.body)?;
    let bad = |m: String| error(400, "bad_request", &m);
    check_text("summary", &req.summary).map_err(bad)?;
    if req.records.len() > MAX_LINKED_RECORDS {
        return Err(bad(format!("at most {MAX_LINKED_RECORDS} records")));
    }
    for r in &req.records {
        check_name("a record's request id", r).map_err(bad)?;
    }
    let discovered_ms = match &req.discovered {
        Some(d) => parse_time("discovered", d)?,
        None => call.now_ms,
    };
    if discovered_ms > call.now_ms + DISCOVERY_SKEW_MS {
        return Err(bad("discovered is in the future".into()));
    }
    let mut scope_range = None;
    if let Some(s) = &req.scope {
        check_name("scope.subject", &s.subject).map_err(bad)?;
        let (from, to) = (
            parse_time("scope.from", &s.from)?,
            parse_time("scope.to", &s.to)?,
        );
        if to <= from {
            return Err(bad("scope.to must be after scope.from".into()));
        }
        scope_range = Some((from, to));
    }
    let mut links = Links {
        records: req.records.clone(),
        scope: req.scope.clone(),
    };
    let mut within = None;
    if let Some(alert_id) = &req.alert {
        check_name("alert", alert_id).map_err(bad)?;
        let alert = find_alert(store, enc, alert_id)
            .map_err(read_error)?
            .ok_or_else(|| error(404, "unknown_alert", "no alert with this id"))?;
        if req.records.is_empty() {
            // Only the alert's records: look for them within its window.
            within = alert.window;
        }
        for r in alert.records {
            if !links.records.contains(&r) {
                links.records.push(r);
            }
        }
        if links.scope.is_none() && alert.records_truncated {
            // The alert names only its first 100 records: take its subject's whole window.
            if let (Some(subject), Some((from, to))) = (alert.subject, alert.window) {
                links.scope = Some(Scope {
                    subject,
                    from: hipaa_core::calendar::rfc3339_millis(from),
                    to: hipaa_core::calendar::rfc3339_millis(to),
                });
                scope_range = Some((from, to));
            }
        }
    }
    let affected = ledger::affected(store, enc, &links, within, scope_range).map_err(read_error)?;
    let body = EventBody::Opened {
        summary: req.summary,
        discovered_at: hipaa_core::calendar::rfc3339_millis(discovered_ms),
        alert: req.alert,
        links,
        affected,
    };
    for _ in 0..4 {
        let id = new_id(call.now_ms, rand::random::<u32>());
        let event = Event {
            id: id.clone(),
            by: call.reader.subject.clone(),
            issuer: call.reader.issuer.clone(),
            body: body.clone(),
        };
        match ledger::append(store, enc, &event, call.now_ms) {
            Ok(Appended::Stored(_)) => {
                let incident = fold(&[(call.now_ms, event)], today(call.now_ms))
                    .map_err(|e| error(500, "malformed_incident", &e.to_string()))?;
                let mut a = answer(201, json!(incident));
                a.rows = 1;
                a.filter = format!("id={id}");
                return Ok(a);
            }
            // The random tail collided with an incident of the same day: draw again.
            Ok(Appended::AlreadyStored) => continue,
            Err(e) => return Err(read_error(ReadError::Store(e))),
        }
    }
    Err(error(
        503,
        "store_unavailable",
        "could not allocate an incident id",
    ))
}

fn list(store: &mut dyn Store, enc: &EncryptionKey, call: &Call<'_>) -> Answer {
    let mut status = None;
    for (k, v) in params(call.query) {
        match (k, v) {
            ("status", "open" | "assessed" | "closed") => status = Some(v),
            _ => {
                return error(
                    400,
                    "bad_query",
                    "the only parameter is status=open|assessed|closed",
                )
            }
        }
    }
    let all = match ledger::events(store, enc, None) {
        Ok(a) => a,
        Err(e) => return read_error(e),
    };
    let mut out = Vec::new();
    for events in all.values() {
        let Ok(i) = fold(events, today(call.now_ms)) else {
            return error(
                500,
                "malformed_incident",
                "an incident's events do not fold; run audit verify",
            );
        };
        if status.is_some_and(|s| s != i.status) {
            continue;
        }
        out.push(json!({
            "id": i.id,
            "status": i.status,
            "summary": i.summary,
            "discoveredAt": i.discovered_at,
            "openedAt": i.opened_at,
            "openedBy": i.opened_by,
            "alert": i.alert,
            "individualsAffected": i.affected.count,
            "outcome": i.outcome.as_ref().map(|c| c.outcome.as_str()),
            "individualsDue": i.deadlines.individuals.due,
            "individualsDaysLeft": i.deadlines.individuals.days_left,
        }));
    }
    let mut a = answer(200, Value::Array(out));
    a.rows = a.body.as_array().map_or(0, |v| v.len() as u64);
    a
}

fn show(store: &mut dyn Store, enc: &EncryptionKey, call: &Call<'_>, id: &str) -> Answer {
    match load(store, enc, id, call.now_ms) {
        Ok(i) => {
            let mut a = answer(200, json!(i));
            a.rows = i.history.len() as u64;
            a
        }
        Err(a) => a,
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase", deny_unknown_fields)]
enum EventRequest {
    Note {
        text: String,
    },
    Assessment {
        assessment: Assessment,
    },
    Closed {
        outcome: Outcome,
        reason: String,
        #[serde(default)]
        notified: Notified,
        #[serde(default)]
        states: BTreeMap<String, u64>,
    },
}

fn add_event(store: &mut dyn Store, enc: &EncryptionKey, call: &Call<'_>, id: &str) -> Answer {
    let req: EventRequest = match parse_body(call.body) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let checked = match &req {
        EventRequest::Note { text } => check_text("text", text),
        EventRequest::Assessment { assessment } => assessment.check(),
        EventRequest::Closed {
            reason,
            notified,
            states,
            ..
        } => check_text("reason", reason)
            .and_then(|()| notified.check())
            .and_then(|()| check_states(states)),
    };
    if let Err(m) = checked {
        return error(400, "bad_request", &m);
    }
    // The incident must exist (and fold) before anything is added to it.
    if let Err(a) = load(store, enc, id, call.now_ms) {
        return a;
    }
    let body = match req {
        EventRequest::Note { text } => EventBody::Note { text },
        EventRequest::Assessment { assessment } => EventBody::Assessment { assessment },
        EventRequest::Closed {
            outcome,
            reason,
            notified,
            states,
        } => EventBody::Closed {
            outcome,
            reason,
            notified,
            states,
        },
    };
    let event = Event {
        id: id.to_string(),
        by: call.reader.subject.clone(),
        issuer: call.reader.issuer.clone(),
        body,
    };
    if let Err(e) = ledger::append(store, enc, &event, call.now_ms) {
        return read_error(ReadError::Store(e));
    }
    match load(store, enc, id, call.now_ms) {
        Ok(i) => {
            let mut a = answer(201, json!(i));
            a.rows = 1;
            a
        }
        Err(a) => a,
    }
}

fn report_of(store: &mut dyn Store, enc: &EncryptionKey, call: &Call<'_>, id: &str) -> Answer {
    let mut format = "md";
    for (k, v) in params(call.query) {
        match (k, v) {
            ("format", "md" | "html") => format = v,
            _ => return error(400, "bad_query", "the only parameter is format=md|html"),
        }
    }
    let incident = match load(store, enc, id, call.now_ms) {
        Ok(i) => i,
        Err(a) => return a,
    };
    let (content_type, text) = if format == "html" {
        (
            "text/html; charset=utf-8",
            report::html(&incident, call.now_ms),
        )
    } else {
        (
            "text/markdown; charset=utf-8",
            report::markdown(&incident, call.now_ms),
        )
    };
    let mut a = answer(
        200,
        json!({"id": incident.id, "format": format, "contentType": content_type, "report": text}),
    );
    a.rows = 1;
    a
}

//! The alerts family of the operator API, behind the trail's read credential; every call is
//! recorded as `trail-access` before it is answered.
//! * `GET /v1/alerts?kind=&subject=&patient=&status=&from=&to=`: a JSON array of alerts.
//! * `GET /v1/alerts/{id}`: one alert (404 when unknown).
//! * `POST /v1/alerts/{id}/status` `{"status":"acknowledged"|"closed","note":".."}`: stores an
//!   `alert-status` row naming the operator; answers the alert with its new status.

use serde_json::{json, Value};
use tiny_http::{Method, Request};

use super::ledger::{self, AlertFilter, ReadError};
use super::model::{is_alert_id, AlertKind, Status};
use crate::keys::EncryptionKey;
use crate::query::{parse_time, percent_decode};
use crate::read_auth::Reader;
use crate::server::{error, read_body, respond};
use crate::store::Store;

/// The path prefix this family answers.
pub const PREFIX: &str = "/v1/alerts";
const MAX_BODY: u64 = 8 * 1024;

/// Whether `path` is this family's.
pub fn owns(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// What a handler needs of the server.
pub struct Context<'a> {
    pub store: &'a mut dyn Store,
    pub enc: &'a EncryptionKey,
    pub now_ms: i64,
    pub reader: &'a Reader,
}

/// Parses `GET /v1/alerts`' query string.
pub fn parse_filter(qs: &str) -> Result<AlertFilter, String> {
    let mut f = AlertFilter::default();
    for pair in qs.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        match k.as_str() {
            "kind" => {
                f.kind = Some(
                    AlertKind::parse(&v)
                        .ok_or_else(|| format!("kind {v:?} is not an alert kind"))?,
                )
            }
            "subject" => f.subject = Some(v),
            "patient" => f.patient = Some(v),
            "status" => {
                f.status = Some(
                    Status::parse(&v)
                        .ok_or_else(|| "status must be open, acknowledged or closed".to_string())?,
                )
            }
            "from" => f.from_ms = Some(parse_time(&v)?),
            "to" => f.to_ms = Some(parse_time(&v)?),
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (kind, subject, patient, status, from, to)"
                ))
            }
        }
    }
    Ok(f)
}

/// Records the read; false when it could not be stored (then nothing is answered but a 503).
fn record(ctx: &mut Context<'_>, endpoint: &str, filter: &str, rows: u64) -> bool {
    let record = crate::trail_access::record(ctx.reader, endpoint, filter, rows, ctx.now_ms);
    match crate::trail_access::append(ctx.store, ctx.enc, &record, ctx.now_ms) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("hipaa-collector: recording a trail read failed: {e}");
            false
        }
    }
}

fn read_failed(request: Request, e: &ReadError) -> bool {
    match e {
        ReadError::Tampered(l) => {
            error(
                request,
                500,
                "tampered",
                &format!("stored record at ledger #{l} fails authentication; run audit verify"),
            );
            true
        }
        ReadError::Store(e) => {
            eprintln!("hipaa-collector: alerts: {e}");
            error(request, 503, "store_unavailable", "alerts unavailable");
            false
        }
    }
}

/// Handles one request of this family. Returns false when the store failed.
pub fn handle(mut ctx: Context<'_>, mut request: Request, path: &str, qs: &str) -> bool {
    let rest = path.strip_prefix(PREFIX).unwrap_or_default();
    let method = request.method().clone();
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method, parts.as_slice()) {
        (Method::Get, []) => {
            let f = match parse_filter(qs) {
                Ok(f) => f,
                Err(e) => {
                    error(request, 400, "bad_query", &e);
                    return true;
                }
            };
            match ledger::list(ctx.store, ctx.enc, &f) {
                Ok(alerts) => {
                    if !record(&mut ctx, "GET /v1/alerts", qs, alerts.len() as u64) {
                        error(request, 503, "store_unavailable", "alerts unavailable");
                        return false;
                    }
                    respond(request, 200, &json!(alerts), None);
                    true
                }
                Err(e) => read_failed(request, &e),
            }
        }
        (Method::Get, [id]) => match ledger::get(ctx.store, ctx.enc, id) {
            Ok(found) => {
                let rows = u64::from(found.is_some());
                if !record(&mut ctx, "GET /v1/alerts/{id}", id, rows) {
                    error(request, 503, "store_unavailable", "alerts unavailable");
                    return false;
                }
                match found {
                    Some(a) => respond(request, 200, &json!(a), None),
                    None => error(request, 404, "not_found", "no such alert"),
                }
                true
            }
            Err(e) => read_failed(request, &e),
        },
        (Method::Post, [id, "status"]) => {
            let Ok(body) = read_body(&mut request, MAX_BODY as usize) else {
                error(
                    request,
                    400,
                    "bad_request",
                    "the body must be at most 8 KiB of JSON",
                );
                return true;
            };
            let parsed: Option<(Status, String)> =
                serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                    let status = v.get("status")?.as_str().and_then(Status::parse)?;
                    let note = match v.get("note") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(_) => return None,
                    };
                    (status != Status::Open).then_some((status, note))
                });
            let Some((status, note)) = parsed else {
                error(
                    request,
                    400,
                    "bad_request",
                    "body: {\"status\": \"acknowledged\" | \"closed\", \"note\": \"...\"}",
                );
                return true;
            };
            if !is_alert_id(id) {
                error(request, 404, "not_found", "no such alert");
                return true;
            }
            let existing = match ledger::get(ctx.store, ctx.enc, id) {
                Ok(a) => a,
                Err(e) => return read_failed(request, &e),
            };
            let Some(mut alert) = existing else {
                error(request, 404, "not_found", "no such alert");
                return true;
            };
            let rec = ledger::status_record(id, status, ctx.reader, &note, ctx.now_ms);
            let stored = ledger::append_status(ctx.store, ctx.enc, &rec, ctx.now_ms).is_ok()
                && record(&mut ctx, "POST /v1/alerts/{id}/status", id, 1);
            if !stored {
                error(
                    request,
                    503,
                    "store_unavailable",
                    "the status was not stored; retry",
                );
                return false;
            }
            alert.status = status;
            respond(request, 200, &json!(alert), None);
            true
        }
        (_, [] | [_] | [_, "status"]) => {
            error(request, 405, "method_not_allowed", "method not allowed");
            true
        }
        _ => {
            error(request, 404, "not_found", "no such endpoint");
            true
        }
    }
}

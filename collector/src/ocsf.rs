//! The trail and its alerts as OCSF events (Open Cybersecurity Schema Framework 1.3.0), one
//! JSON object per line, for SIEMs (`hipaa-mesh audit export --format ocsf`):
//! * an authentication denial (status 401) → Authentication (class 3002, category 3 Identity &
//!   Access Management), activity 1 Logon, status Failure;
//! * every other access record → API Activity (class 6003, category 6 Application Activity),
//!   activity Create / Read / Update / Delete / Other from the HTTP method;
//! * an alert → Detection Finding (class 2004, category 2 Findings), activity 1 Create, its
//!   status New / In Progress / Resolved.
//!
//! `type_uid` is `class_uid * 100 + activity_id`, as the schema defines it. The export carries
//! what the trail holds, patient ids included: the SIEM receiving it handles PHI.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use serde_json::{json, Value};

use crate::alerts::{Alert, Severity, Status};

pub const OCSF_VERSION: &str = "1.3.0";

fn metadata(uid: Option<&str>) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {"name": "hipaa-mesh", "vendor_name": "hipaa-mesh"},
        "uid": uid,
    })
}

fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn time_ms(v: &Value) -> Option<i64> {
    s(v, "/time").and_then(hipaa_core::audit::parse_rfc3339_millis)
}

/// One stored access record as OCSF (None for other kinds).
pub fn access_event(r: &Value) -> Option<Value> {
    if s(r, "/kind") != Some("access") {
        return None;
    }
    let status = r
        .pointer("/outcome/status")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let allowed = s(r, "/outcome/decision") == Some("allow");
    let user = json!({
        "uid": s(r, "/actor/subject"),
        "groups": r.pointer("/actor/roles").and_then(Value::as_array).map(|roles| {
            roles.iter().map(|g| json!({"name": g})).collect::<Vec<_>>()
        }),
    });
    let src = json!({"ip": s(r, "/source/ip")});
    let reason = s(r, "/outcome/reason");
    let request_id = s(r, "/requestId");
    if !allowed && status == 401 {
        return Some(json!({
            "class_uid": 3002,
            "class_name": "Authentication",
            "category_uid": 3,
            "category_name": "Identity & Access Management",
            "activity_id": 1,
            "activity_name": "Logon",
            "type_uid": 300_201,
            "time": time_ms(r),
            "severity_id": 3,
            "status_id": 2,
            "status": "Failure",
            "status_detail": reason,
            "user": user,
            "src_endpoint": src,
            "http_request": {"user_agent": s(r, "/source/userAgent")},
            "metadata": metadata(request_id),
        }));
    }
    let method = s(r, "/action/method").unwrap_or_default();
    let (activity_id, activity_name) = match method {
        "GET" | "HEAD" => (2, "Read"),
        "POST" => (1, "Create"),
        "PUT" | "PATCH" => (3, "Update"),
        "DELETE" => (4, "Delete"),
        "" => (0, "Unknown"),
        _ => (99, "Other"),
    };
    let emergency = r.get("emergency").is_some_and(|e| !e.is_null());
    Some(json!({
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 600_300 + activity_id,
        "time": time_ms(r),
        "severity_id": if emergency || !allowed { 3 } else { 1 },
        "status_id": if allowed { 1 } else { 2 },
        "status": if allowed { "Success" } else { "Failure" },
        "status_code": status.to_string(),
        "status_detail": reason,
        "actor": {"user": user},
        "api": {
            "operation": s(r, "/action/route").or(s(r, "/action/operation")),
            "request": {"uid": request_id},
        },
        "http_request": {
            "http_method": method,
            "url": {"path": s(r, "/action/path")},
            "user_agent": s(r, "/source/userAgent"),
        },
        "src_endpoint": src,
        "dst_endpoint": s(r, "/egress/host").map(|h| json!({"hostname": h})),
        "resources": s(r, "/resource/patient").map(|p| json!([{
            "uid": p,
            "type": s(r, "/resource/type").unwrap_or("Patient"),
        }])),
        "unmapped": {
            "emergency_reason": s(r, "/emergency/reason"),
            "bytes": r.pointer("/outcome/bytes"),
            "tls": s(r, "/source/tls"),
        },
        "metadata": metadata(request_id),
    }))
}

/// One alert as an OCSF Detection Finding.
pub fn alert_event(a: &Alert) -> Value {
    let severity_id = match a.severity {
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    };
    let (status_id, status) = match a.status {
        Status::Open => (1, "New"),
        Status::Acknowledged => (2, "In Progress"),
        Status::Closed => (4, "Resolved"),
    };
    let ms = |t: &str| hipaa_core::audit::parse_rfc3339_millis(t);
    json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200_401,
        "time": ms(&a.created_at),
        "severity_id": severity_id,
        "severity": serde_json::to_value(a.severity).ok(),
        "status_id": status_id,
        "status": status,
        "message": a.summary,
        "finding_info": {
            "uid": a.id,
            "title": a.summary,
            "types": [a.kind.as_str()],
            "created_time": ms(&a.created_at),
            "first_seen_time": ms(&a.window.from),
            "last_seen_time": ms(&a.window.to),
            "related_events": a.records.iter().map(|r| json!({"uid": r})).collect::<Vec<_>>(),
        },
        "actor": a.subject.as_ref().map(|u| json!({"user": {"uid": u}})),
        "src_endpoint": a.source_ip.as_ref().map(|ip| json!({"ip": ip})),
        "resources": a.patient.as_ref().map(|p| json!([{"uid": p, "type": "Patient"}])),
        "count": a.count,
        "unmapped": {"threshold": a.threshold, "records_truncated": a.records_truncated},
        "metadata": metadata(Some(&a.id)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_type_uids() {
        let denial = json!({"kind": "access", "time": "2026-11-23T12:00:00.000Z",
            "requestId": "r1", "actor": {"subject": null}, "source": {"ip": "10.0.0.1"},
            "outcome": {"decision": "deny", "status": 401, "reason": "bad_signature"}});
        let e = access_event(&denial).unwrap();
        assert_eq!(
            (e["class_uid"].as_u64(), e["type_uid"].as_u64()),
            (Some(3002), Some(300_201))
        );
        assert_eq!(e["status_id"], 2);
        assert_eq!(e["time"], 1_795_435_200_000_i64);
        let read = json!({"kind": "access", "time": "2026-11-23T12:00:00.000Z",
            "requestId": "r2", "actor": {"subject": "dr-a", "roles": ["clinician"]},
            "action": {"method": "GET", "path": "/fhir/Patient/1", "route": "patient-record"},
            "resource": {"patient": "1", "type": "Patient"},
            "outcome": {"decision": "allow", "status": 200, "bytes": 5}});
        let e = access_event(&read).unwrap();
        assert_eq!(
            (e["class_uid"].as_u64(), e["category_uid"].as_u64()),
            (Some(6003), Some(6))
        );
        assert_eq!(
            (e["activity_id"].as_u64(), e["type_uid"].as_u64()),
            (Some(2), Some(600_302))
        );
        assert_eq!(e["actor"]["user"]["uid"], "dr-a");
        assert_eq!(e["resources"][0]["uid"], "1");
        assert!(access_event(&json!({"kind": "chain-start"})).is_none());
    }
}

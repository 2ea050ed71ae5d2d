//! The record both load tools send: what the audit filter writes for a clinician reading a
//! patient record. Included with `#[path]` by `ingest-bench` and `ingest-profile`.

use hipaa_core::audit::{
    Action, Actor, AuditRecord, Decision, Operation, Outcome, Resource, Source,
};

/// An access record like the audit filter writes for a clinician reading a patient record.
pub fn access(time_ms: i64, n: u64, sender: usize) -> AuditRecord {
    let mut r = AuditRecord::access(time_ms, Some(format!("bench-{sender}-{n}")));
    r.actor = Some(Actor {
        subject: Some(format!("dr-{}", n % 50)),
        roles: Some(vec!["clinician".into()]),
        session: Some(format!("s-{}", n % 50)),
        amr: Some(vec!["pwd".into(), "otp".into()]),
        peer: None,
    });
    r.action = Some(Action {
        method: "GET".into(),
        path: format!("/fhir/Patient/{}", n % 1000),
        route: Some("patient-record".into()),
        operation: Operation::Read,
    });
    r.resource = Some(Resource {
        patient: Some(format!("{}", n % 1000)),
        resource_type: Some("Patient".into()),
    });
    r.source = Some(Source {
        ip: Some("10.1.2.3".into()),
        user_agent: Some("ingest-bench".into()),
        tls: Some("TLSv1.3".into()),
    });
    r.outcome = Some(Outcome {
        decision: Decision::Allow,
        status: 200,
        reason: None,
        bytes: 512,
        duration_ms: 1,
    });
    r
}

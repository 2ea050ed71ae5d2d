//! The breach report of one incident, Markdown or HTML: the HHS breach-portal fields, the
//! determination, the four-factor risk assessment, the deadlines with days left and the
//! timeline. It names how many individuals are affected, never who (the credentialed reader sees
//! them with `GET /v1/incidents/{id}`).
//!
//! Every value that came from an operator or a record is escaped for the format: HTML entities
//! for `& < > " '`; in Markdown, HTML-significant and Markdown punctuation is backslash-escaped
//! and line breaks cannot leave a table cell or list item.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

use serde_json::Value;

use super::deadlines::{Deadline, Requirement};
use super::fold::Incident;
use super::model::Factor;

/// HTML text or attribute content.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inline Markdown text: punctuation that Markdown or embedded HTML would act on is escaped,
/// line breaks become spaces (a table cell or list item stays one).
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            // Line-start syntax (#, -, 1.) cannot occur: every value follows text of ours on
            // its line, and line breaks are removed.
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' | '\n' => out.push(' '),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn date_part(rfc3339: &str) -> String {
    rfc3339.chars().take(10).collect()
}

/// One row of a two-column table: label, value (unescaped).
struct Field {
    label: &'static str,
    value: String,
}

fn or_not_recorded(v: Option<&str>) -> String {
    v.map(str::to_string)
        .unwrap_or_else(|| "(not recorded)".to_string())
}

fn requirement(r: Requirement) -> &'static str {
    match r {
        Requirement::Required => "required",
        Requirement::NotRequired => "not required",
        Requirement::Unknown => "undetermined",
    }
}

fn notice(d: &Deadline) -> String {
    match (&d.sent, &d.due) {
        (Some(s), _) => format!("sent {s}"),
        (None, Some(due)) if d.requirement != Requirement::NotRequired => {
            format!("not yet sent (due {due})")
        }
        _ => format!("not sent ({})", requirement(d.requirement)),
    }
}

/// The HHS breach-portal fields.
fn portal(i: &Incident) -> Vec<Field> {
    let a = i.assessment.as_ref();
    let f = |label, value| Field { label, value };
    vec![
        f(
            "Breach start date",
            i.affected
                .first_access
                .as_deref()
                .map(date_part)
                .unwrap_or_else(|| "(unknown: no linked access record)".into()),
        ),
        f(
            "Breach end date",
            i.affected
                .last_access
                .as_deref()
                .map(date_part)
                .unwrap_or_else(|| "(unknown: no linked access record)".into()),
        ),
        f("Discovery date", date_part(&i.discovered_at)),
        f(
            "Individuals affected",
            format!(
                "{} (distinct patients in {} linked access record(s){})",
                i.affected.count,
                i.affected.records,
                if i.affected.missing_records.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} linked request id(s) not found in the trail",
                        i.affected.missing_records.len()
                    )
                }
            ),
        ),
        f(
            "Type of breach",
            or_not_recorded(a.and_then(|a| a.breach_type.as_deref())),
        ),
        f(
            "Location of breached information",
            or_not_recorded(a.and_then(|a| a.location.as_deref())),
        ),
        f(
            "Safeguards in place prior to the breach",
            or_not_recorded(a.and_then(|a| a.safeguards.as_deref())),
        ),
        f("Individual notice", notice(&i.deadlines.individuals)),
        f("HHS notice", notice(&i.deadlines.hhs)),
        f("Media notice", notice(&i.deadlines.media)),
        f(
            "Actions taken in response",
            or_not_recorded(a.and_then(|a| a.actions.as_deref())),
        ),
    ]
}

fn determination(i: &Incident) -> Vec<Field> {
    let f = |label, value| Field { label, value };
    match &i.outcome {
        Some(c) => vec![
            f(
                "Outcome",
                match c.outcome {
                    super::model::Outcome::Breach => "breach".to_string(),
                    super::model::Outcome::NotBreach => "not a breach".to_string(),
                },
            ),
            f("Reasons", c.reason.clone()),
            f("Determined", format!("{} by {}", c.at, c.by)),
        ],
        None => vec![f(
            "Outcome",
            "open: a breach is presumed until the risk assessment shows a low probability that \
             the PHI has been compromised (164.402(2))"
                .to_string(),
        )],
    }
}

fn factors(i: &Incident) -> Vec<(&'static str, &Factor)> {
    match &i.assessment {
        Some(a) => vec![
            ("Nature and extent of the PHI involved", &a.nature),
            ("The unauthorized person", &a.person),
            ("Whether the PHI was acquired or viewed", &a.acquired),
            ("Extent of mitigation", &a.mitigation),
        ],
        None => vec![],
    }
}

fn deadline_rows(i: &Incident) -> Vec<(&'static str, &Deadline)> {
    vec![
        ("Individuals", &i.deadlines.individuals),
        ("HHS", &i.deadlines.hhs),
        ("Media", &i.deadlines.media),
    ]
}

fn days_left(d: &Deadline) -> String {
    match d.days_left {
        Some(n) if n < 0 => format!("overdue by {}", -n),
        Some(n) => n.to_string(),
        None => "-".to_string(),
    }
}

fn applies(i: &Incident) -> &'static str {
    match i.deadlines_apply {
        "breach" => "The incident was determined a breach: these deadlines bind.",
        "not-applicable" => {
            "The incident was determined not a breach: no notice is required (keep this \
             documentation 6 years)."
        }
        _ => {
            "The incident is open: the deadlines run from discovery as if it were a breach \
             until the risk assessment and determination show otherwise."
        }
    }
}

/// One timeline line's description (unescaped).
fn describe(e: &Value) -> String {
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
    match s("event") {
        "opened" => format!("opened: {}", s("summary")),
        "note" => format!("note: {}", s("text")),
        "assessment" => {
            let r = |k: &str| {
                e.pointer(&format!("/assessment/{k}/rating"))
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            };
            format!(
                "risk assessment: nature {}, person {}, acquired {}, mitigation {}",
                r("nature"),
                r("person"),
                r("acquired"),
                r("mitigation")
            )
        }
        "closed" => format!("closed as {}: {}", s("outcome"), s("reason")),
        other => other.to_string(),
    }
}

fn states_line(i: &Incident) -> Option<String> {
    (!i.states.is_empty()).then(|| {
        i.states
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The report in Markdown.
pub fn markdown(i: &Incident, now_ms: i64) -> String {
    let e = md_escape;
    let mut o = String::new();
    let mut line = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    line(format!("# Incident {}: {}", e(&i.id), e(&i.summary)));
    line(String::new());
    line(format!(
        "Status: {}. Opened {} by {}. Report generated {}.",
        e(i.status),
        e(&i.opened_at),
        e(&i.opened_by),
        e(&hipaa_core::calendar::rfc3339_millis(now_ms))
    ));
    if let Some(a) = &i.alert {
        line(format!("Opened from alert {}.", e(a)));
    }
    line(String::new());
    line("## HHS breach report fields".into());
    line(String::new());
    line("| Field | Value |".into());
    line("|---|---|".into());
    for f in portal(i) {
        line(format!("| {} | {} |", e(f.label), e(&f.value)));
    }
    if let Some(s) = states_line(i) {
        line(format!("| Affected residents by State | {} |", e(&s)));
    }
    line(String::new());
    line("## Determination".into());
    line(String::new());
    line("| Field | Value |".into());
    line("|---|---|".into());
    for f in determination(i) {
        line(format!("| {} | {} |", e(f.label), e(&f.value)));
    }
    line(String::new());
    line("## Risk assessment (45 CFR 164.402(2))".into());
    line(String::new());
    let fs = factors(i);
    if fs.is_empty() {
        line("Not yet assessed.".into());
    } else {
        line("| Factor | Rating | Finding |".into());
        line("|---|---|---|".into());
        for (label, f) in fs {
            line(format!(
                "| {} | {} | {} |",
                e(label),
                f.rating.as_str(),
                e(&f.text)
            ));
        }
        if let Some(r) = i.risk {
            line(String::new());
            line(format!(
                "Overall probability of compromise (summary): {}",
                r.as_str()
            ));
        }
    }
    line(String::new());
    line("## Notification deadlines".into());
    line(String::new());
    line(e(applies(i)));
    line(String::new());
    line("| Notice | Requirement | Due | Days left | Sent | Rule |".into());
    line("|---|---|---|---|---|---|".into());
    for (label, d) in deadline_rows(i) {
        line(format!(
            "| {} | {} | {} | {} | {} | {} |",
            label,
            requirement(d.requirement),
            e(d.due.as_deref().unwrap_or("-")),
            e(&days_left(d)),
            e(d.sent.as_deref().unwrap_or("-")),
            e(&d.rule)
        ));
    }
    line(String::new());
    line("## Timeline".into());
    line(String::new());
    for h in &i.history {
        let by = h
            .event
            .get("by")
            .and_then(Value::as_str)
            .unwrap_or_default();
        line(format!(
            "- {} {}: {}",
            e(&h.time),
            e(by),
            e(&describe(&h.event))
        ));
    }
    line(String::new());
    line(
        "Patient identities are not part of this report; an auditor reads them with \
         `hipaa-mesh incident show`."
            .into(),
    );
    o
}

/// The report as a standalone HTML page (no script, no external resource).
pub fn html(i: &Incident, now_ms: i64) -> String {
    let e = html_escape;
    let mut o = String::new();
    let mut push = |s: &str| o.push_str(s);
    let table = |rows: &[(String, String)]| -> String {
        let mut t = String::from("<table>\n");
        for (k, v) in rows {
            t.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>\n", e(k), e(v)));
        }
        t.push_str("</table>\n");
        t
    };
    push("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    push(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\n",
    );
    push(&format!("<title>Incident {}</title>\n", e(&i.id)));
    push(
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:\
         collapse;margin:1em 0}th,td{border:1px solid #999;padding:.3em .6em;text-align:left;\
         vertical-align:top}</style>\n</head><body>\n",
    );
    push(&format!(
        "<h1>Incident {}: {}</h1>\n",
        e(&i.id),
        e(&i.summary)
    ));
    push(&format!(
        "<p>Status: {}. Opened {} by {}. Report generated {}.{}</p>\n",
        e(i.status),
        e(&i.opened_at),
        e(&i.opened_by),
        e(&hipaa_core::calendar::rfc3339_millis(now_ms)),
        i.alert
            .as_deref()
            .map(|a| format!(" Opened from alert {}.", e(a)))
            .unwrap_or_default()
    ));
    push("<h2>HHS breach report fields</h2>\n");
    let mut rows: Vec<(String, String)> = portal(i)
        .into_iter()
        .map(|f| (f.label.to_string(), f.value))
        .collect();
    if let Some(s) = states_line(i) {
        rows.push(("Affected residents by State".into(), s));
    }
    push(&table(&rows));
    push("<h2>Determination</h2>\n");
    let rows: Vec<(String, String)> = determination(i)
        .into_iter()
        .map(|f| (f.label.to_string(), f.value))
        .collect();
    push(&table(&rows));
    push("<h2>Risk assessment (45 CFR 164.402(2))</h2>\n");
    let fs = factors(i);
    if fs.is_empty() {
        push("<p>Not yet assessed.</p>\n");
    } else {
        push("<table>\n<tr><th>Factor</th><th>Rating</th><th>Finding</th></tr>\n");
        for (label, f) in fs {
            push(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                e(label),
                f.rating.as_str(),
                e(&f.text)
            ));
        }
        push("</table>\n");
        if let Some(r) = i.risk {
            push(&format!(
                "<p>Overall probability of compromise (summary): {}</p>\n",
                r.as_str()
            ));
        }
    }
    push("<h2>Notification deadlines</h2>\n");
    push(&format!("<p>{}</p>\n", e(applies(i))));
    push(
        "<table>\n<tr><th>Notice</th><th>Requirement</th><th>Due</th><th>Days left</th>\
         <th>Sent</th><th>Rule</th></tr>\n",
    );
    for (label, d) in deadline_rows(i) {
        push(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            label,
            requirement(d.requirement),
            e(d.due.as_deref().unwrap_or("-")),
            e(&days_left(d)),
            e(d.sent.as_deref().unwrap_or("-")),
            e(&d.rule)
        ));
    }
    push("</table>\n<h2>Timeline</h2>\n<ul>\n");
    for h in &i.history {
        let by = h
            .event
            .get("by")
            .and_then(Value::as_str)
            .unwrap_or_default();
        push(&format!(
            "<li>{} {}: {}</li>\n",
            e(&h.time),
            e(by),
            e(&describe(&h.event))
        ));
    }
    push(
        "</ul>\n<p>Patient identities are not part of this report; an auditor reads them with \
          <code>hipaa-mesh incident show</code>.</p>\n</body></html>\n",
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::fold::fold;
    use crate::incidents::model::{
        Affected, Assessment, Event, EventBody, Links, Notified, Outcome, Rating,
    };
    use hipaa_core::calendar::Date;

    const HOSTILE: &str = "<script>alert(1)</script>\"' & | [x](javascript:1) \n# h";

    fn hostile_incident() -> Incident {
        let id = "INC-20261123-00000001".to_string();
        let ev = |body| Event {
            id: id.clone(),
            by: format!("<img src=x onerror=1>{HOSTILE}"),
            issuer: "i".into(),
            body,
        };
        let f = |r| Factor {
            text: HOSTILE.into(),
            rating: r,
        };
        let events = vec![
            (
                1_795_451_828_123,
                ev(EventBody::Opened {
                    summary: HOSTILE.into(),
                    discovered_at: "2026-11-23T16:37:08.123Z".into(),
                    alert: Some(HOSTILE.into()),
                    links: Links::default(),
                    affected: Affected {
                        count: 3,
                        patients: vec!["<b>p1</b>".into()],
                        records: 4,
                        first_access: Some("2026-11-20T01:00:00.000Z".into()),
                        last_access: Some("2026-11-21T01:00:00.000Z".into()),
                        ..Affected::default()
                    },
                }),
            ),
            (
                1_795_451_828_124,
                ev(EventBody::Note {
                    text: HOSTILE.into(),
                }),
            ),
            (
                1_795_451_828_125,
                ev(EventBody::Assessment {
                    assessment: Assessment {
                        nature: f(Rating::High),
                        person: f(Rating::Low),
                        acquired: f(Rating::Medium),
                        mitigation: f(Rating::Low),
                        breach_type: Some(HOSTILE.into()),
                        location: Some(HOSTILE.into()),
                        safeguards: Some(HOSTILE.into()),
                        actions: Some(HOSTILE.into()),
                        states: Default::default(),
                    },
                }),
            ),
            (
                1_795_451_828_126,
                ev(EventBody::Closed {
                    outcome: Outcome::Breach,
                    reason: HOSTILE.into(),
                    notified: Notified {
                        individuals: Some("2026-12-01".into()),
                        hhs: None,
                        media: None,
                    },
                    states: Default::default(),
                }),
            ),
        ];
        fold(&events, Date::parse("2026-11-30").unwrap()).unwrap()
    }

    #[test]
    fn html_escapes_every_operator_value() {
        let h = html(&hostile_incident(), 1_795_451_828_200);
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<img"), "{h}");
        assert!(!h.contains("<b>p1"), "patients are never in the report");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39; &amp;"));
        assert!(h.contains("default-src 'none'"));
        // The structure is only ours: one html, one body, the tables we wrote.
        assert_eq!(h.matches("<html").count(), 1);
        assert_eq!(h.matches("</body>").count(), 1);
    }

    #[test]
    fn markdown_keeps_values_inside_their_cells() {
        let m = markdown(&hostile_incident(), 1_795_451_828_200);
        assert!(!m.contains("<script"), "{m}");
        assert!(!m.contains("<img"), "{m}");
        assert!(!m.contains("p1"), "patients are never in the report");
        assert!(!m.contains("[x]("), "{m}");
        // Every table row of the portal section has exactly the two cells (3 unescaped pipes).
        let portal: Vec<&str> = m
            .lines()
            .skip_while(|l| !l.starts_with("## HHS"))
            .skip(4)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(portal.len(), 11, "{m}");
        for row in portal {
            let unescaped = row.replace("\\|", "");
            assert_eq!(unescaped.matches('|').count(), 3, "{row}");
        }
        // No line an operator's text started: headings are ours.
        assert_eq!(m.lines().filter(|l| l.starts_with("# ")).count(), 1);
        assert!(m.contains("| Individuals affected | 3 (distinct patients in 4"));
        assert!(m.contains("| Breach start date | 2026-11-20 |"));
    }
}

//! The patient a request names: ONE function ([`resolve`]) for the authn decision and the
//! audit record, so the two cannot disagree (issue #12, item 6).
//!
//! A patient id is percent-decoded wherever it comes from (path segment, query parameter,
//! header), so `?patient=%34%35%36` is recorded as `456` and `audit query --patient 456`
//! finds it. What the upstream might read as another patient than the record would name is
//! refused rather than guessed:
//! * `patient_repeated`: the query parameter given twice (under any case of its name, or
//!   percent-encoded, or separated by `;`), or the header given twice (the host joins
//!   repeated headers with a comma);
//! * `patient_invalid`: a value that is present but empty, not valid percent-encoding or
//!   UTF-8, longer than [`MAX_PATIENT_ID`], or with a byte outside `[A-Za-z0-9._:@~-]` (so a
//!   decoded `%2F`, `;` parameters, `,`, `+`, spaces and control bytes are refused); an empty
//!   path segment followed by more segments (`/fhir/Patient//456`, which servers merge).
//!
//! Case is kept: FHIR ids are case-sensitive.

use crate::percent;
use crate::routes::{split_query, PatientSource, RouteTable};

/// Whether some route takes its patient from the header `name` (lowercase), so the authn
/// shell hands that header's values to the decision.
pub fn is_patient_header(table: &RouteTable, name: &str) -> bool {
    table
        .routes()
        .iter()
        .any(|r| matches!(&r.patient, Some(PatientSource::Header(h)) if h == name))
}

/// Longest patient id accepted (FHIR ids are at most 64 characters).
pub const MAX_PATIENT_ID: usize = 128;

/// The patient id, `Ok(None)` when the request names none, or the refusal reason.
pub fn resolve(
    source: &PatientSource,
    path: &str,
    header: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, &'static str> {
    let (path_only, query) = split_query(path);
    match source {
        PatientSource::PathSegment { template, index } => {
            let Some(rest) = path_only.strip_prefix('/') else {
                return Ok(None);
            };
            let segments: Vec<&str> = rest.split('/').collect();
            if segments.len() < template.len() {
                return Ok(None);
            }
            let fixed_match = template
                .iter()
                .zip(&segments)
                .enumerate()
                .all(|(i, (t, s))| i == *index || t == s);
            if !fixed_match {
                return Ok(None);
            }
            let Some(segment) = segments.get(*index) else {
                return Ok(None);
            };
            if segment.is_empty() {
                // `/fhir/Patient/` is the collection; `/fhir/Patient//456` names 456 to a
                // server that merges slashes.
                let more = segments
                    .get(index.saturating_add(1)..)
                    .is_some_and(|after| after.iter().any(|s| !s.is_empty()));
                return if more {
                    Err("patient_invalid")
                } else {
                    Ok(None)
                };
            }
            canonical(segment).map(Some)
        }
        PatientSource::Header(name) => match header(name) {
            None => Ok(None),
            Some(v) if v.contains(',') => Err("patient_repeated"),
            Some(v) => canonical(v.trim()).map(Some),
        },
        PatientSource::Query(name) => {
            let Some(query) = query else {
                return Ok(None);
            };
            let mut found = None;
            for pair in query.split(['&', ';']) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let Some(k) = percent::decode(k) else {
                    continue;
                };
                if !k.eq_ignore_ascii_case(name.as_bytes()) {
                    continue;
                }
                if found.is_some() {
                    return Err("patient_repeated");
                }
                found = Some(v);
            }
            found.map(canonical).transpose()
        }
    }
}

/// Percent-decode and check one id.
fn canonical(raw: &str) -> Result<String, &'static str> {
    let bytes = percent::decode(raw).ok_or("patient_invalid")?;
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_PATIENT_ID
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@~-".contains(b));
    if !ok {
        return Err("patient_invalid");
    }
    String::from_utf8(bytes).map_err(|_| "patient_invalid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> PatientSource {
        PatientSource::from_template("/fhir/Patient/{patient}").unwrap()
    }

    fn query(path: &str) -> Result<Option<String>, &'static str> {
        resolve(&PatientSource::Query("patient".into()), path, |_| None)
    }

    fn header(v: Option<&str>) -> Result<Option<String>, &'static str> {
        resolve(&PatientSource::Header("x-patient-id".into()), "/ai", |n| {
            assert_eq!(n, "x-patient-id");
            v.map(String::from)
        })
    }

    #[test]
    fn every_spelling_of_456_is_456() {
        let t = template();
        for p in [
            "/fhir/Patient/456",
            "/fhir/Patient/%34%35%36",
            "/fhir/Patient/4%356?x=1",
        ] {
            assert_eq!(resolve(&t, p, |_| None), Ok(Some("456".into())), "{p}");
        }
        for p in [
            "/x?patient=456",
            "/x?patient=%34%35%36",
            "/x?a=1&PATIENT=456",
            "/x?%70atient=456",
        ] {
            assert_eq!(query(p), Ok(Some("456".into())), "{p}");
        }
        assert_eq!(header(Some("456")), Ok(Some("456".into())));
        assert_eq!(header(Some("%34%35%36")), Ok(Some("456".into())));
    }

    #[test]
    fn repeated_identifiers_are_refused() {
        for p in [
            "/x?patient=123&patient=456",
            "/x?patient=456&patient=456",
            "/x?patient=123&Patient=456",
            "/x?patient=123;patient=456",
            "/x?patient=&patient=456",
            "/x?patient=1&%70atient=456",
        ] {
            assert_eq!(query(p), Err("patient_repeated"), "{p}");
        }
        assert_eq!(header(Some("456,456")), Err("patient_repeated"));
        assert_eq!(header(Some("123, 456")), Err("patient_repeated"));
    }

    #[test]
    fn unreadable_identifiers_are_refused() {
        let t = template();
        for p in [
            "/fhir/Patient/45%2F6",
            "/fhir/Patient/456;v=1",
            "/fhir/Patient/%ZZ",
            "/fhir/Patient/%C3%28",
            "/fhir/Patient/a%20b",
            "/fhir/Patient//456",
        ] {
            assert_eq!(resolve(&t, p, |_| None), Err("patient_invalid"), "{p}");
        }
        for p in [
            "/x?patient=",
            "/x?patient",
            "/x?patient=4+5",
            "/x?patient=%2e%2e%2F1",
        ] {
            assert_eq!(query(p), Err("patient_invalid"), "{p}");
        }
        assert_eq!(header(Some("")), Err("patient_invalid"));
        // A `%` without two hex digits after it, anywhere.
        for p in ["/fhir/Patient/%4", "/fhir/Patient/45%", "/fhir/Patient/%+1"] {
            assert_eq!(resolve(&t, p, |_| None), Err("patient_invalid"), "{p}");
        }
        for p in ["/x?patient=%ZZ", "/x?patient=%4", "/x?patient=456%"] {
            assert_eq!(query(p), Err("patient_invalid"), "{p}");
        }
        assert_eq!(header(Some("45%6")), Err("patient_invalid"));
        // A parameter name that does not decode is not the patient parameter.
        assert_eq!(query("/x?%7patient=1&patient=456"), Ok(Some("456".into())));
        let long = "1".repeat(MAX_PATIENT_ID + 1);
        assert_eq!(header(Some(&long)), Err("patient_invalid"));
    }

    #[test]
    fn no_identifier_is_none() {
        let t = template();
        assert_eq!(resolve(&t, "/fhir/Patient/", |_| None), Ok(None));
        assert_eq!(resolve(&t, "/fhir/Patient/?name=x", |_| None), Ok(None));
        assert_eq!(resolve(&t, "/other/1", |_| None), Ok(None));
        assert_eq!(query("/x?patientx=1"), Ok(None));
        assert_eq!(query("/x"), Ok(None));
        assert_eq!(header(None), Ok(None));
        // Case is kept (FHIR ids are case-sensitive).
        assert_eq!(
            resolve(&t, "/fhir/Patient/AbC", |_| None),
            Ok(Some("AbC".into()))
        );
    }
}

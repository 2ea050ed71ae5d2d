//! Structural parsing that reports every error, not only the first.
//!
//! serde stops at the first problem. To list them all, we parse, record the error with its
//! path, repair the value (drop the offending key or array element), and parse again, until
//! the value parses or nothing more can be repaired. Paths are mapped back to the indices of
//! the original document, so every message points at what the author wrote.

use super::errors::PolicyErrors;
use serde::de::DeserializeOwned;
use serde_json::Value;

const MAX_REPAIRS: usize = 256;

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Parse `value` into `T`, collecting every structural error under `prefix` (e.g. `spec`).
/// Returns the parsed value only when there were no errors at all; `repaired` tells whether
/// any array element had to be dropped (later semantic checks would then see shifted indices).
pub fn parse_collecting<T: DeserializeOwned>(
    mut value: Value,
    prefix: &str,
) -> (Option<T>, PolicyErrors, bool) {
    let mut errors = PolicyErrors::default();
    if !value.is_object() {
        // serde would read an array as a struct, field by field: say what is wrong once.
        errors.push(render(prefix, &[]), "expected a mapping of keys to values");
        return (None, errors, false);
    }
    // Removed array elements, in the coordinates current at the time: (array path, index).
    let mut removals: Vec<(Vec<Seg>, usize)> = Vec::new();
    // Paths (original coordinates) already reported or filled in: errors at or below them are
    // consequences of our own repairs and are not reported again.
    let mut suppressed: Vec<String> = Vec::new();

    for _ in 0..MAX_REPAIRS {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) => {
                let repaired = !removals.is_empty();
                let parsed = errors.is_empty().then_some(parsed);
                return (parsed, errors, repaired);
            }
            Err(err) => err,
        };
        let mut path = to_segs(err.path());
        let message = err.inner().to_string();
        let missing = missing_field_name(&message);
        let mut report_path = path.clone();
        if let Some(field) = &missing {
            report_path.push(Seg::Key(field.clone()));
        }
        let original = render(prefix, &to_original(&report_path, &removals));
        if !suppressed.iter().any(|s| is_within(&original, s)) {
            errors.push(original.clone(), tidy(&message, missing.is_some()));
        }
        // Repair. A missing field gets a placeholder of whatever type parses, so the rest of
        // its container is still checked; anything else that failed is dropped.
        if let Some(field) = missing {
            suppressed.push(original);
            if fill_placeholder::<T>(&mut value, &path, &field) {
                continue;
            }
        } else {
            suppressed.push(original);
        }
        if path.is_empty() {
            break;
        }
        let last = path.pop();
        match (navigate(&mut value, &path), last) {
            (Some(Value::Object(map)), Some(Seg::Key(k))) => {
                map.remove(&k);
            }
            (Some(Value::Array(items)), Some(Seg::Index(i))) if i < items.len() => {
                items.remove(i);
                removals.push((path.clone(), i));
            }
            _ => break,
        }
    }
    (None, errors, true)
}

/// Try placeholder values for a missing field until one has a type the struct accepts.
fn fill_placeholder<T: DeserializeOwned>(
    value: &mut Value,
    container: &[Seg],
    field: &str,
) -> bool {
    let mut target = container.to_vec();
    target.push(Seg::Key(field.to_string()));
    let candidates = [
        Value::String(String::new()),
        Value::Array(Vec::new()),
        Value::Object(serde_json::Map::new()),
        Value::from(0),
        Value::Bool(false),
    ];
    for candidate in candidates {
        let Some(Value::Object(map)) = navigate(value, container) else {
            return false;
        };
        map.insert(field.to_string(), candidate);
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(_) => return true,
            Err(e) => {
                let at = to_segs(e.path());
                let type_error_here =
                    at == target && missing_field_name(&e.inner().to_string()).is_none();
                if !type_error_here {
                    return true;
                }
            }
        }
    }
    if let Some(Value::Object(map)) = navigate(value, container) {
        map.remove(field);
    }
    false
}

fn is_within(path: &str, root: &str) -> bool {
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

fn to_segs(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// Undo array removals, newest first, so an index names the element the author wrote.
fn to_original(path: &[Seg], removals: &[(Vec<Seg>, usize)]) -> Vec<Seg> {
    let mut out = path.to_vec();
    for (array, removed) in removals.iter().rev() {
        if out.get(..array.len()) == Some(array.as_slice()) {
            if let Some(Seg::Index(i)) = out.get_mut(array.len()) {
                if *i >= *removed {
                    *i += 1;
                }
            }
        }
    }
    out
}

fn render(prefix: &str, path: &[Seg]) -> String {
    let mut s = String::from(prefix);
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
        }
    }
    if s.is_empty() {
        s.push_str("(document)");
    }
    s
}

fn navigate<'a>(value: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = value;
    for seg in path {
        cur = match (cur, seg) {
            (Value::Object(map), Seg::Key(k)) => map.get_mut(k)?,
            (Value::Array(items), Seg::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn missing_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    let (name, _) = rest.split_once('`')?;
    Some(name.to_string())
}

fn tidy(message: &str, missing: bool) -> String {
    if missing {
        "is required".into()
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields exist to be parsed, not read
    struct Doc {
        items: Vec<Item>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        #[serde(default)]
        size: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    enum Mode {
        FailClosed,
    }

    fn errors_of(json: &str) -> Vec<String> {
        let value = serde_json::from_str(json).unwrap();
        let (parsed, errors, _) = parse_collecting::<Doc>(value, "spec");
        assert!(parsed.is_none());
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_document_parses_without_errors() {
        let value = serde_json::json!({"items": [{"name": "a", "size": 1}]});
        let (parsed, errors, repaired) = parse_collecting::<Doc>(value, "spec");
        assert!(errors.is_empty());
        assert!(!repaired);
        assert_eq!(parsed.unwrap().items[0].size, 1);
    }

    #[test]
    fn every_error_is_reported_with_its_original_path() {
        let errs = errors_of(
            r#"{"items": [{"size": 1}, {"name": "b", "sise": 2}, {"name": "c", "size": "x"}],
                "mode": "failLoud", "extra": 1}"#,
        );
        assert_eq!(errs.len(), 5, "{errs:#?}");
        let has = |start: &str| errs.iter().any(|e| e.starts_with(start));
        assert!(has("spec.items[0].name: is required"));
        assert!(has(
            "spec.items[1].sise: unknown field `sise`, expected `name` or `size`"
        ));
        assert!(has("spec.items[2].size: invalid type"));
        assert!(has(
            "spec.mode: unknown variant `failLoud`, expected `failClosed`"
        ));
        assert!(has("spec.extra: unknown field"));
    }

    #[test]
    fn follow_on_missing_field_after_a_bad_required_value_is_not_repeated() {
        let errs = errors_of(r#"{"items": [{"name": 7}]}"#);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].starts_with("spec.items[0].name: invalid type"));
    }

    #[test]
    fn a_wrong_root_type_is_one_error() {
        let errs = errors_of(r#"[1, 2]"#);
        assert_eq!(errs, vec!["spec: expected a mapping of keys to values"]);
    }
}

//! A small, deterministic YAML writer for rendered manifests (block style, keys sorted, so
//! `apiVersion`, `kind`, `metadata`, `spec` come in the usual order). Strings that YAML could read as anything but a string are written JSON-quoted,
//! which YAML 1.2 reads as a double-quoted scalar.

use serde_json::Value;

/// One YAML document (without the `---` separator), ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// Several documents, separated by `---` lines.
pub fn documents(values: &[Value]) -> String {
    values.iter().map(to_yaml).collect::<Vec<_>>().join("---\n")
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

/// Keys in sorted order, whatever serde_json's map ordering feature says.
fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, level: usize) {
    for (key, value) in sorted(map) {
        indent(out, level);
        out.push_str(&string(key));
        out.push(':');
        write_value_after_key(out, value, level);
    }
}

fn write_value_after_key(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, level + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, level);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    for item in items {
        indent(out, level);
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The first key goes on the dash line, the rest under it.
                let mut first = true;
                for (key, value) in sorted(m) {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        indent(out, level + 2);
                    }
                    out.push_str(&string(key));
                    out.push(':');
                    write_value_after_key(out, value, level + 2);
                }
            }
            v if is_block(v) => {
                out.push('\n');
                if let Value::Array(a) = v {
                    write_seq(out, a, level + 2);
                }
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Plain when unambiguous, JSON-quoted otherwise.
fn string(s: &str) -> String {
    if is_plain(s) {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    const RESERVED: [&str; 12] = [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~", "<<", "=",
    ];
    if RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    // Anything starting with a digit, sign or dot could read as a number or a date.
    (first.is_ascii_alphabetic() || first == '/' || first == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-:@+".contains(c))
        && !s.ends_with(':')
        && !s.contains(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[test]
    fn nested_maps_and_sequences() {
        let v = json!({
            "a": {"b": 1, "c": [{"d": "x", "e": ["y", "z"]}, "w"], "f": {}},
            "g": [], "h": true, "i": null
        });
        assert_eq!(
            to_yaml(&v),
            "a:\n  b: 1\n  c:\n  - d: x\n    e:\n    - \"y\"\n    - z\n  - w\n  f: {}\ng: []\nh: true\ni: null\n"
        );
    }

    /// A YAML 1.2 reader (serde_norway) reads back exactly the value written, including the
    /// strings YAML 1.1 readers (PyYAML, Go's yaml.v2, Envoy's yaml-cpp) would take for
    /// booleans, numbers, dates or null, which this writer quotes and serde_norway's own
    /// writer would leave plain (`on`, `No`, `y`, `2027-06-30`, `1_000`, `12:30`).
    #[test]
    fn a_yaml_reader_reads_back_the_same_value() {
        let strings = [
            "on",
            "yes",
            "No",
            "OFF",
            "y",
            "n",
            "1.0",
            "0755",
            "08",
            "1_000",
            "12:30",
            "0x1F",
            "1e3",
            ".inf",
            "null",
            "Null",
            "~",
            "",
            "true",
            "False",
            "2027-06-30",
            "0.1.0",
            "a: b",
            "#x",
            "*",
            "&a",
            "!t",
            "-1",
            "+1",
            "-",
            "=",
            "<<",
            " lead",
            "trail ",
            "multi\nline\n",
            "tab\there",
            "\"q\"",
            "it's",
            "{}",
            "[a]",
            "café",
            "oci://ghcr.io/x/y:0.1.0",
            "outbound|443||idp.hospital.example",
        ];
        let v = json!({
            "a": {"b": 1, "c": [{"d": "x", "e": ["y", "z"]}, "w"], "f": {}},
            "g": [], "h": true, "i": null, "j": -2, "k": 1.5, "l": [[1, 2], []],
            "strings": strings.as_slice(),
            "keys": strings.iter().map(|s| (s.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
        });
        let text = to_yaml(&v);
        let back: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(back, v, "{text}");
        let several = documents(&[v.clone(), json!({"b": "on"})]);
        let docs: Vec<Value> = serde_norway::Deserializer::from_str(&several)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs, vec![v, json!({"b": "on"})]);
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in [
            "true",
            "No",
            "2027-06-30",
            "0.1.0",
            "",
            "a: b",
            "#x",
            "*",
            "-1",
            "a b",
        ] {
            let out = to_yaml(&json!({ "k": s }));
            assert_eq!(out, format!("k: {}\n", json!(s)), "{s}");
        }
        for s in [
            "oci://ghcr.io/x/y:0.1.0",
            "/fhir/Patient/",
            "ISTIO_MUTUAL",
            "a-b_c.d",
        ] {
            assert_eq!(to_yaml(&json!({ "k": s })), format!("k: {s}\n"));
        }
    }
}

//! The v1 HipaaPolicy: parse (JSON or YAML), default, validate, compile.
//!
//! The filters and `hipaa-mesh policy check` call the same functions here, so Envoy and the
//! CLI agree on what is valid.

pub mod errors;
mod parse;
pub mod safety;
pub mod schema;
pub mod validate;

pub use errors::{PolicyError, PolicyErrors};
pub use schema::*;

use crate::jwt::KeySet;
use crate::routes::RouteTable;
use serde_json::Value;

/// A validated, compiled policy: what the filters run on.
#[derive(Debug, Clone)]
pub struct Policy {
    pub spec: Spec,
    pub routes: RouteTable,
    /// Parsed inline key sets, one per provider (None for a remote JWKS).
    pub inline_keys: Vec<Option<KeySet>>,
}

// A policy is shared between threads by its users (statics in the fuzz targets, the CLI): any
// interior state it gains (the route table's memory of its last request) must keep it so.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Policy>()
};

impl Policy {
    /// The filters' entry point: plugin configuration is the policy's `spec` as JSON.
    /// A whole document (with `apiVersion`, `kind`, `metadata`) is accepted as well.
    pub fn from_plugin_config(bytes: &[u8]) -> Result<Policy, PolicyErrors> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            let mut errs = PolicyErrors::default();
            errs.push("(plugin configuration)", format!("not valid JSON: {e}"));
            errs
        })?;
        if value.get("apiVersion").is_some() || value.get("spec").is_some() {
            return PolicyDocument::from_value(value).and_then(|d| Policy::compile(d.spec));
        }
        Policy::from_spec_value(value)
    }

    pub fn from_spec_value(value: Value) -> Result<Policy, PolicyErrors> {
        let (spec, mut errors, repaired) = parse::parse_collecting::<Spec>(value, "spec");
        match spec {
            Some(spec) => Policy::compile(spec),
            None => {
                let _ = repaired;
                errors.0.dedup();
                Err(errors)
            }
        }
    }

    /// Validate a parsed spec and build the runtime form.
    pub fn compile(spec: Spec) -> Result<Policy, PolicyErrors> {
        let mut errors = PolicyErrors::default();
        validate::validate_spec(&spec, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Policy::build(spec))
    }

    fn build(spec: Spec) -> Policy {
        let inline_keys = spec
            .identity
            .providers
            .iter()
            .map(|p| {
                p.jwks
                    .inline
                    .as_deref()
                    .and_then(|text| KeySet::from_jwks_json(text, &p.algorithms).ok())
            })
            .collect();
        Policy {
            routes: RouteTable::new(&spec.routes, spec.unmatched_routes),
            inline_keys,
            spec,
        }
    }

    pub fn has_exception(&self, safeguard: Safeguard) -> bool {
        self.spec
            .exceptions
            .iter()
            .any(|e| e.safeguard == safeguard)
    }
}

impl PolicyDocument {
    /// Parse a policy file: YAML (with the `yaml` feature) or JSON, every error reported.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyErrors> {
        let value = parse_text(text)?;
        PolicyDocument::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<PolicyDocument, PolicyErrors> {
        let (doc, mut errors, repaired) = parse::parse_collecting::<PolicyDocument>(value, "");
        match doc {
            Some(doc) => {
                validate::validate_document(&doc, &mut errors);
                if errors.is_empty() {
                    Ok(doc)
                } else {
                    Err(errors)
                }
            }
            None => {
                let _ = repaired;
                errors.0.dedup();
                Err(errors)
            }
        }
    }

    /// Parse, validate and compile in one step (what `policy check` runs).
    pub fn compile(text: &str) -> Result<(PolicyDocument, Policy), PolicyErrors> {
        let doc = PolicyDocument::parse(text)?;
        let policy = Policy::compile(doc.spec.clone())?;
        Ok((doc, policy))
    }
}

fn parse_text(text: &str) -> Result<Value, PolicyErrors> {
    let trimmed = text.trim_start();
    let mut errors = PolicyErrors::default();
    if trimmed.starts_with('{') {
        return serde_json::from_str(text).map_err(|e| {
            errors.push("(document)", format!("not valid JSON: {e}"));
            errors
        });
    }
    #[cfg(feature = "yaml")]
    {
        serde_norway::from_str::<Value>(text).map_err(|e| {
            errors.push("(document)", format!("not valid YAML: {e}"));
            errors
        })
    }
    #[cfg(not(feature = "yaml"))]
    {
        errors.push(
            "(document)",
            "expected a JSON object (YAML needs the `yaml` feature)",
        );
        Err(errors)
    }
}

#[cfg(test)]
mod tests;

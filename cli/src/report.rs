//! `hipaa-mesh policy report FILE [--format markdown|html]`: for a compliance officer, every
//! standard and implementation specification of 45 CFR 164.312 with the policy setting that
//! implements it and its value, or the exception and its justification, or the gap; then the
//! items of the proposed 2024 Security Rule update that a mesh policy can speak to, with the
//! inventory of AI systems that touch ePHI (the routes with `inference`).
//!
//! The report reads a valid policy; an unsafe one (see `policy check`) is reported with its
//! gaps rather than refused, since showing them is the point.

use clap::{Args, ValueEnum};
use hipaa_core::policy::safety::{safety_errors, unmatched_collection_paths};
use hipaa_core::policy::{
    PolicyDocument, Safeguard, Spec, TlsVersion, UnlistedHosts, UnmatchedRoutes, Verification,
    WhenCollectorDown,
};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Markdown,
    Html,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The HipaaPolicy file.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// On, by the settings listed.
    Implemented,
    /// Switched off by an `exceptions` entry: the justification.
    Exception(String),
    /// Not met by this policy: what is missing.
    Gap(String),
    /// Met outside the filters (by another part of hipaa-mesh or by the platform).
    Elsewhere(String),
}

impl Status {
    fn label(&self) -> &'static str {
        match self {
            Status::Implemented => "implemented",
            Status::Exception(_) => "exception",
            Status::Gap(_) => "GAP",
            Status::Elsewhere(_) => "outside the policy",
        }
    }

    fn note(&self) -> &str {
        match self {
            Status::Implemented => "",
            Status::Exception(s) | Status::Gap(s) | Status::Elsewhere(s) => s,
        }
    }
}

pub struct Row {
    pub cfr: &'static str,
    pub title: &'static str,
    /// "Required" or "Addressable"; standards without specifications are Required.
    pub kind: &'static str,
    pub enforced_by: &'static str,
    /// (key path, value)
    pub settings: Vec<(String, String)>,
    pub status: Status,
}

pub struct Report {
    pub policy: String,
    pub rows: Vec<Row>,
    pub proposed: Vec<Row>,
    /// (route, path rule, model header, version header, patient source)
    pub ai_inventory: Vec<[String; 5]>,
    /// (host, BAA id, expires)
    pub vendors: Vec<[String; 3]>,
}

pub fn run(args: ReportArgs) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let doc = match PolicyDocument::compile(&text) {
        Ok((doc, _)) => doc,
        Err(errors) => {
            eprintln!(
                "{}: {} error(s); the report needs a valid policy",
                args.file.display(),
                errors.len()
            );
            for e in errors.iter() {
                eprintln!("  {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let report = build(&doc);
    match args.format {
        Format::Markdown => print!("{}", markdown(&report)),
        Format::Html => print!("{}", html(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

fn exception(spec: &Spec, s: Safeguard) -> Option<String> {
    spec.exceptions
        .iter()
        .find(|e| e.safeguard == s)
        .map(|e| format!("`{}`: {}", s.name(), e.justification.trim()))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

fn kv(key: &str, value: impl Into<String>) -> (String, String) {
    (key.to_string(), value.into())
}

fn path_rule(r: &hipaa_core::policy::Route) -> String {
    match (&r.matcher.path, &r.matcher.path_prefix) {
        (Some(p), _) => format!("path {p}"),
        (None, Some(p)) => format!("prefix {p}"),
        _ => "-".into(),
    }
}

pub fn build(doc: &PolicyDocument) -> Report {
    let spec = &doc.spec;
    let id = &spec.identity;
    let unsafe_ = safety_errors(spec);
    let safety_gap = |path: &str| {
        unsafe_
            .iter()
            .find(|e| e.path.starts_with(path))
            .map(|e| e.message.clone())
    };
    let phi_routes: Vec<&hipaa_core::policy::Route> =
        spec.routes.iter().filter(|r| r.phi).collect();
    let phi_names: Vec<String> = phi_routes.iter().map(|r| r.name.clone()).collect();
    let tls = match spec.transport.min_tls_version {
        TlsVersion::Tls12 => "TLSv1.2",
        TlsVersion::Tls13 => "TLSv1.3",
    };
    let mut rows = Vec::new();
    let authority = spec.identity.session.authority.as_ref();
    let authority_setting = kv(
        "spec.identity.session.authority",
        authority.map_or_else(
            || "(absent): idle clock per Envoy, nothing can be revoked".to_string(),
            |a| {
                format!(
                    "cluster {}, onUnavailable {}, revocations every {} ms",
                    a.cluster,
                    match a.on_unavailable {
                        hipaa_core::policy::schema::OnAuthorityUnavailable::Local => "local",
                        hipaa_core::policy::schema::OnAuthorityUnavailable::Deny => "deny",
                    },
                    a.revocations_refresh_ms
                )
            },
        ),
    );

    // 164.308(a)(3)(ii)(C) Termination procedures: ending access now.
    rows.push(Row {
        cfr: "164.308(a)(3)(ii)(C)",
        title: "Termination procedures",
        kind: "Addressable",
        enforced_by: "authn + collector",
        settings: vec![authority_setting.clone()],
        status: if authority.is_some() {
            Status::Implemented
        } else {
            Status::Elsewhere(
                "without identity.session.authority a token keeps working until it expires; end access at the identity provider (`hipaa-mesh session revoke` needs the authority)".into(),
            )
        },
    });

    // (a)(1) Access control
    let roles: Vec<String> = phi_routes
        .iter()
        .map(|r| {
            let roles = if r.allow_roles.is_empty() {
                "any authenticated subject".to_string()
            } else {
                r.allow_roles.join("|")
            };
            format!("{}: {roles}", r.name)
        })
        .collect();
    // PHI collection paths (`/fhir/Patient` under `/fhir/Patient/`) that no route covers.
    let collections: Vec<String> = unmatched_collection_paths(spec)
        .into_iter()
        .map(|(_, r, bare)| format!("{bare} ({})", r.name))
        .collect();
    let unmatched_phi = spec.unmatched_routes == UnmatchedRoutes::Phi;
    rows.push(Row {
        cfr: "164.312(a)(1)",
        title: "Access control (standard)",
        kind: "Required",
        enforced_by: "authn",
        settings: vec![
            kv("spec.routes[].allowRoles (PHI routes)", list(&roles)),
            kv(
                "spec.unmatchedRoutes",
                format!("{:?}", spec.unmatched_routes).to_lowercase(),
            ),
            kv(
                "PHI collection paths no route covers",
                if collections.is_empty() {
                    "none".to_string()
                } else if unmatched_phi {
                    format!("{} (open to any verified identity)", list(&collections))
                } else {
                    format!("{} (refused)", list(&collections))
                },
            ),
        ],
        status: if phi_routes.iter().any(|r| r.allow_roles.is_empty()) {
            Status::Gap(
                "a PHI route without `allowRoles` admits every authenticated subject".into(),
            )
        } else if unmatched_phi && !collections.is_empty() {
            Status::Gap(format!(
                "`unmatchedRoutes: phi` admits any verified identity to {}, PHI collection paths (searches) no route covers",
                list(&collections)
            ))
        } else if unmatched_phi {
            Status::Gap(
                "`unmatchedRoutes: phi` admits any verified identity to paths no route names"
                    .into(),
            )
        } else {
            Status::Implemented
        },
    });
    rows.push(Row {
        cfr: "164.312(a)(2)(i)",
        title: "Unique user identification",
        kind: "Required",
        enforced_by: "authn",
        settings: vec![
            kv("spec.identity.subjectClaim", id.subject_claim.clone()),
            kv(
                "spec.identity.sharedAccounts.denySubjects",
                list(&id.shared_accounts.deny_subjects),
            ),
            kv(
                "spec.identity.sharedAccounts.denySubjectPrefixes",
                list(&id.shared_accounts.deny_subject_prefixes),
            ),
        ],
        status: safety_gap("spec.identity.sharedAccounts").map_or(Status::Implemented, Status::Gap),
    });
    rows.push(Row {
        cfr: "164.312(a)(2)(ii)",
        title: "Emergency access procedure",
        kind: "Required",
        enforced_by: "authn + audit",
        settings: match &id.break_glass {
            Some(bg) => vec![
                kv("spec.identity.breakGlass.header", bg.header.clone()),
                kv(
                    "spec.identity.breakGlass.reasonCodes",
                    list(&bg.reason_codes),
                ),
                kv(
                    "spec.identity.breakGlass.eligibleRoles",
                    list(&bg.eligible_roles),
                ),
            ],
            None => vec![kv("spec.identity.breakGlass", "(absent)")],
        },
        status: safety_gap("spec.identity.breakGlass").map_or(Status::Implemented, Status::Gap),
    });
    let s = &id.session;
    rows.push(Row {
        cfr: "164.312(a)(2)(iii)",
        title: "Automatic logoff",
        kind: "Addressable",
        enforced_by: "authn",
        settings: vec![
            kv(
                "spec.identity.session.idleTimeoutSeconds",
                s.idle_timeout_seconds.to_string(),
            ),
            kv(
                "spec.identity.session.absoluteTimeoutSeconds",
                s.absolute_timeout_seconds.to_string(),
            ),
            kv(
                "spec.identity.session.sessionClaim",
                s.session_claim.clone(),
            ),
            kv(
                "spec.identity.session.requireAuthTime",
                s.require_auth_time.to_string(),
            ),
            authority_setting,
        ],
        status: if s.idle_timeout_seconds == 0 {
            exception(spec, Safeguard::AutomaticLogoff)
                .map_or(Status::Gap("idle timeout is off".into()), Status::Exception)
        } else if !s.require_auth_time {
            Status::Gap(
                "requireAuthTime is false: without `auth_time` the absolute timeout counts from `iat`, which every token refresh renews, so a refreshing client is never logged off".into(),
            )
        } else {
            Status::Implemented
        },
    });
    rows.push(Row {
        cfr: "164.312(a)(2)(iv)",
        title: "Encryption and decryption",
        kind: "Addressable",
        enforced_by: "collector",
        settings: vec![kv(
            "HIPAA_AUDIT_ENCRYPTION_KEY_FILE (collector)",
            "AES-256-GCM for audit records at rest",
        )],
        status: Status::Elsewhere(
            "audit records are encrypted by the collector; PHI the application stores is encrypted (or not) by its own data store".into(),
        ),
    });

    // (b) Audit controls
    rows.push(Row {
        cfr: "164.312(b)",
        title: "Audit controls (standard)",
        kind: "Required",
        enforced_by: "audit + collector",
        settings: match &spec.audit {
            Some(a) => vec![
                kv("spec.audit.collector.cluster", a.collector.cluster.clone()),
                kv(
                    "spec.audit.whenCollectorDown",
                    match a.when_collector_down {
                        WhenCollectorDown::FailClosed => "failClosed",
                        WhenCollectorDown::FailOpen => "failOpen",
                    },
                ),
                kv("spec.audit.maxBuffered", a.max_buffered.to_string()),
                kv("spec.audit.macKeyEnv", a.mac_key_env.clone()),
                kv("audited PHI routes", list(&phi_names)),
            ],
            None => vec![kv("spec.audit", "(absent)")],
        },
        status: match &spec.audit {
            None => Status::Gap(safety_gap("spec.audit").unwrap_or_default()),
            Some(a) if a.when_collector_down == WhenCollectorDown::FailOpen => {
                exception(spec, Safeguard::AuditDelivery).map_or(
                    Status::Gap("failOpen without an exception".into()),
                    Status::Exception,
                )
            }
            Some(_) => Status::Implemented,
        },
    });

    // (c) Integrity
    let soft: Vec<String> = phi_routes
        .iter()
        .filter(|r| r.soft_delete_only)
        .map(|r| r.name.clone())
        .collect();
    // A PHI route that lets DELETE through to the application without `softDeleteOnly`.
    let hard_delete: Vec<String> = phi_routes
        .iter()
        .filter(|r| {
            !r.soft_delete_only
                && (r.matcher.methods.is_empty() || r.matcher.methods.iter().any(|m| m == "DELETE"))
        })
        .map(|r| r.name.clone())
        .collect();
    let signed: Vec<String> = spec
        .routes
        .iter()
        .filter(|r| r.sign_responses || r.inference.is_some())
        .map(|r| r.name.clone())
        .collect();
    let verified: Vec<String> = spec
        .routes
        .iter()
        .filter(|r| r.verify_requests)
        .map(|r| r.name.clone())
        .collect();
    let integrity_exception = exception(spec, Safeguard::Integrity);
    rows.push(Row {
        cfr: "164.312(c)(1)",
        title: "Integrity (standard)",
        kind: "Required",
        enforced_by: "authn + transport",
        settings: vec![
            kv("spec.routes[].softDeleteOnly", list(&soft)),
            kv("PHI routes passing a hard DELETE", list(&hard_delete)),
        ],
        status: if hard_delete.is_empty() {
            Status::Implemented
        } else {
            integrity_exception.clone().map_or(
                Status::Gap(format!(
                    "a hard DELETE reaches the application on {}: set `softDeleteOnly` or list the methods",
                    hard_delete.join(", ")
                )),
                Status::Exception,
            )
        },
    });
    rows.push(Row {
        cfr: "164.312(c)(2)",
        title: "Mechanism to authenticate ePHI",
        kind: "Addressable",
        enforced_by: "transport",
        settings: vec![
            kv(
                "spec.routes[].signResponses / inference (Ed25519, verified with the public key)",
                list(&signed),
            ),
            kv(
                "spec.routes[].verifyRequests (HMAC-SHA256, its own key)",
                list(&verified),
            ),
        ],
        status: if signed.is_empty() && verified.is_empty() && !phi_routes.is_empty() {
            integrity_exception.map_or(
                Status::Gap("no route signs or verifies bodies".into()),
                Status::Exception,
            )
        } else {
            Status::Implemented
        },
    });

    // (d) Person or entity authentication
    let providers: Vec<String> = id
        .providers
        .iter()
        .map(|p| {
            // Who checks the signature matters to the reader: say it when it is not authn.
            let checked_by = match p.verification {
                Verification::Wasm => "",
                Verification::Envoy => "; signatures checked by Envoy's jwt_authn",
            };
            format!(
                "{} ({}; {}; max lifetime {} s; skew {} s{checked_by})",
                p.name,
                p.issuer,
                p.algorithms
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join("/"),
                p.max_token_lifetime_seconds,
                p.clock_skew_seconds
            )
        })
        .collect();
    rows.push(Row {
        cfr: "164.312(d)",
        title: "Person or entity authentication (standard)",
        kind: "Required",
        enforced_by: "authn + transport",
        settings: vec![
            kv("spec.identity.providers", list(&providers)),
            kv(
                "spec.identity.mfa.requiredForRoles",
                list(&id.mfa.required_for_roles),
            ),
            kv(
                "spec.transport.allowedPeers",
                if spec.transport.allowed_peers.is_empty() {
                    "any verified SPIFFE peer".into()
                } else {
                    list(&spec.transport.allowed_peers)
                },
            ),
        ],
        status: Status::Implemented,
    });

    // (e) Transmission security
    let vendors: Vec<[String; 3]> = spec
        .egress
        .baa_vendors
        .iter()
        .map(|v| [v.host.clone(), v.baa_id.clone(), v.expires.clone()])
        .collect();
    let egress = match spec.egress.unlisted_hosts {
        UnlistedHosts::Deny => "deny",
        UnlistedHosts::Allow => "allow",
    };
    rows.push(Row {
        cfr: "164.312(e)(1)",
        title: "Transmission security (standard)",
        kind: "Required",
        enforced_by: "transport (+ Istio PeerAuthentication STRICT)",
        settings: vec![
            kv(
                "spec.transport.requireMtls",
                spec.transport.require_mtls.to_string(),
            ),
            kv("spec.egress.unlistedHosts", egress),
            kv(
                "spec.egress.baaVendors",
                list(
                    &vendors
                        .iter()
                        .map(|[h, id, exp]| format!("{h} ({id}, until {exp})"))
                        .collect::<Vec<_>>(),
                ),
            ),
            kv(
                "spec.egress.meshHosts (inside the mesh, no BAA needed)",
                list(&spec.egress.mesh_hosts),
            ),
        ],
        status: if let Some(gap) = safety_gap("spec.transport.requireMtls") {
            Status::Gap(gap)
        } else if spec.egress.unlisted_hosts == UnlistedHosts::Allow {
            exception(spec, Safeguard::UnlistedEgress).map_or(
                Status::Gap("PHI may leave the mesh to hosts without a BAA".into()),
                Status::Exception,
            )
        } else {
            Status::Implemented
        },
    });
    rows.push(Row {
        cfr: "164.312(e)(2)(i)",
        title: "Integrity controls",
        kind: "Addressable",
        enforced_by: "transport",
        settings: vec![
            kv("spec.transport.minTlsVersion (AEAD record integrity)", tls),
            kv("Ed25519 response signatures on", list(&signed)),
        ],
        status: Status::Implemented,
    });
    rows.push(Row {
        cfr: "164.312(e)(2)(ii)",
        title: "Encryption",
        kind: "Addressable",
        enforced_by: "transport",
        settings: vec![
            kv("spec.transport.minTlsVersion", tls),
            kv(
                "plaintext allowed on (public routes only)",
                list(
                    &spec
                        .routes
                        .iter()
                        .filter(|r| r.allow_plaintext)
                        .map(|r| r.name.clone())
                        .collect::<Vec<_>>(),
                ),
            ),
        ],
        status: Status::Implemented,
    });

    // Routes that are public but overlap PHI paths are a gap of (a)(1).
    if let Some(gap) = safety_gap("spec.routes") {
        if let Some(row) = rows.first_mut() {
            row.status = Status::Gap(gap);
        }
    }

    // The proposed update (HHS NPRM, 90 FR 898, 6 January 2025): not in force.
    let ai_inventory: Vec<[String; 5]> = spec
        .routes
        .iter()
        .filter_map(|r| {
            let inf = r.inference.as_ref()?;
            let patient = r.patient_from.as_ref().map_or("-".to_string(), |p| {
                p.path_template
                    .clone()
                    .or_else(|| p.header.as_ref().map(|h| format!("header {h}")))
                    .or_else(|| p.query.as_ref().map(|q| format!("query {q}")))
                    .unwrap_or_default()
            });
            Some([
                r.name.clone(),
                path_rule(r),
                inf.model_header.clone(),
                inf.version_header.clone(),
                patient,
            ])
        })
        .collect();
    let all_roles: std::collections::BTreeSet<&String> = phi_routes
        .iter()
        .flat_map(|r| r.allow_roles.iter())
        .collect();
    let no_mfa: Vec<String> = all_roles
        .into_iter()
        .filter(|r| !id.mfa.required_for_roles.contains(r))
        .cloned()
        .collect();
    let proposed = vec![
        Row {
            cfr: "proposed",
            title: "Technology asset inventory and network map (incl. AI systems touching ePHI)",
            kind: "Required (proposed)",
            enforced_by: "policy report",
            settings: vec![
                kv("AI systems (routes with inference)", ai_inventory.len().to_string()),
                kv("ePHI leaving the mesh (BAA vendors)", vendors.len().to_string()),
            ],
            status: Status::Elsewhere(
                "the inventory below lists what this policy knows; the full inventory is the organisation's".into(),
            ),
        },
        Row {
            cfr: "proposed",
            title: "Multi-factor authentication for every user",
            kind: "Required (proposed)",
            enforced_by: "authn",
            settings: vec![kv("spec.identity.mfa.requiredForRoles", list(&id.mfa.required_for_roles))],
            status: if no_mfa.is_empty() {
                Status::Implemented
            } else {
                Status::Gap(format!(
                    "roles admitted to PHI routes without MFA: {}",
                    no_mfa.join(", ")
                ))
            },
        },
        Row {
            cfr: "proposed",
            title: "Encryption of ePHI in transit (no longer addressable)",
            kind: "Required (proposed)",
            enforced_by: "transport",
            settings: vec![
                kv("spec.transport.minTlsVersion", tls),
                kv("spec.transport.requireMtls", spec.transport.require_mtls.to_string()),
            ],
            status: if spec.transport.require_mtls {
                Status::Implemented
            } else {
                Status::Gap("mTLS is off".into())
            },
        },
        Row {
            cfr: "proposed",
            title: "Network segmentation",
            kind: "Required (proposed)",
            enforced_by: "Istio Sidecar REGISTRY_ONLY + PeerAuthentication + transport",
            settings: vec![
                kv("spec.egress.unlistedHosts", egress),
                kv(
                    "spec.transport.allowedPeers",
                    if spec.transport.allowed_peers.is_empty() {
                        "any verified peer".into()
                    } else {
                        list(&spec.transport.allowed_peers)
                    },
                ),
            ],
            status: if spec.transport.allowed_peers.is_empty() {
                Status::Gap("any mesh workload may call this one: list `allowedPeers`".into())
            } else {
                Status::Implemented
            },
        },
    ];

    Report {
        policy: format!("{}/{}", doc.metadata.namespace, doc.metadata.name),
        rows,
        proposed,
        ai_inventory,
        vendors,
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(r: &Report) -> String {
    let mut out = format!(
        "# HIPAA Security Rule coverage: {}\n\n45 CFR 164.312 technical safeguards, as this policy configures them.\n\n",
        r.policy
    );
    let table = |out: &mut String, rows: &[Row]| {
        out.push_str(
            "| 164.312 | Safeguard | R/A | Enforced by | Setting | Value | Status | Note |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for row in rows {
            for (i, (k, v)) in row.settings.iter().enumerate() {
                let first = i == 0;
                out.push_str(&format!(
                    "| {} | {} | {} | {} | `{}` | {} | {} | {} |\n",
                    if first { row.cfr } else { "" },
                    if first { row.title } else { "" },
                    if first { row.kind } else { "" },
                    if first { row.enforced_by } else { "" },
                    md_escape(k),
                    md_escape(v),
                    if first {
                        format!("**{}**", row.status.label())
                    } else {
                        String::new()
                    },
                    if first {
                        md_escape(row.status.note())
                    } else {
                        String::new()
                    },
                ));
            }
        }
    };
    table(&mut out, &r.rows);
    let gaps: Vec<&Row> = r
        .rows
        .iter()
        .chain(&r.proposed)
        .filter(|row| matches!(row.status, Status::Gap(_)))
        .collect();
    out.push_str("\n## Gaps\n\n");
    if gaps.is_empty() {
        out.push_str("None: every Required safeguard is on, and every Addressable one is on or excepted with a justification.\n");
    }
    for g in gaps {
        out.push_str(&format!(
            "- **{}** {}: {}\n",
            g.cfr,
            g.title,
            g.status.note()
        ));
    }
    out.push_str("\n## Proposed Security Rule update (HHS NPRM, 90 FR 898, 6 January 2025; not in force)\n\n");
    table(&mut out, &r.proposed);
    out.push_str("\n### AI systems touching ePHI (routes with `inference`)\n\n");
    if r.ai_inventory.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("| Route | Path | Model header | Version header | Patient from |\n|---|---|---|---|---|\n");
        for [a, b, c, d, e] in &r.ai_inventory {
            out.push_str(&format!("| {a} | `{b}` | `{c}` | `{d}` | `{e}` |\n"));
        }
    }
    out.push_str("\n### ePHI leaving the mesh (BAA-covered vendors)\n\n");
    if r.vendors.is_empty() {
        out.push_str("None: no egress is allowed.\n");
    } else {
        out.push_str("| Host | BAA | Expires |\n|---|---|---|\n");
        for [h, id, exp] in &r.vendors {
            out.push_str(&format!("| {h} | {id} | {exp} |\n"));
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn html(r: &Report) -> String {
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>HIPAA coverage: {p}</title>\n<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px 8px;vertical-align:top;text-align:left}}.GAP{{background:#fdd}}.exception{{background:#ffd}}.implemented{{background:#dfd}}</style></head><body>\n<h1>HIPAA Security Rule coverage: {p}</h1>\n<p>45 CFR 164.312 technical safeguards, as this policy configures them.</p>\n",
        p = esc(&r.policy)
    );
    let table = |out: &mut String, rows: &[Row]| {
        out.push_str("<table>\n<tr><th>164.312</th><th>Safeguard</th><th>R/A</th><th>Enforced by</th><th>Settings</th><th>Status</th><th>Note</th></tr>\n");
        for row in rows {
            let settings: Vec<String> = row
                .settings
                .iter()
                .map(|(k, v)| format!("<code>{}</code>: {}", esc(k), esc(v)))
                .collect();
            let label = row.status.label();
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>\n",
                esc(row.cfr),
                esc(row.title),
                esc(row.kind),
                esc(row.enforced_by),
                settings.join("<br>"),
                label.replace(' ', "-"),
                esc(label),
                esc(row.status.note())
            ));
        }
        out.push_str("</table>\n");
    };
    table(&mut out, &r.rows);
    out.push_str("<h2>Gaps</h2>\n<ul>\n");
    let mut any = false;
    for g in r.rows.iter().chain(&r.proposed) {
        if let Status::Gap(note) = &g.status {
            any = true;
            out.push_str(&format!(
                "<li><b>{}</b> {}: {}</li>\n",
                esc(g.cfr),
                esc(g.title),
                esc(note)
            ));
        }
    }
    if !any {
        out.push_str("<li>None.</li>\n");
    }
    out.push_str("</ul>\n<h2>Proposed Security Rule update (HHS NPRM, 90 FR 898, 6 January 2025; not in force)</h2>\n");
    table(&mut out, &r.proposed);
    out.push_str("<h3>AI systems touching ePHI</h3>\n<table>\n<tr><th>Route</th><th>Path</th><th>Model header</th><th>Version header</th><th>Patient from</th></tr>\n");
    for row in &r.ai_inventory {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", esc(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n<h3>ePHI leaving the mesh (BAA-covered vendors)</h3>\n<table>\n<tr><th>Host</th><th>BAA</th><th>Expires</th></tr>\n");
    for row in &r.vendors {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", esc(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

//! The revocation set a worker VM holds: what `GET /v1/revocations` last returned, checked on
//! every authenticated request (a hash lookup; no call). Bounded by [`MAX_REVOCATIONS`] (a
//! longer list is refused whole and the set kept), and every entry expires at its
//! `expiresAtMs` (the longest token lifetime plus skew after the revocation: by then every
//! token issued before it has expired), capped at [`MAX_REVOCATION_TTL_SECONDS`] from now.
//!
//! Pulls are conditional: the shell sends `If-None-Match` with [`RevocationSet::etag`]; a 304
//! keeps the set (expiry still applies).

use std::collections::HashMap;

use super::wire::{
    open, Purpose, RevocationList, RevocationTarget, WireError, MAX_REVOCATIONS,
    MAX_REVOCATION_TTL_SECONDS,
};
use crate::audit::MacKeyRing;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// None: any issuer.
    issuer: Option<String>,
    expires_at_ms: i64,
}

/// What one pull did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullResult {
    /// 200: the set was replaced; this many entries are in force.
    Updated(usize),
    /// 304: the set is current.
    Unchanged,
    /// Anything else (status, MAC, body): the set is kept as it was. Count it
    /// (`hipaa_authn.revocations.pull_failed`) and retry at the next refresh.
    Failed(WireError),
}

/// The answer to one pull, as the shell received it.
#[derive(Debug, Clone, Copy)]
pub struct PullAnswer<'a> {
    /// The HTTP status (0 for none).
    pub status: u32,
    /// The `x-hipaa-session-mac` header.
    pub mac_header: Option<&'a [u8]>,
    /// The `etag` header.
    pub etag: Option<&'a [u8]>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    by_target: HashMap<(RevocationTarget, String), Vec<Entry>>,
    etag: Option<String>,
    len: usize,
}

impl RevocationSet {
    pub fn new() -> RevocationSet {
        RevocationSet::default()
    }

    /// The entity tag of the list held (for `If-None-Match`); None before the first pull.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Replaces the set with `list` (entries already expired at `now_ms` are left out).
    pub fn replace(&mut self, list: RevocationList, etag: Option<String>, now_ms: i64) {
        let cap = now_ms
            .saturating_add(i64::try_from(MAX_REVOCATION_TTL_SECONDS * 1000).unwrap_or(i64::MAX));
        let mut by_target: HashMap<(RevocationTarget, String), Vec<Entry>> = HashMap::new();
        let mut len = 0;
        for r in list.revocations.into_iter().take(MAX_REVOCATIONS) {
            if r.expires_at_ms <= now_ms {
                continue;
            }
            by_target
                .entry((r.target, r.value))
                .or_default()
                .push(Entry {
                    issuer: r.issuer,
                    expires_at_ms: r.expires_at_ms.min(cap),
                });
            len += 1;
        }
        self.by_target = by_target;
        self.etag = etag;
        self.len = len;
    }

    /// Drops the entries expired at `now_ms` (the shell calls it on its refresh timer).
    pub fn expire(&mut self, now_ms: i64) {
        self.by_target.retain(|_, entries| {
            entries.retain(|e| e.expires_at_ms > now_ms);
            !entries.is_empty()
        });
        self.len = self.by_target.values().map(Vec::len).sum();
    }

    fn matches(&self, target: RevocationTarget, value: &str, issuer: &str, now_ms: i64) -> bool {
        self.by_target
            .get(&(target, value.to_string()))
            .is_some_and(|entries| {
                entries.iter().any(|e| {
                    e.expires_at_ms > now_ms && e.issuer.as_deref().is_none_or(|i| i == issuer)
                })
            })
    }

    /// Whether a verified token (its issuer, subject and session id) is revoked at `now_ms`.
    pub fn is_revoked(
        &self,
        issuer: &str,
        subject: Option<&str>,
        session: Option<&str>,
        now_ms: i64,
    ) -> bool {
        if self.len == 0 {
            return false;
        }
        subject.is_some_and(|s| self.matches(RevocationTarget::Subject, s, issuer, now_ms))
            || session.is_some_and(|s| self.matches(RevocationTarget::Session, s, issuer, now_ms))
    }

    /// Applies the answer to a pull the shell sent with `request_tag` (from
    /// `wire::seal(ring, Purpose::RevocationsRequest, &[time])`). The MAC is checked before
    /// anything is believed; on any failure the set is kept.
    pub fn apply_pull(
        &mut self,
        ring: &MacKeyRing,
        request_tag: &[u8; 32],
        answer: PullAnswer<'_>,
        now_ms: i64,
    ) -> PullResult {
        let PullAnswer {
            status,
            mac_header,
            etag,
            body,
        } = answer;
        let status_text: &[u8] = match status {
            200 => b"200",
            304 => b"304",
            _ => return PullResult::Failed(WireError::Malformed),
        };
        let etag_bytes = etag.unwrap_or_default();
        if let Err(e) = open(
            ring,
            Purpose::RevocationsAnswer,
            mac_header,
            &[request_tag, status_text, etag_bytes, body],
        ) {
            return PullResult::Failed(e);
        }
        if status == 304 {
            self.expire(now_ms);
            return PullResult::Unchanged;
        }
        match RevocationList::parse(body) {
            Ok(list) => {
                let etag = std::str::from_utf8(etag_bytes)
                    .ok()
                    .filter(|e| !e.is_empty() && e.len() <= 128)
                    .map(str::to_string);
                self.replace(list, etag, now_ms);
                PullResult::Updated(self.len)
            }
            Err(e) => PullResult::Failed(e),
        }
    }
}

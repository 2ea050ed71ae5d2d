//! Connection facts, read once per connection: the attributes every stage needs (source
//! address, TLS version, client certificate, peer SPIFFE id, listener direction), kept per VM
//! for the last few connections by Envoy's `connection.id` (unique per Envoy process, never
//! reused; a connection stays on one worker, so on one VM).

use std::collections::VecDeque;

/// How many connections a VM remembers (a bound, not a tuning knob: a miss only costs the
/// five attribute reads every request paid before).
pub const REMEMBERED: usize = 64;

/// What the host says about one downstream connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub source_address: Option<String>,
    pub tls_version: Option<String>,
    pub mtls: Option<bool>,
    pub peer_uri_san: Option<String>,
    pub direction: Option<i64>,
}

impl Facts {
    pub fn read() -> Facts {
        Facts {
            source_address: hipaa_host::string_property(&["source", "address"]),
            tls_version: hipaa_host::string_property(&["connection", "tls_version"]),
            mtls: hipaa_host::bool_property(&["connection", "mtls"]),
            peer_uri_san: hipaa_host::string_property(&["connection", "uri_san_peer_certificate"]),
            direction: hipaa_host::int_property(&["xds", "listener_direction"]),
        }
    }

    pub fn for_transport(&self) -> hipaa_core::transport::ConnectionFacts {
        hipaa_core::transport::ConnectionFacts {
            tls_version: self.tls_version.clone(),
            mtls: self.mtls,
            peer_uri_san: self.peer_uri_san.clone(),
            direction: self.direction,
        }
    }

    pub fn for_audit(&self) -> hipaa_core::audit::build::ConnectionFacts {
        hipaa_core::audit::build::ConnectionFacts {
            source_address: self.source_address.clone(),
            tls_version: self.tls_version.clone(),
            peer_uri_san: self.peer_uri_san.clone(),
        }
    }
}

/// The facts of the last [`REMEMBERED`] connections, oldest evicted first.
#[derive(Debug, Default)]
pub struct Cache {
    entries: VecDeque<(u64, Facts)>,
}

impl Cache {
    /// The facts of connection `id`, read with `read` only when not remembered. Without an id
    /// (the host could not say) they are read every time and not kept.
    pub fn get_or_read(&mut self, id: Option<u64>, read: impl FnOnce() -> Facts) -> Facts {
        let Some(id) = id else {
            return read();
        };
        if let Some((_, facts)) = self.entries.iter().find(|(k, _)| *k == id) {
            return facts.clone();
        }
        let facts = read();
        if self.entries.len() >= REMEMBERED {
            self.entries.pop_front();
        }
        self.entries.push_back((id, facts.clone()));
        facts
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Envoy's id of the current request's downstream connection.
pub fn current_id() -> Option<u64> {
    hipaa_host::int_property(&["connection", "id"]).map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn facts(tls: &str) -> Facts {
        Facts {
            tls_version: Some(tls.into()),
            ..Facts::default()
        }
    }

    #[test]
    fn a_connection_is_read_once_and_the_cache_stays_bounded() {
        let reads = Cell::new(0);
        let mut cache = Cache::default();
        let read = |tls: &'static str| {
            || {
                reads.set(reads.get() + 1);
                facts(tls)
            }
        };
        assert_eq!(
            cache.get_or_read(Some(7), read("TLSv1.3")),
            facts("TLSv1.3")
        );
        // Same connection: remembered, not read again (even if the host would answer otherwise).
        assert_eq!(
            cache.get_or_read(Some(7), read("TLSv1.2")),
            facts("TLSv1.3")
        );
        assert_eq!(reads.get(), 1);
        // Another connection has its own facts.
        assert_eq!(
            cache.get_or_read(Some(8), read("TLSv1.2")),
            facts("TLSv1.2")
        );
        assert_eq!(reads.get(), 2);
        // No id: read every time, never kept.
        cache.get_or_read(None, read("TLSv1.2"));
        cache.get_or_read(None, read("TLSv1.2"));
        assert_eq!(reads.get(), 4);
        assert_eq!(cache.len(), 2);
        for id in 100..100 + 2 * REMEMBERED as u64 {
            cache.get_or_read(Some(id), read("TLSv1.3"));
        }
        assert_eq!(cache.len(), REMEMBERED);
        // The oldest were evicted: connection 7 is read again.
        let before = reads.get();
        cache.get_or_read(Some(7), read("TLSv1.2"));
        assert_eq!(reads.get(), before + 1);
    }
}

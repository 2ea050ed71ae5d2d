//! The audit/authn chain most suites start: a policy whose audit delivers to the test
//! collector, the demo identity provider with freshly generated keys, the sample upstream,
//! and Envoy loading the chain as [`ChainMode::from_env`] says (the combined `hipaa-mesh`
//! over mTLS by default, or one filter per stage over plaintext). One copy of what the suites
//! used to build each for themselves.

use crate::collector::Collector;
use crate::envoy::{Envoy, Topology};
use crate::idp::{self, Keys, Upstream};
use serde_json::{json, Value};

pub use crate::envoy::ChainMode;

/// The collector's cluster name in every test topology.
pub const CLUSTER: &str = "audit-collector";

/// The demo identity provider (`idp::ISSUER`, `idp::AUDIENCE`, RS256/ES256/EdDSA) with this
/// JWKS inline.
pub fn provider(jwks: &str) -> Value {
    json!({
        "name": "demo-idp", "issuer": idp::ISSUER, "audiences": [idp::AUDIENCE],
        "jwks": {"inline": jwks}, "algorithms": ["RS256", "ES256", "EdDSA"]
    })
}

/// The policy's `audit` section delivering to [`CLUSTER`].
pub fn audit(timeout_ms: u64, flush_ms: u64, max_batch: u32, max_buffered: u32) -> Value {
    json!({
        "collector": {"cluster": CLUSTER, "path": "/v1/records", "timeoutMs": timeout_ms},
        "flushIntervalMs": flush_ms, "maxBatch": max_batch, "maxBuffered": max_buffered
    })
}

/// The chain `stages` (e.g. `["audit", "authn"]`) with `policy`, the sample upstream at
/// `upstream`, audit delivering to `collector_port` (the collector itself, or a proxy in front
/// of it) with `collector`'s VM environment (and the body-signing keys for the combined
/// filter).
pub fn topology(
    stages: &[&'static str],
    policy: &Value,
    collector: &Collector,
    collector_port: u16,
    upstream: u16,
) -> Topology {
    let mut t = Topology::chain(upstream, stages, &policy.to_string());
    t.clusters.push((CLUSTER.to_string(), collector_port));
    t.vm_env = collector.vm_env();
    if t.is_mesh() {
        // The combined filter's transport stage signs the responses of the routes that ask for
        // it (inference routes by default) and verifies signed requests: it refuses to start
        // without those keys, as a deployment would.
        t.vm_env.extend(crate::body_signing_env());
    }
    t
}

/// A running chain with its keys, collector and upstream.
pub struct Stack {
    pub keys: Keys,
    pub collector: Collector,
    pub envoy: Envoy,
    pub upstream: Upstream,
}

impl Stack {
    /// Start the chain `stages` with the policy `policy(&keys)` makes; `edit` may change the
    /// topology (concurrency, VM environment) and `edit_config` Envoy's configuration before
    /// it starts.
    pub fn start(
        stages: &[&'static str],
        policy: impl FnOnce(&Keys) -> Value,
        edit: impl FnOnce(&mut Topology),
        edit_config: impl FnOnce(&mut Value),
    ) -> Stack {
        let keys = Keys::generate();
        let collector = Collector::start();
        let upstream = Upstream::start();
        let policy = policy(&keys);
        let mut t = topology(stages, &policy, &collector, collector.port, upstream.port);
        edit(&mut t);
        let envoy = Envoy::start_edited(&t, edit_config);
        Stack {
            keys,
            collector,
            envoy,
            upstream,
        }
    }
}

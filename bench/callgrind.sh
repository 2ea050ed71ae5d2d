#!/usr/bin/env bash
# Instructions per request of the core calls one request of the combined filter makes
# (filters/core/examples/request_cost.rs), counted by callgrind: repeatable on a loaded machine.
# Each stage runs N1 and N2 requests; (Ir(N2) - Ir(N1)) / (N2 - N1) is the per-request count
# without the setup. Usage: bench/callgrind.sh [STAGE ...]  (default: authn audit transport chain)
# CALLGRIND_OUT=DIR keeps the callgrind files of the N2 runs (for callgrind_annotate).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# SESSION_AUTHORITY=1: the same policy with identity.session.authority (issue #16), to show the
# common path (a session this Envoy knows active) costs what it did without one.
W=${CALLGRIND_WORK:-$ROOT/.bench/callgrind${SESSION_AUTHORITY:+-authority}}
mkdir -p "$W"
N1=${N1:-2000}
N2=${N2:-12000}
# Symbols for callgrind_annotate: the release profile (LTO, same inlining) without stripping,
# in a target directory of its own so the release build is left alone.
[ -n "${REQUEST_COST_BIN:-}" ] || CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build -q --release -p hipaa-core --example request_cost --target-dir target/callgrind
[ -x target/release/hipaa-mesh ] || cargo build -q --release -p hipaa-mesh-cli
CLI=target/release/hipaa-mesh
BIN=${REQUEST_COST_BIN:-target/callgrind/release/examples/request_cost}
if [ ! -f "$W/token" ]; then
  "$CLI" dev keys --out "$W/idp" >/dev/null
  "$CLI" dev token --keys "$W/idp" --alg RS256 --sub alice --roles clinician --amr pwd,otp \
    --sid s-alice --ttl 3600 >"$W/token"
  jwks=$(cat "$W/idp/jwks.json")
  python3 - "$W" "$jwks" "${SESSION_AUTHORITY:-}" <<'PY'
import json, sys
w, jwks, authority = sys.argv[1], sys.argv[2], sys.argv[3]
spec = {
  "identity": {"providers": [{"name": "bench-idp", "issuer": "https://idp.demo.local",
      "audiences": ["ehr-api"], "jwks": {"inline": jwks}, "algorithms": ["RS256"],
      "maxTokenLifetimeSeconds": 3600}],
    "sharedAccounts": {"denySubjects": ["admin", "shared", "test"]},
    "mfa": {"requiredForRoles": ["clinician", "admin"], "acceptedAmr": ["mfa", "otp", "hwk", "swk"]}},
  "routes": [{"name": "patient-record", "match": {"pathPrefix": "/fhir/Patient/"}, "phi": True,
      "allowRoles": ["clinician", "nurse"], "patientFrom": {"pathTemplate": "/fhir/Patient/{patient}"}}],
  "unmatchedRoutes": "phi",
  "audit": {"collector": {"cluster": "audit-collector", "path": "/v1/records"}},
  "transport": {"minTlsVersion": "TLSv1.2", "requireMtls": True,
      "allowedPeers": ["spiffe://cluster.local/ns/bench/sa/loadgen"]}}
if authority:
    spec["identity"]["session"] = {"authority": {"cluster": "audit-collector"}}
doc = {"apiVersion": "hipaa-mesh/v1", "kind": "HipaaPolicy",
       "metadata": {"name": "cg", "namespace": "bench"}, "spec": spec}
open(f"{w}/policy.yaml", "w").write(json.dumps(doc))
PY
  "$CLI" policy plugin-config "$W/policy.yaml" >"$W/plugin-config.json"
fi
KEY="cg:$(printf '%064d' 7)"
ir() {
  valgrind --tool=callgrind --callgrind-out-file="$W/cg.$1.$2" "$BIN" "$W/plugin-config.json" \
    "$W/token" "$KEY" "$1" "$2" 2>&1 | grep -E "Collected|requests" | sed -n 's/.*Collected : //p'
}
for stage in "${@:-authn audit transport chain}"; do
  for s in $stage; do
    a=$(ir "$s" "$N1"); b=$(ir "$s" "$N2")
    printf '%-10s %8d instructions/request\n' "$s" $(( (b - a) / (N2 - N1) ))
    [ -n "${CALLGRIND_OUT:-}" ] && mkdir -p "$CALLGRIND_OUT" && cp "$W/cg.$s.$N2" "$CALLGRIND_OUT/"
    rm -f "$W/cg.$s.$N1"
  done
done

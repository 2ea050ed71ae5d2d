#!/usr/bin/env bash
# `make demo`: a real Envoy with the hipaa-mesh filters in front of a sample upstream, a local
# demo identity provider (keys and tokens minted by the CLI, for local use only) and, where
# built, the audit collector. Walks through allowed and denied requests, printing each.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
CLI=$ROOT/target/release/hipaa-mesh
ENVOY=${ENVOY_BIN:-$ROOT/.tools/envoy/bin/envoy}
WASM=$ROOT/target/wasm

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened"; return 1; }

rm -rf "$DEMO" && mkdir -p "$DEMO"
APP_PORT=$(free_port); LISTEN_PORT=$(free_port); ADMIN_PORT=$(free_port); COLLECTOR_PORT=$(free_port)

# Demo keys (never reuse them): the record-MAC key shared by the filters and the collector, and
# the at-rest encryption key, kept in a file apart from the database.
export HIPAA_AUDIT_HMAC_KEY="demo:$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$DEMO/at-rest.key"
export HIPAA_AUDIT_ENCRYPTION_KEY_FILE=$DEMO/at-rest.key
DB=sqlite:$DEMO/audit.db

bold "1. A demo identity provider: RSA, EC and Ed25519 keys (local use only)"
"$CLI" dev keys --out "$DEMO/idp"

bold "2. The policy: policies/demo.yaml with the demo IdP's public keys inlined"
python3 - "$ROOT/policies/demo.yaml" "$DEMO/idp/jwks.json" "$DEMO/policy.yaml" <<'PY'
import sys
src, jwks, out = sys.argv[1:]
text = open(src).read().replace("__DEMO_JWKS__", open(jwks).read().strip().replace("'", "''"))
open(out, "w").write(text)
PY
"$CLI" policy check "$DEMO/policy.yaml"
"$CLI" policy plugin-config "$DEMO/policy.yaml" > "$DEMO/plugin-config.json"

bold "3. The audit collector (SQLite in $DEMO), then Envoy $("$ENVOY" --version | grep -o '1\.[0-9]*\.[0-9]*' | head -n1) with hipaa_audit.wasm + hipaa_authn.wasm in front of a sample upstream"
"$CLI" collector --listen "127.0.0.1:$COLLECTOR_PORT" --db "$DB" --checkpoint-seconds 5 > "$DEMO/collector.log" 2>&1 & collector_pid=$!; pids+=($collector_pid)
"$CLI" dev upstream --listen "127.0.0.1:$APP_PORT" > "$DEMO/upstream.log" 2>&1 & pids+=($!)
wait_port "$COLLECTOR_PORT"
python3 - "$DEMO" "$WASM" "$LISTEN_PORT" "$ADMIN_PORT" "$APP_PORT" "$COLLECTOR_PORT" <<'PY'
import json, os, sys
demo, wasm, listen, admin, app, collector = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
config = open(f"{demo}/plugin-config.json").read().strip()
def wasm_filter(name):
    return {"name": f"hipaa-{name}", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": f"hipaa-{name}", "root_id": f"hipaa-{name}", "fail_open": False,
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config},
            "vm_config": {"vm_id": f"hipaa-{name}", "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": f"{wasm}/hipaa_{name}.wasm"}},
                          "environment_variables": {"host_env_keys": ["HIPAA_AUDIT_HMAC_KEY"]}}}}}
def cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
cfg = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
  "static_resources": {"listeners": [{"name": "inbound",
    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
      "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
      "stat_prefix": "inbound", "normalize_path": True, "merge_slashes": True,
      "path_with_escaped_slashes_action": "REJECT_REQUEST",
      "route_config": {"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]}]},
      "http_filters": [wasm_filter("audit"), wasm_filter("authn"), {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}],
    "clusters": [cluster("app", app), cluster("audit-collector", collector)]}}
json.dump(cfg, open(f"{demo}/envoy.yaml", "w"), indent=1)
PY
"$ENVOY" -c "$DEMO/envoy.yaml" --concurrency 2 --disable-hot-restart --log-level warn > "$DEMO/envoy.log" 2>&1 & pids+=($!)
wait_port "$APP_PORT"; wait_port "$LISTEN_PORT"
echo "Envoy listening on 127.0.0.1:$LISTEN_PORT (admin :$ADMIN_PORT), upstream on :$APP_PORT"

token() { "$CLI" dev token --keys "$DEMO/idp" "$@"; }
show() {
  local title=$1; shift
  printf '\n\033[1;34m▸ %s\033[0m\n' "$title"
  local out status body
  out=$(curl -s -o "$DEMO/body" -w '%{http_code}' "$@" || true)
  body=$(head -c 400 "$DEMO/body")
  if [[ $out == 2* ]]; then printf '  \033[32m%s\033[0m ' "$out"; else printf '  \033[31m%s\033[0m ' "$out"; fi
  if [[ $out == 200 ]]; then
    python3 -c 'import json,sys; h=json.load(open(sys.argv[1]))["headers"]; s=", ".join(f"{k}={v}" for k,v in sorted(h.items()) if k.startswith("x-hipaa")); print("upstream saw: " + (s or "no identity headers (public route)"))' "$DEMO/body" 2>/dev/null || echo "$body"
  else
    echo "$body"
  fi
}
URL=http://127.0.0.1:$LISTEN_PORT
ALICE=$(token --sub alice --roles clinician --amr pwd,otp --sid s-alice)

bold "4. Requests"
show "Kubelet probe on a public route, no token" "$URL/healthz"
show "Clinician alice with MFA reads patient 123" -H "authorization: Bearer $ALICE" "$URL/fhir/Patient/123"
show "A client tries to spoof x-hipaa-subject: removed, alice stays alice" -H "authorization: Bearer $ALICE" -H "x-hipaa-subject: mallory" "$URL/fhir/Patient/123"
show "No token" "$URL/fhir/Patient/123"
show "A forged token (payload edited, signature kept)" -H "authorization: Bearer $(python3 -c 'import sys,base64,json; h,p,s=sys.argv[1].split("."); d=json.loads(base64.urlsafe_b64decode(p+"==")); d["sub"]="mallory"; print(h+"."+base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")+"."+s)' "$ALICE")" "$URL/fhir/Patient/123"
show "alg: none" -H "authorization: Bearer $(python3 -c 'import base64,json; e=lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).decode().rstrip("="); print(e({"alg":"none"})+"."+e({"sub":"alice","roles":["clinician"]})+".")')" "$URL/fhir/Patient/123"
show "A shared account (sub: admin)" -H "authorization: Bearer $(token --sub admin --roles clinician --amr otp --sid s-adm)" "$URL/fhir/Patient/123"
show "Clinician bob without MFA: RFC 9470 step-up" -H "authorization: Bearer $(token --sub bob --roles clinician --amr pwd --sid s-bob)" "$URL/fhir/Patient/123"
show "Nurse nina (no MFA needed for nurses) calls the clinician-only risk model" -H "authorization: Bearer $(token --sub nina --roles nurse --amr pwd --sid s-nina)" -H "x-patient-id: 123" "$URL/ai/risk"
show "Clinician alice uses break-the-glass on the billing route (reason: patient-emergency)" -H "authorization: Bearer $ALICE" -H "x-break-glass: patient-emergency" "$URL/billing/claims/123"
show "Break-the-glass with a reason code the policy does not list" -H "authorization: Bearer $ALICE" -H "x-break-glass: curiosity" "$URL/billing/claims/123"
show "A hard DELETE on a soft-delete-only route" -X DELETE -H "authorization: Bearer $ALICE" "$URL/fhir/Patient/123"
show "An expired token" -H "authorization: Bearer $(token --sub alice --roles clinician --amr otp --sid s-alice --ttl=-60)" "$URL/fhir/Patient/123"

bold "5. What Envoy counted (admin /stats)"
curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=wasmcustom" | sed 's/^/  /'

bold "6. The audit trail of patient 123, as the compliance officer reads it"
sleep 1.5   # the filter flushes every 200 ms; the collector acknowledges only durable batches
"$CLI" audit query --db "$DB" --patient 123 --format table
echo
echo "Break-the-glass accesses:"
"$CLI" audit query --db "$DB" --emergency --format table

bold "7. Is the trail intact? (every MAC, chain link, ledger link and signed checkpoint)"
kill -TERM "$collector_pid" 2>/dev/null; wait "$collector_pid" 2>/dev/null || true   # signs a last checkpoint
"$CLI" audit verify --db "$DB"
echo
echo "Demo files (keys, policy, Envoy config and log) are in $DEMO"

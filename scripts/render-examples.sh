#!/usr/bin/env bash
# Renders the example policies into istio/NAME (for `kubectl apply -f`) and envoy/NAME (Envoy
# bootstraps, with the addresses and paths of envoy/render-flags: run Envoy from the repository
# root). `make render` runs it; the CLI tests check that envoy/ matches a fresh render.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=${HIPAA_MESH_BIN:-target/release/hipaa-mesh}
mapfile -t FLAGS < <(grep -v '^#' envoy/render-flags | tr ' ' '\n' | grep -v '^$')
for name in ehr-api clinical-ai internal-api; do
  "$CLI" policy render "policies/$name.yaml" --target istio --out "istio/$name"
  "$CLI" policy render "policies/$name.yaml" --target envoy --out "envoy/$name" "${FLAGS[@]}"
done
# The audit collector all three send records to: its ingest allow-list (only their audit
# filters' SPIFFE ids may post), for Istio and as the Envoy sidecar of envoy/docker-compose.yaml.
POLICIES=(policies/ehr-api.yaml policies/clinical-ai.yaml policies/internal-api.yaml)
"$CLI" policy render-collector "${POLICIES[@]}" --target istio --out istio/collector
"$CLI" policy render-collector "${POLICIES[@]}" --target envoy --out envoy/collector \
  --certs envoy/certs --collector 127.0.0.1:9443 --collector-backend 127.0.0.1:9100 --collector-admin 127.0.0.1:15100

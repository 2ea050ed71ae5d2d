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

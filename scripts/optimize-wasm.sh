#!/usr/bin/env bash
# Post-link optimisation of the filter modules with binaryen's wasm-opt (-O3: for speed; the
# size stays under the 1 MiB limit, authn ~7 KB above -Os). Writes target/wasm/hipaa_<name>.wasm,
# the files the tests, the demo and the OCI images use.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release
OUT=${CARGO_TARGET_DIR:-target}/wasm
mkdir -p "$OUT"
command -v wasm-opt >/dev/null || { echo "wasm-opt missing: run make setup (Debian package binaryen)"; exit 1; }
for name in "$@"; do
  in="$SRC/hipaa_$name.wasm"
  out="$OUT/hipaa_$name.wasm"
  [ -f "$in" ] || { echo "$in missing"; exit 1; }
  if [ ! -f "$out" ] || [ "$in" -nt "$out" ]; then
    wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
      --enable-nontrapping-float-to-int "$in" -o "$out"
  fi
done

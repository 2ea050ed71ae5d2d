#!/usr/bin/env bash
# Post-link optimisation of the module with binaryen's wasm-opt (-O3: for speed; hipaa_mesh.wasm
# is ~8 KB above -Os, within the 1.5 MB target). Writes target/wasm/hipaa_<name>.wasm (`make build`
# passes `mesh`), the file the tests, the demo and the OCI image use.
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

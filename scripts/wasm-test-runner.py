#!/usr/bin/env python3
"""Cargo runner for wasm32-wasip1 test binaries: runs a WASI module under wasmtime (PyPI
`wasmtime`, installed by `make setup` into .tools/wasmtime-py) and exits with its status.
Used as CARGO_TARGET_WASM32_WASIP1_RUNNER by `make unit-wasm`, so core's unit tests also run
compiled to wasm32 (32-bit sizes, no threads, WASI clock and randomness)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".tools", "wasmtime-py"))
import wasmtime  # noqa: E402


def main() -> int:
    module_path, args = sys.argv[1], sys.argv[2:]
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [module_path] + args
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.inherit_env()
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    module = wasmtime.Module.from_file(engine, module_path)
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    try:
        start(store)
    except wasmtime.ExitTrap as exit_trap:
        return exit_trap.code
    except wasmtime.Trap as trap:
        print(f"wasm trap: {trap}", file=sys.stderr)
        return 101
    return 0


if __name__ == "__main__":
    sys.exit(main())

//! hipaa_audit.wasm (work in progress).

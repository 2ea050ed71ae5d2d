//! hipaa_authn.wasm (work in progress).

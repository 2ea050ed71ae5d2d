//! hipaa_transport.wasm (work in progress).

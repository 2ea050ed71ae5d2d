//! hipaa-core: every hipaa-mesh decision, made from plain data and an injected clock.
//! No proxy-wasm here: the filter shells gather facts, call this crate, and apply its answer.
//! Serves 45 CFR 164.312 (a), (b), (c), (d) and (e) through the authn, audit and transport filters.
#![forbid(unsafe_code)]

pub mod audit;
pub mod authn;
pub mod calendar;
pub mod denial;
pub mod headers;
pub mod integrity;
pub mod jwt;
pub mod patient;
pub mod policy;
pub mod routes;
pub mod transport;

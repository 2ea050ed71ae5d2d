//! hipaa-core: every hipaa-mesh decision, made from plain data and an injected clock.
//! No proxy-wasm here: the filter shells gather facts, call this crate, and apply its answer.
//! Serves 45 CFR 164.312 (a), (b), (c), (d) and (e) through the authn, audit and transport filters.
#![forbid(unsafe_code)]
// Every input here is hostile (headers, tokens, records, query parameters): no byte-index
// slicing of strings (a cut inside a character panics) and no unchecked indexing; `get`,
// `split_at_checked` and pattern matching instead. Tests are exempt.
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

pub mod audit;
pub mod authn;
pub mod calendar;
pub mod denial;
pub mod headers;
pub mod hex32;
pub mod integrity;
pub mod jwt;
pub mod patient;
pub mod percent;
pub mod policy;
pub mod routes;
#[cfg(test)]
pub(crate) mod test_support;
pub mod transport;

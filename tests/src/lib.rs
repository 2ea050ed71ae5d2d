//! End-to-end harness (work in progress).

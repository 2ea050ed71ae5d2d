//! The audit collector (work in progress).

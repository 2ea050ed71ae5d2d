//! The canonical bytes of a received record, written the way ingest needs them: into one buffer
//! sized for the record and the AES-GCM tag that will be appended to it in place.
//!
//! The bytes are hipaa-core's canonical form (one writer for the filters, the collector and
//! `audit verify`, which all depend on it); only the buffer is the collector's.

use serde_json::Value;

/// Room for the AES-GCM tag, so that encrypting the buffer in place does not reallocate it.
pub(crate) const TAG_ROOM: usize = 16;

/// The canonical bytes of `value`, in a buffer with [`TAG_ROOM`] bytes of spare capacity.
pub(crate) fn canonical(value: &Value, size_hint: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint + TAG_ROOM);
    hipaa_core::audit::write_canonical(value, &mut out);
    out
}

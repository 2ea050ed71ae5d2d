//! The header contract between the filters and the upstream (DESIGN.md).

/// Every header with this prefix is removed from incoming requests before anything else.
pub const RESERVED_PREFIX: &str = "x-hipaa-";

pub const SUBJECT: &str = "x-hipaa-subject";
pub const ROLES: &str = "x-hipaa-roles";
pub const SESSION: &str = "x-hipaa-session";
pub const BREAK_GLASS: &str = "x-hipaa-break-glass";
/// The token's `amr` values, comma-separated (for the audit record).
pub const AMR: &str = "x-hipaa-amr";
/// The denial reason code of whichever filter refused the request (for the audit record).
pub const DENIAL: &str = "x-hipaa-denial";

pub const REQUEST_ID: &str = "x-request-id";
pub const AUTHORIZATION: &str = "authorization";

/// True for a header a client must never be able to set.
pub fn is_reserved(name: &str) -> bool {
    name.len() >= RESERVED_PREFIX.len()
        && name.as_bytes()[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_prefix_is_case_insensitive() {
        assert!(super::is_reserved("x-hipaa-subject"));
        assert!(super::is_reserved("X-HIPAA-Roles"));
        assert!(!super::is_reserved("x-hipa"));
        assert!(!super::is_reserved("x-request-id"));
    }
}

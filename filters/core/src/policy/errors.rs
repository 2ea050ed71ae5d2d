//! Policy errors: each names the key path, what is wrong, and the valid choices.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Dotted key path from the document root, e.g. `spec.routes[1].match.pathPrefix`.
    pub path: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every error found in one policy, in document order where known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(PolicyError::new(path, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.0.iter()
    }

    /// One line, for a host log: the first error and how many more.
    pub fn summary(&self) -> String {
        match self.0.as_slice() {
            [] => "no errors".into(),
            [one] => format!("invalid policy: {one}"),
            [first, rest @ ..] => format!(
                "invalid policy: {first} (and {} more: {})",
                rest.len(),
                rest.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

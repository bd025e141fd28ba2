//! Field paths such as `spec.egress[2].cidr`, spelled with the keys as they
//! are written in the file so that a user can find the field by reading.

use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct FieldPath(Vec<Segment>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl FieldPath {
    /// The document root; displayed as an empty string.
    pub(super) fn root() -> Self {
        Self::default()
    }

    /// The path of the value under `key` in the mapping at this path.
    pub(super) fn key(&self, key: &str) -> Self {
        self.with(Segment::Key(key.to_owned()))
    }

    /// The path of item `index` in the sequence at this path.
    pub(super) fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    pub(super) fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub(super) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops the last segment; `false` at the root.
    pub(super) fn pop(&mut self) -> bool {
        self.0.pop().is_some()
    }

    fn with(&self, segment: Segment) -> Self {
        let mut segments = self.0.clone();
        segments.push(segment);
        Self(segments)
    }
}

/// Field paths as `serde_path_to_error` tracked them while deserializing.
impl From<&serde_path_to_error::Path> for FieldPath {
    fn from(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        let mut segments = Vec::new();
        for segment in path.iter() {
            match segment {
                S::Map { key } => segments.push(Segment::Key(key.clone())),
                S::Seq { index } => segments.push(Segment::Index(*index)),
                // Neither occurs in the policy schema (no enums, only string
                // keys); stop at the last segment that can be named.
                S::Enum { .. } | S::Unknown => break,
            }
        }
        Self(segments)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_path_displays_like_the_yaml_keys() {
        let path = FieldPath::root()
            .key("spec")
            .key("egress")
            .index(2)
            .key("cidr");
        assert_eq!(path.to_string(), "spec.egress[2].cidr");
        assert_eq!(FieldPath::root().to_string(), "");
    }
}

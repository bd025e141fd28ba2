//! The one error type of policy loading, and the internal forms a problem
//! takes before its position in the file is known.

use std::fmt;

use super::{
    locate::{self, Part},
    path::FieldPath,
};

/// Why a policy file was rejected, and where.
///
/// Displays as `<source>:<line>:<column>: <field>: <message>`, leaving out
/// the position or the field when they are unknown (an unreadable file has
/// neither).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PolicyError {
    source_name: String,
    location: Option<Location>,
    field: Option<String>,
    message: String,
}

impl PolicyError {
    /// The file name (or other label) the policy was read from.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// 1-based line of the offending text.
    pub fn line(&self) -> Option<usize> {
        self.location.map(|l| l.line)
    }

    /// 1-based column of the offending text.
    pub fn column(&self) -> Option<usize> {
        self.location.map(|l| l.column)
    }

    /// The field path, e.g. `spec.egress[1].cidr`; `None` for problems with
    /// the document as a whole.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong, without position or field.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(super) fn unreadable(source_name: &str, error: &std::io::Error) -> Self {
        Self {
            source_name: source_name.to_owned(),
            location: None,
            field: None,
            message: format!("cannot read: {error}"),
        }
    }

    pub(super) fn new(source_name: &str, diagnostic: Diagnostic) -> Self {
        Self {
            source_name: source_name.to_owned(),
            location: diagnostic.location,
            field: (!diagnostic.path.is_root()).then(|| diagnostic.path.to_string()),
            message: diagnostic.message,
        }
    }

    fn render(&self) -> String {
        let mut out = self.source_name.clone();
        if let Some(Location { line, column }) = self.location {
            out += &format!(":{line}:{column}");
        }
        if let Some(field) = &self.field {
            out += &format!(": {field}");
        }
        out + ": " + &self.message
    }
}

/// A 1-based position in the policy text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Location {
    pub line: usize,
    pub column: usize,
}

impl From<serde_yaml::Location> for Location {
    fn from(location: serde_yaml::Location) -> Self {
        // serde_yaml already converts libyaml's 0-based marks to 1-based.
        Self {
            line: location.line(),
            column: location.column(),
        }
    }
}

/// A problem with its position already known (YAML-level problems, where
/// the parser reports the position as it fails).
#[derive(Debug)]
pub(super) struct Diagnostic {
    pub location: Option<Location>,
    pub path: FieldPath,
    pub message: String,
}

/// A problem found after parsing, in terms of the field it concerns; its
/// position is looked up in the text only when it is reported.
#[derive(Debug)]
pub(super) struct Issue {
    pub path: FieldPath,
    pub part: Part,
    pub message: String,
}

impl Issue {
    /// Points at the key of the field (e.g. a list that is empty or too long,
    /// a selector that selects nothing).
    pub(super) fn at_key(path: FieldPath, message: impl fmt::Display) -> Self {
        Self {
            path,
            part: Part::Key,
            message: message.to_string(),
        }
    }

    /// Points at the value of the field (e.g. a malformed address).
    pub(super) fn at_value(path: FieldPath, message: impl fmt::Display) -> Self {
        Self {
            path,
            part: Part::Value,
            message: message.to_string(),
        }
    }

    pub(super) fn locate(self, yaml: &str) -> Diagnostic {
        Diagnostic {
            location: locate::locate(yaml, &self.path, self.part),
            path: self.path,
            message: self.message,
        }
    }
}

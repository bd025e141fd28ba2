//! Policy files: parsing, validation and the validated model.
//!
//! Loading runs in stages, each reporting problems with the field path and
//! the line and column in the file:
//! 1. `document`: YAML text to one mapping (syntax, duplicate keys, ...);
//! 2. `raw`: the mapping to the file's shape (unknown or missing fields,
//!    wrong kinds of values);
//! 3. `validate`: the shape to a [`Policy`] (names, ports, addresses and the
//!    rules that span fields), then whether it fits in the kernel's maps
//!    (`capacity`).

mod capacity;
mod cidr;
mod dns;
mod document;
mod egress;
mod error;
mod inspection;
mod labels;
mod locate;
pub mod model;
mod names;
mod path;
mod ports;
mod raw;
mod selector;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::PolicyError;
pub use model::*;
pub use validate::{API_VERSION, KIND};

/// Parses and validates a policy; `source` names the text in errors
/// (usually its file name).
pub fn parse_str(source: &str, yaml: &str) -> Result<Policy, PolicyError> {
    let mapping = document::load(yaml).map_err(|problem| PolicyError::new(source, problem))?;
    raw::from_value(mapping.into())
        .and_then(validate::policy)
        .map_err(|issue| PolicyError::new(source, issue.locate(yaml)))
}

/// Checks a policy name (`metadata.name`) given some other way, e.g. on the
/// command line; the message says what is wrong.
pub fn check_name(name: &str) -> Result<(), String> {
    names::policy_name(name).map(drop)
}

/// Reads and parses the policy file at `path`.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let source = path.display().to_string();
    let yaml =
        std::fs::read_to_string(path).map_err(|error| PolicyError::unreadable(&source, &error))?;
    parse_str(&source, &yaml)
}

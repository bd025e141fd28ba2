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

/// Checks a DNS name as an `fqdn` rule would (at least two labels, valid
/// characters and lengths) and returns it lowercased, without the trailing
/// dot; the message says what is wrong. For tools that write policies
/// (learn mode), so that they never write a rule the parser refuses.
pub fn parse_fqdn(name: &str) -> Result<Fqdn, String> {
    names::fqdn(name)
}

/// Where the `spec.egress` key is in `yaml`, a policy [`parse_str`]
/// accepts: its 1-based line and column. For tools that add rules to the
/// text and keep its comments and layout (learn mode's merge).
pub fn egress_key_position(yaml: &str) -> Option<(usize, usize)> {
    let path = path::FieldPath::root().key("spec").key("egress");
    let location = locate::locate(yaml, &path, locate::Part::Key)?;
    // `locate` falls back to an enclosing key when the path is missing.
    let line = yaml.lines().nth(location.line.checked_sub(1)?)?;
    let at_key = line
        .chars()
        .skip(location.column.checked_sub(1)?)
        .collect::<String>();
    at_key
        .starts_with("egress")
        .then_some((location.line, location.column))
}

/// Reads and parses the policy file at `path`.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let source = path.display().to_string();
    let yaml =
        std::fs::read_to_string(path).map_err(|error| PolicyError::unreadable(&source, &error))?;
    parse_str(&source, &yaml)
}

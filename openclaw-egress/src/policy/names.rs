//! DNS names: `metadata.name`, `fqdn` and `fqdnPattern`.

use super::model::{Fqdn, FqdnPattern, WildcardDepth};

/// RFC 1035 limits, for the name without its trailing dot.
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

const SUPPORTED_PATTERNS: &str = "only a leading `*.` (exactly one label) or `**.` (one or more labels) \
     is supported, e.g. `*.example.com`";

/// `metadata.name`: a DNS label, since it names bpffs pins and metric labels.
pub(super) fn policy_name(name: &str) -> Result<String, String> {
    let well_formed = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if name.is_empty() {
        Err("the policy name must not be empty".into())
    } else if name.len() > MAX_LABEL_LEN {
        Err(format!(
            "the policy name is {} characters long; at most {MAX_LABEL_LEN} are allowed",
            name.len()
        ))
    } else if !well_formed {
        Err(format!(
            "`{name}` is not a valid policy name: use lowercase letters, digits and '-', \
             starting and ending with a letter or digit (it names bpffs pins and metric labels)"
        ))
    } else {
        Ok(name.to_owned())
    }
}

/// `fqdn`: an exact name of at least two labels.
pub(super) fn fqdn(raw: &str) -> Result<Fqdn, String> {
    if raw.contains('*') {
        return Err(format!(
            "wildcards are only allowed in `fqdnPattern`; write `fqdnPattern: \"{raw}\"`"
        ));
    }
    let name = normalize(raw)?;
    if !name.contains('.') {
        return Err(format!(
            "`{name}` is a single label; an fqdn needs at least two labels, such as `{name}.example.com`"
        ));
    }
    Ok(Fqdn(name))
}

/// `fqdnPattern`: `*.` or `**.` followed by a name of at least two labels.
pub(super) fn pattern(raw: &str) -> Result<FqdnPattern, String> {
    let (depth, suffix) = if let Some(suffix) = raw.strip_prefix("**.") {
        (WildcardDepth::AnyDepth, suffix)
    } else if let Some(suffix) = raw.strip_prefix("*.") {
        (WildcardDepth::OneLabel, suffix)
    } else if matches!(raw, "*" | "**") {
        return Err(matches_everything(raw));
    } else if raw.contains('*') {
        return Err(format!(
            "`{raw}` is not a supported pattern: {SUPPORTED_PATTERNS}"
        ));
    } else {
        return Err(format!(
            "`{raw}` has no wildcard: use `fqdn` for an exact name, or start the pattern with `*.` or `**.`"
        ));
    };
    if suffix.is_empty() {
        return Err(matches_everything(raw));
    }
    if suffix.contains('*') {
        return Err(format!(
            "`{raw}` is not a supported pattern: {SUPPORTED_PATTERNS}"
        ));
    }
    let suffix = normalize(suffix).map_err(|message| format!("after the wildcard: {message}"))?;
    if !suffix.contains('.') {
        return Err(format!(
            "`{raw}` would match every name in the top-level domain `{suffix}`; the part after the \
             wildcard needs at least two labels, e.g. `*.example.{suffix}`"
        ));
    }
    Ok(FqdnPattern { depth, suffix })
}

fn matches_everything(raw: &str) -> String {
    format!(
        "`{raw}` would match every name; a pattern needs a fixed suffix after the wildcard, e.g. `*.example.com`"
    )
}

/// Lowercases and drops the trailing dot, so that names compare as DNS
/// compares them; checks the RFC 1035 syntax (plus '_', which real names
/// such as `_dmarc.example.com` use).
fn normalize(raw: &str) -> Result<String, String> {
    let name = raw.strip_suffix('.').unwrap_or(raw);
    if name.is_empty() {
        return Err("the name must not be empty".into());
    }
    if !name.is_ascii() {
        return Err(format!(
            "`{raw}` is not ASCII; write internationalised names in their `xn--` (punycode) form"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the name is {} characters long; DNS names have at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    for label in name.split('.') {
        check_label(label, raw)?;
    }
    Ok(name.to_ascii_lowercase())
}

fn check_label(label: &str, name: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(format!(
            "`{name}` has an empty label (a leading dot or `..`)"
        ));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "the label `{label}` is {} characters long; DNS labels have at most {MAX_LABEL_LEN}",
            label.len()
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(format!(
            "`{name}` contains {c:?}; names consist of letters, digits, '-' and '_'"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "the label `{label}` in `{name}` starts or ends with '-'"
        ));
    }
    Ok(())
}

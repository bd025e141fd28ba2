//! Learning against an existing policy: propose only what it does not allow
//! yet, and add that to its text. The rules go after the last item of
//! `spec.egress`, at its indentation, so that the file keeps its comments
//! and layout; where the text does not allow that (a flow list, resolvers
//! to add), the policy is written anew from its parsed form. Either way the
//! result is parsed again and must be the old policy plus the new rules.

use similar::TextDiff;

use super::{Options, Proposal, propose_beyond, render};
use crate::{
    learn::observations::Observations,
    policy::{self, Policy, PolicyError},
};

/// An existing policy with the additions a learning run proposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    /// What the existing policy does not allow yet: its `resolvers` are
    /// those of the learning run the policy lacks (added to
    /// `spec.dns.resolvers`).
    pub additions: Proposal,
    /// The existing text with the additions at the end of `spec.egress`.
    pub merged: String,
    /// A unified diff from the existing text to `merged` (empty when
    /// nothing is added).
    pub diff: String,
    /// Whether `merged` keeps the existing text (its comments, its layout);
    /// `false` when it had to be written anew.
    pub kept_text: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Existing(#[from] PolicyError),
    /// A bug: what this module writes must parse.
    #[error("the merged policy does not parse: {0}")]
    Merged(PolicyError),
}

/// Proposes what the policy `existing` (its text; `source` names it in
/// errors and in the diff) does not already allow of what `observations`
/// saw: a name on a port an `fqdn` or `fqdnPattern` rule allows it on, an
/// address on a port a `cidr` rule allows, and a name any name rule lets be
/// asked, are covered. Returns the additions and the merged text.
pub fn propose_additions(
    source: &str,
    existing: &str,
    observations: &Observations,
    options: &Options,
) -> Result<Merge, MergeError> {
    let policy = policy::parse_str(source, existing)?;
    let mut additions = propose_beyond(&policy.egress, observations, options);
    additions
        .resolvers
        .retain(|resolver| !policy.dns.resolvers.contains(resolver));
    if additions.is_empty() && additions.resolvers.is_empty() {
        return Ok(Merge {
            additions,
            merged: existing.to_owned(),
            diff: String::new(),
            kept_text: true,
        });
    }
    let appended = additions
        .resolvers
        .is_empty()
        .then(|| append(existing, &additions))
        .flatten()
        .filter(|merged| is_policy_plus(source, merged, &policy, &additions));
    let (merged, kept_text) = match appended {
        Some(merged) => (merged, true),
        None => {
            let merged = render::policy_document(&policy, &additions);
            policy::parse_str(source, &merged).map_err(MergeError::Merged)?;
            (merged, false)
        }
    };
    let diff = TextDiff::from_lines(existing, &merged)
        .unified_diff()
        .header(source, &format!("{source} (with the proposed rules)"))
        .to_string();
    Ok(Merge {
        additions,
        merged,
        diff,
        kept_text,
    })
}

/// Whether `merged` parses into `policy` with the additions' items after
/// its rules.
fn is_policy_plus(source: &str, merged: &str, policy: &Policy, additions: &Proposal) -> bool {
    let Ok(parsed) = policy::parse_str(source, merged) else {
        return false;
    };
    let kept = parsed.egress.len() == policy.egress.len() + render::item_count(&additions.rules)
        && parsed.egress.starts_with(&policy.egress);
    kept && Policy {
        egress: policy.egress.clone(),
        ..parsed
    } == *policy
}

/// `existing` with the additions after the last item of its `spec.egress`
/// block list, or in place of an empty flow list (`egress: []`); `None`
/// for any other layout.
fn append(existing: &str, additions: &Proposal) -> Option<String> {
    let (line, column) = policy::egress_key_position(existing)?;
    let lines: Vec<&str> = existing.split_inclusive('\n').collect();
    let key_line = lines.get(line - 1)?;
    let key_indent = indentation(key_line);
    // Columns count characters; the indentation before the key is spaces.
    if column - 1 != key_indent {
        return None;
    }
    let value = without_comment(key_line[key_indent..].strip_prefix("egress:")?).trim();
    let mut merged = String::with_capacity(existing.len() + 1024);
    match value {
        "" => {
            // The items (if any) follow, at or past the key's indentation.
            let mut end = line; // lines[..end] come before the additions
            let mut item_indent = None;
            for (i, text) in lines.iter().enumerate().skip(line) {
                if is_blank_or_comment(text) {
                    continue;
                }
                let indent = indentation(text);
                let item = text[indent..].starts_with("- ") || text[indent..].trim_end() == "-";
                let inside = match item_indent {
                    None => item && indent >= key_indent,
                    Some(items) => indent > items || (indent == items && item),
                };
                if !inside || text.starts_with("---") || text.starts_with("...") {
                    break;
                }
                item_indent.get_or_insert(indent);
                end = i + 1;
            }
            let indent = item_indent.unwrap_or(key_indent + 2);
            for text in &lines[..end] {
                merged.push_str(text);
            }
            if !merged.ends_with('\n') {
                merged.push('\n');
            }
            merged.push_str(&render::items(
                &additions.rules,
                &additions.not_proposed,
                indent,
            ));
            for text in &lines[end..] {
                merged.push_str(text);
            }
        }
        "[]" => {
            for text in &lines[..line - 1] {
                merged.push_str(text);
            }
            let comment = key_line.find(" #").map(|at| key_line[at..].trim_end());
            merged.push_str(&format!(
                "{}egress:{}\n",
                &key_line[..key_indent],
                comment.unwrap_or_default()
            ));
            merged.push_str(&render::items(
                &additions.rules,
                &additions.not_proposed,
                key_indent + 2,
            ));
            for text in &lines[line..] {
                merged.push_str(text);
            }
        }
        _ => return None,
    }
    Some(merged)
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let text = line.trim();
    text.is_empty() || text.starts_with('#')
}

/// A value's text without a trailing ` # comment`.
fn without_comment(value: &str) -> &str {
    match value.find(" #") {
        Some(at) => &value[..at],
        None => value,
    }
}

//! Writing a learning run's proposal (see `proposal`): the whole policy, or
//! with `--merge` an existing policy plus what it lacks (the difference is
//! printed). Either way the text is checked to be a valid policy first, and
//! replaces the output file at once.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{
    observations::Observations,
    proposal::{self, Options},
};
use crate::{
    cli::ProposalArgs,
    policy::{self, Policy, Selector},
};

/// Writes the policy proposed from `observations` to `output`. `notes` are
/// what was seen that no rule can allow; `selector_from` the policy whose
/// selector the proposal keeps (none: a placeholder cgroup named `name`,
/// which `exec --policy` replaces anyway).
pub fn proposal(
    observations: &Observations,
    notes: &[String],
    args: &ProposalArgs,
    name: &str,
    selector_from: Option<&Policy>,
    output: &Path,
) -> anyhow::Result<()> {
    let options = Options {
        collapse_threshold: usize::try_from(args.collapse_threshold)
            .unwrap_or(Options::DEFAULT_COLLAPSE_THRESHOLD),
    };
    let (text, rules) = match &args.merge {
        Some(existing_file) => {
            let existing = std::fs::read_to_string(existing_file)
                .with_context(|| format!("reading {}", existing_file.display()))?;
            let source = existing_file.display().to_string();
            let merge = proposal::propose_additions(&source, &existing, observations, &options)?;
            if merge.diff.is_empty() {
                println!("{source} already allows everything seen: nothing to add");
            } else {
                print!("{}", merge.diff);
            }
            for note in notes {
                eprintln!("openclaw-egress: note: {note}");
            }
            (merge.merged, merge.additions.rules.len())
        }
        None => {
            let mut proposal = proposal::propose(observations, &options);
            proposal.not_proposed.extend(notes.iter().cloned());
            let selector = selector_from.map_or_else(
                || Selector {
                    cgroup_path: Some(PathBuf::from(name)),
                    ..Selector::default()
                },
                |policy| policy.selector.clone(),
            );
            (proposal.to_yaml(name, &selector), proposal.rules.len())
        }
    };
    // What is written must be a policy: anything else is a bug here.
    policy::parse_str(&output.display().to_string(), &text)
        .context("the proposed policy does not parse (a bug: please report it)")?;
    replace(output, &text)?;
    eprintln!(
        "openclaw-egress: {} names asked, {} destinations connected to; {rules} rules {} {}",
        observations.questions.len(),
        observations.connections.len(),
        if args.merge.is_some() {
            "added in"
        } else {
            "proposed in"
        },
        output.display()
    );
    Ok(())
}

/// Writes `text` to `path` through a temporary file beside it: a reader
/// never sees half a policy.
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let temporary = path.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()));
    std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}

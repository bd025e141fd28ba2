//! Writing a learning run's proposal (see `proposal`).

use std::path::Path;

use super::observations::Observations;
use crate::{cli::ProposalArgs, policy::Policy};

/// Writes the policy proposed from `observations` to `output` (or, with
/// `--merge`, the existing policy plus the additions, printing the
/// difference), after checking it is a valid policy.
pub fn proposal(
    observations: &Observations,
    notes: &[String],
    args: &ProposalArgs,
    name: &str,
    selector_from: Option<&Policy>,
    output: &Path,
) -> anyhow::Result<()> {
    let _ = (observations, notes, args, name, selector_from, output);
    anyhow::bail!("proposal: being written")
}

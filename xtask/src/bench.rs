//! `cargo xtask bench`: datapath overhead measurements (to come).

use anyhow::{Result, bail};

use crate::setup;

/// Prepares the machine, then stops: the benchmarks are not written yet.
pub fn run() -> Result<()> {
    setup::run()?;
    bail!("bench: not implemented yet")
}

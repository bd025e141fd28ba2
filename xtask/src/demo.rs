//! `cargo xtask demo`: a scripted demonstration of enforcement (to come).

use anyhow::{Result, bail};

use crate::setup;

/// Prepares the machine, then stops: the demo itself is not written yet.
pub fn run() -> Result<()> {
    setup::run()?;
    bail!("demo: not implemented yet")
}

//! Learn mode: watch what a workload really does and propose the minimal
//! policy that allows it (`exec --learn`, `learn --policy`).

pub mod observations;
pub mod proposal;
pub mod public_suffix;
mod recorder;
mod run;
mod write;

pub use run::{ExecLearning, exec, watch};

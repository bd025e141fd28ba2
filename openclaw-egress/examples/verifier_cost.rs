//! What verifying each program of the embedded eBPF object costs: the
//! instructions the verifier processed (out of its limit of one million)
//! and the time the load took. Run as root:
//! `cargo run --release --example verifier_cost`.

use std::time::Instant;

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{CgroupSkb, CgroupSockAddr, Program, SchedClassifier},
};

fn main() -> anyhow::Result<()> {
    let mut ebpf = Ebpf::load(openclaw_egress::datapath::object())?;
    let names: Vec<String> = ebpf.programs().map(|(name, _)| name.to_string()).collect();
    let mut total = 0.0;
    for name in names {
        let program = ebpf.program_mut(&name).context("program")?;
        let started = Instant::now();
        let loaded = match program {
            Program::CgroupSkb(p) => p.load().map(|()| CgroupSkb::info(p)),
            Program::CgroupSockAddr(p) => p.load().map(|()| CgroupSockAddr::info(p)),
            Program::SchedClassifier(p) => p.load().map(|()| SchedClassifier::info(p)),
            other => anyhow::bail!("unexpected program type for {name}: {other:?}"),
        };
        let elapsed = started.elapsed().as_secs_f64();
        total += elapsed;
        match loaded {
            Ok(Ok(info)) => println!(
                "{name:20} {:>8} insns verified  {:>7.0} ms",
                info.verified_instruction_count().unwrap_or(0),
                elapsed * 1000.0
            ),
            Ok(Err(error)) => println!("{name:20} loaded, no info: {error}"),
            Err(error) => {
                let text = error.to_string();
                let tail: String = text
                    .chars()
                    .rev()
                    .take(400)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect();
                println!(
                    "{name:20} FAILED after {:.0} ms: ...{tail}",
                    elapsed * 1000.0
                );
            }
        }
    }
    println!("total {:.0} ms", total * 1000.0);
    Ok(())
}

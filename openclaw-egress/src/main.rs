fn main() -> anyhow::Result<()> {
    let mut ebpf = aya::Ebpf::load(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/openclaw-egress")))?;
    let prog: &mut aya::programs::CgroupSkb = ebpf.program_mut("egress").unwrap().try_into()?;
    prog.load()?;
    println!("loaded");
    Ok(())
}

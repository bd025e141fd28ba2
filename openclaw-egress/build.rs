//! Builds the eBPF programs (crate `openclaw-egress-ebpf`) with the nightly
//! toolchain and `bpf-linker`, so that `include_bytes_aligned!` in the loader
//! always embeds programs matching this source tree.

fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../openclaw-egress-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "openclaw-egress-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

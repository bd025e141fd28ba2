use which::which;

/// The crate links with `bpf-linker`, an undeclared dependency: rebuild when
/// the binary found on $PATH changes.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not on PATH; run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}

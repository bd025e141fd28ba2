//! Everything the harness does needs root: network namespaces, cgroups,
//! BPF.

/// True if running as root, which every sandbox needs.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True (after a note on stderr) when a root-only test must be skipped.
/// Use as `if skip_unless_root() { return; }`.
pub fn skip_unless_root() -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skipped: needs root (network namespaces, cgroups, BPF)");
    true
}

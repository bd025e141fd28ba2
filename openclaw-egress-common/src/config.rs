//! Per-policy settings the programs read from the `CONFIG` array.

/// What the datapath does with a packet that no rule allows.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Drop it (and count and report the drop).
    Enforce = 0,
    /// Let it through, but count and report it as a drop that would have happened.
    Audit = 1,
}

/// The single entry of the `CONFIG` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// A [`Mode`] as `u32`.
    pub mode: u32,
    /// Non-zero once userspace has filled every map. Until then every packet is
    /// dropped, so a half-loaded policy can never be more open than intended.
    pub ready: u32,
    /// Addresses learned from DNS stay allowed at least this long.
    pub min_ttl_secs: u32,
    /// At most this many addresses are learned per name and TTL window.
    pub max_ips_per_name: u32,
    /// At most this many addresses are learned per pattern rule and TTL
    /// window, whatever the names (an attacker controlling a wildcard's zone
    /// can make up names without end).
    pub max_ips_per_pattern: u32,
    /// [`record`] bits: what the datapath reports beyond drops. 0 (the
    /// default) costs nothing: the bits are read only on the first packet
    /// of a connection and on DNS messages.
    pub record: u32,
}

const _: () = assert!(core::mem::size_of::<PolicyConfig>() == 24);

/// Bits of [`PolicyConfig::record`].
pub mod record {
    /// Report the first packet of every allowed connection (`--flow-log`,
    /// learn mode).
    pub const FLOWS: u32 = 1;
    /// Report every DNS question (allowed ones too) and every address in
    /// the answers, for names no rule allows too (learn mode).
    pub const DNS: u32 = 2;
}

impl PolicyConfig {
    pub const fn mode(&self) -> Mode {
        if self.mode == Mode::Audit as u32 {
            Mode::Audit
        } else {
            Mode::Enforce
        }
    }

    /// Whether the datapath reports what `bits` (of [`record`]) name.
    #[inline(always)]
    pub const fn records(&self, bits: u32) -> bool {
        self.record & bits != 0
    }
}

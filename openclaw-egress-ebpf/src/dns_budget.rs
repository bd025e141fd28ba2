//! Caps on what DNS answers may open, so that a zone the attacker controls
//! cannot be used to open an unbounded number of destinations:
//! - per name (`maxIPsPerName`): one name brings in at most so many new
//!   addresses until the addresses it brought expire;
//! - per pattern rule (`maxIPsPerPattern`): all the names a wildcard rule
//!   matches together bring in at most so many. Without it, `*.pkg.test`
//!   would open one per-name budget per made-up subdomain.
//!
//! A budget counts addresses in a window that lasts until the latest expiry
//! of an address counted in it; an address that is still allowed for the
//! rule costs nothing again.

use openclaw_egress_common::{Addr, AllowKey, NameBudget, PolicyConfig, RulePorts};

use crate::{
    dns_name::DnsScratch,
    maps::{ALLOW, NAME_BUDGETS, PATTERN_BUDGETS},
};

/// What a budget says about one more address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Already allowed for the rule and still live: costs nothing.
    Live,
    /// New, and the budget has room: charge it when learning.
    Room,
    /// New, and the budget is spent.
    Full,
}

/// Whether `addr` is still allowed for the rule whose ports are `ports`.
#[inline(always)]
fn is_live(slot: u32, addr: &Addr, ports: &RulePorts, now: u64) -> bool {
    if ports.count == 0 {
        return false;
    }
    let first = AllowKey::new(*addr, ports.ports[0].proto, ports.ports[0].port);
    match ALLOW.get(slot).and_then(|allow| allow.get_ptr(&first)) {
        // SAFETY: pointer from a successful lookup, only read.
        Some(entry) => (unsafe { (*entry).expires_at_ns }) > now,
        None => false,
    }
}

/// The pattern rule `rule`'s say on `addr` (nothing is charged).
#[inline(always)]
pub fn pattern_admission(
    slot: u32,
    rule: u32,
    ports: &RulePorts,
    addr: &Addr,
    config: &PolicyConfig,
    now: u64,
) -> Admission {
    if is_live(slot, addr, ports, now) {
        return Admission::Live;
    }
    match PATTERN_BUDGETS
        .get(slot)
        .and_then(|budgets| budgets.get(rule))
    {
        Some(budget)
            if budget.window_end_ns > now && budget.learned >= config.max_ips_per_pattern =>
        {
            Admission::Full
        }
        _ => Admission::Room,
    }
}

/// Counts one more address against pattern rule `rule`.
#[inline(always)]
pub fn charge_pattern(slot: u32, rule: u32, now: u64, expires_at_ns: u64) {
    if let Some(budget) = PATTERN_BUDGETS
        .get(slot)
        .and_then(|budgets| budgets.get_ptr_mut(rule))
    {
        // SAFETY: pointer into the array from a successful lookup.
        charge(unsafe { &mut *budget }, now, expires_at_ns);
    }
}

/// Admits `addr` for the name last read into `scratch` (first matching rule
/// `ports`) and charges its budget; `false` when the name's budget is spent.
#[inline(always)]
pub fn admit_for_name(
    slot: u32,
    addr: &Addr,
    ports: &RulePorts,
    config: &PolicyConfig,
    scratch: &DnsScratch,
    now: u64,
    expires_at_ns: u64,
) -> bool {
    if is_live(slot, addr, ports, now) {
        return true;
    }
    let Some(budgets) = NAME_BUDGETS.get(slot) else {
        return false;
    };
    let name = &scratch.query.name;
    let Some(budget) = budgets.get_ptr_mut(name) else {
        let fresh = NameBudget {
            learned: 1,
            _pad: 0,
            window_end_ns: expires_at_ns,
        };
        return budgets.insert(name, &fresh, 0).is_ok();
    };
    // SAFETY: pointer from a successful lookup.
    let budget = unsafe { &mut *budget };
    if budget.window_end_ns <= now {
        budget.learned = 0;
    }
    if budget.learned >= config.max_ips_per_name {
        return false;
    }
    charge(budget, now, expires_at_ns);
    true
}

#[inline(always)]
fn charge(budget: &mut NameBudget, now: u64, expires_at_ns: u64) {
    if budget.window_end_ns <= now {
        budget.learned = 0;
    }
    budget.learned += 1;
    if budget.window_end_ns < expires_at_ns {
        budget.window_end_ns = expires_at_ns;
    }
}

//! Ingress: learning addresses from DNS answers before the answer reaches
//! the socket.
//!
//! An answer from one of the policy's resolvers to a question some rule
//! allows has its A/AAAA records written to `ALLOW` (for the ports of the
//! matching rules) while the packet is still on its way in. When the
//! application reads the answer, its first connection is already allowed:
//! no proxy, no delayed packet, no race. This is also what makes `fqdnPattern`
//! rules work at all, since a wildcard cannot be resolved ahead of time.
//!
//! When the policy records DNS (learn mode), every address of an answer to
//! a query the workload sent is also reported, whether a rule allows the
//! name or not (the latter are reported, never learned).

use core::{ffi::c_void, mem::MaybeUninit, ptr};

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated::bpf_loop},
    maps::lpm_trie::Key,
    programs::sk_buff::SkBuff,
};
use openclaw_egress_common::{
    Addr, AllowKey, AllowValue, PolicyConfig, RuleKind, RulePorts,
    dns::{DnsStat, MAX_RULE_PORTS},
    ipv4_mapped, proto, record,
};

use crate::{
    dns_answer_record,
    dns_budget::{self, Admission},
    dns_message,
    dns_name::{self, DnsScratch, load, store},
    dns_pending, egress_policy,
    flow::{self, Flow},
    map_types::{AnswerScratch, MAX_ANSWERS},
    maps::{ALLOW, ANSWERS, CIDR_ADDRS, CONFIGS, INTERNAL_RANGES, RULE_PORTS, count_dns},
    report,
    workload::Workload,
};

const DNS_PORT: u16 = 53;
/// Labels skipped per record owner name.
const MAX_LABELS: usize = 64;
/// TTLs above a day are treated as a day.
const MAX_TTL_SECS: u32 = 86_400;

/// The rule takes the address (an exact rule, or a pattern rule for which it
/// is still live).
const TAKE: u32 = 1;
/// A pattern rule takes a new address and its budget is charged.
const TAKE_AND_CHARGE: u32 = 2;

const CLASS_IN: u16 = 1;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// Learns from the packet at `l3` if it is a DNS answer from a resolver.
#[inline(always)]
pub fn learn(skb: &SkBuff, l3: usize) {
    // No policy in force: nothing to learn for.
    let Some(workload) = Workload::of_skb(skb) else {
        return;
    };
    let mut slot = MaybeUninit::uninit();
    let Ok(flow) = flow::parse(skb, l3, workload, &mut slot) else {
        return;
    };
    // (An answer with IP options is nothing a resolver sends: not learned.)
    if flow.src_port != DNS_PORT
        || flow.ip_options
        || !egress_policy::is_resolver(workload.slot, &flow.src)
    {
        return;
    }
    if learn_from(skb, flow).is_err() {
        count_dns(workload.slot, DnsStat::AnswersUnparsed);
    }
}

#[inline(always)]
fn learn_from(skb: &SkBuff, flow: &Flow) -> Result<(), ()> {
    let start = dns_message::payload_offset(skb, flow).ok_or(())?;
    let end = skb.len() as usize;
    let message = if flow.proto == proto::TCP {
        if start >= end {
            return Ok(()); // No payload: handshake or ACK.
        }
        // Only an answer that is whole in this segment can be parsed.
        let len = dns_message::tcp_length(skb, start).ok_or(())?;
        if start + 2 + len > end {
            return Err(());
        }
        start + 2
    } else {
        start
    };
    let header = dns_message::header(skb, message).ok_or(())?;
    if !header.response || header.opcode != 0 || header.questions != 1 {
        return Err(());
    }
    // SAFETY: the program's own use of this CPU's scratch area.
    let scratch = unsafe { dns_name::scratch() }.ok_or(())?;
    let question = message + dns_message::HEADER_LEN;
    let name_len = dns_name::read(skb, question, scratch)?;
    let (qtype, _) = dns_message::question_type_class(skb, question + name_len).ok_or(())?;
    store(&mut scratch.qtype, u32::from(qtype));
    // Only the answer to a query this workload sent teaches anything, and
    // only once. (NXDOMAIN and empty answers end their query too.)
    let slot = flow.slot();
    if !dns_pending::take(scratch, flow, header.id, qtype) {
        count_dns(slot, DnsStat::AnswersUnsolicited);
        return Ok(());
    }
    if header.rcode != 0 || header.answers == 0 {
        return Ok(()); // NXDOMAIN, NODATA...: nothing to learn.
    }
    let allowed = dns_name::matching_rules(scratch, slot);
    let recording = report::records(slot, record::DNS);
    if !allowed && !recording {
        // Not a question we allowed (it could not have left): learn nothing.
        return Ok(());
    }
    // SAFETY: per-CPU storage, used by one program run at a time on this CPU.
    let answers = unsafe { &mut *ANSWERS.get_ptr_mut(0).ok_or(())? };
    store(&mut answers.count, 0);
    count_dns(slot, DnsStat::AnswersParsed);

    // The record offset is loop-carried, so it lives in scratch memory (see
    // the note on loops in `dns_name`).
    store(&mut scratch.cursor, (question + name_len + 4) as u32);
    for index in 0..MAX_ANSWERS {
        if index >= usize::from(header.answers) {
            break;
        }
        skip_name(skb, scratch)?;
        let record = load(&scratch.cursor) as usize;
        let fixed: [u8; 10] = skb.load(record).map_err(|_| ())?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlength = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata = record + 10;
        let addr = if class != CLASS_IN {
            None
        } else if rtype == TYPE_A && rdlength == 4 {
            let octets: [u8; 4] = skb.load(rdata).map_err(|_| ())?;
            Some(ipv4_mapped(octets))
        } else if rtype == TYPE_AAAA && rdlength == 16 {
            Some(skb.load::<Addr>(rdata).map_err(|_| ())?)
        } else {
            // CNAMEs and other records are skipped: the resolver answered
            // the allowed question, so every address record in its answer is
            // the answer to it (the end of a CNAME chain included).
            None
        };
        if let Some(addr) = addr {
            let slot = load(&answers.count) as usize;
            if slot < MAX_ANSWERS {
                answers.addresses[slot] = addr;
                answers.ttls[slot] = ttl;
                store(&mut answers.count, slot as u32 + 1);
            }
        }
        store(&mut scratch.cursor, (rdata + rdlength) as u32);
    }
    let count = load(&answers.count);
    if recording {
        // SAFETY: `record_one` has the callback signature bpf_loop expects
        // and reads its context as the flow lent here for the call.
        unsafe {
            bpf_loop(
                count,
                dns_answer_record::record_one as *const () as *mut c_void,
                ptr::from_ref(flow).cast_mut().cast(),
                0,
            )
        };
    }
    if !allowed {
        return Ok(());
    }
    let mut slot = slot;
    // SAFETY: `learn_one` has the callback signature bpf_loop expects and
    // reads its context as the `u32` lent here for the call.
    unsafe {
        bpf_loop(
            count,
            learn_one as *const () as *mut c_void,
            ptr::from_mut(&mut slot).cast(),
            0,
        )
    };
    Ok(())
}

/// `bpf_loop` callback: learns collected address number `index` for the
/// slot `context` points to.
#[inline(never)]
extern "C" fn learn_one(index: u64, context: *mut c_void) -> i64 {
    const STOP: i64 = 1;
    let index = index as usize;
    if index >= MAX_ANSWERS {
        return STOP;
    }
    // SAFETY: `learn_from` lends the slot for the call.
    let slot = unsafe { *context.cast::<u32>() };
    let (Some(answers), Some(scratch), Some(config)) =
        // SAFETY: the learning loop's own use of the scratch area; the
        // caller does not touch it while the loop runs.
        (ANSWERS.get_ptr_mut(0), unsafe { dns_name::scratch() }, CONFIGS.get(slot))
    else {
        return STOP;
    };
    // SAFETY: per-CPU storage, used by one program run at a time on this CPU.
    let answers = unsafe { &mut *answers };
    let addr = answers.addresses[index];
    let ttl = answers.ttls[index];
    learn_address(slot, &addr, ttl, config, scratch, answers);
    0
}

/// Moves `scratch.cursor` past an owner name (labels ending in the root label
/// or a compression pointer). Pointers are never followed, so they cannot loop.
#[inline(always)]
fn skip_name(skb: &SkBuff, scratch: &mut DnsScratch) -> Result<(), ()> {
    for _ in 0..MAX_LABELS {
        let offset = load(&scratch.cursor) as usize;
        let len: u8 = skb.load(offset).map_err(|_| ())?;
        if len == 0 {
            store(&mut scratch.cursor, (offset + 1) as u32);
            return Ok(());
        }
        if len & 0xc0 == 0xc0 {
            store(&mut scratch.cursor, (offset + 2) as u32);
            return Ok(());
        }
        if len & 0xc0 != 0 {
            return Err(());
        }
        store(&mut scratch.cursor, (offset + 1 + usize::from(len)) as u32);
    }
    Err(())
}

#[inline(always)]
fn learn_address(
    slot: u32,
    addr: &Addr,
    ttl: u32,
    config: &PolicyConfig,
    scratch: &DnsScratch,
    answers: &mut AnswerScratch,
) {
    // DNS rebinding: a name must not open internal addresses, unless a CIDR
    // rule of the policy covers them anyway.
    let (Some(internal), Some(cidr_addrs), Some(rule_ports)) = (
        INTERNAL_RANGES.get(slot),
        CIDR_ADDRS.get(slot),
        RULE_PORTS.get(slot),
    ) else {
        return;
    };
    let key = Key::new(128, *addr);
    if internal.get(&key).is_some() && cidr_addrs.get(&key).is_none() {
        count_dns(slot, DnsStat::AddressesRefusedInternal);
        return;
    }
    // SAFETY: a plain read of the monotonic clock.
    let now = unsafe { bpf_ktime_get_ns() };
    let ttl = if ttl > MAX_TTL_SECS {
        MAX_TTL_SECS
    } else {
        ttl
    };
    let ttl = if ttl < config.min_ttl_secs {
        config.min_ttl_secs
    } else {
        ttl
    };
    let expires_at_ns = now + u64::from(ttl) * 1_000_000_000;

    // Which of the matching rules take the address: a pattern rule only
    // within its budget.
    store(&mut answers.taken, 0);
    for m in 0..dns_name::MAX_MATCHES {
        store(&mut answers.decisions[m], 0);
        let Some(rule) = scratch.matched(m) else {
            break;
        };
        let Some(ports) = rule_ports.get(rule) else {
            continue;
        };
        // A dnsOnly rule takes no address: nothing to charge or count.
        if ports.count == 0 {
            continue;
        }
        let decision = if ports.kind != RuleKind::Pattern as u32 {
            TAKE
        } else {
            match dns_budget::pattern_admission(slot, rule, ports, addr, config, now) {
                Admission::Full => continue,
                Admission::Room => TAKE_AND_CHARGE,
                Admission::Live => TAKE,
            }
        };
        store(&mut answers.decisions[m], decision);
        let taken = load(&answers.taken);
        store(&mut answers.taken, taken + 1);
    }
    if load(&answers.taken) == 0 {
        if scratch.matched(0).is_some() {
            count_dns(slot, DnsStat::AddressesRefusedPatternCap);
        }
        return;
    }
    let Some(first_ports) = scratch.matched(0).and_then(|rule| rule_ports.get(rule)) else {
        return;
    };
    if !dns_budget::admit_for_name(slot, addr, first_ports, config, scratch, now, expires_at_ns) {
        count_dns(slot, DnsStat::AddressesRefusedCap);
        return;
    }
    store(&mut answers.full, 0);
    for m in 0..dns_name::MAX_MATCHES {
        let decision = load(&answers.decisions[m]);
        if decision == 0 {
            continue;
        }
        let Some(rule) = scratch.matched(m) else {
            break;
        };
        let Some(ports) = rule_ports.get(rule) else {
            continue;
        };
        if decision == TAKE_AND_CHARGE {
            dns_budget::charge_pattern(slot, rule, now, expires_at_ns);
        }
        allow_ports(slot, addr, rule, ports, expires_at_ns, &mut answers.full);
    }
    if load(&answers.full) != 0 {
        count_dns(slot, DnsStat::AddressesRefusedFull);
    } else {
        count_dns(slot, DnsStat::AddressesLearned);
    }
}

/// Allows `addr` on every port of `rule` until `expires_at_ns`; sets
/// `full` when the map had no room for some port (a flag in scratch
/// memory, not a register: see the note on loops in `dns_name`).
#[inline(always)]
fn allow_ports(
    slot: u32,
    addr: &Addr,
    rule: u32,
    ports: &RulePorts,
    expires_at_ns: u64,
    full: &mut u32,
) {
    let Some(allow) = ALLOW.get(slot) else {
        store(full, 1);
        return;
    };
    for p in 0..MAX_RULE_PORTS {
        if p >= ports.count as usize {
            break;
        }
        let port = &ports.ports[p];
        let key = AllowKey::new(*addr, port.proto, port.port);
        // Never shorten an entry the daemon (or a longer TTL) already set.
        let expires_at_ns = match allow.get_ptr(&key) {
            // SAFETY: pointer from a successful lookup, only read.
            Some(entry) if unsafe { (*entry).expires_at_ns } > expires_at_ns => continue,
            _ => expires_at_ns,
        };
        let value = AllowValue {
            expires_at_ns,
            rule,
            inspect: port.inspect,
            _pad: [0; 3],
        };
        // A full map refuses the entry (fails closed: the address stays
        // blocked); userspace sizes it to what the policy's budgets allow.
        if allow.insert(&key, &value, 0).is_err() {
            store(full, 1);
        }
    }
}

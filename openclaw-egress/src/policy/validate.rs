//! From the raw shape of a file to a validated [`Policy`]: the header,
//! each section, then the rules that span sections.

use super::{
    capacity::{self, Limits},
    dns, egress,
    error::Issue,
    model::{Mode, Policy, Target},
    names,
    path::FieldPath,
    raw::RawPolicy,
    selector,
};

pub const API_VERSION: &str = "openclaw.io/v1";
pub const KIND: &str = "EgressPolicy";

pub(super) fn policy(raw: RawPolicy) -> Result<Policy, Issue> {
    let root = FieldPath::root();
    if raw.api_version != API_VERSION {
        return Err(Issue::at_value(
            root.key("apiVersion"),
            format!(
                "unsupported apiVersion `{}`; this version reads `{API_VERSION}`",
                raw.api_version
            ),
        ));
    }
    if raw.kind != KIND {
        return Err(Issue::at_value(
            root.key("kind"),
            format!("kind must be `{KIND}`, not `{}`", raw.kind),
        ));
    }
    let name = names::policy_name(&raw.metadata.name)
        .map_err(|message| Issue::at_value(root.key("metadata").key("name"), message))?;

    let spec = root.key("spec");
    let mode = match raw.spec.mode.as_deref() {
        None | Some("enforce") => Mode::Enforce,
        Some("audit") => Mode::Audit,
        Some(other) => {
            return Err(Issue::at_value(
                spec.key("mode"),
                format!("unknown mode `{other}`; use enforce or audit"),
            ));
        }
    };
    let selector = selector::selector(raw.spec.selector, &spec.key("selector"))?;
    let dns = dns::dns(raw.spec.dns, &spec.key("dns"))?;
    let egress_path = spec.key("egress");
    let egress = egress::rules(raw.spec.egress, &egress_path)?;

    // Names are allowed by watching DNS answers, which only come from the
    // listed resolvers; without any, a name rule could never allow anything.
    if dns.resolvers.is_empty()
        && let Some((i, rule)) = egress
            .iter()
            .enumerate()
            .find(|(_, rule)| matches!(rule.target, Target::Fqdn(_) | Target::Pattern(_)))
    {
        return Err(Issue::at_key(
            egress_path.index(i).key(egress::target_key(&rule.target)),
            "this rule allows a DNS name, which needs DNS: list the resolvers the workload uses in spec.dns.resolvers",
        ));
    }

    let policy = Policy {
        name,
        mode,
        selector,
        dns,
        egress,
    };
    capacity::check(&policy, &spec, &Limits::KERNEL)?;
    Ok(policy)
}

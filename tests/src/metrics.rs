//! The daemon's Prometheus text exposition (format 0.0.4), parsed, with
//! lookups by metric name and labels.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result};

/// `openclaw_egress_drops_total{policy,reason,direction}`.
pub const DROPS_TOTAL: &str = "openclaw_egress_drops_total";
/// `openclaw_egress_audit_would_drop_total{policy,reason,direction}`.
pub const AUDIT_WOULD_DROP_TOTAL: &str = "openclaw_egress_audit_would_drop_total";
/// `openclaw_egress_dns_queries_total{policy,verdict=allowed|denied}`.
pub const DNS_QUERIES_TOTAL: &str = "openclaw_egress_dns_queries_total";
/// `openclaw_egress_dns_answers_total{policy,result=parsed|unparsed}`.
pub const DNS_ANSWERS_TOTAL: &str = "openclaw_egress_dns_answers_total";
/// `openclaw_egress_dns_learned_addresses_total{policy}`.
pub const DNS_LEARNED_TOTAL: &str = "openclaw_egress_dns_learned_addresses_total";
/// `openclaw_egress_dns_refused_addresses_total{policy,reason=internal|cap}`.
pub const DNS_REFUSED_TOTAL: &str = "openclaw_egress_dns_refused_addresses_total";
/// `openclaw_egress_learned_ips{policy}` (a gauge).
pub const LEARNED_IPS: &str = "openclaw_egress_learned_ips";

/// One sample of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed Prometheus text exposition.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Metric family name -> type, from the `# TYPE` lines.
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Result<Self> {
        let mut metrics = Self::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .with_context(|| format!("bad TYPE line {line:?}"))?;
                metrics.types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') {
                metrics.samples.push(parse_sample(line)?);
            }
        }
        Ok(metrics)
    }

    /// The metric family names (from `# TYPE`).
    pub fn names(&self) -> BTreeSet<String> {
        self.types.keys().cloned().collect()
    }

    /// The samples of metric `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The value of the series of `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// The sum over every series of `name` that has (at least) `labels`,
    /// e.g. all drops of a policy: `sum(DROPS_TOTAL, &[("policy", "p")])`.
    /// 0 when there is no such series.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v))
            })
            .map(|s| s.value as u64)
            .sum()
    }

    /// `openclaw_egress_drops_total{policy,reason,direction}`, which the
    /// daemon exports for every reason and direction from the start.
    ///
    /// Panics if the series is missing (the daemon must export it).
    #[track_caller]
    pub fn drops(&self, policy: &str, reason: &str, direction: &str) -> u64 {
        let labels = [
            ("policy", policy),
            ("reason", reason),
            ("direction", direction),
        ];
        let value = self
            .value(DROPS_TOTAL, &labels)
            .unwrap_or_else(|| panic!("no {DROPS_TOTAL} series {labels:?} in {self:#?}"));
        value as u64
    }

    /// Every `openclaw_egress_drops_total` series, keyed by
    /// (policy, reason, direction).
    pub fn drop_series(&self) -> BTreeMap<(String, String, String), u64> {
        self.series(DROPS_TOTAL)
            .into_iter()
            .map(|s| {
                let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
                (
                    (label("policy"), label("reason"), label("direction")),
                    s.value as u64,
                )
            })
            .collect()
    }
}

/// `name{k="v",...} value` or `name value` (no timestamps: the daemon
/// does not write them).
fn parse_sample(line: &str) -> Result<Sample> {
    let bad = || anyhow::anyhow!("bad sample line {line:?}");
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..]).ok_or_else(bad)?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(' ').ok_or_else(bad)?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.trim().parse().map_err(|_| bad())?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and what follows the `}`.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        text = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_and_sums_by_label_subset() {
        let text = "# HELP x y\n# TYPE openclaw_egress_drops_total counter\n\
            openclaw_egress_drops_total{policy=\"p\",reason=\"no_rule\",direction=\"egress\"} 3\n\
            openclaw_egress_drops_total{policy=\"p\",reason=\"expired\",direction=\"egress\"} 2\n\
            openclaw_egress_drops_total{policy=\"q\",reason=\"no_rule\",direction=\"egress\"} 7\n\
            plain 1.5\n\
            escaped{a=\"x\\\"y\\\\z\\n\"} 1\n";
        let metrics = Metrics::parse(text).unwrap();
        assert_eq!(metrics.drops("p", "no_rule", "egress"), 3);
        assert_eq!(metrics.sum(DROPS_TOTAL, &[("policy", "p")]), 5);
        assert_eq!(metrics.sum(DROPS_TOTAL, &[]), 12);
        assert_eq!(metrics.sum(DROPS_TOTAL, &[("policy", "r")]), 0);
        assert_eq!(metrics.value("plain", &[]), Some(1.5));
        assert_eq!(metrics.value("escaped", &[("a", "x\"y\\z\n")]), Some(1.0));
        assert_eq!(metrics.types[DROPS_TOTAL], "counter");
        assert!(Metrics::parse("broken{a=\"1\" 2").is_err());
        assert!(Metrics::parse("name notanumber").is_err());
    }
}

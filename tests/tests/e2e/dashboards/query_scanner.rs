//! A small scanner of PromQL queries: their selectors, clause labels and metric names.

use super::*;

// ---------------------------------------------------------------------------
// Just enough PromQL: the `openclaw_egress_*` selectors of a query and the
// labels it groups or matches by.

/// A label matcher of a selector: `label op "value"`.
#[derive(Debug)]
pub(super) struct Matcher {
    pub(super) label: String,
    pub(super) op: &'static str,
    pub(super) value: String,
}

/// `metric{matchers}`.
#[derive(Debug)]
pub(super) struct Selector {
    pub(super) metric: String,
    pub(super) matchers: Vec<Matcher>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        let found = self.text[self.pos..].starts_with(token);
        if found {
            self.pos += token.len();
        }
        found
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// The identifier here (empty if there is none).
    fn ident(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_ident) {
            self.bump();
        }
        &self.text[start..self.pos]
    }

    /// The string literal here, unquoted; `None` if there is none or it is
    /// not closed.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek().filter(|c| matches!(c, '"' | '\'' | '`'))?;
        self.bump();
        let mut value = String::new();
        loop {
            let c = self.peek()?;
            self.bump();
            match c {
                c if c == quote => return Some(value),
                '\\' if quote != '`' => {
                    value.push(self.peek()?);
                    self.bump();
                }
                c => value.push(c),
            }
        }
    }

    /// Moves past the token here: a string, an identifier or one character;
    /// returns the identifier, if it was one.
    fn next_word(&mut self) -> Option<&'a str> {
        match self.peek()? {
            '"' | '\'' | '`' => {
                self.string();
                Some("")
            }
            c if is_ident(c) => Some(self.ident()),
            _ => {
                self.bump();
                Some("")
            }
        }
    }
}

/// Every `openclaw_egress_*` selector of `query` (PromQL, a
/// `label_values(...)` query, or a series in promtool's notation).
pub(super) fn selectors(query: &str) -> Result<Vec<Selector>, String> {
    let mut found = Vec::new();
    let mut cursor = Cursor::new(query);
    while let Some(word) = cursor.next_word() {
        if !word.starts_with(PREFIX) {
            continue;
        }
        let mut selector = Selector {
            metric: word.to_owned(),
            matchers: Vec::new(),
        };
        cursor.skip_whitespace();
        if cursor.eat("{") {
            loop {
                cursor.skip_whitespace();
                if cursor.eat("}") {
                    break;
                }
                if cursor.eat(",") {
                    continue;
                }
                let label = cursor.ident();
                cursor.skip_whitespace();
                let op = ["=~", "!~", "!=", "="]
                    .into_iter()
                    .find(|op| cursor.eat(op))
                    .filter(|_| !label.is_empty())
                    .ok_or_else(|| format!("cannot read the matchers of {word} in {query:?}"))?;
                cursor.skip_whitespace();
                let value = cursor
                    .string()
                    .ok_or_else(|| format!("no quoted value for {label}{op} in {query:?}"))?;
                selector.matchers.push(Matcher {
                    label: label.to_owned(),
                    op,
                    value,
                });
            }
        }
        found.push(selector);
    }
    Ok(found)
}

/// The labels named by the `by`, `without`, `on`, `ignoring`, `group_left`
/// and `group_right` clauses of `query`.
pub(super) fn clause_labels(query: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut cursor = Cursor::new(query);
    while let Some(word) = cursor.next_word() {
        if !matches!(
            word,
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        ) {
            continue;
        }
        cursor.skip_whitespace();
        if !cursor.eat("(") {
            continue;
        }
        loop {
            cursor.skip_whitespace();
            let label = cursor.ident();
            if !label.is_empty() {
                labels.push(label.to_owned());
            }
            cursor.skip_whitespace();
            if !cursor.eat(",") {
                break;
            }
        }
    }
    labels
}

/// `label_values(metric, label)`: the metric and the label.
pub(super) fn label_values(query: &str) -> Option<(&str, &str)> {
    let args = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (series, label) = args.rsplit_once(',')?;
    Some((series.trim(), label.trim()))
}

/// The metric names `queries` use.
pub(super) fn metric_names(queries: &[(String, String)]) -> BTreeSet<String> {
    queries
        .iter()
        .flat_map(|(place, query)| selectors(query).unwrap_or_else(|e| panic!("{place}: {e}")))
        .map(|selector| selector.metric)
        .collect()
}

#[test]
fn the_query_scanner_finds_selectors_and_clause_labels() {
    let query = r#"sum without (reason, direction) (rate(openclaw_egress_drops_total{policy=~"$policy", reason = "no_rule"}[5m]))
        > 4 * on(instance) group_left openclaw_egress_policy_info
        and ignoring (mode) openclaw_egress_learned_ips{a="x\"}openclaw_egress_fake"} or label_replace(vector(1), "d", "openclaw_egress_no", "", "")"#;
    let found = selectors(query).unwrap();
    let names: Vec<&str> = found.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(
        names,
        [
            "openclaw_egress_drops_total",
            "openclaw_egress_policy_info",
            "openclaw_egress_learned_ips"
        ]
    );
    let matchers: Vec<(&str, &str, &str)> = found[0]
        .matchers
        .iter()
        .map(|m| (m.label.as_str(), m.op, m.value.as_str()))
        .collect();
    assert_eq!(
        matchers,
        [("policy", "=~", "$policy"), ("reason", "=", "no_rule")]
    );
    assert_eq!(found[2].matchers[0].value, "x\"}openclaw_egress_fake");
    assert_eq!(
        clause_labels(query),
        ["reason", "direction", "instance", "mode"]
    );
    assert_eq!(
        label_values("label_values(openclaw_egress_policy_info, policy)"),
        Some(("openclaw_egress_policy_info", "policy"))
    );
    assert!(selectors(r#"openclaw_egress_x{a="b""#).is_err());
    assert!(selectors(r#"openclaw_egress_x{a}"#).is_err());
}

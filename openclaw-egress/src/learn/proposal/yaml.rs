//! The bits of YAML writing the renderer needs: scalars quoted when a
//! reader would take them for something else, and comments that stay
//! comments.

use std::borrow::Cow;

/// `text` as a YAML scalar that reads back as the same string: plain when
/// that is safe (names, IPv4 addresses, paths, `443/tcp`), double-quoted
/// otherwise (patterns start with `*`, an alias in YAML; IPv6 addresses
/// hold `:`; `1.5` or `true` would read as a number or a boolean).
pub(super) fn scalar(text: &str) -> Cow<'_, str> {
    let safe_chars = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/');
    let reads_back = || {
        matches!(serde_yaml::from_str::<serde_yaml::Value>(text),
            Ok(serde_yaml::Value::String(read)) if read == text)
    };
    if safe_chars && reads_back() {
        Cow::Borrowed(text)
    } else {
        // A JSON string is a YAML double-quoted scalar.
        Cow::Owned(serde_json::Value::from(text).to_string())
    }
}

/// A flow sequence of scalars: `[a, b]`.
pub(super) fn flow_list<'a>(items: impl IntoIterator<Item = Cow<'a, str>>) -> String {
    let items: Vec<Cow<'a, str>> = items.into_iter().collect();
    format!("[{}]", items.join(", "))
}

/// The most characters of comment text on one line.
pub(super) const COMMENT_WIDTH: usize = 76;

/// `text` as comment lines at `indent`, wrapped at spaces; control
/// characters (a line break would end the comment) become spaces.
pub(super) fn comment(out: &mut String, indent: usize, text: &str) {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut line = String::new();
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        if !line.is_empty() && line.len() + 1 + word.len() > COMMENT_WIDTH {
            push_comment(out, indent, &line);
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        push_comment(out, indent, &line);
    }
}

fn push_comment(out: &mut String, indent: usize, line: &str) {
    out.push_str(&" ".repeat(indent));
    out.push_str("# ");
    out.push_str(line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back_as_the_same_string() {
        // (text, written plain)
        let cases = [
            ("api.example.com", true),
            ("10.0.0.1", true),
            ("203.0.113.5/32", true),
            ("/sys/fs/cgroup/agent", true),
            ("443/tcp", true),
            ("*.example.com", false),
            ("**.example.com", false),
            ("fd00::1", false),
            ("2001:db8::1/128", false),
            ("1.5", false),
            ("true", false),
            ("null", false),
            ("-x", false),
            ("a b", false),
            ("", false),
            ("quote\"d", false),
        ];
        for (text, plain) in cases {
            let written = scalar(text);
            assert_eq!(written == text, plain, "{text} written as {written}");
            let read: String = serde_yaml::from_str(&written).unwrap();
            assert_eq!(read, text);
        }
    }

    #[test]
    fn comments_wrap_and_never_break_out() {
        let mut out = String::new();
        let long = ["a.example.com"; 12].join(", ");
        comment(&mut out, 4, &format!("names: {long}\nkind: EgressPolicy"));
        assert!(out.lines().count() > 1, "{out}");
        for line in out.lines() {
            assert!(line.starts_with("    # "), "{line}");
            assert!(line.len() <= 4 + 2 + COMMENT_WIDTH, "{line}");
        }
        let value: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(value, serde_yaml::Value::Null);
    }
}

//! Kubernetes label syntax for `podLabels`: the API server would never
//! store a label outside it, so such a selector could never match a pod.

const MAX_NAME_LEN: usize = 63;
const MAX_PREFIX_LEN: usize = 253;

/// `[prefix/]name`, e.g. `app` or `app.kubernetes.io/name`.
pub(super) fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(format!(
            "the prefix of label key `{key}` must be a lowercase DNS subdomain such as `example.com` \
             (at most {MAX_PREFIX_LEN} characters)"
        ));
    }
    if !is_name(name) {
        return Err(format!(
            "the name in label key `{key}` must be 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

pub(super) fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name(value) {
        Ok(())
    } else {
        Err(format!(
            "label value `{value}` must be at most {MAX_NAME_LEN} letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit"
        ))
    }
}

fn is_name(s: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= MAX_NAME_LEN
        && edge_ok(s.chars().next())
        && edge_ok(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= MAX_PREFIX_LEN
        && s.split('.').all(|label| {
            let edge_ok =
                |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            edge_ok(label.chars().next())
                && edge_ok(label.chars().last())
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_labels_follow_kubernetes_syntax() {
        for key in [
            "app",
            "app.kubernetes.io/name",
            "a",
            "A_b.c-D",
            "example.com/x",
        ] {
            assert_eq!(check_key(key), Ok(()), "{key}");
        }
        for key in [
            "",
            "-app",
            "app-",
            "a/b/c",
            "Example.com/x",
            "/x",
            "x/",
            "a b",
            &"k".repeat(64),
        ] {
            assert!(check_key(key).is_err(), "{key}");
        }
        for value in ["", "openclaw", "v1.2_3"] {
            assert_eq!(check_value(value), Ok(()), "{value}");
        }
        for value in ["-x", "x y", &"v".repeat(64)] {
            assert!(check_value(value).is_err(), "{value}");
        }
    }
}

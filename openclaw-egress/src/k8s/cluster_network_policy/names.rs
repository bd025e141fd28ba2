//! The name of the policy an object becomes, hashed when it does not fit.

use crate::policy;

/// The name of the policy an object named `cnp_name` becomes: `cnp-<name>`.
///
/// Policy names are DNS labels (at most 63 lowercase alphanumerics and '-'),
/// object names DNS subdomains (up to 253 characters, dots allowed). A name
/// that does not fit is cut, its other characters turned into '-', and a
/// hash of the whole object name appended (`-` and 10 hex digits), so that
/// two objects never share a policy name unless their names' hashes
/// collide. A name that already ends like such a hash is hashed too, so no
/// object named to look hashed can take another's name.
///
/// The hash is FNV-1a (64 bits, the top 40 shown): it must never change,
/// since policy names outlive daemon versions (bpffs pins, state files).
pub fn policy_name(cnp_name: &str) -> String {
    const PREFIX: &str = "cnp-";
    const MAX_LEN: usize = 63;
    const HASH_DIGITS: usize = 10;

    let plain = format!("{PREFIX}{cnp_name}");
    if policy::check_name(&plain).is_ok() && !ends_like_hash(&plain, HASH_DIGITS) {
        return plain;
    }
    let hash = format!("{:016x}", fnv1a(cnp_name.as_bytes()));
    let stem: String = plain
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(MAX_LEN - HASH_DIGITS - 1)
        .collect();
    format!("{stem}-{}", &hash[..HASH_DIGITS])
}

/// `…-` followed by `digits` lowercase hex digits: the shape of a hashed name.
fn ends_like_hash(name: &str, digits: usize) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > digits
        && bytes[bytes.len() - digits - 1] == b'-'
        && bytes[bytes.len() - digits..]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 64-bit FNV-1a: small, dependency-free and fixed forever.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_network_policy_names_fit_as_they_are() {
        assert_eq!(policy_name("allow-github"), "cnp-allow-github");
        let longest = "a".repeat(59);
        assert_eq!(policy_name(&longest), format!("cnp-{longest}"));
    }

    #[test]
    fn cluster_network_policy_names_that_do_not_fit_are_hashed() {
        let hashed = |name: &str| {
            let policy = policy_name(name);
            assert!(policy::check_name(&policy).is_ok(), "{policy}");
            assert!(policy.starts_with("cnp-"), "{policy}");
            assert!(ends_like_hash(&policy, 10), "{policy}");
            policy
        };
        // Too long by one.
        let long = "a".repeat(60);
        let policy = hashed(&long);
        assert_eq!(policy.len(), 63);
        assert!(policy.starts_with(&format!("cnp-{}", "a".repeat(48))));
        // Dots (object names are DNS subdomains).
        assert!(hashed("egress.agents.example").starts_with("cnp-egress-agents-example-"));
        // The longest object name there is.
        assert_eq!(hashed(&"b".repeat(253)).len(), 63);
        // Distinct objects, even with the same cut prefix or the same
        // characters after '.' becomes '-'.
        assert_ne!(hashed(&format!("{long}x")), hashed(&format!("{long}y")));
        assert_ne!(hashed("a.b"), policy_name("a-b"));
    }

    #[test]
    fn cluster_network_policy_names_that_look_hashed_are_hashed_again() {
        // An object named to look like another's hashed name cannot take it.
        let dotted = policy_name("a.b");
        let impostor = dotted.strip_prefix("cnp-").unwrap();
        assert_ne!(policy_name(impostor), dotted);
        assert!(policy_name("release-0123456789").starts_with("cnp-release-0123456789-"));
        // Not hex, or not 10 digits: as is.
        assert_eq!(policy_name("release-012345678g"), "cnp-release-012345678g");
        assert_eq!(policy_name("release-012345678"), "cnp-release-012345678");
    }

    #[test]
    fn cluster_network_policy_name_hash_is_stable() {
        // FNV-1a's published test vectors; the names pin the rest.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(policy_name("a.b"), "cnp-a-b-e61d991904");
    }
}

//! DNS question types as records show them (`A`, `AAAA`, or the number).

const KNOWN: [(u16, &str); 9] = [
    (1, "A"),
    (5, "CNAME"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (64, "SVCB"),
    (65, "HTTPS"),
];

/// The mnemonic of `qtype`, or its number.
pub fn name(qtype: u16) -> String {
    KNOWN
        .iter()
        .find(|(number, _)| *number == qtype)
        .map_or_else(|| qtype.to_string(), |(_, name)| (*name).to_string())
}

/// Back from [`name`].
pub fn number(name: &str) -> Option<u16> {
    KNOWN
        .iter()
        .find(|(_, known)| *known == name)
        .map(|(number, _)| *number)
        .or_else(|| name.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_round_trip() {
        for qtype in [1, 28, 65, 99] {
            assert_eq!(super::number(&super::name(qtype)), Some(qtype));
        }
        assert_eq!(super::name(28), "AAAA");
        assert_eq!(super::number("bogus"), None);
    }
}

//! Finding the line and column of a field path in the policy text.
//!
//! serde_yaml keeps positions only inside its errors: an error raised by a
//! visitor while serde_yaml hands it a node is stamped with that node's
//! position. Errors raised later (after a struct's fields were read, or in
//! validation after parsing) get the position of the enclosing mapping, or
//! none, which would point users at the wrong line. So to locate a field,
//! this walks the document again with serde_yaml, down the field path, and
//! deliberately fails on the wanted node: the error's position is the answer.
//! The walk uses the same parser as the real parse, so positions always
//! agree with it; it runs only when an error is reported.

use std::{cell::Cell, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{
    error::Location,
    path::{FieldPath, Segment},
};

/// Which part of a `key: value` entry to point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Key,
    /// For a scalar, its first character; for a block mapping, its first key;
    /// for a block sequence, its first `-`.
    Value,
}

/// The position of `part` of the field at `path` in the first document of
/// `yaml`. If the field is not in the text (e.g. a missing field), the
/// nearest enclosing field that is, pointing at its key.
pub(super) fn locate(yaml: &str, path: &FieldPath, part: Part) -> Option<Location> {
    let mut path = path.clone();
    let mut part = part;
    loop {
        if let Some(location) = probe(yaml, path.segments(), part) {
            return Some(location);
        }
        if !path.pop() {
            return None;
        }
        part = Part::Key;
    }
}

/// Where the root node of `document` starts.
pub(super) fn start_of(document: serde_yaml::Deserializer<'_>) -> Option<Location> {
    let error = document.deserialize_any(FailHere).err()?;
    error.location().map(Location::from)
}

fn probe(yaml: &str, segments: &[Segment], part: Part) -> Option<Location> {
    let document = serde_yaml::Deserializer::from_str(yaml).next()?;
    let found = Cell::new(false);
    let error = Probe {
        segments,
        part,
        found: &found,
    }
    .deserialize(document)
    .err()?;
    // Any other error (the path does not exist, a type differs) has a
    // position unrelated to the path.
    if found.get() {
        error.location().map(Location::from)
    } else {
        None
    }
}

struct Probe<'a> {
    segments: &'a [Segment],
    part: Part,
    /// Set just before failing on purpose at the wanted node.
    found: &'a Cell<bool>,
}

impl Probe<'_> {
    fn rest(&self) -> Probe<'_> {
        Probe {
            segments: &self.segments[1..],
            part: self.part,
            found: self.found,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.segments.is_empty() {
            self.found.set(true);
            deserializer.deserialize_any(FailHere)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or sequence on the field path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Segment::Key(wanted) = &self.segments[0] else {
            return Ok(());
        };
        let key_is_target = self.part == Part::Key && self.segments.len() == 1;
        let matcher = || KeyMatch {
            wanted,
            fail: key_is_target,
            found: self.found,
        };
        while let Some(matched) = map.next_key_seed(matcher())? {
            if matched {
                return map.next_value_seed(self.rest());
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Segment::Index(index) = self.segments[0] else {
            return Ok(());
        };
        for _ in 0..index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(self.rest()).map(drop)
    }
}

/// Reads a mapping key and tells whether it is the wanted one; fails on it
/// if the key itself is the target.
struct KeyMatch<'a> {
    wanted: &'a str,
    fail: bool,
    found: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        // As a string, so that a key like `1` compares by its text.
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        if key != self.wanted {
            return Ok(false);
        }
        if self.fail {
            self.found.set(true);
            return Err(E::custom("located"));
        }
        Ok(true)
    }
}

/// Fails on whatever node it is given: every `Visitor` method left at its
/// default rejects the node, from inside serde_yaml's handling of that node.
struct FailHere;

impl Visitor<'_> for FailHere {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing (this only locates nodes)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
# comment
spec:
  egress:
    - fqdn: a.example.com
      ports: [443, \"80/tcp\"]
    - ports:
        - 1
      cidr:   10.0.0.0/8
  labels: {a: b, 1: c}
";

    fn at(path: FieldPath, part: Part) -> Option<(usize, usize)> {
        locate(YAML, &path, part).map(|l| (l.line, l.column))
    }

    #[test]
    fn policy_locate_finds_keys_and_values() {
        let egress = FieldPath::root().key("spec").key("egress");
        assert_eq!(at(FieldPath::root(), Part::Value), Some((2, 1)));
        assert_eq!(at(FieldPath::root().key("spec"), Part::Key), Some((2, 1)));
        assert_eq!(at(egress.clone(), Part::Key), Some((3, 3)));
        assert_eq!(at(egress.index(1), Part::Value), Some((6, 7)));
        assert_eq!(
            at(egress.index(0).key("ports").index(1), Part::Value),
            Some((5, 20))
        );
        assert_eq!(at(egress.index(1).key("cidr"), Part::Key), Some((8, 7)));
        assert_eq!(at(egress.index(1).key("cidr"), Part::Value), Some((8, 15)));
        assert_eq!(
            at(
                FieldPath::root().key("spec").key("labels").key("1"),
                Part::Key
            ),
            Some((9, 18))
        );
    }

    /// The serde_yaml behaviour this module is built on, and the reason it
    /// exists: an error raised while a visitor is handed a node carries that
    /// node's position, but one raised after the node was read (the usual
    /// place for validation) carries the enclosing mapping's start.
    #[test]
    fn policy_serde_yaml_positions_errors_by_the_node_being_visited() {
        #[derive(Debug, serde::Deserialize)]
        struct Rule {
            #[serde(rename = "ports")]
            _ports: IgnoredAny,
            #[serde(rename = "cidr", deserialize_with = "reject_after_reading")]
            _cidr: (),
        }
        fn reject_after_reading<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
            let _: String = serde::Deserialize::deserialize(d)?;
            Err(de::Error::custom("rejected"))
        }
        let yaml = "ports: [1]\ncidr: 10.0.0.0/8\n";
        let error = serde_yaml::from_str::<Rule>(yaml).unwrap_err();
        let location = error.location().unwrap();
        assert_eq!((location.line(), location.column()), (1, 1), "{error}");

        let path = FieldPath::root().key("cidr");
        let located = locate(yaml, &path, Part::Value).unwrap();
        assert_eq!((located.line, located.column), (2, 7));
    }

    #[test]
    fn policy_locate_falls_back_to_the_nearest_existing_key() {
        let egress = FieldPath::root().key("spec").key("egress");
        assert_eq!(at(egress.index(0).key("cidr"), Part::Value), Some((4, 7)));
        assert_eq!(at(egress.index(7), Part::Value), Some((3, 3)));
        assert_eq!(at(FieldPath::root().key("nope"), Part::Key), Some((2, 1)));
    }
}

//! From policy text to one YAML mapping: YAML syntax, duplicate keys, empty
//! files, several documents in one file, and a top level that is not a
//! mapping are all reported here, each with its position.

use std::{cell::Cell, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_yaml::{Mapping, Value};

use super::{
    error::{Diagnostic, Location},
    locate::{self, Part},
    path::FieldPath,
};

/// The single document in `yaml`, which is a mapping.
pub(super) fn load(yaml: &str) -> Result<Mapping, Diagnostic> {
    let mut documents = serde_yaml::Deserializer::from_str(yaml);
    let problem = Cell::new(None);
    // serde_yaml yields one (null) document even for an empty text.
    let value = match documents.next() {
        Some(document) => Builder {
            path: FieldPath::root(),
            unique_in: None,
            problem: &problem,
        }
        .deserialize(document)
        .map_err(|error| diagnose(yaml, &error, problem.take()))?,
        None => Value::Null,
    };
    // Only after a clean first document: following a syntax error,
    // serde_yaml's document iterator never ends.
    if let Some(second) = documents.next() {
        return Err(Diagnostic {
            location: locate::start_of(second),
            path: FieldPath::root(),
            message: "the file holds more than one YAML document; put each policy in its own file"
                .into(),
        });
    }
    let found = match value {
        Value::Mapping(mapping) => return Ok(mapping),
        Value::Null => {
            return Err(Diagnostic {
                location: None,
                path: FieldPath::root(),
                message: "the policy is empty; expected a mapping with apiVersion, kind, metadata and spec".into(),
            });
        }
        Value::Sequence(_) => "a list",
        _ => "a single value",
    };
    Err(Diagnostic {
        location: locate::locate(yaml, &FieldPath::root(), Part::Value),
        path: FieldPath::root(),
        message: format!(
            "a policy is a mapping with apiVersion, kind, metadata and spec, but the file holds {found}"
        ),
    })
}

/// A problem the builder found itself, as (field, message). Passed out
/// beside the error because a serde_yaml error can only carry text.
type Problem = Option<(FieldPath, String)>;

fn diagnose(yaml: &str, error: &serde_yaml::Error, problem: Problem) -> Diagnostic {
    let location = error.location().map(Location::from);
    if let Some((path, message)) = problem {
        return Diagnostic {
            location,
            path,
            message,
        };
    }
    // A syntax error. Its text repeats the position, which is shown apart.
    let mut message = error.to_string();
    if let Some(Location { line, column }) = location {
        message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
        let at = yaml
            .lines()
            .nth(line - 1)
            .and_then(|text| text.chars().nth(column - 1));
        if at == Some('\t') {
            message += " (YAML does not allow tabs for indentation; use spaces)";
        }
    }
    Diagnostic {
        location,
        path: FieldPath::root(),
        message: format!("invalid YAML: {message}"),
    }
}

/// Builds a [`Value`] like serde_yaml does, but fails on a duplicate key at
/// the key itself (serde_yaml's own check points at the start of the
/// mapping) and rejects tags, which have no meaning in a policy.
struct Builder<'a> {
    path: FieldPath,
    /// Set while reading a key: the entries already read from its mapping.
    unique_in: Option<&'a Mapping>,
    problem: &'a Cell<Problem>,
}

impl Builder<'_> {
    fn fail<E: de::Error>(&self, path: FieldPath, message: String) -> E {
        self.problem.set(Some((path, message)));
        E::custom("see the stashed problem")
    }

    fn scalar<E: de::Error>(self, value: Value) -> Result<Value, E> {
        if let Some(mapping) = self.unique_in
            && mapping.contains_key(&value)
        {
            let key = key_text(&value);
            return Err(self.fail(
                self.path.key(&key),
                format!("duplicate key `{key}`; each key may appear only once"),
            ));
        }
        Ok(value)
    }

    fn complex_key<E: de::Error>(&self) -> Option<E> {
        self.unique_in.is_some().then(|| {
            self.fail(
                self.path.clone(),
                "mapping keys must be plain values, not lists or mappings".into(),
            )
        })
    }
}

impl<'de> DeserializeSeed<'de> for Builder<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Builder<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.scalar(v.into())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.scalar(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.scalar(v.into())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Err(self.fail(self.path.clone(), format!("the number {v} is too large")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Err(self.fail(self.path.clone(), format!("the number {v} is too large")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.scalar(v.into())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.scalar(v.into())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.scalar(Value::Null)
    }

    /// serde_yaml's answer for a document with no content.
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.scalar(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if let Some(error) = self.complex_key() {
            return Err(error);
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Builder {
            path: self.path.index(items.len()),
            unique_in: None,
            problem: self.problem,
        })? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if let Some(error) = self.complex_key() {
            return Err(error);
        }
        let mut mapping = Mapping::new();
        loop {
            let key_reader = Builder {
                path: self.path.clone(),
                unique_in: Some(&mapping),
                problem: self.problem,
            };
            let Some(key) = map.next_key_seed(key_reader)? else {
                break;
            };
            let value = map.next_value_seed(Builder {
                path: self.path.key(&key_text(&key)),
                unique_in: None,
                problem: self.problem,
            })?;
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // serde_yaml hands over a node with a `!tag` as an enum.
        let (tag, _) = data.variant::<String>()?;
        Err(self.fail(
            self.path.clone(),
            format!("YAML tags such as `!{tag}` have no meaning in a policy"),
        ))
    }
}

/// How a key is spelled in field paths.
fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "~".into(),
    }
}

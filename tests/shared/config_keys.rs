//! Keeps example configuration files complete: [`struct_keys`] lists every
//! key a configuration type accepts by walking its `Deserialize` impl (the
//! field lists serde's derive hands to `deserialize_struct`, through
//! options, sequences, maps and enums), and [`example_keys`] lists every key
//! an example YAML file shows, commented out or not. A test asserts the
//! first is covered by the second, so a new configuration key cannot ship
//! undocumented.
//!
//! Shared by the collector's and the agent's tests through `#[path]`, so it
//! depends on std and serde only.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

/// Scalar values offered to leaf types, tried in order until the type
/// accepts one: durations, addresses, sizes, URLs, numbers, flags.
#[derive(Clone, Copy, Debug)]
enum Candidate {
    Str(&'static str),
    U64(u64),
    Bool(bool),
}

const CANDIDATES: &[Candidate] = &[
    Candidate::Str("1s"),
    Candidate::Str("127.0.0.1:1"),
    Candidate::Str("1MiB"),
    Candidate::Str("http://127.0.0.1:1/"),
    Candidate::U64(1),
    Candidate::Str("x"),
    Candidate::Bool(true),
];

#[derive(Default)]
struct State {
    keys: BTreeSet<String>,
    /// Candidate index per leaf path.
    choice: BTreeMap<String, usize>,
    /// The leaf most recently handed a value: the one to blame for an error.
    last_leaf: Option<String>,
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

#[derive(Clone)]
struct Walker {
    path: String,
    state: Rc<RefCell<State>>,
}

impl Walker {
    fn child(&self, segment: &str) -> Walker {
        Walker {
            path: if self.path.is_empty() {
                segment.to_string()
            } else {
                format!("{}.{segment}", self.path)
            },
            state: self.state.clone(),
        }
    }

    fn candidate(&self) -> Candidate {
        let mut st = self.state.borrow_mut();
        st.last_leaf = Some(self.path.clone());
        let i = st.choice.get(&self.path).copied().unwrap_or(0);
        CANDIDATES[i.min(CANDIDATES.len() - 1)]
    }

    fn leaf<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.candidate() {
            Candidate::Str(s) => visitor.visit_str(s),
            Candidate::U64(n) => visitor.visit_u64(n),
            Candidate::Bool(b) => visitor.visit_bool(b),
        }
    }
}

/// Every key path `T` accepts, dot-separated (`remote_write.tls_config.ca_file`);
/// a map's user-chosen keys are `*` (`llm.prices.*.input`), a sequence's
/// items share their sequence's path.
pub fn struct_keys<T: DeserializeOwned>() -> BTreeSet<String> {
    let state = Rc::new(RefCell::new(State::default()));
    for _attempt in 0..1000 {
        state.borrow_mut().last_leaf = None;
        let walker = Walker {
            path: String::new(),
            state: state.clone(),
        };
        match T::deserialize(walker) {
            Ok(_) => return std::mem::take(&mut state.borrow_mut().keys),
            Err(e) => {
                let mut st = state.borrow_mut();
                let leaf = st
                    .last_leaf
                    .clone()
                    .unwrap_or_else(|| panic!("configuration walk failed outside a value: {e}"));
                let i = st.choice.entry(leaf.clone()).or_insert(0);
                *i += 1;
                assert!(
                    *i < CANDIDATES.len(),
                    "no sample value fits {leaf}: {e} (add a candidate to tests/shared/config_keys.rs)"
                );
            }
        }
    }
    panic!("configuration walk did not settle");
}

macro_rules! leaf_methods {
    ($($name:ident)*) => {
        $(fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.leaf(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Walker {
    type Error = Error;

    leaf_methods!(deserialize_any deserialize_str deserialize_string deserialize_identifier);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.candidate();
        visitor.visit_bool(true)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.candidate();
        visitor.visit_i64(1)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_u64(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_u64(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_u64(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.candidate();
        visitor.visit_u64(1)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_f64(v)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.candidate();
        visitor.visit_f64(1.0)
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.candidate();
        visitor.visit_char('x')
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.candidate();
        visitor.visit_bytes(b"x")
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Items {
            walker: self,
            left: 1,
        })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Items {
            walker: self,
            left: len,
        })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Entries {
            key_walker: self.child("*"),
            fields: None,
            walker: self,
            next: 0,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        {
            let mut st = self.state.borrow_mut();
            for f in fields {
                let path = self.child(f).path;
                st.keys.insert(path);
            }
        }
        visitor.visit_map(Entries {
            key_walker: self.child("*"),
            fields: Some(fields),
            walker: self,
            next: 0,
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Walk the variant the candidate index picks, so a failing one is
        // skipped like a failing scalar.
        let i = {
            let mut st = self.state.borrow_mut();
            st.last_leaf = Some(self.path.clone());
            st.choice.get(&self.path).copied().unwrap_or(0)
        };
        let variant = variants
            .get(i)
            .copied()
            .ok_or_else(|| Error(format!("{}: no variant fits", self.path)))?;
        visitor.visit_enum(Variant {
            walker: self,
            variant,
        })
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct Items {
    walker: Walker,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Items {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(self.walker.clone()).map(Some)
    }
}

/// A struct's fields (each once) or a map's single sample entry.
struct Entries {
    walker: Walker,
    key_walker: Walker,
    fields: Option<&'static [&'static str]>,
    next: usize,
}

impl<'de> de::MapAccess<'de> for Entries {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.fields {
            Some(fields) => {
                let Some(f) = fields.get(self.next) else {
                    return Ok(None);
                };
                self.next += 1;
                let key: de::value::StrDeserializer<'_, Error> = f.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => {
                if self.next > 0 {
                    return Ok(None);
                }
                self.next += 1;
                seed.deserialize(self.key_walker.clone()).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.fields {
            Some(fields) => seed.deserialize(self.walker.child(fields[self.next - 1])),
            None => seed.deserialize(self.key_walker.clone()),
        }
    }
}

struct Variant {
    walker: Walker,
    variant: &'static str,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = Error;
    type Variant = Walker;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Walker), Error> {
        let key: de::value::StrDeserializer<'_, Error> = self.variant.into_deserializer();
        Ok((seed.deserialize(key)?, self.walker))
    }
}

impl<'de> de::VariantAccess<'de> for Walker {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

/// Every key path an example YAML file shows, commented out (`# key: …`,
/// indented as it would be uncommented) or not; sequence items share their
/// sequence's path and flow mappings (`{input: 1, output: 2}`) count too.
pub fn example_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    // (indent, key) of the enclosing keys.
    let mut stack: Vec<(usize, String)> = Vec::new();
    for raw in text.lines() {
        let lead = raw.len() - raw.trim_start().len();
        let mut rest = raw.trim_start();
        let mut indent = lead;
        if let Some(c) = rest.strip_prefix('#') {
            let c = c.strip_prefix(' ').unwrap_or(c);
            // `# ` takes no columns: `#   key:` is indented as `  key:`.
            indent = lead + (c.len() - c.trim_start().len());
            rest = c.trim_start();
        }
        while let Some(item) = rest.strip_prefix("- ") {
            indent += 2;
            rest = item.trim_start();
        }
        let Some((key, value)) = rest.split_once(':') else {
            continue;
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
            || !(value.is_empty() || value.starts_with(' '))
        {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let mut path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
        path.push(key);
        let joined = path.join(".");
        let value = value.trim();
        if let Some(flow) = value.strip_prefix('{') {
            for part in flow.trim_end_matches('}').split(',') {
                if let Some((k, _)) = part.split_once(':') {
                    keys.insert(format!("{joined}.{}", k.trim()));
                }
            }
        }
        keys.insert(joined);
        stack.push((indent, key.to_string()));
    }
    keys
}

/// The struct keys the example does not show; `*` in a struct key matches
/// any one segment of the example's.
pub fn missing_keys(structs: &BTreeSet<String>, example: &BTreeSet<String>) -> Vec<String> {
    let matches = |pattern: &str, key: &str| {
        let p: Vec<&str> = pattern.split('.').collect();
        let k: Vec<&str> = key.split('.').collect();
        p.len() == k.len() && p.iter().zip(&k).all(|(a, b)| *a == "*" || a == b)
    };
    structs
        .iter()
        .filter(|s| !example.iter().any(|e| matches(s, e)))
        .cloned()
        .collect()
}

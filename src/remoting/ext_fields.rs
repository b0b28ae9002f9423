//! `ExtFields`: a request's extFields as a small vector map. Headers carry at most a couple
//! dozen keys, so a linear scan beats hashing, and decoding allocates one vector, not a table;
//! keys and values up to 24 bytes live inline (`CompactString`), so most fields allocate nothing.

use compact_str::CompactString;
#[cfg(test)]
use serde::de::{Deserializer, MapAccess, Visitor};
#[cfg(test)]
use std::fmt;

#[derive(Debug, Clone, Default)]
pub struct ExtFields(Vec<(CompactString, CompactString)>);

impl ExtFields {
    pub fn new() -> Self {
        ExtFields(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        ExtFields(Vec::with_capacity(n))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key`; a later value replaces an earlier one (Java decodes into a map, last wins).
    pub fn insert(&mut self, key: impl Into<CompactString>, value: impl Into<CompactString>) {
        let (key, value) = (key.into(), value.into());
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Pairs sorted by key (fastjson writes keys sorted).
    pub fn sorted(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<_> = self.iter().collect();
        v.sort();
        v
    }
}

impl PartialEq for ExtFields {
    fn eq(&self, other: &Self) -> bool {
        self.sorted() == other.sorted()
    }
}

impl Eq for ExtFields {}

impl std::ops::Index<&str> for ExtFields {
    type Output = CompactString;

    /// An absent key reads as the empty string (tests compare values; nothing panics).
    fn index(&self, key: &str) -> &CompactString {
        static EMPTY: CompactString = CompactString::const_new("");
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or(&EMPTY)
    }
}

/// A JSON scalar as the string Java's `toString()` would give; null is absent. Only the tests
/// still read headers through serde: it is the reference the hand-written decoder must match.
#[cfg(test)]
pub(crate) struct LenientString(pub Option<String>);

#[cfg(test)]
impl<'de> serde::Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E>(self, v: &str) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<LenientString, E> {
                Ok(LenientString(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<LenientString, E> {
                Ok(LenientString(None))
            }
            fn visit_none<E>(self) -> Result<LenientString, E> {
                Ok(LenientString(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<LenientString, A::Error> {
                // A nested object has no place in extFields; skip it rather than fail the request.
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(LenientString(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<LenientString, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(LenientString(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
impl<'de> serde::Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an extFields object or null")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ExtFields, A::Error> {
                let mut out = ExtFields::with_capacity(m.size_hint().unwrap_or(16));
                while let Some((k, v)) = m.next_entry::<String, LenientString>()? {
                    if let Some(v) = v.0 {
                        out.insert(k, v);
                    }
                }
                Ok(out)
            }
            fn visit_unit<E>(self) -> Result<ExtFields, E> {
                Ok(ExtFields::new())
            }
            fn visit_none<E>(self) -> Result<ExtFields, E> {
                Ok(ExtFields::new())
            }
        }
        d.deserialize_any(V)
    }
}

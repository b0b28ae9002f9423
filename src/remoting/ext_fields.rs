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

    /// Appends without looking for an earlier value of the key: decoders push every field,
    /// then call `finish_decoding` once, so a header of n fields costs O(n), not O(n²).
    pub fn push_decoded(&mut self, key: impl Into<CompactString>, value: impl Into<CompactString>) {
        self.0.push((key.into(), value.into()));
    }

    /// Drops earlier values of repeated keys (last wins, as in Java's map), keeping the order
    /// in which keys first appeared.
    pub fn finish_decoding(&mut self) {
        let n = self.0.len();
        if n < 2 {
            return;
        }
        let has_duplicates = if n <= 32 {
            (1..n).any(|i| self.0[..i].iter().any(|(k, _)| *k == self.0[i].0))
        } else {
            let mut seen = std::collections::HashSet::with_capacity(n);
            !self.0.iter().all(|(k, _)| seen.insert(k.as_str()))
        };
        if !has_duplicates {
            return;
        }
        let mut last: std::collections::HashMap<CompactString, usize> =
            std::collections::HashMap::with_capacity(n);
        for (i, (k, _)) in self.0.iter().enumerate() {
            last.insert(k.clone(), i);
        }
        let mut first_seen: std::collections::HashMap<&str, usize> = Default::default();
        for (i, (k, _)) in self.0.iter().enumerate() {
            first_seen.entry(k.as_str()).or_insert(i);
        }
        let mut keep: Vec<(usize, usize)> = last
            .iter()
            .map(|(k, &i)| (first_seen.get(k.as_str()).copied().unwrap_or(i), i))
            .collect();
        keep.sort_unstable();
        let old = std::mem::take(&mut self.0);
        let mut slots: Vec<Option<(CompactString, CompactString)>> =
            old.into_iter().map(Some).collect();
        self.0 = keep
            .into_iter()
            .filter_map(|(_, i)| slots.get_mut(i).and_then(Option::take))
            .collect();
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

#[cfg(test)]
mod dedup_tests {
    use super::*;

    #[test]
    fn decoding_many_fields_is_linear_and_last_wins() {
        let mut e = ExtFields::new();
        for i in 0..20_000 {
            e.push_decoded(format!("k{}", i % 10_000), format!("v{i}"));
        }
        let started = std::time::Instant::now();
        e.finish_decoding();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(e.iter().count(), 10_000);
        assert_eq!(e.get("k7"), Some("v10007"));
        assert_eq!(e.iter().next(), Some(("k0", "v10000")));
        let mut small = ExtFields::new();
        small.push_decoded("a", "1");
        small.push_decoded("b", "2");
        small.push_decoded("a", "3");
        small.finish_decoding();
        assert_eq!(
            small.iter().collect::<Vec<_>>(),
            vec![("a", "3"), ("b", "2")]
        );
    }
}

//! The files of an Apache RocketMQ broker's `store/config/` directory that an import reads and
//! an export writes: `topics.json`, `subscriptionGroup.json` and `consumerOffset.json`.
//!
//! Apache writes them with fastjson, which up to 5.4 leaves integer map keys unquoted
//! (`{0:15,1:15}`, apache/rocketmq#1506); `parse` quotes them first, so both dialects read. An
//! export writes standard JSON, which every Apache version (and fastjson) reads. The configs
//! inside are the JSON shapes of the remoting admin codes (`remoting::body`), read and written
//! there.

use crate::remoting::body;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const TOPICS: &str = "topics.json";
pub const GROUPS: &str = "subscriptionGroup.json";
pub const OFFSETS: &str = "consumerOffset.json";
pub const ACL: &str = "plain_acl.yml";

/// `topics.json`: topic name → TopicConfig, read by `body::parse_topic_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicsFile {
    pub topic_config_table: BTreeMap<String, Value>,
}

/// `subscriptionGroup.json`: group name → SubscriptionGroupConfig, read by
/// `body::parse_group_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupsFile {
    pub subscription_group_table: BTreeMap<String, Value>,
}

/// `consumerOffset.json`'s `offsetTable`: `topic@group` → queue id → the next offset to
/// consume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetsFile {
    pub offset_table: BTreeMap<String, BTreeMap<String, i64>>,
}

impl OffsetsFile {
    /// The file as an export writes it.
    pub fn to_value(&self) -> Value {
        let n = self.offset_table.len() as u64;
        serde_json::json!({"offsetTable": self.offset_table, "dataVersion": body::data_version(n)})
    }
}

/// Reads one of the files, either fastjson dialect.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, String> {
    serde_json::from_str(&quote_bare_keys(text)).map_err(|e| format!("{file}: {e}"))
}

/// Splits an `offsetTable` key, `topic@group` (neither name may hold '@').
pub fn split_offset_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('@')
        .filter(|(t, g)| !t.is_empty() && !g.is_empty())
}

/// Quotes the bare numeric object keys fastjson writes (`{0:15}` → `{"0":15}`), leaving
/// strings, values and already-quoted keys as they are.
pub fn quote_bare_keys(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len() + b.len() / 8);
    // Open containers ('{' or '['): a ',' in an object comes before a key, in an array not.
    let mut open: Vec<u8> = Vec::new();
    let mut key_next = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                // A string, escapes and all, copied as it is.
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                out.extend_from_slice(&b[start..i]);
                key_next = false;
                continue;
            }
            b'{' => {
                open.push(c);
                key_next = true;
            }
            b'[' => {
                open.push(c);
                key_next = false;
            }
            b'}' | b']' => {
                open.pop();
                key_next = false;
            }
            b',' => key_next = open.last() == Some(&b'{'),
            c if c.is_ascii_whitespace() => {}
            c if key_next && (c.is_ascii_digit() || c == b'-') => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"-+.".contains(&b[i])) {
                    i += 1;
                }
                out.push(b'"');
                out.extend_from_slice(&b[start..i]);
                out.push(b'"');
                key_next = false;
                continue;
            }
            _ => key_next = false,
        }
        out.push(c);
        i += 1;
    }
    // Only ASCII quotes were added around ASCII runs, and strings were copied whole.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Pretty JSON as an export writes it.
pub fn to_text(value: &Value) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_keys_are_quoted_and_nothing_else_changes() {
        let text =
            r#"{"offsetTable":{"T@G":{0:15,1:16, -2 : 3},"a{0:1}":[1,2,{3:4}]},"s":"x\"{5:6}"}"#;
        let fixed = quote_bare_keys(text);
        assert_eq!(
            fixed,
            r#"{"offsetTable":{"T@G":{"0":15,"1":16, "-2" : 3},"a{0:1}":[1,2,{"3":4}]},"s":"x\"{5:6}"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(v["offsetTable"]["T@G"]["1"], 16);
        // Standard JSON goes through unchanged.
        let std = r#"{"a":{"0":1},"b":[0,1]}"#;
        assert_eq!(quote_bare_keys(std), std);
        // Broken input stays broken (and is reported by the parser), never a panic.
        for bad in ["{0:", "{\"a", "}}]]", "{\"\\", "{-"] {
            let _ = quote_bare_keys(bad);
        }
    }

    #[test]
    fn reads_both_dialects_of_consumer_offsets() {
        let old = "{\n\t\"offsetTable\":{\n\t\t\"TopicTest@g1\":{0:250,1:251\n\t\t}\n\t}\n}";
        let f: OffsetsFile = parse(OFFSETS, old).unwrap();
        assert_eq!(f.offset_table["TopicTest@g1"]["1"], 251);
        let new = r#"{"offsetTable":{"TopicTest@g1":{"0":250}},"dataVersion":{"counter":3}}"#;
        let f: OffsetsFile = parse(OFFSETS, new).unwrap();
        assert_eq!(f.offset_table["TopicTest@g1"]["0"], 250);
        assert_eq!(f.to_value()["offsetTable"]["TopicTest@g1"]["0"], 250);
        assert_eq!(split_offset_key("T@G"), Some(("T", "G")));
        assert_eq!(split_offset_key("@G"), None);
        assert!(parse::<OffsetsFile>(OFFSETS, "{\"offsetTable\":[").is_err());
    }
}

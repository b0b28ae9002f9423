//! Start-up recovery: metadata, queue bounds, committed offsets and the next sequence, read
//! from the store before any actor starts.

use super::*;

fn decode_meta<T: serde::de::DeserializeOwned>(what: &str, name: &str, v: &[u8]) -> Option<T> {
    match rmp_serde::from_slice(v) {
        Ok(x) => Some(x),
        Err(e) => {
            tracing::error!(%what, %name, error = %e, "skipping unreadable metadata entry");
            None
        }
    }
}

/// Name-server KV config by namespace.
type KvTable = BTreeMap<String, BTreeMap<String, String>>;

pub(super) fn recover(store: &Store) -> BrokerResult<(Recovery, u64, KvTable)> {
    let rec = store.recover()?;
    let mut topics: Vec<TopicConfig> = Vec::new();
    let mut groups = Vec::new();
    let mut kv = KvTable::new();
    let mut acl = Vec::new();
    let mut request_modes = Vec::new();
    let mut next_topic_id = 1u32;
    for (kind, name, value) in &rec.meta {
        match *kind {
            k if k == MetaKind::Topic as u8 => {
                topics.extend(decode_meta::<TopicConfig>("topic", name, value))
            }
            k if k == MetaKind::Group as u8 => {
                groups.extend(decode_meta::<GroupConfig>("group", name, value))
            }
            k if k == MetaKind::Counter as u8 && name == "topic_id" => {
                if let Ok(raw) = <[u8; 4]>::try_from(value.as_slice()) {
                    next_topic_id = next_topic_id.max(u32::from_be_bytes(raw));
                }
            }
            k if k == MetaKind::Acl as u8 => acl.push((name.as_str(), value.as_slice())),
            k if k == MetaKind::RequestMode as u8 => {
                if let Some((g, t)) = name.split_once('\u{0}') {
                    request_modes.extend(
                        decode_meta("request mode", name, value)
                            .map(|m| ((g.to_string(), t.to_string()), m)),
                    );
                }
            }
            k if k == MetaKind::KvConfig as u8 => {
                if let Some((ns, key)) = name.split_once('\u{0}') {
                    kv.entry(ns.to_string())
                        .or_default()
                        .insert(key.to_string(), String::from_utf8_lossy(value).into_owned());
                }
            }
            _ => {}
        }
    }
    for t in &topics {
        next_topic_id = next_topic_id.max(t.id + 1);
    }
    let mut bounds = HashMap::new();
    for t in &topics {
        for q in 0..t.queue_count() {
            bounds.insert((t.id, q), store.queue_bounds(t.id, q)?);
        }
    }
    let mut offsets: HashMap<String, HashMap<(String, u32), i64>> = HashMap::new();
    for (g, t, q, o) in rec.offsets {
        offsets.entry(g).or_default().insert((t, q), o);
    }
    Ok((
        Recovery {
            topics,
            groups,
            bounds,
            offsets,
            next_topic_id,
            acl_overlay: crate::auth::Overlay::from_stored(acl),
            request_modes,
        },
        rec.next_seq,
        kv,
    ))
}

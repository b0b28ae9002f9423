//! The query flow: messages by key (each `KEYS` token) or by UNIQ_KEY through the `index`
//! family, and one message by its commit-log offset. Reads run on the blocking pool, never on
//! an actor's thread; answers are the stored records, newest first.

use super::*;

/// QUERY_MESSAGE: `key` is a KEYS token, or a UNIQ_KEY when `unique`.
#[derive(Debug, Clone)]
pub struct MessageQuery {
    pub topic: String,
    pub key: String,
    pub unique: bool,
    pub begin_ms: i64,
    pub end_ms: i64,
    pub max: usize,
}

/// Index entries read per wanted message: a hashed index may hold other keys' entries, and
/// the time range filters more.
const OVERSCAN: usize = 4;

impl BrokerContext {
    /// The newest stored messages of `topic` under a key, at most `max` (itself at most the
    /// broker's `max_query_messages`), within the store-time range.
    pub async fn query_messages(&self, q: MessageQuery) -> BrokerResult<Vec<Bytes>> {
        let topic = self
            .topic(&q.topic)
            .ok_or_else(|| BrokerError::TopicNotExist(q.topic.clone()))?;
        let max = q.max.clamp(1, self.settings.max_query_messages.max(1));
        let prefix = rocktor_storage::keys::index_prefix(topic.config.id, &q.key);
        let store = self.store.clone();
        let found = tokio::task::spawn_blocking(move || {
            let seqs = store.index_newest(&prefix, max.saturating_mul(OVERSCAN) + 16)?;
            let mut out = Vec::new();
            for seq in seqs {
                if out.len() >= max {
                    break;
                }
                let Some(bytes) = store.read_record(seq)? else {
                    continue; // gone with retention
                };
                let Ok((rec, _)) = rocktor_storage::record::decode(&bytes) else {
                    continue;
                };
                let in_range = rec.store_timestamp >= q.begin_ms && rec.store_timestamp <= q.end_ms;
                if in_range && rec.topic == q.topic && has_key(&rec.properties, &q.key, q.unique) {
                    out.push(bytes);
                }
            }
            Ok::<_, rocktor_storage::StorageError>(out)
        })
        .await
        .map_err(|e| BrokerError::Storage(format!("query task failed: {e}")))??;
        Ok(found)
    }

    /// VIEW_MESSAGE_BY_ID: the stored record at a commit-log offset (the offset msgId's).
    pub async fn view_message(&self, seq: u64) -> BrokerResult<Bytes> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.read_record(seq))
            .await
            .map_err(|e| BrokerError::Storage(format!("view task failed: {e}")))??
            .ok_or_else(|| BrokerError::NotFound(format!("no message at offset {seq}")))
    }
}

/// Whether a record's properties carry `key`: as its UNIQ_KEY, or as one of its KEYS tokens.
fn has_key(props: &str, key: &str, unique: bool) -> bool {
    if unique {
        return properties::get(props, PROP_UNIQ_KEY) == Some(key);
    }
    properties::get(props, crate::message::PROP_KEYS)
        .is_some_and(|keys| keys.split(' ').any(|k| k == key))
}

#[cfg(test)]
mod tests {
    use super::has_key;

    #[test]
    fn keys_match_whole_tokens() {
        let p = "KEYS\u{1}order-1 order-12\u{2}UNIQ_KEY\u{1}ABC\u{2}";
        assert!(has_key(p, "order-1", false));
        assert!(has_key(p, "order-12", false));
        assert!(!has_key(p, "order", false));
        assert!(has_key(p, "ABC", true));
        assert!(!has_key(p, "ABC", false));
        assert!(!has_key(p, "order-1", true));
    }
}

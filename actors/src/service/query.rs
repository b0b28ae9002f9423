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

/// Index entries read per wanted message: a hashed index may hold other keys' entries.
const OVERSCAN: usize = 4;
/// Index entries one query reads at most when a time range narrows it.
const RANGE_SCAN: usize = 4096;
/// Bytes of records one query answers at most.
const MAX_QUERY_BYTES: usize = 16 << 20;

impl BrokerContext {
    /// The newest stored messages of `topic` under a key, at most `max` (itself at most the
    /// broker's `max_query_messages`), within the store-time range.
    pub async fn query_messages(&self, q: MessageQuery) -> BrokerResult<Vec<Bytes>> {
        let topic = self.existing_topic(&q.topic)?;
        let max = q.max.clamp(1, self.settings.max_query_messages.max(1));
        let prefix = rocktor_storage::keys::index_prefix(topic.config.id, &q.key);
        let store = self.store.clone();
        let ranged = q.begin_ms > 0 || q.end_ms < i64::MAX;
        let scan = if ranged {
            RANGE_SCAN
        } else {
            max.saturating_mul(OVERSCAN).saturating_add(16)
        };
        let found = tokio::task::spawn_blocking(move || {
            let seqs = store.index_newest(&prefix, scan)?;
            let (mut out, mut bytes_out) = (Vec::new(), 0usize);
            for seq in seqs {
                if out.len() >= max || bytes_out >= MAX_QUERY_BYTES {
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
                    bytes_out += bytes.len();
                    out.push(bytes);
                }
            }
            Ok::<_, rocktor_storage::StorageError>(out)
        })
        .await
        .map_err(|e| BrokerError::Storage(format!("query task failed: {e}")))??;
        Ok(found)
    }

    /// The first messages of `topic` stored in `[begin_ms, end_ms]`, oldest first, at most `max`
    /// (itself at most `max_query_messages`): each queue is searched by store time (its
    /// consume queue is in store-time order), then read from there.
    pub async fn query_by_time(
        &self,
        topic: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> BrokerResult<Vec<Bytes>> {
        let t = self.existing_topic(topic)?;
        if begin_ms > end_ms {
            return Err(BrokerError::InvalidParameter(format!(
                "the time range ends ({end_ms}) before it begins ({begin_ms})"
            )));
        }
        let max = max.clamp(1, self.settings.max_query_messages.max(1));
        let mut found: Vec<(i64, u64, Bytes)> = Vec::new();
        // One byte budget for all queues; only the best `max` are kept between reads.
        let mut budget = MAX_QUERY_BYTES;
        for (queue_id, stats) in t.stats.iter().enumerate() {
            if budget == 0 {
                break;
            }
            let queue_id = queue_id as u32;
            let from = self.search_offset(topic, queue_id, begin_ms, false).await?;
            // Never scan past the range: the last offset stored at or before its end.
            let last = self.search_offset(topic, queue_id, end_ms, true).await?;
            let upto = stats.max().min(last.saturating_add(1));
            if from >= upto {
                continue;
            }
            let read = rocktor_storage::QueueRead {
                topic_id: t.config.id,
                queue_id,
                from,
                upto,
                max_count: max,
                max_bytes: budget,
            };
            let store = self.store.clone();
            let out = tokio::task::spawn_blocking(move || {
                store.read_queue(&read, &|cq| {
                    cq.store_time >= begin_ms && cq.store_time <= end_ms
                })
            })
            .await
            .map_err(|e| BrokerError::Storage(format!("query task failed: {e}")))??;
            found.extend(
                out.entries
                    .into_iter()
                    .map(|e| (e.cq.store_time, e.cq.seq, e.record)),
            );
            found.sort_by_key(|(at, seq, _)| (*at, *seq));
            found.truncate(max);
            let held: usize = found.iter().map(|(_, _, r)| r.len()).sum();
            budget = MAX_QUERY_BYTES.saturating_sub(held);
        }
        found.sort_by_key(|(at, seq, _)| (*at, *seq));
        Ok(found.into_iter().take(max).map(|(_, _, r)| r).collect())
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

/// Where a message stands for one consumer group, as the consoles show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The group's committed offset is past the message (after retries, if any).
    Consumed,
    /// Online, subscribed, not consumed yet.
    NotConsumed,
    /// The group's subscription (tag or SQL92) does not take it.
    FilteredOut,
    /// Given back and waiting in `%RETRY%<group>`.
    InRetry,
    /// Past the group's retries: in `%DLQ%<group>`.
    InDlq,
    /// Not consumed, and no client of the group is online.
    ConsumerOffline,
    /// Handed out to an invisible-time consumer (HTTP, POP, gRPC) and not yet acked.
    InFlight,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Consumed => "CONSUMED",
            DeliveryStatus::NotConsumed => "NOT_CONSUMED",
            DeliveryStatus::FilteredOut => "FILTERED_OUT",
            DeliveryStatus::InRetry => "IN_RETRY",
            DeliveryStatus::InDlq => "IN_DLQ",
            DeliveryStatus::ConsumerOffline => "CONSUMER_OFFLINE",
            DeliveryStatus::InFlight => "IN_FLIGHT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDelivery {
    pub group: String,
    pub status: DeliveryStatus,
}

/// Groups one delivery-status query looks at, at most.
const MAX_STATUS_GROUPS: usize = 1024;

impl BrokerContext {
    /// The delivery status of the message with UNIQ_KEY `msg_id` in `topic`, for every group
    /// that subscribes to the topic or has committed offsets of it.
    pub async fn delivery_status(
        &self,
        topic: &str,
        msg_id: &str,
    ) -> BrokerResult<Vec<GroupDelivery>> {
        let found = self.find_unique(topic, msg_id).await?;
        let Some(bytes) = found else {
            return Err(BrokerError::NotFound(format!(
                "no message {msg_id} in topic {topic}"
            )));
        };
        let (rec, _) = rocktor_storage::record::decode(&bytes)
            .map_err(|e| BrokerError::Storage(format!("stored record: {}", e.0)))?;
        let (queue_id, offset) = (rec.queue_id.max(0) as u32, rec.queue_offset.max(0));
        let tag_hash = properties::get(&rec.properties, crate::message::PROP_TAGS)
            .map(|t| model::java_hash(t) as i64)
            .unwrap_or(0);
        let groups: Vec<Arc<GroupHandle>> = self
            .registry
            .load()
            .groups
            .values()
            .filter(|g| !model::is_retry_or_dlq(&g.config.name))
            .take(MAX_STATUS_GROUPS)
            .cloned()
            .collect();
        // Retries still in their back-off are held by the scheduler, not yet in a queue.
        let held = self.held_records(msg_id).await?;
        let mut out = Vec::new();
        for g in groups {
            let view = g.view.load_full();
            let subscription = view.subscriptions.get(topic).cloned();
            let committed = g
                .addr
                .send(GetOffsets {
                    topic: Some(topic.to_string()),
                })
                .timeout(MAILBOX_WAIT)
                .await?;
            if subscription.is_none() && committed.is_empty() {
                continue; // not a consumer of this topic
            }
            let group_offset = committed
                .iter()
                .find(|(_, q, _)| *q == queue_id)
                .map(|(_, _, o)| *o);
            // No member online: the view takes its model from the first member.
            let online = view.message_model.is_some();
            let filtered = subscription.as_ref().is_some_and(|s| match &s.filter {
                Ok(f) => !f.accepts_tag_hash(tag_hash) || !f.accepts_record(&bytes),
                Err(_) => false,
            });
            let name = g.config.name.clone();
            let retry = self.find_unique(&model::retry_topic(&name), msg_id).await?;
            let retry_topic = model::retry_topic(&name);
            let backing_off = held
                .iter()
                .any(|h| h.timer_pending && h.topic == retry_topic);
            let status = if self
                .find_unique(&model::dlq_topic(&name), msg_id)
                .await?
                .is_some()
            {
                DeliveryStatus::InDlq
            } else if backing_off && !filtered {
                DeliveryStatus::InRetry
            } else if let Some(r) = retry.filter(|_| !filtered) {
                if self.retry_consumed(&g, &r).await? {
                    DeliveryStatus::Consumed
                } else {
                    DeliveryStatus::InRetry
                }
            } else if filtered {
                DeliveryStatus::FilteredOut
            } else if self
                .is_inflight(&name, topic, queue_id, offset as u64)
                .await
            {
                DeliveryStatus::InFlight
            } else if group_offset.is_some_and(|o| o > offset) {
                DeliveryStatus::Consumed
            } else if online && subscription.is_some() {
                DeliveryStatus::NotConsumed
            } else {
                DeliveryStatus::ConsumerOffline
            };
            out.push(GroupDelivery {
                group: name,
                status,
            });
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }

    /// The newest record of a topic with this UNIQ_KEY; None for a topic that does not exist.
    async fn find_unique(&self, topic: &str, msg_id: &str) -> BrokerResult<Option<Bytes>> {
        Ok(self
            .records_by_id(topic, msg_id, 1)
            .await?
            .into_iter()
            .next())
    }

    /// The newest records of a topic with this UNIQ_KEY, at most `max`; none for a topic that
    /// does not exist.
    pub(super) async fn records_by_id(
        &self,
        topic: &str,
        msg_id: &str,
        max: usize,
    ) -> BrokerResult<Vec<Bytes>> {
        if self.topic(topic).is_none() {
            return Ok(Vec::new());
        }
        self.query_messages(MessageQuery {
            topic: topic.to_string(),
            key: msg_id.to_string(),
            unique: true,
            begin_ms: 0,
            end_ms: i64::MAX,
            max,
        })
        .await
    }

    /// Whether the group consumed a retry of a message (its retry-topic offset is past it).
    async fn retry_consumed(&self, g: &GroupHandle, retry_record: &Bytes) -> BrokerResult<bool> {
        let Ok((rec, _)) = rocktor_storage::record::decode(retry_record) else {
            return Ok(false);
        };
        let committed = g
            .addr
            .send(GetOffsets {
                topic: Some(model::retry_topic(&g.config.name)),
            })
            .timeout(MAILBOX_WAIT)
            .await?;
        Ok(committed
            .iter()
            .any(|(_, q, o)| *q as i32 == rec.queue_id && *o > rec.queue_offset))
    }
}

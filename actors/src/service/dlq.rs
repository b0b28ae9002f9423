//! Dead letters: listing a group's DLQ by time and re-sending chosen ones to its retry topic.

use super::*;

/// A message in a group's dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub queue_offset: u64,
    pub seq: u64,
    pub record: rocktor_storage::record::Record,
}

impl BrokerContext {
    /// Dead letters of a group stored between `from_ms` and `to_ms` (at most `max`).
    pub async fn list_dead_letters(
        &self,
        group: &str,
        from_ms: i64,
        to_ms: i64,
        max: usize,
    ) -> BrokerResult<Vec<DeadLetter>> {
        let name = model::dlq_topic(group);
        let Some(t) = self.topic(&name) else {
            return Ok(Vec::new());
        };
        let Some(stats) = t.stats.first() else {
            return Ok(Vec::new());
        };
        let start = self.search_offset(&name, 0, from_ms, false).await?;
        let read = rocktor_storage::QueueRead {
            topic_id: t.config.id,
            queue_id: 0,
            from: start,
            upto: stats.max(),
            max_count: max.clamp(1, 10_000),
            max_bytes: 64 << 20,
        };
        let store = self.store.clone();
        let out = tokio::task::spawn_blocking(move || {
            store.read_queue(&read, &|cq| cq.store_time <= to_ms)
        })
        .await
        .map_err(|e| BrokerError::Storage(e.to_string()))??;
        let mut letters = Vec::new();
        for e in out.entries {
            if let Ok((rec, _)) = rocktor_storage::record::decode(&e.record) {
                letters.push(DeadLetter {
                    queue_offset: e.offset,
                    seq: e.cq.seq,
                    record: rec,
                });
            }
        }
        Ok(letters)
    }

    /// Re-sends dead letters (by their DLQ queue offsets) to the group's retry topic, with a
    /// fresh retry budget. Answers how many were re-sent.
    pub async fn resend_dead_letters(&self, group: &str, offsets: &[u64]) -> BrokerResult<usize> {
        if offsets.len() > self.settings.max_dlq_resend {
            return Err(BrokerError::InvalidParameter(format!(
                "{} dead letters asked for; one request re-sends at most {}",
                offsets.len(),
                self.settings.max_dlq_resend
            )));
        }
        let name = model::dlq_topic(group);
        let t = self.existing_topic(&name)?;
        let g = self
            .group(group)
            .ok_or_else(|| BrokerError::GroupNotExist(group.to_string()))?;
        let retry = self.ensure_retry_topic(&g).await?;
        let (store, id) = (self.store.clone(), t.config.id);
        let wanted = offsets.to_vec();
        let records = tokio::task::spawn_blocking(
            move || -> Result<Vec<Bytes>, rocktor_storage::StorageError> {
                let mut out = Vec::new();
                for off in wanted {
                    if let Some(cq) = store.cq_entry(id, 0, off)? {
                        out.extend(store.read_record(cq.seq)?);
                    }
                }
                Ok(out)
            },
        )
        .await
        .map_err(|e| BrokerError::Storage(e.to_string()))??;
        let mut messages = Vec::new();
        for bytes in records {
            let (rec, _) = rocktor_storage::record::decode(&bytes)
                .map_err(|e| BrokerError::Storage(format!("stored dead letter: {e}")))?;
            let props = properties::without(
                &rec.properties,
                &[
                    PROP_DLQ_ORIGIN_TOPIC,
                    PROP_DLQ_ORIGIN_MESSAGE_ID,
                    PROP_DELAY,
                ],
            );
            let mut m = from_record(&rec, props)?;
            m.reconsume_times = 0;
            messages.push(m);
        }
        let n = messages.len();
        if n > 0 {
            self.append_to_first_queue(&retry, messages).await?;
        }
        Ok(n)
    }

    /// Appends to queue 0 of a retry or dead-letter topic (they have one queue).
    pub(super) async fn append_to_first_queue(
        &self,
        topic: &TopicHandle,
        messages: Vec<PreparedMessage>,
    ) -> BrokerResult<crate::topic_queue::AppendResult> {
        let queue = topic.queues.first().ok_or_else(|| {
            BrokerError::Storage(format!("topic {} has no queue", topic.config.name))
        })?;
        topic_queue::append(queue, Append::new(messages, self.settings.broker_addr)).await
    }
}

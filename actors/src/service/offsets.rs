//! Committed offsets and offset lookups: query, commit, reset (by time, to the end, to an
//! offset), and search by store time.

use super::*;

/// Where an offset reset moves a group.
#[derive(Debug, Clone, Copy)]
pub enum ResetTarget {
    /// The first message stored at or after this time.
    Timestamp(i64),
    /// The end of each queue (skip the backlog).
    Latest,
    /// This offset in every queue, clamped to what exists.
    Offset(i64),
}

impl BrokerContext {
    /// The committed offset; for a group that never committed, 0 while the queue still starts
    /// at 0 (Apache's rule that lets CONSUME_FROM_LAST_OFFSET read a new topic from its start).
    pub async fn query_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        zero_if_not_found: bool,
    ) -> BrokerResult<Option<i64>> {
        if let Some(g) = self.group(group) {
            if let Some(o) = g
                .addr
                .send(QueryOffset {
                    topic: topic.to_string(),
                    queue_id,
                })
                .timeout(MAILBOX_WAIT)
                .await?
            {
                return Ok(Some(o));
            }
        }
        if zero_if_not_found {
            if let Ok(stats) = self.queue_stats(topic, queue_id) {
                if stats.min() == 0 {
                    return Ok(Some(0));
                }
            }
        }
        Ok(None)
    }

    pub async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        offset: i64,
    ) -> BrokerResult<()> {
        let Some(t) = self.topic(topic) else {
            return Err(BrokerError::TopicNotExist(topic.to_string()));
        };
        if queue_id as usize >= t.queues.len() {
            return Err(BrokerError::InvalidParameter(format!(
                "queueId[{queue_id}] is illegal, topic: {topic} has {} queues",
                t.queues.len()
            )));
        }
        let g = self.ensure_group(group).await?;
        g.addr
            .send(CommitOffset {
                topic: topic.to_string(),
                queue_id,
                offset,
            })
            .timeout(MAILBOX_WAIT)
            .await?;
        Ok(())
    }

    /// Resets a group's offsets of a topic, online members told at once, offline ones finding
    /// the new offsets when they come back. Without `force`, a queue only moves backwards
    /// (Apache's rule). Answers the offsets set per queue.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        target: ResetTarget,
        force: bool,
    ) -> BrokerResult<Vec<(u32, i64)>> {
        let t = self.existing_topic(topic)?;
        let g = self
            .group(group)
            .ok_or_else(|| BrokerError::GroupNotExist(group.to_string()))?;
        let current = g
            .addr
            .send(GetOffsets {
                topic: Some(topic.to_string()),
            })
            .await?;
        let mut offsets = Vec::new();
        for (q, stats) in t.stats.iter().enumerate() {
            let q = q as u32;
            let wanted = match target {
                ResetTarget::Timestamp(ts) => self.search_offset(topic, q, ts, false).await? as i64,
                ResetTarget::Latest => stats.max() as i64,
                ResetTarget::Offset(o) => o.clamp(stats.min() as i64, stats.max() as i64),
            };
            let cur = current
                .iter()
                .find(|(_, qq, _)| *qq == q)
                .map(|(_, _, o)| *o);
            let new = match cur {
                Some(c) if !force && wanted >= c => c,
                _ => wanted,
            };
            offsets.push((q, new));
        }
        let timestamp = match target {
            ResetTarget::Timestamp(ts) => ts,
            _ => crate::now_ms(),
        };
        let told = g
            .addr
            .send(ResetOffsets {
                broker_name: self.settings.broker_name.clone(),
                topic: topic.to_string(),
                timestamp,
                offsets: offsets.clone(),
            })
            .await?;
        tracing::info!(%group, %topic, online_members_told = told, "consumer offsets reset");
        Ok(offsets)
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP, on the blocking pool.
    pub async fn search_offset(
        &self,
        topic: &str,
        queue_id: u32,
        ts: i64,
        upper: bool,
    ) -> BrokerResult<u64> {
        let t = self.existing_topic(topic)?;
        let stats = self.queue_stats(topic, queue_id)?;
        let bounds = rocktor_storage::QueueBounds {
            min: stats.min(),
            max: stats.max(),
        };
        let store = self.store.clone();
        let id = t.config.id;
        tokio::task::spawn_blocking(move || {
            store.search_offset_by_time(id, queue_id, bounds, ts, upper)
        })
        .await
        .map_err(|e| BrokerError::Storage(e.to_string()))?
        .map_err(Into::into)
    }

    /// Store time of the message at `offset`, if it exists.
    pub async fn store_time_at(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
    ) -> BrokerResult<Option<i64>> {
        let t = self.existing_topic(topic)?;
        let (store, id) = (self.store.clone(), t.config.id);
        let cq = tokio::task::spawn_blocking(move || store.cq_entry(id, queue_id, offset))
            .await
            .map_err(|e| BrokerError::Storage(e.to_string()))??;
        Ok(cq.map(|c| c.store_time))
    }

    /// Store time of the oldest message of a queue, or 0 when it is empty.
    pub async fn earliest_store_time(&self, topic: &str, queue_id: u32) -> BrokerResult<i64> {
        let t = self.existing_topic(topic)?;
        let stats = self.queue_stats(topic, queue_id)?;
        if stats.max() <= stats.min() {
            return Ok(0);
        }
        let (store, id, min) = (self.store.clone(), t.config.id, stats.min());
        let cq = tokio::task::spawn_blocking(move || store.cq_entry(id, queue_id, min))
            .await
            .map_err(|e| BrokerError::Storage(e.to_string()))??;
        Ok(cq.map(|c| c.store_time).unwrap_or(0))
    }
}

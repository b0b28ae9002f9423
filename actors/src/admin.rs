//! Admin queries and changes, shared by every front end (remoting admin codes today, the HTTP
//! admin API later): topic creation rules, queue offsets, consume progress, which groups read
//! which topics, and how far behind they are in time.

use crate::broker::{CreateTopic, DeleteGroup, DeleteTopic, GroupHandle, TopicSpec, UpsertGroup};
use crate::consumer_group::GetOffsets;
use crate::error::{BrokerError, BrokerResult};
use crate::model::{self, GroupConfig};
use crate::service::BrokerContext;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

pub use crate::model::MAX_QUEUES;

/// Offsets of one queue of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOffsets {
    pub queue_id: u32,
    pub min: u64,
    pub max: u64,
    pub last_store_time: i64,
}

/// A group's progress on one queue (ConsumeStats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeRow {
    pub topic: String,
    pub queue_id: u32,
    pub broker_offset: u64,
    pub consumer_offset: i64,
    pub last_timestamp: i64,
}

impl ConsumeRow {
    /// Messages behind the group's committed offset (all of them when it committed none).
    pub fn lag(&self) -> u64 {
        self.broker_offset
            .saturating_sub(self.consumer_offset.max(0) as u64)
    }
}

/// Store times of one queue: oldest, newest, and of the last message the group consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSpan {
    pub queue_id: u32,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub consume_timestamp: i64,
}

impl BrokerContext {
    /// Creates or updates a topic on an admin's request: system topics are off limits and queue
    /// counts must be 1..=MAX_QUEUES. `attribute_changes` are Apache's `+key=value,-key` edits,
    /// applied to the topic's current attributes (an update keeps what it does not mention).
    pub async fn create_topic(&self, spec: TopicSpec, attribute_changes: &str) -> BrokerResult<()> {
        self.create_topic_at(spec, attribute_changes, Vec::new())
            .await
    }

    /// `create_topic`, where a new topic's queue `q` begins at `start_offsets[q]` instead of 0:
    /// an import continues the offsets its groups committed on another broker.
    pub async fn create_topic_at(
        &self,
        mut spec: TopicSpec,
        attribute_changes: &str,
        start_offsets: Vec<u64>,
    ) -> BrokerResult<()> {
        model::validate_topic(&spec.name).map_err(BrokerError::InvalidParameter)?;
        let current = self
            .topic(&spec.name)
            .map(|t| t.config.attributes.clone())
            .unwrap_or_default();
        let mut attributes = model::apply_topic_attributes(&current, attribute_changes)
            .map_err(BrokerError::InvalidParameter)?;
        attributes.append(&mut spec.attributes);
        spec.attributes = attributes;
        if spec.name == model::DEFAULT_TOPIC
            || model::NOT_ALLOWED_SEND_TOPICS.contains(&spec.name.as_str())
        {
            return Err(BrokerError::InvalidParameter(format!(
                "The topic[{}] is conflict with system topic.",
                spec.name
            )));
        }
        for (what, n) in [
            ("readQueueNums", spec.read_queues),
            ("writeQueueNums", spec.write_queues),
        ] {
            if !(1..=MAX_QUEUES).contains(&n) {
                return Err(BrokerError::InvalidParameter(format!(
                    "{what} {n} is out of range 1..{MAX_QUEUES}"
                )));
            }
        }
        if start_offsets
            .iter()
            .any(|o| *o > rocktor_storage::keys::MAX_QUEUE_BASE)
        {
            return Err(BrokerError::InvalidParameter(format!(
                "a queue cannot start above offset {}",
                rocktor_storage::keys::MAX_QUEUE_BASE
            )));
        }
        if start_offsets.len() > spec.read_queues.max(spec.write_queues) as usize {
            return Err(BrokerError::InvalidParameter(format!(
                "{} start offsets for a topic of {} queues",
                start_offsets.len(),
                spec.read_queues.max(spec.write_queues)
            )));
        }
        self.broker
            .send(CreateTopic {
                spec,
                only_if_absent: false,
                start_offsets,
            })
            .await??;
        Ok(())
    }

    pub async fn delete_topic(&self, name: &str) -> BrokerResult<()> {
        // Retry and dead-letter topics are a group's, and may go; the broker's own may not.
        if model::is_system_topic(name) && !model::is_retry_or_dlq(name) {
            return Err(BrokerError::InvalidParameter(format!(
                "The topic {name} is a system topic."
            )));
        }
        self.broker
            .send(DeleteTopic {
                name: name.to_string(),
            })
            .await?
    }

    /// Creates or replaces a subscription group's configuration.
    pub async fn upsert_group(&self, config: GroupConfig) -> BrokerResult<()> {
        model::validate_group(&config.name).map_err(BrokerError::InvalidParameter)?;
        model::validate_group_config(&config).map_err(BrokerError::InvalidParameter)?;
        self.broker.send(UpsertGroup { config }).await??;
        Ok(())
    }

    pub async fn delete_group(&self, name: &str, clean_offsets: bool) -> BrokerResult<()> {
        self.broker
            .send(DeleteGroup {
                name: name.to_string(),
                clean_offsets,
            })
            .await?
    }

    /// Min, max and last store time of every queue of a topic.
    pub fn queue_offsets(&self, topic: &str) -> BrokerResult<Vec<QueueOffsets>> {
        let t = self.existing_topic(topic)?;
        Ok(t.stats
            .iter()
            .enumerate()
            .map(|(q, s)| QueueOffsets {
                queue_id: q as u32,
                min: s.min(),
                max: s.max(),
                last_store_time: s.last_store_time.load(Ordering::Acquire),
            })
            .collect())
    }

    /// Topics a group consumes: its subscriptions and the topics it committed offsets for
    /// (`offsets`, as the group's GetOffsets answered).
    fn topics_consumed(&self, group: &GroupHandle, offsets: &[(String, u32, i64)]) -> Vec<String> {
        let mut topics: Vec<String> = offsets.iter().map(|(t, _, _)| t.clone()).collect();
        topics.extend(group.view.load().subscriptions.keys().cloned());
        topics.retain(|t| self.topic(t).is_some());
        topics.sort();
        topics.dedup();
        topics
    }

    /// A group's committed offsets: (topic, queue id, offset).
    pub async fn committed_offsets(&self, group: &str) -> BrokerResult<Vec<(String, u32, i64)>> {
        let g = self
            .group(group)
            .ok_or_else(|| BrokerError::GroupNotExist(group.to_string()))?;
        Self::offsets_of(&g).await
    }

    pub(crate) async fn offsets_of(group: &GroupHandle) -> BrokerResult<Vec<(String, u32, i64)>> {
        Ok(group.addr.send(GetOffsets { topic: None }).await?)
    }

    pub async fn topics_of_group(&self, group: &str) -> BrokerResult<Vec<String>> {
        let g = self
            .group(group)
            .ok_or_else(|| BrokerError::GroupNotExist(group.to_string()))?;
        let offsets = Self::offsets_of(&g).await?;
        Ok(self.topics_consumed(&g, &offsets))
    }

    pub async fn groups_of_topic(&self, topic: &str) -> BrokerResult<Vec<String>> {
        let groups: Vec<_> = self.registry.load().groups.values().cloned().collect();
        let mut names = Vec::new();
        for g in groups {
            let offsets = Self::offsets_of(&g).await?;
            if self
                .topics_consumed(&g, &offsets)
                .iter()
                .any(|t| t == topic)
            {
                names.push(g.config.name.clone());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Broker and consumer offsets of every queue a group consumes (optionally one topic).
    pub async fn consume_stats(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> BrokerResult<Vec<ConsumeRow>> {
        let g = self
            .group(group)
            .ok_or_else(|| BrokerError::GroupNotExist(group.to_string()))?;
        let offsets = Self::offsets_of(&g).await?;
        Ok(self.consume_rows(&g, &offsets, topic))
    }

    pub(crate) fn consume_rows(
        &self,
        g: &GroupHandle,
        offsets: &[(String, u32, i64)],
        topic: Option<&str>,
    ) -> Vec<ConsumeRow> {
        let committed: std::collections::HashMap<(&str, u32), i64> = offsets
            .iter()
            .map(|(t, q, o)| ((t.as_str(), *q), *o))
            .collect();
        let mut rows = Vec::new();
        for t in self.topics_consumed(g, offsets) {
            if topic.is_some_and(|want| want != t) {
                continue;
            }
            // Deleted since the registry was read: nothing to show.
            let Ok(queues) = self.queue_offsets(&t) else {
                continue;
            };
            for q in queues {
                rows.push(ConsumeRow {
                    topic: t.clone(),
                    queue_id: q.queue_id,
                    broker_offset: q.max,
                    consumer_offset: committed
                        .get(&(t.as_str(), q.queue_id))
                        .copied()
                        .unwrap_or(0),
                    last_timestamp: q.last_store_time,
                });
            }
        }
        rows
    }

    /// Sets the scrape-time gauges: each group's ready messages per topic it consumes
    /// (`rocketmq_consumer_ready_messages`, the backlog behind its committed offsets), how old
    /// its oldest unconsumed message is (`rocketmq_consumer_lag_latency`, ms) and the store's
    /// size. Called by `/metrics` before it renders; at most once per `MIN_REFRESH_AGE`, one
    /// scrape at a time (`/metrics` is open, so a flood of scrapes costs one walk a second).
    pub async fn refresh_metrics(&self) {
        let mut last = self.metrics.refreshed.lock().await;
        if last.is_some_and(|t| t.elapsed() < crate::metrics::MIN_REFRESH_AGE) {
            return;
        }
        self.compute_scrape_gauges().await;
        *last = Some(std::time::Instant::now());
    }

    async fn compute_scrape_gauges(&self) {
        // At 0 until it counts, so dashboards and alerts on it have a series from the start.
        metrics::counter!("rocktor_metrics_series_overflow_total").increment(0);
        let groups: Vec<_> = self.registry.load().groups.values().cloned().collect();
        let mut backlog = 0u64;
        // Ready messages by (group, topic), and the oldest unconsumed message of each lagging
        // queue, to time the lag by (read from the consume queue in one blocking task).
        let mut ready: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut oldest = Vec::new();
        for g in groups {
            let Ok(offsets) = Self::offsets_of(&g).await else {
                continue;
            };
            for r in self.consume_rows(&g, &offsets, None) {
                let behind = r.lag();
                backlog = backlog.saturating_add(behind);
                let key = (g.config.name.clone(), r.topic.clone());
                *ready.entry(key.clone()).or_default() += behind;
                if let (true, Some(t)) = (behind > 0, self.topic(&r.topic)) {
                    oldest.push((
                        key,
                        t.config.id,
                        r.queue_id,
                        r.consumer_offset.max(0) as u64,
                    ));
                }
            }
        }
        let store = self.store.clone();
        let lag = tokio::task::spawn_blocking(move || {
            let now = crate::now_ms();
            let mut lag: BTreeMap<(String, String), i64> = BTreeMap::new();
            for (key, id, q, off) in oldest {
                if let Ok(Some(e)) = store.cq_entry(id, q, off) {
                    let l = lag.entry(key).or_default();
                    *l = (*l).max(now.saturating_sub(e.store_time).max(0));
                }
            }
            lag
        })
        .await
        .unwrap_or_default();
        for ((group, topic), n) in &ready {
            let key = (group.clone(), topic.clone());
            let ms = lag.get(&key).copied().unwrap_or(0);
            self.metrics
                .group_gauge("rocketmq_consumer_ready_messages", topic, group, *n as f64);
            self.metrics
                .group_gauge("rocketmq_consumer_lag_latency", topic, group, ms as f64);
        }
        self.metrics.backlog.store(backlog, Ordering::Relaxed);
        if let Ok(bytes) = self.store.live_data_size() {
            self.metrics.store_bytes.store(bytes, Ordering::Relaxed);
            if self.metrics.enabled() {
                metrics::gauge!("rocketmq_storage_size").set(bytes as f64);
            }
        }
    }

    /// For each queue: oldest and newest store time, and the store time of the last message the
    /// group consumed (the oldest when it consumed nothing yet).
    pub async fn consume_time_span(&self, topic: &str, group: &str) -> BrokerResult<Vec<TimeSpan>> {
        let offsets = match self.group(group) {
            Some(g) => {
                g.addr
                    .send(GetOffsets {
                        topic: Some(topic.to_string()),
                    })
                    .await?
            }
            None => Vec::new(),
        };
        let mut spans = Vec::new();
        for q in self.queue_offsets(topic)? {
            let min_timestamp = self.earliest_store_time(topic, q.queue_id).await?;
            let consumed = offsets
                .iter()
                .find(|(_, qq, _)| *qq == q.queue_id)
                .map(|(_, _, o)| *o)
                .unwrap_or(0);
            let consume_timestamp = if consumed > q.min as i64 && consumed > 0 {
                self.store_time_at(topic, q.queue_id, consumed as u64 - 1)
                    .await?
                    .unwrap_or(min_timestamp)
            } else {
                min_timestamp
            };
            spans.push(TimeSpan {
                queue_id: q.queue_id,
                min_timestamp,
                max_timestamp: q.last_store_time,
                consume_timestamp,
            });
        }
        Ok(spans)
    }
}

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
    /// counts must be 1..=MAX_QUEUES.
    /// Creates or updates a topic. `attribute_changes` are Apache's `+key=value,-key` edits,
    /// applied to the topic's current attributes (an update keeps what it does not mention).
    pub async fn create_topic(
        &self,
        mut spec: TopicSpec,
        attribute_changes: &str,
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
        self.broker
            .send(CreateTopic {
                spec,
                only_if_absent: false,
            })
            .await??;
        Ok(())
    }

    pub async fn delete_topic(&self, name: &str) -> BrokerResult<()> {
        if name == model::DEFAULT_TOPIC {
            return Err(BrokerError::InvalidParameter(
                "The topic TBW102 is a system topic.".into(),
            ));
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

    /// Topics a group consumes: its subscriptions and the topics it committed offsets for.
    async fn topics_consumed(&self, group: &GroupHandle) -> BrokerResult<Vec<String>> {
        let offsets = group.addr.send(GetOffsets { topic: None }).await?;
        let mut topics: Vec<String> = offsets.into_iter().map(|(t, _, _)| t).collect();
        topics.extend(group.view.load().subscriptions.keys().cloned());
        topics.retain(|t| self.topic(t).is_some());
        topics.sort();
        topics.dedup();
        Ok(topics)
    }

    pub async fn topics_of_group(&self, group: &str) -> BrokerResult<Vec<String>> {
        let g = self
            .group(group)
            .ok_or_else(|| BrokerError::GroupNotExist(group.to_string()))?;
        self.topics_consumed(&g).await
    }

    pub async fn groups_of_topic(&self, topic: &str) -> BrokerResult<Vec<String>> {
        let groups: Vec<_> = self.registry.load().groups.values().cloned().collect();
        let mut names = Vec::new();
        for g in groups {
            if self.topics_consumed(&g).await?.iter().any(|t| t == topic) {
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
        let offsets = g.addr.send(GetOffsets { topic: None }).await?;
        let mut rows = Vec::new();
        for t in self.topics_consumed(&g).await? {
            if topic.is_some_and(|want| want != t) {
                continue;
            }
            for q in self.queue_offsets(&t)? {
                let committed = offsets
                    .iter()
                    .find(|(tt, qq, _)| *tt == t && *qq == q.queue_id)
                    .map(|(_, _, o)| *o)
                    .unwrap_or(0);
                rows.push(ConsumeRow {
                    topic: t.clone(),
                    queue_id: q.queue_id,
                    broker_offset: q.max,
                    consumer_offset: committed,
                    last_timestamp: q.last_store_time,
                });
            }
        }
        Ok(rows)
    }

    /// Sets the scrape-time gauges: each group's ready messages per topic it consumes
    /// (`rocketmq_consumer_ready_messages`, the backlog behind its committed offsets), how old
    /// its oldest unconsumed message is (`rocketmq_consumer_lag_latency`, ms) and the store's
    /// size. Called by `/metrics` before it renders.
    pub async fn refresh_metrics(&self) {
        let groups: Vec<String> = self.registry.load().groups.keys().cloned().collect();
        for g in groups {
            let Ok(rows) = self.consume_stats(&g, None).await else {
                continue;
            };
            let mut ready: BTreeMap<String, u64> = BTreeMap::new();
            // The oldest unconsumed message of each lagging queue, to time the lag by.
            let mut oldest = Vec::new();
            for r in &rows {
                let next = r.consumer_offset.max(0) as u64;
                let behind = r.broker_offset.saturating_sub(next);
                *ready.entry(r.topic.clone()).or_default() += behind;
                if let (true, Some(t)) = (behind > 0, self.topic(&r.topic)) {
                    oldest.push((r.topic.clone(), t.config.id, r.queue_id, next));
                }
            }
            let store = self.store.clone();
            let lag = tokio::task::spawn_blocking(move || {
                let now = crate::now_ms();
                let mut lag: BTreeMap<String, i64> = BTreeMap::new();
                for (topic, id, q, off) in oldest {
                    if let Ok(Some(e)) = store.cq_entry(id, q, off) {
                        let l = lag.entry(topic).or_default();
                        *l = (*l).max(now.saturating_sub(e.store_time).max(0));
                    }
                }
                lag
            })
            .await
            .unwrap_or_default();
            for (topic, n) in ready {
                let ms = lag.get(&topic).copied().unwrap_or(0);
                self.metrics
                    .group_gauge("rocketmq_consumer_ready_messages", &topic, &g, n as f64);
                self.metrics
                    .group_gauge("rocketmq_consumer_lag_latency", &topic, &g, ms as f64);
            }
        }
        if let Ok(bytes) = self.store.live_data_size() {
            metrics::gauge!("rocketmq_storage_size").set(bytes as f64);
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

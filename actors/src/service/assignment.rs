//! Broker-side rebalance: which queues of a topic a consumer reads, and whether it pulls them
//! or pops them (Apache 5's QUERY_ASSIGNMENT / SET_MESSAGE_REQUEST_MODE; gRPC's QueryAssignment
//! reads the same mode). A (group, topic) pulls unless set to pop; the setting is durable
//! (`meta`, kind RequestMode), written before it is answered.

use super::*;
use rocktor_storage::{cf, keys, AppendBatch};
use std::collections::BTreeSet;

/// How a group reads a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RequestMode {
    Pull,
    Pop,
}

/// A group's request mode for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestModeSetting {
    pub mode: RequestMode,
    /// Pop consumers also read the queues of the next N consumers in the group (≤ 0: every
    /// consumer pops every queue).
    pub pop_share_queue_num: i32,
}

impl Default for RequestModeSetting {
    fn default() -> Self {
        RequestModeSetting {
            mode: RequestMode::Pull,
            pop_share_queue_num: 0,
        }
    }
}

/// What one consumer is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub mode: RequestMode,
    pub queue_ids: Vec<u32>,
}

/// Apache's allocation strategies by name; an unknown name allocates as AVG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Average,
    AverageByCircle,
}

impl Strategy {
    pub fn by_name(name: &str) -> Strategy {
        match name {
            "AVG_BY_CIRCLE" => Strategy::AverageByCircle,
            _ => Strategy::Average,
        }
    }

    /// The queues of `queues` (sorted) for consumer `index` of `consumers`.
    fn allocate(self, queues: &[u32], index: usize, consumers: usize) -> Vec<u32> {
        let (n, c) = (queues.len(), consumers.max(1));
        if index >= c || n == 0 {
            return Vec::new();
        }
        match self {
            Strategy::AverageByCircle => queues.iter().copied().skip(index).step_by(c).collect(),
            Strategy::Average => {
                let rest = n % c;
                let size = if n <= c {
                    1
                } else if rest > 0 && index < rest {
                    n / c + 1
                } else {
                    n / c
                };
                let start = if rest > 0 && index < rest {
                    index * size
                } else {
                    index * size + rest
                };
                let take = size.min(n.saturating_sub(start));
                (0..take).map(|i| queues[(start + i) % n]).collect()
            }
        }
    }
}

impl BrokerContext {
    /// The group's request mode for a topic (pull unless set).
    pub fn request_mode(&self, group: &str, topic: &str) -> RequestModeSetting {
        self.pops
            .lock()
            .ok()
            .and_then(|r| r.request_mode(group, topic))
            .unwrap_or_default()
    }

    /// Sets (durably) how a group reads a topic.
    pub async fn set_request_mode(
        &self,
        group: &str,
        topic: &str,
        setting: RequestModeSetting,
    ) -> BrokerResult<()> {
        if group.is_empty() || topic.is_empty() || group.contains('\0') || topic.contains('\0') {
            return Err(BrokerError::InvalidParameter(
                "a request mode needs a topic and a consumer group".into(),
            ));
        }
        let value = rmp_serde::to_vec(&setting)
            .map_err(|e| BrokerError::Storage(format!("encode request mode: {e}")))?;
        let key = keys::meta_key(MetaKind::RequestMode, &format!("{group}\0{topic}"));
        crate::error::written(
            self.writer
                .submit(AppendBatch::default().put(cf::META, key, value))
                .await,
        )?;
        if let Ok(mut r) = self.pops.lock() {
            r.set_request_mode(group, topic, setting);
        }
        tracing::info!(%group, %topic, mode = ?setting.mode, share = setting.pop_share_queue_num, "request mode set");
        Ok(())
    }

    /// The queues of `topic` that consumer `client_id` of `group` reads, and how.
    /// Broadcasting consumers read every queue; a consumer the group does not know gets none.
    pub async fn assignment(
        &self,
        group: &str,
        topic: &str,
        client_id: &str,
        strategy: Strategy,
        broadcasting: bool,
    ) -> BrokerResult<Assignment> {
        let setting = self.request_mode(group, topic);
        let queues: Vec<u32> = match self.topic(topic) {
            Some(t) => (0..t.config.read_queues.min(t.config.queue_count())).collect(),
            // A retry topic not made yet has nothing to read.
            None if topic.starts_with(model::RETRY_PREFIX) => Vec::new(),
            None => {
                self.existing_topic(topic)?; // TOPIC_NOT_EXIST
                Vec::new()
            }
        };
        let whole = |queue_ids| Assignment {
            mode: setting.mode,
            queue_ids,
        };
        if broadcasting {
            return Ok(whole(queues));
        }
        let mut consumers = self.consumer_ids(group).await?;
        consumers.sort();
        let Some(index) = consumers.iter().position(|c| c == client_id) else {
            return Ok(whole(Vec::new()));
        };
        let share = setting.pop_share_queue_num;
        let picked = match setting.mode {
            RequestMode::Pop
                if share <= 0 || share as usize >= consumers.len().saturating_sub(1) =>
            {
                queues
            }
            RequestMode::Pop => {
                let mut all = BTreeSet::new();
                for i in 0..=share as usize {
                    let who = (index + i) % consumers.len();
                    all.extend(strategy.allocate(&queues, who, consumers.len()));
                }
                all.into_iter().collect()
            }
            RequestMode::Pull => strategy.allocate(&queues, index, consumers.len()),
        };
        Ok(whole(picked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_allocation_splits_like_apache() {
        let q: Vec<u32> = (0..8).collect();
        let s = Strategy::Average;
        assert_eq!(s.allocate(&q, 0, 3), vec![0, 1, 2]);
        assert_eq!(s.allocate(&q, 1, 3), vec![3, 4, 5]);
        assert_eq!(s.allocate(&q, 2, 3), vec![6, 7]);
        // More consumers than queues: one each, the rest nothing.
        assert_eq!(s.allocate(&q[..2], 1, 4), vec![1]);
        assert!(s.allocate(&q[..2], 3, 4).is_empty());
        assert!(s.allocate(&q, 5, 3).is_empty());
        assert!(s.allocate(&[], 0, 1).is_empty());
    }

    #[test]
    fn circle_allocation_deals_queues_round() {
        let q: Vec<u32> = (0..5).collect();
        let s = Strategy::by_name("AVG_BY_CIRCLE");
        assert_eq!(s.allocate(&q, 0, 2), vec![0, 2, 4]);
        assert_eq!(s.allocate(&q, 1, 2), vec![1, 3]);
        assert_eq!(Strategy::by_name("whatever"), Strategy::Average);
    }

    #[test]
    fn every_queue_goes_to_exactly_one_consumer() {
        for n in 0..20u32 {
            for c in 1..7 {
                let q: Vec<u32> = (0..n).collect();
                for s in [Strategy::Average, Strategy::AverageByCircle] {
                    let mut all: Vec<u32> = (0..c).flat_map(|i| s.allocate(&q, i, c)).collect();
                    all.sort();
                    assert_eq!(all, q, "{s:?} n={n} c={c}");
                }
            }
        }
    }
}

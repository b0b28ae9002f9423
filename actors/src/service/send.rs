//! The send flow: topic lookup or auto-creation (TBW102), the broker's message rules, then
//! one append to the queue (or the scheduler, for a delivery time).

use super::*;
use crate::model::TopicMessageType;

pub struct SendRequest {
    pub producer_group: String,
    pub topic: String,
    pub default_topic: Option<String>,
    pub default_topic_queues: u32,
    /// Negative: the broker picks a queue.
    pub queue_id: i32,
    pub messages: Vec<IncomingMessage>,
    /// Retry-topic sends: the consumer's limit (header `maxReconsumeTimes`).
    pub max_reconsume_times: Option<i32>,
    /// Sent as a batch (SEND_BATCH_MESSAGE), which retry and dead-letter topics refuse.
    pub batch: bool,
    /// The sender's client connection, if it has one (asked first about its transactions).
    pub connection_id: Option<u64>,
    /// A transactional producer that polls for its checks (HTTP) instead of being asked.
    pub polls_checks: bool,
}

#[cfg(test)]
impl SendRequest {
    /// One message to queue 0 of `topic` from group PG (unit tests).
    pub(crate) fn for_test(topic: &str, body: Bytes, props: &str) -> SendRequest {
        SendRequest {
            producer_group: "PG".into(),
            topic: topic.into(),
            default_topic: None,
            default_topic_queues: 1,
            queue_id: 0,
            messages: vec![IncomingMessage {
                body,
                flag: 0,
                properties: props.into(),
                sys_flag: 0,
                born_timestamp: 1,
                born_host: SocketAddr::from(([127, 0, 0, 1], 1)),
                reconsume_times: 0,
            }],
            max_reconsume_times: None,
            batch: false,
            connection_id: None,
            polls_checks: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SendResult {
    pub queue_id: u32,
    pub first_offset: u64,
    pub seqs: Vec<u64>,
    pub uniq_keys: Vec<String>,
    pub store_host: SocketAddr,
    /// A scheduled message's recall handle (Apache 5.5's RECALL_MESSAGE, gRPC RecallMessage).
    pub recall_handle: Option<String>,
}

/// The property of Huawei DMS's cancel message: the id of the scheduled message to cancel.
pub const PROP_CANCEL_SCHEDULED_MSG: &str = "__CANCEL_SCHEDULED_MSG";

impl BrokerContext {
    /// What this broker stamps on the messages it stores.
    pub fn stamp(&self) -> Stamp<'_> {
        Stamp {
            cluster: &self.settings.cluster_name,
            region: &self.settings.region_id,
            trace_on: self.settings.trace_on,
        }
    }

    /// Finds the topic of a send, auto-creating it from the default topic (TBW102 flow).
    pub(super) async fn topic_for_send(&self, req: &SendRequest) -> BrokerResult<Arc<TopicHandle>> {
        if let Some(t) = self.topic(&req.topic) {
            return Ok(t);
        }
        if let Some(group) = req.topic.strip_prefix(model::RETRY_PREFIX) {
            let g = self.ensure_group(group).await?;
            return self.ensure_retry_topic(&g).await;
        }
        if !self.settings.auto_create_topic {
            return Err(BrokerError::TopicNotExist(req.topic.clone()));
        }
        let default = req.default_topic.as_deref().unwrap_or(model::DEFAULT_TOPIC);
        let Some(d) = self.topic(default) else {
            return Err(BrokerError::TopicNotExist(req.topic.clone()));
        };
        if d.config.perm & PERM_INHERIT == 0 {
            return Err(BrokerError::TopicNotExist(req.topic.clone()));
        }
        let queues = req
            .default_topic_queues
            .clamp(1, d.config.write_queues.max(1));
        self.auto_create(TopicSpec {
            name: req.topic.clone(),
            read_queues: queues,
            write_queues: queues,
            perm: d.config.perm & !PERM_INHERIT,
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        })
        .await
    }

    /// Stores the messages of one send (one message, or a batch) in one queue.
    pub async fn send(&self, req: SendRequest) -> BrokerResult<SendResult> {
        // Above the disk watermark new messages wait; reads, acks and offsets go on.
        self.disk.check_writable()?;
        model::validate_topic(&req.topic).map_err(BrokerError::MessageIllegal)?;
        if model::NOT_ALLOWED_SEND_TOPICS.contains(&req.topic.as_str()) {
            return Err(BrokerError::NoPermission(format!(
                "Sending message to topic[{}] is forbidden.",
                req.topic
            )));
        }
        if req.messages.is_empty() {
            return Err(BrokerError::MessageIllegal(
                "the batch holds no message".into(),
            ));
        }
        if req.batch && model::is_retry_or_dlq(&req.topic) {
            return Err(BrokerError::MessageIllegal(
                "batch request does not support retry group".into(),
            ));
        }
        let mut half = false;
        for m in &req.messages {
            check_limits(m, self.settings.max_message_size)?;
            half |= model::is_half_message(m.sys_flag, &m.properties);
        }
        if half && (req.batch || req.messages.len() != 1) {
            return Err(BrokerError::MessageIllegal(
                "a batch cannot hold transactional messages".into(),
            ));
        }
        if half && model::is_retry_or_dlq(&req.topic) {
            return Err(BrokerError::MessageIllegal(
                "a transactional message cannot go to a retry or dead-letter topic".into(),
            ));
        }
        let mut topic = self.topic_for_send(&req).await?;
        if let Some(group) = req.topic.strip_prefix(model::RETRY_PREFIX) {
            // Orderly consumers re-send failures to the retry topic themselves; past the limit
            // such a message belongs in the dead-letter queue (digest §4.3).
            let g = self.ensure_group(group).await?;
            let max = req.max_reconsume_times.unwrap_or(g.config.retry_max_times);
            // A group holding live queue locks consumes orderly: its client re-sends only once
            // it has used up its local retries, so the message goes straight to the DLQ.
            let orderly = g.view.load().orderly_locks;
            if orderly || req.messages.iter().any(|m| m.reconsume_times > max) {
                topic = self.ensure_dlq_topic(group).await?;
            }
        }
        if !topic.config.writable() {
            return Err(BrokerError::NoPermission(format!(
                "the topic[{}] sending message is forbidden",
                req.topic
            )));
        }
        let write_queues = topic.config.write_queues.max(1);
        let sharding_key = req
            .messages
            .first()
            .and_then(|m| properties::get(&m.properties, crate::message::PROP_SHARDING_KEY))
            .filter(|k| !k.is_empty());
        let queue_id = if req.queue_id < 0 {
            match sharding_key {
                // One key, one queue: a message group's (sharding key's) order is its queue's.
                // Java's String.hashCode, as Apache's `SelectMessageQueueByHash` hashes a key.
                Some(key) => (model::java_hash(key).unsigned_abs() % write_queues) as u32,
                None => {
                    (self.round_robin.fetch_add(1, Ordering::Relaxed) % write_queues as u64) as u32
                }
            }
        } else {
            req.queue_id as u32
        };
        let Some(queue) = topic.queues.get(queue_id as usize) else {
            return Err(BrokerError::InvalidParameter(format!(
                "request queueId[{queue_id}] is illegal, topic: {} queue count: {}",
                req.topic,
                topic.queues.len()
            )));
        };
        let store_host = self.settings.broker_addr;
        let sizes: Vec<usize> = req.messages.iter().map(|m| m.body.len()).collect();
        let fifo = sharding_key.is_some()
            || TopicMessageType::of_topic(&topic.config) == TopicMessageType::Fifo;
        let mut prepared = Vec::with_capacity(req.messages.len());
        for m in req.messages {
            prepared.push(prepare(m, &self.stamp(), store_host)?);
        }
        let uniq_keys: Vec<String> = prepared.iter().map(|p| p.uniq_key.clone()).collect();
        let n = prepared.len() as u64;
        if half {
            // Half messages ignore delivery times, as in Apache: the commit delivers at once.
            let Some(message) = prepared.pop() else {
                return Err(BrokerError::MessageIllegal("no message".into()));
            };
            let seq = self
                .prepare_half(
                    &topic,
                    queue_id,
                    message,
                    req.producer_group,
                    req.connection_id,
                    req.polls_checks,
                )
                .await?;
            self.metrics
                .messages_in(&topic.config.name, TopicMessageType::Transaction, &sizes);
            return Ok(SendResult {
                queue_id,
                first_offset: seq,
                seqs: vec![seq],
                uniq_keys,
                store_host,
                recall_handle: None,
            });
        }
        let due = match prepared.first() {
            Some(p) => due_time(&p.properties, crate::now_ms(), self.settings.max_delay_ms)?,
            None => None,
        };
        let cancel = prepared.first().and_then(|p| {
            properties::get(&p.properties, PROP_CANCEL_SCHEDULED_MSG).map(str::to_string)
        });
        if let Some(target) = cancel {
            if req.batch || uniq_keys.len() != 1 {
                return Err(BrokerError::MessageIllegal(format!(
                    "a {PROP_CANCEL_SCHEDULED_MSG} message cannot be part of a batch"
                )));
            }
            // The cancel message itself is never stored: it names the scheduled message by id
            // and by due time; past that time there is nothing left to cancel.
            let seq = match due {
                Some(due_ms) => {
                    self.cancel_scheduled(&topic.config.name, &target, due_ms)
                        .await?
                }
                None => None,
            };
            return Ok(SendResult {
                queue_id,
                first_offset: 0,
                seqs: vec![seq.unwrap_or(0)],
                uniq_keys,
                store_host,
                recall_handle: None,
            });
        }
        if let Some(due_ms) = due {
            let seqs = scheduler::schedule(
                &self.scheduler,
                Schedule {
                    topic: topic.config.name.clone(),
                    queue_id,
                    messages: prepared,
                    due_ms,
                },
            )
            .await?;
            metrics::counter!("rocktor_messages_scheduled_total", "topic" => req.topic.clone())
                .increment(n);
            self.metrics
                .messages_in(&topic.config.name, TopicMessageType::Delay, &sizes);
            let recall_handle = (uniq_keys.len() == 1).then(|| {
                scheduler::recall_handle(
                    &topic.config.name,
                    &self.settings.broker_name,
                    due_ms,
                    &uniq_keys[0],
                )
            });
            return Ok(SendResult {
                queue_id,
                first_offset: 0,
                seqs,
                uniq_keys,
                store_host,
                recall_handle,
            });
        }
        let r = topic_queue::append(queue, Append::new(prepared, store_host)).await?;
        let kind = if fifo {
            TopicMessageType::Fifo
        } else {
            TopicMessageType::Normal
        };
        self.metrics.messages_in(&topic.config.name, kind, &sizes);
        Ok(SendResult {
            queue_id: r.queue_id,
            first_offset: r.first_offset,
            seqs: r.seqs,
            uniq_keys,
            store_host,
            recall_handle: None,
        })
    }

    /// Cancels a scheduled message of `topic` by its id and due time; answers its sequence,
    /// or None when it was unknown or already delivered (which changes nothing).
    pub async fn cancel_scheduled(
        &self,
        topic: &str,
        uniq_key: &str,
        due_ms: i64,
    ) -> BrokerResult<Option<u64>> {
        self.scheduler
            .send(scheduler::Cancel {
                topic: topic.to_string(),
                uniq_key: uniq_key.to_string(),
                due_ms,
            })
            .timeout(MAILBOX_WAIT)
            .await?
    }

    /// RECALL_MESSAGE / gRPC RecallMessage: cancels the scheduled message a recall handle
    /// names; answers its message id. A handle of another topic or broker is refused.
    pub async fn recall(&self, topic: &str, handle: &str) -> BrokerResult<String> {
        if self.topic(topic).is_none() {
            return Err(BrokerError::TopicNotExist(topic.to_string()));
        }
        let (handle_topic, broker, due_ms, id) = scheduler::parse_recall_handle(handle)?;
        if handle_topic != topic {
            return Err(BrokerError::IllegalOperation(
                "recall failed, topic not match".into(),
            ));
        }
        if broker != self.settings.broker_name {
            return Err(BrokerError::IllegalOperation(
                "recall failed, broker name not match".into(),
            ));
        }
        let ahead = due_ms.saturating_sub(crate::now_ms());
        if ahead <= 0 || ahead > self.settings.max_delay_ms {
            return Err(BrokerError::IllegalOperation(
                "recall failed, timestamp invalid (the message is delivered or the time is out of range)"
                    .into(),
            ));
        }
        self.cancel_scheduled(topic, &id, due_ms).await?;
        Ok(id)
    }
}

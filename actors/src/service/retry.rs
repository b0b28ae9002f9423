//! Consumer retries: a message given back goes to `%RETRY%<group>` after its back-off, or past
//! the group's limit to `%DLQ%<group>` (digest §4.3).

use super::*;

/// CONSUMER_SEND_MSG_BACK: a consumer gives a message back for a later retry.
pub struct SendBackRequest {
    pub group: String,
    /// The commit-log offset (sequence) of the message.
    pub offset: u64,
    /// 0: the broker's back-off (3 + reconsume times); negative: straight to the DLQ.
    pub delay_level: i32,
    pub origin_msg_id: Option<String>,
    pub max_reconsume_times: Option<i32>,
}

impl BrokerContext {
    /// Routes a message a consumer gave back: to `%RETRY%<group>` after the back-off of its
    /// delay level, or past the group's limit to `%DLQ%<group>` (digest §4.3).
    pub async fn send_back(&self, req: SendBackRequest) -> BrokerResult<()> {
        let group = self.ensure_group(&req.group).await?;
        if group.config.retry_queue_nums == 0 {
            return Ok(()); // Apache's rule: no retry queues means the message is dropped.
        }
        let seq = req.offset;
        let bytes = self.view_message(seq).await.map_err(|e| match e {
            BrokerError::NotFound(_) => {
                BrokerError::NotFound(format!("look message by offset failed, {seq}"))
            }
            e => e,
        })?;
        let (rec, _) = rocktor_storage::record::decode(&bytes)
            .map_err(|e| BrokerError::Storage(format!("stored record {seq}: {e}")))?;
        let mut props = rec.properties.clone();
        let origin_topic = properties::get(&props, PROP_RETRY_TOPIC)
            .unwrap_or(&rec.topic)
            .to_string();
        if properties::get(&props, PROP_RETRY_TOPIC).is_none() {
            properties::push(&mut props, PROP_RETRY_TOPIC, &rec.topic);
        }
        let origin_id = req
            .origin_msg_id
            .filter(|s| !s.is_empty())
            .or_else(|| properties::get(&props, PROP_ORIGIN_MESSAGE_ID).map(str::to_string))
            .or_else(|| properties::get(&props, PROP_UNIQ_KEY).map(str::to_string))
            .unwrap_or_default();
        if properties::get(&props, PROP_ORIGIN_MESSAGE_ID).is_none() && !origin_id.is_empty() {
            properties::push(&mut props, PROP_ORIGIN_MESSAGE_ID, &origin_id);
        }
        let max = req
            .max_reconsume_times
            .unwrap_or(group.config.retry_max_times);
        let times = rec.reconsume_times;
        if times >= max || req.delay_level < 0 {
            return self
                .dead_letter(&req.group, &rec, props, &origin_topic, &origin_id, None)
                .await;
        }
        let level = if req.delay_level == 0 {
            times.saturating_add(3)
        } else {
            req.delay_level
        };
        let p = properties::with(&props, PROP_DELAY, &level.to_string());
        let mut m = from_record(&rec, p)?;
        m.reconsume_times = times.saturating_add(1);
        let retry = self.ensure_retry_topic(&group).await?;
        let queue_id = (self.round_robin.fetch_add(1, Ordering::Relaxed)
            % retry.queues.len().max(1) as u64) as u32;
        let due_ms = crate::now_ms().saturating_add(delay_of_level(level));
        scheduler::schedule(
            &self.scheduler,
            Schedule {
                topic: retry.config.name.clone(),
                queue_id,
                messages: vec![m],
                due_ms,
            },
        )
        .await?;
        metrics::counter!("rocktor_messages_retried_total", "group" => req.group).increment(1);
        Ok(())
    }
}

impl BrokerContext {
    /// Appends a message to `%DLQ%<group>` with its origin topic and id; `delete_with` is a
    /// key deleted in the same write (a pop delivery that moves with it).
    pub(super) async fn dead_letter(
        &self,
        group: &str,
        rec: &rocktor_storage::record::Record,
        props: String,
        origin_topic: &str,
        origin_id: &str,
        delete_with: Option<(&'static str, Vec<u8>)>,
    ) -> BrokerResult<()> {
        let mut p = properties::without(&props, &[PROP_DELAY]);
        p = properties::with(&p, PROP_DLQ_ORIGIN_TOPIC, origin_topic);
        p = properties::with(&p, PROP_DLQ_ORIGIN_MESSAGE_ID, origin_id);
        let mut m: PreparedMessage = from_record(rec, p)?;
        m.reconsume_times = rec.reconsume_times.saturating_add(1);
        let dlq = self.ensure_dlq_topic(group).await?;
        let queue = dlq.queues.first().ok_or_else(|| {
            BrokerError::Storage(format!("topic {} has no queue", dlq.config.name))
        })?;
        let mut append = Append::new(vec![m], self.settings.broker_addr);
        append.delete_with.extend(delete_with);
        topic_queue::append(queue, append).await?;
        metrics::counter!("rocktor_messages_dead_lettered_total", "group" => group.to_string())
            .increment(1);
        self.metrics.dead_lettered(origin_topic, group);
        Ok(())
    }
}

//! The trace flow: the whole story of one message by its id (UNIQ_KEY) — what trace-enabled
//! clients reported (`RMQ_SYS_TRACE_TOPIC`, Apache's trace encoding) joined with what the
//! broker knows itself: where it stored the message, whether it is held back (scheduled and not
//! yet due, a transaction without outcome, rolled back), each group's delivery status, its
//! retries and its dead letter. A message whose clients never traced still has the broker's
//! side. Reads run on the blocking pool.

use super::*;
use crate::trace_data::{self, EndTransactionTrace, PubTrace, TraceRecord};
use query::{DeliveryStatus, MessageQuery};
use rocktor_storage::keys;

/// Where and how the broker stored one record of the message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    /// The commit-log offset (sequence); with `store_host` it makes the offset msgId.
    pub commit_log_offset: u64,
    pub store_time_ms: i64,
    pub store_host: String,
    pub born_time_ms: i64,
    pub born_host: String,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub body_length: usize,
    pub reconsume_times: i32,
}

/// One delivery of the message to a consumer, as its client traced it (SubBefore paired with
/// SubAfter by request id).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeTrace {
    pub request_id: String,
    pub client_host: Option<String>,
    pub begin_ms: i64,
    /// -1 while no SubAfter was seen.
    pub cost_ms: i64,
    /// "success", "failed" or "unknown" (no SubAfter), as the dashboard shows it.
    pub status: &'static str,
    pub retry_times: i32,
    pub context_code: Option<i32>,
}

/// The message from one consumer group's side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupTrace {
    pub group: String,
    /// The broker's delivery status (None: the group no longer consumes the topic).
    pub status: Option<&'static str>,
    pub consumes: Vec<ConsumeTrace>,
    /// The copies stored in `%RETRY%<group>` (delivered retries), oldest first.
    pub retries: Vec<StoredMessage>,
    /// A retry still in its back-off: due at this time.
    pub retry_due_ms: Option<i64>,
    pub dead_letter: Option<StoredMessage>,
}

/// A message the broker holds back from its queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldMessage {
    /// "SCHEDULED" or "TRANSACTION".
    pub kind: &'static str,
    pub record: StoredMessage,
    /// A scheduled message's due time.
    pub due_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageTrace {
    pub msg_id: String,
    pub topic: Option<String>,
    /// The broker's word on where the message stands when it is not simply stored:
    /// "Message Standing By" (scheduled, not yet due), "Scheduled Message Cancelled",
    /// "Transaction Uncommitted", "Transaction Committed", "Message Rolled Back",
    /// "Transaction Check Exhausted".
    pub state: Option<&'static str>,
    pub stored: Option<StoredMessage>,
    pub held: Option<HeldMessage>,
    pub published: Vec<PubTrace>,
    pub transactions: Vec<EndTransactionTrace>,
    pub groups: Vec<GroupTrace>,
}

/// Held records (and trace messages) one trace reads at most.
const HELD_SCAN: usize = 64;
/// Client trace records one trace keeps (any producer may write to the trace topic).
const MAX_TRACE_RECORDS: usize = 4096;
/// Retries per group a trace lists.
const MAX_RETRIES: usize = 32;

pub const STATE_STANDING_BY: &str = "Message Standing By";
pub const STATE_CANCELLED: &str = "Scheduled Message Cancelled";
pub const STATE_UNCOMMITTED: &str = "Transaction Uncommitted";
pub const STATE_COMMITTED: &str = "Transaction Committed";
pub const STATE_ROLLED_BACK: &str = "Message Rolled Back";
pub const STATE_CHECK_EXHAUSTED: &str = "Transaction Check Exhausted";

/// A stored record as a trace shows it; its commit-log offset is the one the writer patched in.
fn stored_view(bytes: &Bytes) -> Option<StoredMessage> {
    let (rec, _) = rocktor_storage::record::decode(bytes).ok()?;
    let [tags, keys] = properties::lookup(
        &rec.properties,
        [crate::message::PROP_TAGS, crate::message::PROP_KEYS],
    );
    Some(StoredMessage {
        topic: rec.topic.clone(),
        queue_id: rec.queue_id,
        queue_offset: rec.queue_offset,
        commit_log_offset: rec.physical_offset.max(0) as u64,
        store_time_ms: rec.store_timestamp,
        store_host: rec.store_host.to_string(),
        born_time_ms: rec.born_timestamp,
        born_host: rec.born_host.to_string(),
        tags: tags.map(str::to_string),
        keys: keys.map(str::to_string),
        body_length: rec.body.len(),
        reconsume_times: rec.reconsume_times,
    })
}

/// A record the broker holds back under a message id: its topic (the scheduled
/// destination, or the half-message topic) and record, and whether it still waits (a pending
/// transaction outcome, a timer entry not yet due).
pub(super) struct Held {
    pub(super) topic: String,
    record: Bytes,
    txn_pending: bool,
    pub(super) timer_pending: bool,
}

impl BrokerContext {
    /// The trace of the message with this id (UNIQ_KEY). `topic` narrows it when known;
    /// `trace_topic` is where clients sent their trace records (default RMQ_SYS_TRACE_TOPIC).
    pub async fn message_trace(
        &self,
        msg_id: &str,
        topic: Option<&str>,
        trace_topic: Option<&str>,
    ) -> BrokerResult<MessageTrace> {
        if msg_id.is_empty() || msg_id.len() > 128 {
            return Err(BrokerError::InvalidParameter(
                "a message id is 1 to 128 characters".into(),
            ));
        }
        let records = self
            .client_traces(msg_id, trace_topic.unwrap_or(trace_data::TRACE_TOPIC))
            .await?;
        let held = self.held_records(msg_id).await?;
        let mut published = Vec::new();
        let mut transactions = Vec::new();
        let mut before = Vec::new();
        let mut after = HashMap::new();
        for (record, client_host) in records {
            match record {
                TraceRecord::Pub(mut p) => {
                    p.client_host = p.client_host.or_else(|| Some(client_host.clone()));
                    published.push(p);
                }
                TraceRecord::EndTransaction(e) => transactions.push(e),
                TraceRecord::SubBefore(b) => before.push((b, client_host)),
                TraceRecord::SubAfter(a) => {
                    after.insert(a.request_id.clone(), a);
                }
                TraceRecord::Recall(_) => {}
            }
        }
        published.sort_by_key(|p| p.time_ms);
        transactions.sort_by_key(|t| t.time_ms);
        // The topic: asked for, or what the producer reported, or what a held record names.
        let held_topic = held.iter().find_map(|h| {
            let (rec, _) = rocktor_storage::record::decode(&h.record).ok()?;
            let real = properties::get(&rec.properties, crate::txn::PROP_REAL_TOPIC);
            Some(real.map(str::to_string).unwrap_or(rec.topic))
        });
        let topic = topic
            .map(str::to_string)
            .or_else(|| published.first().map(|p| p.topic.clone()))
            .or_else(|| transactions.first().map(|t| t.topic.clone()))
            .or(held_topic)
            .filter(|t| !model::is_retry_or_dlq(t));
        let stored = match &topic {
            Some(t) => self.find_stored(t, msg_id).await?,
            None => None,
        };
        let (state, held_view) = self
            .held_state(msg_id, topic.as_deref(), &held, stored.is_some())
            .await?;

        // Groups: those the broker knows consume the topic, and those that traced it.
        let mut groups: BTreeMap<String, GroupTrace> = BTreeMap::new();
        let new_group = |g: &str| GroupTrace {
            group: g.to_string(),
            status: None,
            consumes: Vec::new(),
            retries: Vec::new(),
            retry_due_ms: None,
            dead_letter: None,
        };
        if let (Some(t), Some(_)) = (&topic, &stored) {
            for d in self.delivery_status(t, msg_id).await? {
                groups
                    .entry(d.group.clone())
                    .or_insert_with(|| new_group(&d.group))
                    .status = Some(d.status.as_str());
            }
        }
        for (b, client_host) in before {
            let a = after.remove(&b.request_id);
            let (cost_ms, status, context_code) = match &a {
                Some(a) => (
                    a.cost_ms,
                    if a.success { "success" } else { "failed" },
                    a.context_code,
                ),
                None => (-1, "unknown", None),
            };
            groups
                .entry(b.group.clone())
                .or_insert_with(|| new_group(&b.group))
                .consumes
                .push(ConsumeTrace {
                    request_id: b.request_id,
                    client_host: Some(client_host),
                    begin_ms: b.time_ms,
                    cost_ms,
                    status,
                    retry_times: b.retry_times,
                    context_code,
                });
        }
        for g in groups.values_mut() {
            g.consumes.sort_by_key(|c| c.begin_ms);
            g.retries = self
                .stored_copies(&model::retry_topic(&g.group), msg_id, MAX_RETRIES)
                .await?;
            g.dead_letter = self
                .stored_copies(&model::dlq_topic(&g.group), msg_id, 1)
                .await?
                .pop();
            let retry_topic = model::retry_topic(&g.group);
            g.retry_due_ms = held.iter().filter(|h| h.timer_pending).find_map(|h| {
                let (rec, _) = rocktor_storage::record::decode(&h.record).ok()?;
                (rec.topic == retry_topic)
                    .then(|| due_of(&rec.properties))
                    .flatten()
            });
            if g.retry_due_ms.is_some() && g.dead_letter.is_none() {
                g.status = Some(DeliveryStatus::InRetry.as_str());
            }
        }
        Ok(MessageTrace {
            msg_id: msg_id.to_string(),
            topic,
            state,
            stored,
            held: held_view,
            published,
            transactions,
            groups: groups.into_values().collect(),
        })
    }

    /// The trace records clients sent about `msg_id`, with the sending client's host.
    async fn client_traces(
        &self,
        msg_id: &str,
        trace_topic: &str,
    ) -> BrokerResult<Vec<(TraceRecord, String)>> {
        if self.topic(trace_topic).is_none() {
            return Ok(Vec::new());
        }
        let found = self
            .query_messages(MessageQuery {
                topic: trace_topic.to_string(),
                key: msg_id.to_string(),
                unique: false,
                begin_ms: 0,
                end_ms: i64::MAX,
                max: HELD_SCAN,
            })
            .await?;
        let mut out = Vec::new();
        for bytes in found {
            let Ok((rec, _)) = rocktor_storage::record::decode(&bytes) else {
                continue;
            };
            let Ok(body) = std::str::from_utf8(&rec.body) else {
                continue;
            };
            let host = rec.born_host.ip().to_string();
            let room = MAX_TRACE_RECORDS.saturating_sub(out.len());
            out.extend(
                trace_data::decode_for(body, msg_id, room)
                    .into_iter()
                    .map(|r| (r, host.clone())),
            );
        }
        Ok(out)
    }

    /// Records held back under this id (scheduled, half messages), newest first, with whether
    /// each is still waiting.
    pub(super) async fn held_records(&self, msg_id: &str) -> BrokerResult<Vec<Held>> {
        let store = self.store.clone();
        let id = msg_id.to_string();
        crate::error::blocking(move || {
            let prefix = keys::index_prefix(keys::HELD_TOPIC_ID, &id);
            let mut out = Vec::new();
            for seq in store.index_newest(&prefix, HELD_SCAN)? {
                let Some(record) = store.read_record(seq)? else {
                    continue;
                };
                let Ok((rec, _)) = rocktor_storage::record::decode(&record) else {
                    continue;
                };
                if properties::get(&rec.properties, PROP_UNIQ_KEY) != Some(id.as_str()) {
                    continue; // a hash collision
                }
                let txn_pending = rec.topic == crate::txn::HALF_TOPIC && store.txn_pending(seq)?;
                let timer_pending = match due_of(&rec.properties) {
                    Some(due) => store.timer_pending(due, seq)?,
                    None => false,
                };
                out.push(Held {
                    topic: rec.topic.clone(),
                    record,
                    txn_pending,
                    timer_pending,
                });
            }
            Ok(out)
        })
        .await
    }

    /// The broker's state label and the held record of a message that is, or was, held back.
    async fn held_state(
        &self,
        msg_id: &str,
        topic: Option<&str>,
        held: &[Held],
        stored: bool,
    ) -> BrokerResult<(Option<&'static str>, Option<HeldMessage>)> {
        for h in held {
            let Ok((rec, _)) = rocktor_storage::record::decode(&h.record) else {
                continue;
            };
            let Some(view) = stored_view(&h.record) else {
                continue;
            };
            if rec.topic == crate::txn::HALF_TOPIC {
                let state = if h.txn_pending {
                    STATE_UNCOMMITTED
                } else if stored {
                    STATE_COMMITTED
                } else if self
                    .stored_copies(crate::txn::CHECK_MAX_TOPIC, msg_id, 1)
                    .await?
                    .is_empty()
                {
                    STATE_ROLLED_BACK
                } else {
                    STATE_CHECK_EXHAUSTED
                };
                let held = HeldMessage {
                    kind: "TRANSACTION",
                    record: view,
                    due_ms: None,
                };
                return Ok((Some(state), Some(held)));
            }
            if Some(rec.topic.as_str()) == topic {
                let state = match (stored, h.timer_pending) {
                    (true, _) => None,
                    (false, true) => Some(STATE_STANDING_BY),
                    (false, false) => Some(STATE_CANCELLED),
                };
                let held = HeldMessage {
                    kind: "SCHEDULED",
                    record: view,
                    due_ms: due_of(&rec.properties),
                };
                return Ok((state, Some(held)));
            }
        }
        Ok((None, None))
    }

    /// The message as stored in its topic (the newest copy).
    async fn find_stored(&self, topic: &str, msg_id: &str) -> BrokerResult<Option<StoredMessage>> {
        Ok(self.stored_copies(topic, msg_id, 1).await?.pop())
    }

    /// The copies of a message in a topic, oldest first; none for a topic that does not exist.
    async fn stored_copies(
        &self,
        topic: &str,
        msg_id: &str,
        max: usize,
    ) -> BrokerResult<Vec<StoredMessage>> {
        let found = self.records_by_id(topic, msg_id, max).await?;
        let mut out: Vec<StoredMessage> = found.iter().filter_map(stored_view).collect();
        out.sort_by_key(|s| s.commit_log_offset);
        Ok(out)
    }
}

/// A held scheduled record's due time.
fn due_of(props: &str) -> Option<i64> {
    properties::get(props, crate::message::PROP_TIMER_OUT_MS).and_then(|v| v.parse().ok())
}

//! Apache 5's POP consumption on the remoting port — POP_MESSAGE (200050), ACK_MESSAGE
//! (200051), BATCH_ACK_MESSAGE (200151), CHANGE_MESSAGE_INVISIBLETIME (200053) — and the
//! broker-side rebalance that puts a consumer in pop mode: QUERY_ASSIGNMENT (400) and
//! SET_MESSAGE_REQUEST_MODE (401). Digest §2.4. All of it runs on the domain's invisible-time
//! consumption (`BrokerContext::receive`/`ack`/`change_invisible`), as HTTP and gRPC do.
//!
//! Receipts: these clients build their receipt (`POP_CK`, "extraInfo") themselves from the
//! response header — `ckOffset popTime invisibleTime reviveQid retryFlag brokerName queueId`
//! plus the message's offset — so a delivery is named back by queue, offset and deadline
//! (popTime + invisibleTime); a receipt from an earlier delivery names an earlier deadline and
//! is refused.

use super::{ok, ok_json, HandlerResult};
use crate::remoting::codes::response as rc;
use crate::remoting::command::RemotingCommand;
use crate::remoting::errors::HandlerError;
use crate::remoting::ext::Ext;
use base64::Engine as _;
use rocktor_actors::pop::{AckTarget, HandleError};
use rocktor_actors::service::Strategy;
use rocktor_actors::service::{ConsumerProtocol, ReceiveRequest, RequestMode, RequestModeSetting};
use rocktor_actors::BrokerContext;
use serde_json::json;
use std::time::Duration;

/// Apache's ConsumeInitMode.MAX: a new group starts at the queues' ends.
const INIT_MODE_MAX: i64 = 1;
/// The longest long poll we hold, whatever the client asks.
const MAX_POLL: Duration = Duration::from_secs(60);
/// Acks one BATCH_ACK_MESSAGE may carry, and offsets one of its bitmaps may span.
const MAX_BATCH_ACKS: usize = 1024;
const MAX_BATCH_SPAN: usize = 8192;

/// The fields of a receipt ("extraInfo") a broker needs back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Receipt {
    pop_time: i64,
    invisible_time: i64,
}

impl Receipt {
    /// `ckOffset popTime invisibleTime reviveQid retryFlag brokerName queueId [offset]`.
    fn parse(extra: &str) -> Option<Receipt> {
        let mut f = extra.split(' ');
        let _ck_offset: i64 = f.next()?.parse().ok()?;
        let pop_time = f.next()?.parse().ok()?;
        let invisible_time = f.next()?.parse().ok()?;
        Some(Receipt {
            pop_time,
            invisible_time,
        })
    }

    fn deadline(self) -> i64 {
        self.pop_time.saturating_add(self.invisible_time)
    }
}

fn pop_header(resp: RemotingCommand, pop_time: i64, invisible_ms: i64) -> RemotingCommand {
    resp.with_ext("popTime", pop_time)
        .with_ext("invisibleTime", invisible_ms)
        .with_ext("reviveQid", 0)
}

/// POP_MESSAGE: up to `maxMsgNums` messages, invisible for `invisibleTime`, long-polling up to
/// `pollTime`. The header (popTime, invisibleTime, reviveQid, restNum) comes with every answer.
pub async fn pop(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let group = e.str("consumerGroup")?.to_string();
    let topic = e.str("topic")?.to_string();
    let max = e.i64("maxMsgNums")?;
    let invisible_ms = e.i64("invisibleTime")?;
    let now = rocktor_actors::now_ms();
    let answer = |code: i32, remark: String| {
        Ok(Some(
            pop_header(
                RemotingCommand::response_to(req, code),
                now,
                invisible_ms.max(0),
            )
            .with_ext("restNum", 0)
            .with_remark(remark),
        ))
    };
    if !(1..=rocktor_actors::pop::MAX_BATCH as i64).contains(&max) {
        return answer(
            rc::INVALID_PARAMETER,
            format!(
                "the max message number {max} is not in [1, {}]",
                rocktor_actors::pop::MAX_BATCH
            ),
        );
    }
    let poll_ms = e.opt_i64("pollTime")?.unwrap_or(0).max(0) as u64;
    let wait = Duration::from_millis(poll_ms).min(MAX_POLL);
    let queue = match e.i64("queueId")? {
        q if q < 0 => None,
        q => Some(u32::try_from(q).map_err(|_| {
            rocktor_actors::BrokerError::InvalidParameter(format!("queue id {q} out of range"))
        })?),
    };
    b.claim_consumer_protocol(&group, ConsumerProtocol::Tcp)?;
    let received = b
        .receive(ReceiveRequest {
            group,
            topic,
            max: max as usize,
            invisible_ms,
            expression: e.opt_str("exp").unwrap_or("*").to_string(),
            expression_type: e.opt_str("expType").unwrap_or("TAG").to_string(),
            wait,
            order: e.bool_any(&["order"]).unwrap_or(false),
            max_attempts: None,
            queue,
            start_at_end: e.opt_i64("initMode")?.unwrap_or(0) == INIT_MODE_MAX,
        })
        .await;
    let deliveries = match received {
        // Too many long polls wait already: the client backs off before it polls again.
        Err(rocktor_actors::BrokerError::LimitExceeded(m)) => return answer(rc::POLLING_FULL, m),
        r => r?,
    };
    let Some(first) = deliveries.first() else {
        let code = if wait.is_zero() {
            rc::PULL_NOT_FOUND
        } else {
            rc::POLLING_TIMEOUT
        };
        return answer(code, "no new message".into());
    };
    // One receive shares one deadline: the client's receipt carries popTime + invisibleTime.
    let pop_time = first.deadline_ms.saturating_sub(invisible_ms);
    let mut resp = pop_header(RemotingCommand::response_to(req, 0), pop_time, invisible_ms)
        .with_ext("restNum", 0);
    resp.body_chunks = deliveries
        .into_iter()
        .map(|d| {
            if d.attempt <= 1 {
                return d.record;
            }
            // A redelivery says how often it was consumed before (on top of the count the
            // message came with, e.g. from a send-back).
            let mut r = d.record.to_vec();
            let times = d.attempt.saturating_sub(1).min(i32::MAX as u32) as i32;
            rocktor_storage::record::add_reconsume_times(&mut r, times);
            r.into()
        })
        .collect();
    Ok(Some(resp))
}

fn ack_code(r: &Result<(), HandleError>) -> (i32, String) {
    match r {
        Ok(()) => (0, String::new()),
        Err(e) => (rc::NO_MESSAGE, format!("the message is not in flight: {e}")),
    }
}

/// The delivery a receipt names.
fn target(queue_id: i64, offset: i64, extra: &str) -> Result<AckTarget, HandlerError> {
    let receipt = Receipt::parse(extra).ok_or_else(|| {
        rocktor_actors::BrokerError::InvalidParameter(format!("malformed extraInfo {extra:?}"))
    })?;
    match (u32::try_from(queue_id), u64::try_from(offset)) {
        (Ok(queue_id), Ok(offset)) => Ok(AckTarget::Delivery {
            queue_id,
            offset,
            deadline_ms: receipt.deadline(),
        }),
        _ => Err(rocktor_actors::BrokerError::InvalidParameter(format!(
            "queue {queue_id} / offset {offset} out of range"
        ))
        .into()),
    }
}

/// ACK_MESSAGE: settles one delivery; NO_MESSAGE when it is not in flight (acked, expired and
/// redelivered, or never handed out).
pub async fn ack(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let t = target(e.i64("queueId")?, e.i64("offset")?, e.str("extraInfo")?)?;
    let out = b
        .ack(e.str("consumerGroup")?, e.str("topic")?, vec![t])
        .await?;
    let (code, remark) = out
        .first()
        .map(ack_code)
        .unwrap_or((rc::SYSTEM_ERROR, "no ack outcome".into()));
    let resp = RemotingCommand::response_to(req, code);
    Ok(Some(if remark.is_empty() {
        resp
    } else {
        resp.with_remark(remark)
    }))
}

/// One entry of BATCH_ACK_MESSAGE's body.
#[derive(Debug, serde::Deserialize)]
struct BatchAck {
    #[serde(rename = "c", alias = "consumerGroup")]
    group: String,
    #[serde(rename = "t", alias = "topic")]
    topic: String,
    #[serde(rename = "so", alias = "startOffset")]
    start_offset: i64,
    #[serde(rename = "q", alias = "queueId")]
    queue_id: i64,
    #[serde(rename = "pt", alias = "popTime")]
    pop_time: i64,
    #[serde(rename = "it", alias = "invisibleTime")]
    invisible_time: i64,
    #[serde(rename = "b", alias = "bitSet")]
    bits: BitSet,
}

/// Java writes a BitSet as base64 of its little-endian bytes, rocketmq-client-rust as a JSON
/// array of those bytes.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum BitSet {
    Base64(String),
    Bytes(Vec<u8>),
}

impl BitSet {
    /// The set bit indexes, or None when undecodable or wider than `MAX_BATCH_SPAN`.
    fn indexes(&self) -> Option<Vec<usize>> {
        let bytes = match self {
            BitSet::Base64(s) => base64::engine::general_purpose::STANDARD.decode(s).ok()?,
            BitSet::Bytes(b) => b.clone(),
        };
        if bytes.len() * 8 > MAX_BATCH_SPAN {
            // Trailing zero bytes (a u64-word encoder pads) do not widen the span.
            if bytes[MAX_BATCH_SPAN / 8..].iter().any(|b| *b != 0) {
                return None;
            }
        }
        Some(
            bytes
                .iter()
                .take(MAX_BATCH_SPAN / 8)
                .enumerate()
                .flat_map(|(i, byte)| {
                    (0..8)
                        .filter(move |bit| byte & (1 << bit) != 0)
                        .map(move |bit| i * 8 + bit)
                })
                .collect(),
        )
    }
}

/// BATCH_ACK_MESSAGE's body.
#[derive(Debug, serde::Deserialize)]
struct BatchAckBody {
    #[serde(default)]
    acks: Vec<BatchAck>,
}

/// The (group, topic) pairs a batch-ack body names, for access control: parsed as the handler
/// parses it, so a body the check reads differently is one the handler refuses too.
pub fn batch_ack_resources(body: &[u8]) -> Vec<(String, String)> {
    serde_json::from_slice::<BatchAckBody>(body)
        .map(|b| b.acks.into_iter().map(|a| (a.group, a.topic)).collect())
        .unwrap_or_default()
}

/// BATCH_ACK_MESSAGE: acks by bitmap, each relative to a receipt's start offset. Answers
/// SUCCESS as Apache does (clients only log a failed batch and fall back to single acks);
/// the remark counts the entries that were not in flight.
pub async fn batch_ack(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let body: BatchAckBody =
        serde_json::from_slice(&req.body).map_err(|e| HandlerError::BadBody(e.to_string()))?;
    if body.acks.len() > MAX_BATCH_ACKS {
        return Err(rocktor_actors::BrokerError::InvalidParameter(format!(
            "a batch ack carries at most {MAX_BATCH_ACKS} entries"
        ))
        .into());
    }
    // Every bitmap decodes, and all of them together name a bounded number of acks, before
    // anything is settled: a refused batch settles nothing.
    let mut entries = Vec::with_capacity(body.acks.len());
    let mut total = 0usize;
    for a in body.acks {
        let bits = a.bits.indexes().ok_or_else(|| {
            HandlerError::BadBody(format!(
                "the ack bitmap of {} is malformed or too wide",
                a.topic
            ))
        })?;
        total += bits.len();
        if total > MAX_BATCH_SPAN {
            return Err(rocktor_actors::BrokerError::InvalidParameter(format!(
                "a batch ack settles at most {MAX_BATCH_SPAN} messages"
            ))
            .into());
        }
        entries.push((a, bits));
    }
    let (mut acked, mut missed) = (0usize, 0usize);
    for (a, bits) in entries {
        let (Ok(queue_id), Ok(start)) = (u32::try_from(a.queue_id), u64::try_from(a.start_offset))
        else {
            missed += bits.len();
            continue;
        };
        let deadline_ms = a.pop_time.saturating_add(a.invisible_time);
        let targets = bits
            .iter()
            .map(|i| AckTarget::Delivery {
                queue_id,
                offset: start.saturating_add(*i as u64),
                deadline_ms,
            })
            .collect();
        // One entry's failure (an unknown group, a deleted topic) does not undo the others.
        match b.ack(&a.group, &a.topic, targets).await {
            Ok(outcomes) => {
                for r in outcomes {
                    match r {
                        Ok(()) => acked += 1,
                        Err(_) => missed += 1,
                    }
                }
            }
            Err(e) => {
                tracing::debug!(group = %a.group, topic = %a.topic, "batch ack entry refused: {e}");
                missed += bits.len();
            }
        }
    }
    let resp = RemotingCommand::response_to(req, 0);
    Ok(Some(if missed > 0 {
        resp.with_remark(format!("{acked} acked, {missed} not in flight"))
    } else {
        resp
    }))
}

/// CHANGE_MESSAGE_INVISIBLETIME: a new invisible time counted from now; the answer's popTime
/// and invisibleTime make the client's new receipt.
pub async fn change_invisible(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let invisible_ms = e.i64("invisibleTime")?;
    let t = target(e.i64("queueId")?, e.i64("offset")?, e.str("extraInfo")?)?;
    let out = b
        .change_invisible(e.str("consumerGroup")?, e.str("topic")?, t, invisible_ms)
        .await?;
    Ok(Some(match out {
        Ok((_, deadline)) => pop_header(
            RemotingCommand::response_to(req, 0),
            deadline.saturating_sub(invisible_ms),
            invisible_ms,
        ),
        Err(e) => pop_header(
            RemotingCommand::response_to(req, rc::NO_MESSAGE),
            rocktor_actors::now_ms(),
            invisible_ms,
        )
        .with_remark(format!("the message is not in flight: {e}")),
    }))
}

/// QUERY_ASSIGNMENT's body.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentQuery {
    topic: String,
    consumer_group: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    strategy_name: String,
    #[serde(default)]
    message_model: String,
}

/// The topic and group a QUERY_ASSIGNMENT names, for access control, parsed as the handler
/// parses them.
pub fn query_assignment_resources(body: &[u8]) -> Option<(String, String)> {
    serde_json::from_slice::<AssignmentQuery>(body)
        .ok()
        .map(|q| (q.topic, q.consumer_group))
}

/// QUERY_ASSIGNMENT: the queues this consumer reads and whether it pulls or pops them.
pub async fn query_assignment(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let q: AssignmentQuery =
        serde_json::from_slice(&req.body).map_err(|e| HandlerError::BadBody(e.to_string()))?;
    let a = b
        .assignment(
            &q.consumer_group,
            &q.topic,
            &q.client_id,
            Strategy::by_name(&q.strategy_name),
            q.message_model.eq_ignore_ascii_case("BROADCASTING"),
        )
        .await?;
    let mode = match a.mode {
        RequestMode::Pull => "PULL",
        RequestMode::Pop => "POP",
    };
    let broker_name = &b.settings.broker_name;
    let assignments: Vec<_> = a
        .queue_ids
        .iter()
        .map(|q_id| {
            json!({
                "messageQueue": {"topic": q.topic, "brokerName": broker_name, "queueId": q_id},
                "mode": mode,
                "attachments": {},
            })
        })
        .collect();
    ok_json(req, &json!({ "messageQueueAssignments": assignments }))
}

/// SET_MESSAGE_REQUEST_MODE: makes a group pull or pop a topic (admin tools).
pub async fn set_request_mode(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        topic: String,
        consumer_group: String,
        mode: String,
        #[serde(default)]
        pop_share_queue_num: i32,
    }
    let s: Body =
        serde_json::from_slice(&req.body).map_err(|e| HandlerError::BadBody(e.to_string()))?;
    let mode = match s.mode.to_ascii_uppercase().as_str() {
        "PULL" => RequestMode::Pull,
        "POP" => RequestMode::Pop,
        other => {
            return Err(rocktor_actors::BrokerError::InvalidParameter(format!(
                "unknown message request mode {other:?} (PULL or POP)"
            ))
            .into())
        }
    };
    b.set_request_mode(
        &s.consumer_group,
        &s.topic,
        RequestModeSetting {
            mode,
            pop_share_queue_num: s.pop_share_queue_num,
        },
    )
    .await?;
    ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_give_their_deadline() {
        let r = Receipt::parse("12 1700000000000 60000 0 0 broker-a 3 14").unwrap();
        assert_eq!(r.deadline(), 1_700_000_060_000);
        assert!(Receipt::parse("").is_none());
        assert!(Receipt::parse("12 x 60000").is_none());
        assert!(Receipt::parse("12 1").is_none());
    }

    #[test]
    fn bitsets_decode_from_both_encodings() {
        // Bits 0, 2 and 9: bytes [0b101, 0b10].
        let java = BitSet::Base64(base64::engine::general_purpose::STANDARD.encode([5u8, 2]));
        assert_eq!(java.indexes().unwrap(), vec![0, 2, 9]);
        let rust: BitSet = serde_json::from_str("[5,2,0,0,0,0,0,0]").unwrap();
        assert_eq!(rust.indexes().unwrap(), vec![0, 2, 9]);
        assert!(BitSet::Base64("%%".into()).indexes().is_none());
        let mut wide = vec![0u8; MAX_BATCH_SPAN / 8 + 8];
        assert!(BitSet::Bytes(wide.clone()).indexes().unwrap().is_empty());
        *wide.last_mut().unwrap() = 1;
        assert!(BitSet::Bytes(wide).indexes().is_none());
    }

    #[test]
    fn batch_ack_bodies_name_their_resources() {
        let body = br#"{"brokerName":"b","acks":[{"c":"G","t":"T","r":"0","so":1,"q":0,"rq":0,"pt":1,"it":2,"b":[1]}]}"#;
        assert_eq!(batch_ack_resources(body), vec![("G".into(), "T".into())]);
        assert!(batch_ack_resources(b"not json").is_empty());
        // serde also takes a struct as an array: the check must read what the handler reads.
        let array = br#"{"acks":[["G2","T2",0,0,0,0,[1]]]}"#;
        let parsed: BatchAckBody = serde_json::from_slice(array).unwrap();
        assert_eq!(parsed.acks.len(), 1);
        assert_eq!(batch_ack_resources(array), vec![("G2".into(), "T2".into())]);
        let q = br#"["T","G","c1","AVG","CLUSTERING"]"#;
        assert_eq!(
            query_assignment_resources(q),
            Some(("T".into(), "G".into()))
        );
    }
}

//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) — digest §2.1.

use super::HandlerResult;
use crate::remoting::codes::request as rq;
use crate::remoting::command::RemotingCommand;
use crate::remoting::connection::Connection;
use crate::remoting::errors::HandlerError;
use crate::remoting::ext::Ext;
use crate::remoting::message::{decode_batch, offset_msg_id};
use rocktor_actors::message::IncomingMessage;
use rocktor_actors::service::{SendBackRequest, SendRequest};
use rocktor_actors::{BrokerContext, BrokerError};
use std::sync::Arc;

pub async fn send(
    b: &BrokerContext,
    conn: &Arc<Connection>,
    req: &RemotingCommand,
) -> HandlerResult {
    let e = Ext::of(req);
    // V2 headers carry one-letter names: look those up first (each miss scans every field).
    let v2 = req.code == rq::SEND_MESSAGE_V2 || req.code == rq::SEND_BATCH_MESSAGE;
    let n =
        |long: &'static str, short: &'static str| if v2 { [short, long] } else { [long, short] };
    let producer_group = e.str_any(&n("producerGroup", "a"))?.to_string();
    let topic = e.str_any(&n("topic", "b"))?.to_string();
    let default_topic = e.str_any(&n("defaultTopic", "c")).ok().map(str::to_string);
    let default_topic_queues = e
        .opt_i64_any(&n("defaultTopicQueueNums", "d"))?
        .unwrap_or(4)
        .max(1) as u32;
    let queue_id = e.opt_i64_any(&n("queueId", "e"))?.unwrap_or(-1) as i32;
    let sys_flag = e.opt_i64_any(&n("sysFlag", "f"))?.unwrap_or(0) as i32;
    let born_timestamp = e
        .opt_i64_any(&n("bornTimestamp", "g"))?
        .unwrap_or_else(rocktor_actors::now_ms);
    let flag = e.opt_i64_any(&n("flag", "h"))?.unwrap_or(0) as i32;
    // `prepare` sizes it for the properties the broker adds.
    let properties = e.str_any(&n("properties", "i")).unwrap_or("").to_string();
    let reconsume_times = e.opt_i64_any(&n("reconsumeTimes", "j"))?.unwrap_or(0) as i32;
    let max_reconsume_times = e
        .opt_i64_any(&n("maxReconsumeTimes", "l"))?
        .map(|v| v as i32);
    // C++ 1.2 sends batches as code 10 with "batch":"1"; splitting them keeps every message.
    let batch = req.code == rq::SEND_BATCH_MESSAGE || e.bool_any(&n("batch", "m")).unwrap_or(false);
    let born_host = conn.remote;
    let messages = if batch {
        decode_batch(req.body.clone())
            .map_err(|err| HandlerError::Broker(BrokerError::MessageIllegal(err.to_string())))?
            .into_iter()
            .map(|it| IncomingMessage {
                body: it.body,
                flag: it.flag,
                properties: it.properties,
                sys_flag,
                born_timestamp,
                born_host,
                reconsume_times,
            })
            .collect()
    } else {
        vec![IncomingMessage {
            body: req.body.clone(),
            flag,
            properties,
            sys_flag,
            born_timestamp,
            born_host,
            reconsume_times,
        }]
    };
    let single = messages.len() == 1 && !batch;
    let r = b
        .send(SendRequest {
            producer_group,
            max_reconsume_times,
            topic,
            default_topic,
            default_topic_queues,
            queue_id,
            messages,
            batch,
            connection_id: Some(conn.id),
            polls_checks: false,
        })
        .await?;
    let msg_id = match r.seqs.as_slice() {
        [one] => offset_msg_id(r.store_host, *one),
        many => many
            .iter()
            .map(|s| offset_msg_id(r.store_host, *s))
            .collect::<Vec<_>>()
            .join(","),
    };
    let mut resp = RemotingCommand::response_to(req, 0)
        .with_ext("msgId", msg_id)
        .with_ext("queueId", r.queue_id)
        .with_ext("queueOffset", r.first_offset)
        .with_ext("MSG_REGION", &b.settings.region_id)
        .with_ext("TRACE_ON", b.settings.trace_on);
    if single {
        if let Some(k) = r.uniq_keys.first() {
            resp = resp.with_ext("transactionId", k);
        }
    }
    if let Some(h) = &r.recall_handle {
        resp = resp.with_ext("recallHandle", h);
    }
    Ok(Some(resp))
}

/// CONSUMER_SEND_MSG_BACK (36): retry later, or dead-letter past the limit — digest §4.3.
pub async fn send_back(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    b.send_back(SendBackRequest {
        group: e.str("group")?.to_string(),
        offset: e.i64("offset")?.max(0) as u64,
        delay_level: e.opt_i64("delayLevel")?.unwrap_or(0) as i32,
        origin_msg_id: e.opt_str("originMsgId").map(str::to_string),
        max_reconsume_times: e.opt_i64("maxReconsumeTimes")?.map(|v| v as i32),
    })
    .await?;
    Ok(Some(RemotingCommand::response_to(req, 0)))
}

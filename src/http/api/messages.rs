//! Messages: by topic and store-time range or by key, one by id (its UNIQ_KEY or its offset
//! msgId) with its body, its trace and where it stands for each group — the query flows
//! QUERY_MESSAGE and VIEW_MESSAGE_BY_ID use.

use super::{ok, Admin, RestResult};
use crate::remoting::message::{decode_offset_msg_id, offset_msg_id};
use actix_web::{web, HttpResponse};
use rocktor_actors::service::MessageQuery;
use rocktor_actors::{BrokerContext, BrokerError};
use rocktor_storage::properties;
use rocktor_storage::record::{self, Record};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

/// A stored message as the API shows it; `full` adds body (lossy UTF-8) and properties.
pub fn message_json(r: &Record, seq: u64, full: bool) -> serde_json::Value {
    let mut v = json!({
        "topic": r.topic,
        "msgId": properties::get(&r.properties, "UNIQ_KEY"),
        "offsetMsgId": offset_msg_id(r.store_host, seq),
        "queueId": r.queue_id,
        "queueOffset": r.queue_offset,
        "tags": properties::get(&r.properties, "TAGS"),
        "keys": properties::get(&r.properties, "KEYS"),
        "storeTimestamp": r.store_timestamp,
        "bornTimestamp": r.born_timestamp,
        "bornHost": r.born_host.to_string(),
        "reconsumeTimes": r.reconsume_times,
        "bodySize": r.body.len(),
    });
    if full {
        let props: serde_json::Map<String, serde_json::Value> = properties::parse(&r.properties)
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        v["body"] = json!(String::from_utf8_lossy(&r.body));
        v["properties"] = json!(props);
    }
    v
}

#[derive(Deserialize, IntoParams)]
pub struct SearchQuery {
    /// A KEYS token; without it, messages by store time.
    key: Option<String>,
    /// Store-time range (ms since the epoch).
    begin: Option<i64>,
    end: Option<i64>,
    /// At most this many (default 32; the broker's max_query_messages caps it).
    max: Option<usize>,
}

/// Messages of a topic: by key (newest first) or stored in a time range (oldest first).
#[utoipa::path(operation_id = "messages_search", get, path = "/api/v1/topics/{topic}/messages", tag = "messages",
    params(("topic" = String, Path), SearchQuery),
    responses((status = 200, description = "The messages found"),
        (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn search(
    Admin(b): Admin,
    topic: web::Path<String>,
    q: web::Query<SearchQuery>,
) -> RestResult {
    let (begin, end) = (q.begin.unwrap_or(0), q.end.unwrap_or(i64::MAX));
    let max = q.max.unwrap_or(32);
    let found = match q.key.as_deref().filter(|k| !k.is_empty()) {
        Some(key) => {
            b.query_messages(MessageQuery {
                topic: topic.to_string(),
                key: key.to_string(),
                unique: false,
                begin_ms: begin,
                end_ms: end,
                max,
            })
            .await?
        }
        None => b.query_by_time(&topic, begin, end, max).await?,
    };
    let items: Vec<_> = found
        .iter()
        .filter_map(|bytes| record::decode(bytes).ok())
        .map(|(r, _)| message_json(&r, r.physical_offset.max(0) as u64, false))
        .collect();
    ok(json!({"topic": topic.as_str(), "messages": items}))
}

/// A message of `topic` by its UNIQ_KEY or by its offset msgId (store host and offset).
async fn find(b: &BrokerContext, topic: &str, msg_id: &str) -> Result<(Record, u64), BrokerError> {
    b.existing_topic(topic)?;
    if let Some((_, seq)) = decode_offset_msg_id(msg_id) {
        if let Ok(bytes) = b.view_message(seq).await {
            if let Ok((r, _)) = record::decode(&bytes) {
                if r.topic == topic {
                    return Ok((r, seq));
                }
            }
        }
    }
    let found = b
        .query_messages(MessageQuery {
            topic: topic.to_string(),
            key: msg_id.to_string(),
            unique: true,
            begin_ms: 0,
            end_ms: i64::MAX,
            max: 1,
        })
        .await?;
    let bytes = found
        .first()
        .ok_or_else(|| BrokerError::NotFound(format!("no message {msg_id} in {topic}")))?;
    let (r, _) = record::decode(bytes)
        .map_err(|e| BrokerError::Storage(format!("message {msg_id} is unreadable: {e}")))?;
    let seq = r.physical_offset.max(0) as u64;
    Ok((r, seq))
}

/// One message with its properties and body (lossy UTF-8; `/body` has the bytes).
#[utoipa::path(operation_id = "messages_by_id", get, path = "/api/v1/topics/{topic}/messages/{msg_id}", tag = "messages",
    params(("topic" = String, Path), ("msg_id" = String, Path, description = "UNIQ_KEY or offset msgId")),
    responses((status = 200, description = "The message"), (status = 404, body = super::ErrorBody)))]
pub async fn by_id(Admin(b): Admin, path: web::Path<(String, String)>) -> RestResult {
    let (topic, msg_id) = path.into_inner();
    let (r, seq) = find(&b, &topic, &msg_id).await?;
    ok(message_json(&r, seq, true))
}

/// The message body as stored, for download.
#[utoipa::path(operation_id = "messages_body", get, path = "/api/v1/topics/{topic}/messages/{msg_id}/body", tag = "messages",
    params(("topic" = String, Path), ("msg_id" = String, Path)),
    responses((status = 200, description = "The body bytes", content_type = "application/octet-stream"),
        (status = 404, body = super::ErrorBody)))]
pub async fn body(Admin(b): Admin, path: web::Path<(String, String)>) -> RestResult {
    let (topic, msg_id) = path.into_inner();
    let (r, _) = find(&b, &topic, &msg_id).await?;
    let file: String = msg_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"{file}.bin\""),
        ))
        .body(r.body))
}

/// Where a message (by UNIQ_KEY) stands for each group of its topic.
#[utoipa::path(operation_id = "messages_delivery", get, path = "/api/v1/topics/{topic}/messages/{msg_id}/delivery", tag = "messages",
    params(("topic" = String, Path), ("msg_id" = String, Path)),
    responses((status = 200, description = "Per-group status"), (status = 404, body = super::ErrorBody)))]
pub async fn delivery(Admin(b): Admin, path: web::Path<(String, String)>) -> RestResult {
    let (topic, msg_id) = path.into_inner();
    let groups = b.delivery_status(&topic, &msg_id).await?;
    let groups: Vec<_> = groups
        .iter()
        .map(|g| json!({"group": g.group, "status": g.status.as_str()}))
        .collect();
    ok(json!({"topic": topic, "msgId": msg_id, "groups": groups}))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct TraceQuery {
    /// The message's topic, when known (narrows the search).
    topic: Option<String>,
    /// Where clients write traces (default RMQ_SYS_TRACE_TOPIC).
    trace_topic: Option<String>,
}

/// A message's trace by its UNIQ_KEY: what its clients traced, joined with what the broker
/// knows (stored, held, each group, retries, dead letters).
#[utoipa::path(operation_id = "messages_trace", get, path = "/api/v1/messages/{msg_id}/trace", tag = "messages",
    params(("msg_id" = String, Path), TraceQuery),
    responses((status = 200, description = "The trace"), (status = 404, body = super::ErrorBody)))]
pub async fn trace(
    Admin(b): Admin,
    msg_id: web::Path<String>,
    q: web::Query<TraceQuery>,
) -> RestResult {
    let t = b
        .message_trace(&msg_id, q.topic.as_deref(), q.trace_topic.as_deref())
        .await?;
    ok(t)
}

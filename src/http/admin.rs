//! The first admin routes (JSON under `/api`): dead letters, delivery status, messages by
//! time, traces, retention. The full admin REST API comes with its own issue; all of them call
//! the same `BrokerContext` flows.

use crate::remoting::message::offset_msg_id;
use actix_web::{web, HttpResponse};
use rocktor_actors::{BrokerContext, BrokerError};
use rocktor_storage::properties;
use serde::Deserialize;
use serde_json::json;

/// Registers the admin routes (they need a broker in the app data).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/groups/{group}/dlq", web::get().to(list_dead_letters))
        .route(
            "/api/groups/{group}/dlq/resend",
            web::post().to(resend_dead_letters),
        )
        .route(
            "/api/topics/{topic}/messages/{msg_id}/delivery",
            web::get().to(delivery_status),
        )
        .route(
            "/api/topics/{topic}/messages",
            web::get().to(messages_by_time),
        )
        .route("/api/messages/{msg_id}/trace", web::get().to(message_trace))
        .route("/api/retention", web::get().to(retention_status));
}

/// `?begin=MS&end=MS&max=N` (the dead-letter list spells them `from` and `to`).
#[derive(Deserialize)]
struct TimeRange {
    #[serde(alias = "from")]
    begin: Option<i64>,
    #[serde(alias = "to")]
    end: Option<i64>,
    max: Option<usize>,
}

/// A stored message as the admin API shows it; `full` adds body and properties.
fn message_json(r: &rocktor_storage::record::Record, seq: u64, full: bool) -> serde_json::Value {
    let mut v = json!({
        "msgId": properties::get(&r.properties, "UNIQ_KEY"),
        "offsetMsgId": offset_msg_id(r.store_host, seq),
        "queueId": r.queue_id,
        "queueOffset": r.queue_offset,
        "tags": properties::get(&r.properties, "TAGS"),
        "keys": properties::get(&r.properties, "KEYS"),
        "storeTimestamp": r.store_timestamp,
        "bornTimestamp": r.born_timestamp,
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

/// GET /api/topics/{topic}/messages?begin=MS&end=MS&max=N — messages stored in that time range,
/// oldest first.
async fn messages_by_time(
    b: web::Data<BrokerContext>,
    topic: web::Path<String>,
    q: web::Query<TimeRange>,
) -> HttpResponse {
    let (begin, end) = (q.begin.unwrap_or(0), q.end.unwrap_or(i64::MAX));
    match b
        .query_by_time(&topic, begin, end, q.max.unwrap_or(32))
        .await
    {
        Ok(found) => {
            let items: Vec<_> = found
                .iter()
                .filter_map(|bytes| rocktor_storage::record::decode(bytes).ok())
                .map(|(r, _)| message_json(&r, r.physical_offset.max(0) as u64, false))
                .collect();
            HttpResponse::Ok().json(json!({"topic": topic.as_str(), "messages": items}))
        }
        Err(e) => error_response(&e),
    }
}

/// GET /api/topics/{topic}/messages/{msg_id}/delivery — where the message (by its UNIQ_KEY)
/// stands for each consumer group of the topic.
async fn delivery_status(
    b: web::Data<BrokerContext>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (topic, msg_id) = path.into_inner();
    match b.delivery_status(&topic, &msg_id).await {
        Ok(groups) => {
            let groups: Vec<_> = groups
                .iter()
                .map(|g| json!({"group": g.group, "status": g.status.as_str()}))
                .collect();
            HttpResponse::Ok().json(json!({"topic": topic, "msgId": msg_id, "groups": groups}))
        }
        Err(e) => error_response(&e),
    }
}

/// `?topic=T&traceTopic=RMQ_SYS_TRACE_TOPIC`, both optional.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraceQuery {
    topic: Option<String>,
    trace_topic: Option<String>,
}

/// GET /api/messages/{msg_id}/trace — the trace of a message by its id (UNIQ_KEY): what its
/// clients traced, joined with what the broker knows (stored, held, each group, retries, DLQ).
async fn message_trace(
    b: web::Data<BrokerContext>,
    msg_id: web::Path<String>,
    q: web::Query<TraceQuery>,
) -> HttpResponse {
    match b
        .message_trace(&msg_id, q.topic.as_deref(), q.trace_topic.as_deref())
        .await
    {
        Ok(t) => HttpResponse::Ok().json(t),
        Err(e) => error_response(&e),
    }
}

/// GET /api/retention — what the last retention pass did, and the disk state.
async fn retention_status(b: web::Data<BrokerContext>) -> HttpResponse {
    match b
        .retention
        .send(rocktor_actors::retention::RetentionStatus)
        .await
    {
        Ok(r) => HttpResponse::Ok().json(json!({
            "floor": r.floor,
            "diskUsedRatio": r.disk_used,
            "forcedClean": r.forced,
            "writesRefused": r.writes_refused,
            "queuesMoved": r.queues_moved,
            "heldBy": r.held_by,
            "retentionSecs": b.settings.retention.retention_ms / 1000,
        })),
        Err(e) => error_response(&BrokerError::from(e)),
    }
}

/// The one place broker errors become HTTP answers.
fn error_response(e: &BrokerError) -> HttpResponse {
    let body = json!({ "error": e.to_string() });
    match e {
        BrokerError::TopicNotExist(_)
        | BrokerError::GroupNotExist(_)
        | BrokerError::NotFound(_) => HttpResponse::NotFound().json(body),
        BrokerError::InvalidParameter(_)
        | BrokerError::MessageIllegal(_)
        | BrokerError::IllegalDeliveryTime(_)
        | BrokerError::MessageTypeMismatch(_)
        | BrokerError::TransactionMismatch(_)
        | BrokerError::IllegalOperation(_)
        | BrokerError::SubscriptionParseFailed(_) => HttpResponse::BadRequest().json(body),
        BrokerError::NoPermission(_) => HttpResponse::Forbidden().json(body),
        BrokerError::LimitExceeded(_) => HttpResponse::TooManyRequests().json(body),
        BrokerError::SystemBusy | BrokerError::ShuttingDown | BrokerError::WriteUnavailable(_) => {
            HttpResponse::ServiceUnavailable().json(body)
        }
        _ => HttpResponse::InternalServerError().json(body),
    }
}

/// GET /api/groups/{group}/dlq?from=MS&to=MS&max=N — dead letters stored in that time range.
async fn list_dead_letters(
    b: web::Data<BrokerContext>,
    group: web::Path<String>,
    q: web::Query<TimeRange>,
) -> HttpResponse {
    let to = q.end.unwrap_or(i64::MAX);
    match b
        .list_dead_letters(&group, q.begin.unwrap_or(0), to, q.max.unwrap_or(100))
        .await
    {
        Ok(letters) => {
            let items: Vec<_> = letters
                .iter()
                .map(|d| {
                    let mut v = message_json(&d.record, d.seq, true);
                    v["queueOffset"] = json!(d.queue_offset);
                    v["originTopic"] =
                        json!(properties::get(&d.record.properties, "DLQ_ORIGIN_TOPIC"));
                    v
                })
                .collect();
            HttpResponse::Ok().json(json!({ "group": group.as_str(), "messages": items }))
        }
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
struct ResendBody {
    /// Queue offsets in the dead-letter queue, as listed.
    offsets: Vec<u64>,
}

/// POST /api/groups/{group}/dlq/resend {"offsets":[..]} — back to the group's retry topic.
async fn resend_dead_letters(
    b: web::Data<BrokerContext>,
    group: web::Path<String>,
    body: web::Json<ResendBody>,
) -> HttpResponse {
    match b.resend_dead_letters(&group, &body.offsets).await {
        Ok(n) => HttpResponse::Ok().json(json!({ "resent": n })),
        Err(e) => error_response(&e),
    }
}

//! The Aliyun-style HTTP messaging API (protocol/HTTP-API.md), at the root of the HTTP port:
//! `POST /topics/{topic}/messages` publishes, `GET` consumes (long polling, tag filter,
//! `trans=order`; `trans=pop` polls half messages due for a check), `DELETE` acks by receipt
//! handle (`trans=commit|rollback` ends a transaction). A translation only: the domain's
//! send, receive (invisible-time consumption), ack and transaction flows do the work.
//!
//! Every answer is `text/xml` with an `x-mq-request-id` header; every failure is an `<Error>`
//! document with the seeds' code, and a per-handle ack failure an `<Errors>` one (404).

use super::access::{authenticate, ApiError};
use super::xml::{self, Doc};
use crate::digest::md5_upper;
use crate::remoting::message::offset_msg_id;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use rocktor_actors::auth::{Perm, Resource};
use rocktor_actors::message::{is_system_property, IncomingMessage, PROP_KEYS, PROP_TAGS};
use rocktor_actors::pop::{AckTarget, HandleError};
use rocktor_actors::service::{ConsumerProtocol, ReceiveRequest, SendRequest};
use rocktor_actors::{BrokerContext, BrokerError};
use rocktor_storage::{properties, record};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the API needs beyond the broker: invisible times and the delivery maximum.
#[derive(Debug, Clone)]
pub struct MessagingSettings {
    pub invisible_ms: i64,
    pub order_invisible_ms: i64,
    pub max_deliveries: u32,
    /// The longest message body (the broker's maximum message size).
    pub max_message_size: usize,
}

impl Default for MessagingSettings {
    fn default() -> Self {
        MessagingSettings {
            invisible_ms: 300_000,
            order_invisible_ms: 60_000,
            max_deliveries: 288,
            max_message_size: 4 << 20,
        }
    }
}

impl MessagingSettings {
    pub fn from_config(c: &crate::Config) -> Self {
        let ms = |secs: u64| secs.saturating_mul(1000).min(i64::MAX as u64) as i64;
        MessagingSettings {
            invisible_ms: ms(c.http_invisible_secs),
            order_invisible_ms: ms(c.http_order_invisible_secs),
            max_deliveries: c.http_max_deliveries,
            max_message_size: c.max_message_size,
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/topics/{topic}/messages")
            .route(web::post().to(publish))
            .route(web::get().to(consume))
            .route(web::delete().to(ack)),
    );
}

const MAX_BATCH: u32 = 16;
const MAX_WAIT_SECS: u64 = 30;
/// Handles one ack may carry.
const MAX_HANDLES: usize = 64;
const TRANS_CHECK_SECS: std::ops::RangeInclusive<i64> = 10..=300;
const PROP_TRANS_CHECK: &str = "__TransCheckT";
/// MessageSysFlag's TRANSACTION_PREPARED_TYPE.
const SYS_FLAG_PREPARED: i32 = 0x4;
/// The producer group HTTP publishes are stored under (the SDKs send none).
const HTTP_PRODUCER_GROUP: &str = "HTTP_PRODUCER";

/// The request id and host id every answer of one request carries.
struct Call {
    request_id: String,
    host_id: String,
}

impl Call {
    fn new(req: &HttpRequest) -> Call {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let host_id = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("http://{h}"))
            .unwrap_or_else(|| "rocktor".into());
        Call {
            request_id: format!(
                "{:012X}{:06X}{:06X}",
                rocktor_actors::now_ms(),
                std::process::id() & 0xFF_FFFF,
                n & 0xFF_FFFF
            ),
            host_id,
        }
    }

    fn answer(&self, status: StatusCode, body: String) -> HttpResponse {
        HttpResponse::build(status)
            .content_type("text/xml;charset=utf-8")
            .insert_header(("x-mq-request-id", self.request_id.as_str()))
            .body(body)
    }

    fn error(&self, e: ApiError) -> HttpResponse {
        let mut w = xml::Writer::new("Error");
        w.field_always("Code", e.code)
            .field_always("Message", &e.message)
            .field_always("RequestId", &self.request_id)
            .field_always("HostId", &self.host_id);
        self.answer(e.status, w.finish("Error"))
    }

    fn outcome(&self, r: Result<HttpResponse, ApiError>) -> HttpResponse {
        r.unwrap_or_else(|e| self.error(e))
    }
}

/// The query string, decoded; a malformed one is InvalidQueryString.
fn query(req: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    serde_urlencoded::from_str(req.query_string()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidQueryString",
            "The query string is malformed.",
        )
    })
}

/// `ns%name` when the request names a namespace (instance id), as remoting clients spell it.
fn with_namespace(q: &HashMap<String, String>, name: &str) -> String {
    let ns = q.get("ns").map(|s| s.trim()).unwrap_or_default();
    rocktor_actors::model::with_namespace(ns, name)
}

fn consumer(q: &HashMap<String, String>) -> Result<String, ApiError> {
    match q
        .get("consumer")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        Some(c) => Ok(with_namespace(q, c)),
        None => Err(ApiError::invalid("The consumer is missing.")),
    }
}

/// Reads a body of at most `limit` bytes.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("cannot read the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::invalid(
                "The length of message should not be larger than MaximumMessageSize.",
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn parse_xml(body: &[u8], root: &str) -> Result<Doc, ApiError> {
    let malformed = |why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MalformedXML",
            format!("The XML you provided was not well-formed: {why}"),
        )
    };
    let doc = xml::parse(body).map_err(malformed)?;
    if doc.root != root {
        return Err(malformed(format!(
            "the root is <{}>, not <{root}>",
            doc.root
        )));
    }
    Ok(doc)
}

/// `k1:v1|k2:v2|`: pairs with an empty key, or no `:`, are left out (as the SDKs read them).
fn parse_properties(s: &str) -> Vec<(&str, &str)> {
    s.split('|')
        .filter_map(|p| p.split_once(':'))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// The message a publish stores: body, tag, the properties (KEYS and the reserved ones
/// included), and whether it is transactional.
fn message_of(
    doc: &Doc,
    born_host: std::net::SocketAddr,
) -> Result<(IncomingMessage, bool), ApiError> {
    let body = doc.get("MessageBody").unwrap_or_default();
    if body.is_empty() {
        return Err(ApiError::invalid("The MessageBody is empty."));
    }
    let mut props = String::new();
    let tag = doc.get("MessageTag").unwrap_or_default().trim();
    let bad = |s: &str| s.contains(['\u{1}', '\u{2}']);
    if bad(tag) {
        return Err(ApiError::invalid(
            "The MessageTag holds a control character.",
        ));
    }
    if !tag.is_empty() {
        properties::push(&mut props, PROP_TAGS, tag);
    }
    let mut transactional = false;
    for (k, v) in parse_properties(doc.get("Properties").unwrap_or_default()) {
        if bad(k) || bad(v) {
            return Err(ApiError::invalid("A property holds a control character."));
        }
        if k == PROP_TAGS || (is_system_property(k) && k != PROP_KEYS) {
            continue; // the broker's own keys are not the publisher's to set
        }
        if k == PROP_TRANS_CHECK {
            let secs: i64 = v.trim().parse().map_err(|_| {
                ApiError::invalid("TransCheckImmunityTime should be a number of seconds.")
            })?;
            if !TRANS_CHECK_SECS.contains(&secs) {
                return Err(ApiError::invalid(format!(
                    "TransCheckImmunityTime should between {} and {} seconds.",
                    TRANS_CHECK_SECS.start(),
                    TRANS_CHECK_SECS.end()
                )));
            }
            transactional = true;
        }
        properties::push(&mut props, k, v);
    }
    if transactional {
        properties::push(&mut props, rocktor_actors::txn::PROP_TRAN_MSG, "true");
        properties::push(
            &mut props,
            rocktor_actors::txn::PROP_PGROUP,
            rocktor_actors::txn::POLLING_PRODUCER_GROUP,
        );
    }
    let message = IncomingMessage {
        body: Bytes::copy_from_slice(body.as_bytes()),
        flag: 0,
        properties: props,
        sys_flag: if transactional { SYS_FLAG_PREPARED } else { 0 },
        born_timestamp: rocktor_actors::now_ms(),
        born_host,
        reconsume_times: 0,
    };
    Ok((message, transactional))
}

/// POST /topics/{topic}/messages
async fn publish(
    req: HttpRequest,
    topic: web::Path<String>,
    payload: web::Payload,
    b: web::Data<BrokerContext>,
    s: web::Data<MessagingSettings>,
) -> HttpResponse {
    let call = Call::new(&req);
    let r = async {
        let q = query(&req)?;
        let topic = with_namespace(&q, &topic);
        authenticate(
            &b,
            &req,
            vec![(Resource::Topic(topic.clone()), Perm::PUB)],
            false,
        )?;
        // Room for the XML around the body and the entities in it.
        let limit = s
            .max_message_size
            .saturating_mul(2)
            .saturating_add(64 << 10);
        let body = read_body(payload, limit).await?;
        let doc = parse_xml(&body, "Message")?;
        let born_host = req
            .peer_addr()
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let (message, transactional) = message_of(&doc, born_host)?;
        let md5 = md5_upper(&message.body);
        let sent = b
            .send(SendRequest {
                producer_group: if transactional {
                    rocktor_actors::txn::POLLING_PRODUCER_GROUP.into()
                } else {
                    HTTP_PRODUCER_GROUP.into()
                },
                topic: topic.clone(),
                default_topic: None,
                default_topic_queues: b.settings.default_topic_queues,
                queue_id: -1,
                messages: vec![message],
                max_reconsume_times: None,
                batch: false,
                connection_id: None,
                polls_checks: transactional,
            })
            .await?;
        let id = sent.uniq_keys.first().cloned().unwrap_or_default();
        let mut w = xml::Writer::new("Message");
        w.field("MessageId", &id).field("MessageBodyMD5", &md5);
        if transactional {
            if let Some(seq) = sent.seqs.first() {
                w.field("ReceiptHandle", &b.handle_key.encode_half(&topic, *seq));
            }
        }
        Ok(call.answer(StatusCode::CREATED, w.finish("Message")))
    }
    .await;
    call.outcome(r)
}

/// One consumed (or half) message as the SDKs read it.
struct Shown<'a> {
    record: &'a Bytes,
    handle: &'a str,
    first_ms: i64,
    next_ms: i64,
    times: u32,
}

fn write_message(w: &mut xml::Writer, m: &Shown<'_>) {
    let Ok((rec, _)) = record::decode(m.record) else {
        return;
    };
    let seq = rec.physical_offset.max(0) as u64;
    let id = properties::get(&rec.properties, "UNIQ_KEY")
        .map(str::to_string)
        .unwrap_or_else(|| offset_msg_id(rec.store_host, seq));
    let mut shown = String::new();
    for (k, v) in properties::parse(&rec.properties) {
        // The SDKs split on `|` and `:`: a pair holding either would come out wrong.
        if is_system_property(&k) || k.contains([':', '|']) || v.contains([':', '|']) {
            continue;
        }
        if !shown.is_empty() {
            shown.push('|');
        }
        shown.push_str(&k);
        shown.push(':');
        shown.push_str(&v);
    }
    w.open("Message")
        .field_always("MessageId", &id)
        .field_always("ReceiptHandle", m.handle)
        .field("MessageBodyMD5", &md5_upper(&rec.body))
        .field_always("MessageBody", &String::from_utf8_lossy(&rec.body))
        .field_always("PublishTime", &rec.born_timestamp.to_string())
        .field_always("FirstConsumeTime", &m.first_ms.to_string())
        .field_always("NextConsumeTime", &m.next_ms.to_string())
        .field_always("ConsumedTimes", &m.times.to_string())
        .field(
            "MessageTag",
            properties::get(&rec.properties, PROP_TAGS).unwrap_or(""),
        )
        .field("Properties", &shown)
        .close("Message");
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("The {name} should be a number."))),
    }
}

/// GET /topics/{topic}/messages?consumer=G&numOfMessages=N[&waitseconds=W][&tag=T][&trans=order|pop]
async fn consume(
    req: HttpRequest,
    topic: web::Path<String>,
    b: web::Data<BrokerContext>,
    s: web::Data<MessagingSettings>,
) -> HttpResponse {
    let call = Call::new(&req);
    let r = async {
        let q = query(&req)?;
        let topic = with_namespace(&q, &topic);
        let group = consumer(&q)?;
        let max = number(&q, "numOfMessages")?
            .ok_or_else(|| ApiError::invalid("The numOfMessages is missing."))?;
        if !(1..=u64::from(MAX_BATCH)).contains(&max) {
            return Err(ApiError::invalid(format!(
                "The numOfMessages should between 1 and {MAX_BATCH}."
            )));
        }
        let wait = number(&q, "waitseconds")?.unwrap_or(0);
        if wait > MAX_WAIT_SECS {
            return Err(ApiError::invalid(format!(
                "The waitseconds should between 1 and {MAX_WAIT_SECS}."
            )));
        }
        let wait = Duration::from_secs(wait);
        let trans = q.get("trans").map(String::as_str).unwrap_or("");
        authenticate(
            &b,
            &req,
            vec![
                (Resource::Topic(topic.clone()), Perm::SUB),
                (Resource::Group(group.clone()), Perm::SUB),
            ],
            false,
        )?;
        let mut w = xml::Writer::new("Messages");
        let found = match trans {
            "pop" => {
                let started = std::time::Instant::now();
                let halves = loop {
                    let halves = b.poll_half_messages(&topic, max as usize).await?;
                    let left = wait.saturating_sub(started.elapsed());
                    if !halves.is_empty() || left.is_zero() {
                        break halves;
                    }
                    // Half messages fall due on the checker's one-second tick.
                    tokio::time::sleep(left.min(Duration::from_secs(1))).await;
                };
                for h in &halves {
                    let handle = b.handle_key.encode_half(&topic, h.seq);
                    write_message(
                        &mut w,
                        &Shown {
                            record: &h.record,
                            handle: &handle,
                            first_ms: h.stored_ms,
                            next_ms: h.next_check_ms,
                            times: h.checks,
                        },
                    );
                }
                halves.len()
            }
            "" | "order" => {
                let order = trans == "order";
                b.claim_consumer_protocol(&group, ConsumerProtocol::Http)
                    .map_err(|e| {
                        ApiError::new(StatusCode::BAD_REQUEST, "HTTPForbidden", e.to_string())
                    })?;
                let expression = q
                    .get("tag")
                    .map(|t| t.trim())
                    .filter(|t| !t.is_empty())
                    .unwrap_or("*")
                    .to_string();
                let deliveries = b
                    .receive(ReceiveRequest {
                        group,
                        topic,
                        max: max as usize,
                        invisible_ms: if order {
                            s.order_invisible_ms
                        } else {
                            s.invisible_ms
                        },
                        expression,
                        expression_type: "TAG".into(),
                        wait,
                        order,
                        max_attempts: Some(s.max_deliveries),
                        queue: None,
                        start_at_end: false,
                    })
                    .await?;
                for d in &deliveries {
                    write_message(
                        &mut w,
                        &Shown {
                            record: &d.record,
                            handle: &d.handle,
                            first_ms: d.first_ms,
                            next_ms: d.deadline_ms,
                            times: d.attempt,
                        },
                    );
                }
                deliveries.len()
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "The trans should be order or pop, not {other}."
                )))
            }
        };
        if found == 0 {
            return Err(ApiError::no_message());
        }
        Ok(call.answer(StatusCode::OK, w.finish("Messages")))
    }
    .await;
    call.outcome(r)
}

/// DELETE /topics/{topic}/messages?consumer=G[&trans=commit|rollback], body: the handles.
async fn ack(
    req: HttpRequest,
    topic: web::Path<String>,
    payload: web::Payload,
    b: web::Data<BrokerContext>,
) -> HttpResponse {
    let call = Call::new(&req);
    let r = async {
        let q = query(&req)?;
        let topic = with_namespace(&q, &topic);
        let group = consumer(&q)?;
        let trans = q.get("trans").map(String::as_str).unwrap_or("");
        let resources = match trans {
            "commit" | "rollback" => vec![(Resource::Topic(topic.clone()), Perm::PUB)],
            "" => vec![
                (Resource::Topic(topic.clone()), Perm::SUB),
                (Resource::Group(group.clone()), Perm::SUB),
            ],
            other => {
                return Err(ApiError::invalid(format!(
                    "The trans should be commit or rollback, not {other}."
                )))
            }
        };
        authenticate(&b, &req, resources, false)?;
        let body = read_body(payload, 1 << 20).await?;
        let doc = parse_xml(&body, "ReceiptHandles")?;
        let handles: Vec<String> = doc
            .children
            .into_iter()
            .filter(|(name, _)| name == "ReceiptHandle")
            .map(|(_, h)| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        if handles.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "MissingReceiptHandle",
                "The receipt handle is missing.",
            ));
        }
        if handles.len() > MAX_HANDLES {
            return Err(ApiError::invalid(format!(
                "The count of receipt handles should between 1 and {MAX_HANDLES}."
            )));
        }
        let outcomes: Vec<Result<(), HandleError>> = match trans {
            "" => {
                let targets = handles.iter().cloned().map(AckTarget::Handle).collect();
                b.ack(&group, &topic, targets).await?
            }
            t => {
                let commit = t == "commit";
                let mut out = Vec::with_capacity(handles.len());
                for h in &handles {
                    let r = match b.handle_key.decode_half(&topic, h) {
                        Ok(seq) => b
                            .end_transaction(
                                rocktor_actors::txn::POLLING_PRODUCER_GROUP,
                                seq,
                                seq,
                                Some(commit),
                            )
                            .await
                            .map_err(|e| match e {
                                BrokerError::TransactionMismatch(_) => HandleError::Invalid,
                                _ => HandleError::Expired,
                            }),
                        Err(e) => Err(e),
                    };
                    out.push(r);
                }
                out
            }
        };
        let failed: Vec<(&String, HandleError)> = handles
            .iter()
            .zip(outcomes)
            .filter_map(|(h, r)| r.err().map(|e| (h, e)))
            .collect();
        if failed.is_empty() {
            return Ok(HttpResponse::NoContent()
                .insert_header(("x-mq-request-id", call.request_id.as_str()))
                .finish());
        }
        let mut w = xml::Writer::new("Errors");
        for (handle, e) in failed {
            let code = match e {
                HandleError::Invalid => "ReceiptHandleError",
                HandleError::Expired => "MessageNotExist",
            };
            w.open("Error")
                .field_always("ErrorCode", code)
                .field_always("ErrorMessage", &e.to_string())
                .field_always("ReceiptHandle", handle)
                .close("Error");
        }
        Ok(call.answer(StatusCode::NOT_FOUND, w.finish("Errors")))
    }
    .await;
    call.outcome(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_as_the_sdks_write_them() {
        assert_eq!(
            parse_properties("KEYS:k1|a:b|"),
            vec![("KEYS", "k1"), ("a", "b")]
        );
        assert_eq!(
            parse_properties("a:b|:x|junk|c:"),
            vec![("a", "b"), ("c", "")]
        );
        assert!(parse_properties("").is_empty());
    }

    #[test]
    fn a_publish_keeps_tag_keys_and_properties_and_marks_transactions() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let doc = xml::parse(b"<Message><MessageBody>hi</MessageBody><MessageTag>T</MessageTag><Properties>KEYS:k|a:b|UNIQ_KEY:forged|__TransCheckT:10|</Properties></Message>").unwrap();
        let (m, trans) = message_of(&doc, addr).unwrap();
        assert!(trans);
        assert_eq!(properties::get(&m.properties, "TAGS"), Some("T"));
        assert_eq!(properties::get(&m.properties, "KEYS"), Some("k"));
        assert_eq!(properties::get(&m.properties, "a"), Some("b"));
        assert_eq!(properties::get(&m.properties, "UNIQ_KEY"), None);
        assert_eq!(properties::get(&m.properties, "TRAN_MSG"), Some("true"));
        let doc = xml::parse(b"<Message><MessageBody>hi</MessageBody><Properties>__TransCheckT:5</Properties></Message>").unwrap();
        assert!(message_of(&doc, addr).is_err());
        let doc = xml::parse(b"<Message><MessageTag>x</MessageTag></Message>").unwrap();
        assert!(message_of(&doc, addr).is_err());
    }
}

//! Apache 5's POP consumption on the remoting port (issue #12): rocketmq-client-rust's push
//! consumer in pop mode (SET_MESSAGE_REQUEST_MODE, QUERY_ASSIGNMENT, POP_MESSAGE, ACK_MESSAGE,
//! CHANGE_MESSAGE_INVISIBLETIME), and raw requests for what a client never sends: stale and
//! malformed receipts, batch acks by bitmap, redelivery after the invisible time, kill -9.

use crate::support::*;
use rocktor::client::{request, RemotingClient};
use rocktor::remoting::command::RemotingCommand;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const POP: i32 = 200050;
const ACK: i32 = 200051;
const CHANGE_INVISIBLE: i32 = 200053;
const BATCH_ACK: i32 = 200151;
const QUERY_ASSIGNMENT: i32 = 400;
const NO_MESSAGE: i32 = 208;
const PULL_NOT_FOUND: i32 = 19;

pub(crate) fn pop_req(
    group: &str,
    topic: &str,
    max: u32,
    invisible_ms: u64,
    poll_ms: u64,
) -> RemotingCommand {
    request(
        POP,
        &[
            ("consumerGroup", group.into()),
            ("topic", topic.into()),
            ("queueId", "-1".into()),
            ("maxMsgNums", max.to_string()),
            ("invisibleTime", invisible_ms.to_string()),
            ("pollTime", poll_ms.to_string()),
            ("bornTime", "0".into()),
            ("initMode", "0".into()),
        ],
    )
}

/// One POP: (popTime, invisibleTime, records) or the answer's code.
async fn pop(
    c: &RemotingClient,
    group: &str,
    topic: &str,
    max: u32,
    invisible_ms: u64,
) -> Result<(i64, i64, Vec<rocktor_storage::record::Record>), i32> {
    let r = c
        .request(pop_req(group, topic, max, invisible_ms, 0), TIMEOUT)
        .await
        .expect("pop answered");
    if r.code != 0 {
        return Err(r.code);
    }
    let num = |k: &str| {
        r.ext
            .get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("the pop answer carries {k}"))
    };
    Ok((num("popTime"), num("invisibleTime"), records(&r.body)))
}

/// The client-built receipt for a delivery (Apache's ExtraInfoUtil layout).
fn extra_info(pop_time: i64, invisible: i64, queue_id: i32, offset: i64) -> String {
    format!("{offset} {pop_time} {invisible} 0 0 broker-a {queue_id} {offset}")
}

fn ack_req(group: &str, topic: &str, queue_id: i32, offset: i64, extra: &str) -> RemotingCommand {
    request(
        ACK,
        &[
            ("consumerGroup", group.into()),
            ("topic", topic.into()),
            ("queueId", queue_id.to_string()),
            ("offset", offset.to_string()),
            ("extraInfo", extra.into()),
        ],
    )
}

async fn code(c: &RemotingClient, req: RemotingCommand) -> i32 {
    c.request(req, TIMEOUT).await.expect("answered").code
}

/// ACK_MESSAGE's code for the delivery of RawPopT queue 0 at `offset` popped at `pop_time`.
async fn raw_ack(c: &RemotingClient, offset: i64, pop_time: i64, invisible: i64) -> i32 {
    let extra = extra_info(pop_time, invisible, 0, offset);
    code(c, ack_req("RawG", "RawPopT", 0, offset, &extra)).await
}

/// QUERY_ASSIGNMENT for consumer "c1", registered by a heartbeat first.
async fn assignment(c: &RemotingClient, group: &str, topic: &str) -> Value {
    let hb = c
        .request(subscribe_req("c1", group, topic, "*"), TIMEOUT)
        .await
        .expect("heartbeat answered");
    assert_eq!(hb.code, 0, "{:?}", hb.remark);
    let mut req = request(QUERY_ASSIGNMENT, &[]);
    req.body = json!({"topic": topic, "consumerGroup": group, "clientId": "c1",
        "strategyName": "AVG", "messageModel": "CLUSTERING"})
    .to_string()
    .into();
    let r = c.request(req, TIMEOUT).await.expect("assignment answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    serde_json::from_slice(&r.body).expect("a QueryAssignmentResponseBody")
}

/// rocketmq-client-rust's pop consumer: every message arrives, a failed first delivery comes
/// back (CHANGE_MESSAGE_INVISIBLETIME) with its reconsume count raised, acked ones never
/// return; the group's pop mode and its acks outlive kill -9.
#[actix_rt::test]
async fn rust_pop_consumer_receives_retries_and_acks() {
    let mut b = BrokerProc::start("sync");
    let c = connect(b.broker).await;
    create_topic(&c, "PopT", 4).await;
    let ns = b.namesrv.to_string();
    let broker = b.broker.to_string();
    let sent = run_rs(&[
        "produce",
        "--namesrv",
        &ns,
        "--topic",
        "PopT",
        "--count",
        "12",
        "--keys",
        "4",
        "--prefix",
        "pop",
    ]);
    let recs = run_rs(&[
        "consume",
        "--namesrv",
        &ns,
        "--broker",
        &broker,
        "--topic",
        "PopT",
        "--group",
        "PopG",
        "--pop",
        "1",
        "--fail-first",
        "1",
        "--expect",
        "24",
        "--timeout",
        "90",
        "--linger",
        "2",
    ]);
    let mut deliveries: HashMap<String, Vec<i64>> = HashMap::new();
    for r in recs.iter().filter(|r| r["event"] == "recv") {
        let body = r["body"].as_str().unwrap_or_default().to_string();
        deliveries
            .entry(body)
            .or_default()
            .push(r["reconsume_times"].as_i64().unwrap_or(-1));
    }
    assert_eq!(
        deliveries.len(),
        12,
        "every message arrives: {deliveries:?}"
    );
    for (body, times) in &deliveries {
        assert_eq!(
            times[0], 0,
            "{body}: the first delivery is the first: {times:?}"
        );
        assert!(
            times.iter().skip(1).all(|t| *t >= 1) && times.len() >= 2,
            "{body}: the failed delivery came back as a reconsume: {times:?}"
        );
    }
    // The consumer used the broker's pop mode, not pulls: a pull consumer would have sent its
    // failed messages back to %RETRY%PopG; a pop consumer changes their invisible time.
    let sent_back = pull_all(&c, "Probe", "%RETRY%PopG", 0).await;
    assert!(
        sent_back.is_empty(),
        "{} messages were sent back",
        sent_back.len()
    );
    let a = assignment(&c, "PopG", "PopT").await;
    let queues = a["messageQueueAssignments"]
        .as_array()
        .expect("assignments");
    assert_eq!(queues.len(), 4, "{a}");
    assert!(queues.iter().all(|q| q["mode"] == "POP"), "{a}");

    // Acked means settled, also after kill -9 (a lost ack would show the message in flight,
    // invisible until its deadline); the pop mode is durable.
    let ids: Vec<String> = sent
        .iter()
        .filter(|r| r["event"] == "sent")
        .filter_map(|r| r["msg_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 12, "the producer reports every message id");
    b.kill9_and_restart();
    let c = connect(b.broker).await;
    for id in ids.iter().step_by(5) {
        let t = http_json(b.http, &format!("/api/v1/messages/{id}/trace?topic=PopT"));
        let g = t["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["group"] == "PopG"))
            .unwrap_or_else(|| panic!("PopG in the trace of {id}: {t:#}"));
        assert_eq!(g["status"], "CONSUMED", "{id}: {g:#}");
    }
    assert_eq!(
        pop(&c, "PopG", "PopT", 32, 60_000).await.err(),
        Some(PULL_NOT_FOUND),
        "nothing is left to pop"
    );
    let a = assignment(&c, "PopG", "PopT").await;
    assert!(
        a["messageQueueAssignments"][0]["mode"] == "POP",
        "the request mode survives a restart: {a}"
    );
}

/// What a client never sends, on raw requests: single-use receipts, stale receipts after a
/// redelivery or a changed invisible time, malformed ones, batch acks by bitmap.
#[actix_rt::test]
async fn pop_receipts_are_single_use_and_checked() {
    let b = BrokerProc::start("sync");
    let c = connect(b.broker).await;
    create_topic(&c, "RawPopT", 1).await;
    for i in 0..5 {
        let r = c
            .request(
                send_v2("RawPopT", 0, format!("m{i}").as_bytes(), ""),
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(r.code, 0);
    }
    let (pt, it, got) = pop(&c, "RawG", "RawPopT", 5, 1500)
        .await
        .expect("five messages");
    assert_eq!(got.len(), 5);
    assert_eq!(it, 1500);
    // Ack m0: once SUCCESS, then NO_MESSAGE.
    let m0 = &got[0];
    let extra0 = extra_info(pt, it, m0.queue_id, m0.queue_offset);
    let ack0 = || ack_req("RawG", "RawPopT", m0.queue_id, m0.queue_offset, &extra0);
    assert_eq!(code(&c, ack0()).await, 0);
    assert_eq!(
        code(&c, ack0()).await,
        NO_MESSAGE,
        "a receipt is single-use"
    );
    // A forged deadline and a malformed receipt are refused; neither settles m1.
    let m1 = &got[1];
    assert_eq!(raw_ack(&c, m1.queue_offset, pt + 7, it).await, NO_MESSAGE);
    let bad = code(
        &c,
        ack_req("RawG", "RawPopT", 0, m1.queue_offset, "garbage"),
    )
    .await;
    assert!(
        bad != 0 && bad != NO_MESSAGE,
        "a malformed receipt is a parameter error: {bad}"
    );
    // Batch-ack m1 and m2 by bitmap (Java's base64 BitSet), relative to m1's offset.
    let mut req = request(BATCH_ACK, &[]);
    req.body = json!({"acks": [{"c": "RawG", "t": "RawPopT", "r": "0", "so": m1.queue_offset,
        "q": 0, "rq": 0, "pt": pt, "it": it, "b": "Aw=="}]})
    .to_string()
    .into();
    let r = c.request(req, TIMEOUT).await.expect("batch ack answered");
    assert_eq!((r.code, r.remark), (0, None), "both were in flight");
    assert_eq!(
        raw_ack(&c, m1.queue_offset, pt, it).await,
        NO_MESSAGE,
        "the batch ack settled m1"
    );
    // m3: its invisible time changed to 30 s; the old receipt is stale, the new one works.
    let m3 = &got[3];
    let r = c
        .request(
            request(
                CHANGE_INVISIBLE,
                &[
                    ("consumerGroup", "RawG".into()),
                    ("topic", "RawPopT".into()),
                    ("queueId", "0".into()),
                    ("offset", m3.queue_offset.to_string()),
                    ("extraInfo", extra_info(pt, it, 0, m3.queue_offset)),
                    ("invisibleTime", "30000".into()),
                ],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let new_pt: i64 = r
        .ext
        .get("popTime")
        .and_then(|v| v.parse().ok())
        .expect("popTime");
    assert_eq!(
        raw_ack(&c, m3.queue_offset, pt, it).await,
        NO_MESSAGE,
        "the receipt before the change is stale"
    );
    // Only m4 is left unsettled and visible again after 1.5 s, as a reconsume; m3 is not.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (pt2, it2, again) = pop(&c, "RawG", "RawPopT", 5, 60_000)
        .await
        .expect("m4 again");
    let bodies: Vec<&[u8]> = again.iter().map(|r| &r.body[..]).collect();
    assert_eq!(
        bodies,
        vec![&b"m4"[..]],
        "only the unsettled message returns"
    );
    assert_eq!(again[0].reconsume_times, 1, "a redelivery says it is one");
    let m4 = &again[0];
    assert_eq!(
        raw_ack(&c, m4.queue_offset, pt, it).await,
        NO_MESSAGE,
        "the first delivery's receipt is stale after the redelivery"
    );
    assert_eq!(raw_ack(&c, m4.queue_offset, pt2, it2).await, 0);
    assert_eq!(
        raw_ack(&c, m3.queue_offset, new_pt, 30000).await,
        0,
        "the changed receipt acks m3"
    );
    // A pop without an invisible time is refused by the domain's rule, not answered empty.
    let refused = pop(&c, "RawG", "RawPopT", 1, 0).await.err();
    assert!(
        refused.is_some_and(|code| code != PULL_NOT_FOUND),
        "{refused:?}"
    );
    // A malformed batch body is an error answer, and the connection stays.
    let mut req = request(BATCH_ACK, &[]);
    req.body = bytes::Bytes::from_static(b"{not json");
    let r = c.request(req, TIMEOUT).await.expect("answered");
    assert_ne!(r.code, 0);
    assert_eq!(
        pop(&c, "RawG", "RawPopT", 1, 1000).await.err(),
        Some(PULL_NOT_FOUND),
        "all settled"
    );
}

//! Message trace (issue #10): crates.io rocketmq-client-rust 1.0 with its message trace on
//! sends Apache-encoded trace records to RMQ_SYS_TRACE_TOPIC; the broker joins them with what
//! it knows itself (stored, held, each group's deliveries, retries, dead letter) and answers
//! `GET /api/messages/{id}/trace`. QUERY_MESSAGE on the trace topic by the message id is what
//! `mqadmin queryMsgTraceById` reads.

use crate::support::*;
use rocktor::client::request;
use serde_json::Value;
use std::time::Duration;

fn trace(b: &BrokerProc, msg_id: &str) -> Value {
    http_json(b.http, &format!("/api/v1/messages/{msg_id}/trace"))
}

/// Polls the trace until `done` holds (trace records arrive in batches, up to a second late).
async fn trace_until(b: &BrokerProc, msg_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut t = trace(b, msg_id);
    for _ in 0..50 {
        if done(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        t = trace(b, msg_id);
    }
    panic!("the trace never got there: {t:#}");
}

#[actix_rt::test]
async fn trace_of_a_message_retried_then_dead_lettered() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "TraceT", 2).await;
    let ns = b.namesrv.to_string();
    let sent = run_rs(&[
        "produce",
        "--namesrv",
        &ns,
        "--topic",
        "TraceT",
        "--count",
        "1",
        "--keys",
        "1",
        "--msg-keys",
        "order-7",
        "--trace",
        "1",
    ]);
    let id = sent_id(&sent);
    // Every delivery fails; with one reconsume allowed the second failure dead-letters it.
    run_rs(&[
        "consume",
        "--namesrv",
        &ns,
        "--topic",
        "TraceT",
        "--group",
        "CG_Trace",
        "--fail",
        "1",
        "--max-reconsume",
        "1",
        "--expect",
        "2",
        "--timeout",
        "60",
        "--trace",
        "1",
    ]);
    let t = trace_until(&b, &id, |t| {
        t["groups"][0]["consumes"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
            && !t["groups"][0]["deadLetter"].is_null()
    })
    .await;
    let p = &t["published"][0];
    assert_eq!(p["group"], "PG_TraceT", "{t:#}");
    assert_eq!(p["success"], true);
    assert_eq!(p["keys"], "order-7");
    assert_eq!(t["stored"]["topic"], "TraceT");
    assert_eq!(t["stored"]["keys"], "order-7");
    assert!(t["state"].is_null(), "a stored message has no held state");
    let g = &t["groups"][0];
    assert_eq!(g["group"], "CG_Trace");
    assert_eq!(g["status"], "IN_DLQ", "{g:#}");
    let consumes = g["consumes"].as_array().unwrap();
    assert!(consumes.iter().all(|c| c["status"] == "failed"), "{g:#}");
    assert_eq!(consumes[0]["retryTimes"], 0);
    assert_eq!(consumes[1]["retryTimes"], 1);
    assert_eq!(
        g["retries"].as_array().unwrap().len(),
        1,
        "one delivered retry"
    );
    assert_eq!(g["retries"][0]["topic"], "%RETRY%CG_Trace");
    assert_eq!(g["deadLetter"]["topic"], "%DLQ%CG_Trace");
    assert_eq!(g["deadLetter"]["reconsumeTimes"], 2);

    // What queryMsgTraceById reads: QUERY_MESSAGE on the trace topic by the message id.
    let r = c
        .request(
            request(
                12,
                &[
                    ("topic", "RMQ_SYS_TRACE_TOPIC".into()),
                    ("key", id.clone()),
                    ("maxNum", "64".into()),
                    ("beginTimestamp", "0".into()),
                    ("endTimestamp", i64::MAX.to_string()),
                ],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let bodies: String = records(&r.body)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect();
    for kind in ["Pub\u{1}", "SubBefore\u{1}", "SubAfter\u{1}"] {
        assert!(
            bodies.contains(kind),
            "no {kind:?} record for {id}: {bodies:?}"
        );
    }
}

#[actix_rt::test]
async fn broker_side_traces_of_scheduled_and_transactional_messages() {
    let b = BrokerProc::start_with(
        "async",
        &[
            ("ROCKTOR_TRANSACTION_TIMEOUT_MS", "1000"),
            ("ROCKTOR_TRANSACTION_CHECK_INTERVAL_MS", "1000"),
        ],
        None,
    );
    let c = connect(b.broker).await;
    create_topic(&c, "TraceS", 1).await;
    let ns = b.namesrv.to_string();
    // A client without trace: the broker's side alone. Due in an hour: standing by.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let due = now + 3_600_000;
    let props = format!("__STARTDELIVERTIME={due}");
    let id = sent_id(&run_rs(&[
        "produce",
        "--namesrv",
        &ns,
        "--topic",
        "TraceS",
        "--count",
        "1",
        "--keys",
        "1",
        "--props",
        &props,
    ]));
    let t = trace(&b, &id);
    assert_eq!(t["state"], "Message Standing By", "{t:#}");
    assert_eq!(t["topic"], "TraceS");
    assert_eq!(t["held"]["kind"], "SCHEDULED");
    assert_eq!(t["held"]["dueMs"], due);
    assert!(t["stored"].is_null() && t["published"].as_array().unwrap().is_empty());

    // Transactions, traced: one rolled back, one left without an outcome.
    let recs = run_rs(&[
        "txn",
        "--namesrv",
        &ns,
        "--topic",
        "TraceS",
        "--group",
        "PG_TraceTx",
        "--rollback",
        "1",
        "--unknown",
        "1",
        "--check-answer",
        "unknown",
        "--linger",
        "2",
        "--trace",
        "1",
    ]);
    let id_of = |kind: &str| {
        recs.iter()
            .find(|r| r["event"] == "sent" && r["kind"] == kind)
            .and_then(|r| r["msg_id"].as_str())
            .expect("a sent record")
            .to_string()
    };
    let t = trace_until(&b, &id_of("rollback"), |t| {
        t["transactions"].as_array().is_some_and(|x| !x.is_empty())
    })
    .await;
    assert_eq!(t["state"], "Message Rolled Back", "{t:#}");
    assert_eq!(t["held"]["kind"], "TRANSACTION");
    assert_eq!(t["topic"], "TraceS");
    assert_eq!(t["transactions"][0]["transactionState"], "ROLLBACK_MESSAGE");
    assert!(t["stored"].is_null(), "never visible in its topic");
    let t = trace(&b, &id_of("unknown"));
    assert_eq!(t["state"], "Transaction Uncommitted", "{t:#}");
    assert!(t["stored"].is_null());
}

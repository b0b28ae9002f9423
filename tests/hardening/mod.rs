//! Hostile and unlucky clients (issue #8): each test failed before its fix. They share the one
//! end-to-end test binary.

use crate::support::*;
use rocktor::client::request;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A PULL whose own subscription is a 60,000-deep SQL92 expression, and a heartbeat that
/// registers one: both answered, and the broker keeps serving (it used to overflow its stack).
#[actix_rt::test]
async fn deep_sql_expressions_are_refused_over_pull_and_heartbeat() {
    let mut b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "DeepSql", 1).await;
    let deep = "(".repeat(60_000) + "a = 1";
    let mut pull = pull_req("G", "DeepSql", 0, 0, 32, None, Some(&deep));
    pull.ext.insert("expressionType", "SQL92");
    let r = c
        .request(pull, TIMEOUT)
        .await
        .expect("an answer, not a crash");
    assert_eq!(r.code, 23, "SUBSCRIPTION_PARSE_FAILED: {:?}", r.remark);
    assert!(r.remark.unwrap_or_default().contains("16384"));
    let nested = "(".repeat(5_000) + "a = 1" + &")".repeat(5_000);
    let mut pull = pull_req("G", "DeepSql", 0, 0, 32, None, Some(&nested));
    pull.ext.insert("expressionType", "SQL92");
    let r = c.request(pull, TIMEOUT).await.expect("an answer");
    assert_eq!(r.code, 23);
    assert!(r.remark.unwrap_or_default().contains("deeper"));
    let nots = "NOT ".repeat(3_000) + "a = 1";
    let body = serde_json::json!({
        "clientID": "deep-client",
        "producerDataSet": [],
        "consumerDataSet": [{"groupName": "DeepGroup", "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET", "unitMode": false,
            "subscriptionDataSet": [{"topic": "DeepSql", "subString": nots, "tagsSet": [], "codeSet": [], "subVersion": 1, "expressionType": "SQL92"}]}]
    });
    let _ = c
        .request(
            request(34, &[]).with_body(body.to_string().into_bytes()),
            TIMEOUT,
        )
        .await
        .expect("the heartbeat is answered");
    let check = serde_json::json!({"clientId": "c", "group": "G",
        "subscriptionData": {"topic": "DeepSql", "subString": nested, "expressionType": "SQL92"}});
    let r = c
        .request(
            request(46, &[]).with_body(check.to_string().into_bytes()),
            TIMEOUT,
        )
        .await
        .expect("CHECK_CLIENT_CONFIG answered");
    assert_eq!(r.code, 23);
    // Still serving.
    c.call(send_v2("DeepSql", 0, b"after", ""), TIMEOUT)
        .await
        .expect("the broker still takes sends");
    assert!(b.alive(), "{}", b.log());
}

/// A client that pipelines pulls of large answers and never reads: the broker stops reading
/// it, caps what it queues, closes it, and its memory stays bounded; others are served.
#[actix_rt::test]
async fn a_client_that_never_reads_cannot_grow_broker_memory() {
    let mut b = BrokerProc::start_with(
        "async",
        &[("ROCKTOR_CONNECTION_WRITE_TIMEOUT_SECS", "3")],
        None,
    );
    let c = connect(b.broker).await;
    create_topic(&c, "BigAnswers", 1).await;
    let body = vec![b'x'; 256 * 1024];
    for _ in 0..32 {
        c.call(send_v2("BigAnswers", 0, &body, ""), TIMEOUT)
            .await
            .unwrap();
    }
    let before = b.rss_kib();
    // Each answer is 8 MiB; 3,000 of them would be 24 GB.
    let mut frame = bytes::BytesMut::new();
    for i in 0..3_000 {
        let mut p = pull_req("G", "BigAnswers", 0, 0, 32, None, Some("*"));
        p.opaque = 1_000_000 + i;
        p.encode(&mut frame);
    }
    let mut raw = tokio::net::TcpStream::connect(b.broker).await.unwrap();
    let frame = frame.freeze();
    let writer = tokio::spawn(async move {
        // The broker stops reading once its in-flight cap is reached; this write then stalls.
        let _ = tokio::time::timeout(Duration::from_secs(20), raw.write_all(&frame)).await;
        raw
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut peak = 0;
    while Instant::now() < deadline && !b.log().contains("does not read its answers") {
        peak = peak.max(b.rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak = peak.max(b.rss_kib());
    let _ = writer.await;
    assert!(
        // Bounded by the storage-read budget (256 MiB), the answer queue (64 MiB) and the
        // allocator's slack, whatever the number of requests; 24 GB if unbounded.
        peak < before + 1024 * 1024,
        "broker RSS grew from {before} KiB to {peak} KiB"
    );
    assert!(
        b.log().contains("does not read its answers"),
        "the connection was closed for not reading"
    );
    let c2 = connect(b.broker).await;
    let r = c2
        .request(
            pull_req("G2", "BigAnswers", 0, 0, 1, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0, "another client is still served");
    assert!(b.alive());
}

/// Long polls past the per-connection cap are answered "nothing new" after a short wait
/// instead of being parked; the parked ones still wake on arrival.
#[actix_rt::test]
async fn long_polls_over_the_cap_are_answered_after_a_short_wait() {
    let b = BrokerProc::start_with(
        "async",
        &[("ROCKTOR_MAX_PARKED_PULLS_PER_CONNECTION", "2")],
        None,
    );
    let c = connect(b.broker).await;
    create_topic(&c, "Polls", 1).await;
    let started = Instant::now();
    let mut polls = Vec::new();
    for _ in 0..5 {
        let c = c.clone();
        polls.push(tokio::spawn(async move {
            let r = c
                .request(
                    pull_req("G", "Polls", 0, 0, 32, Some(15_000), Some("*")),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
            (r.code, started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.call(send_v2("Polls", 0, b"wake", ""), TIMEOUT)
        .await
        .unwrap();
    let mut found = 0;
    let mut over_cap = 0;
    for p in polls {
        let (code, took) = p.await.unwrap();
        match code {
            0 => {
                found += 1;
                assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(10));
            }
            19 => {
                over_cap += 1;
                assert!(
                    took >= Duration::from_millis(400) && took < Duration::from_secs(3),
                    "answered after {took:?}"
                );
            }
            other => panic!("unexpected code {other}"),
        }
    }
    assert_eq!((found, over_cap), (2, 3));
}

/// Counts that persist and arithmetic a peer controls: an offset for a queue the topic does
/// not have, a group with billions of retry queues, a delay of i64::MAX ms, a half message.
#[actix_rt::test]
async fn counts_delays_and_half_messages_are_checked() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "Counted", 2).await;
    let r = c
        .request(commit_offset_req("G", "Counted", 7, 5), TIMEOUT)
        .await
        .unwrap();
    assert_ne!(r.code, 0, "queue 7 of a 2-queue topic");
    let group = serde_json::json!({"groupName": "Huge", "retryQueueNums": 5_000_000_000i64});
    let r = c
        .request(
            request(200, &[]).with_body(group.to_string().into_bytes()),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_ne!(r.code, 0, "5e9 retry queues refused");
    let r = c
        .request(
            send_v2(
                "Counted",
                0,
                b"never",
                &format!("TIMER_DELAY_MS\u{1}{}\u{2}", i64::MAX),
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 13, "MESSAGE_ILLEGAL: {:?}", r.remark);
    let r = c
        .request(
            send_v2(
                "Counted",
                0,
                b"half",
                "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}P\u{2}",
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0, "a half message is stored: {:?}", r.remark);
    let r = c
        .request(pull_req("G", "Counted", 0, 0, 32, None, Some("*")), TIMEOUT)
        .await
        .unwrap();
    assert_ne!(
        r.code, 0,
        "nothing was delivered: the half message waits for its outcome"
    );
}

/// Shrinking a topic's queues and growing them back continues each queue's offsets instead
/// of restarting at 0 over stored entries.
#[actix_rt::test]
async fn shrink_then_grow_keeps_queue_offsets() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "Elastic", 4).await;
    for i in 0..5 {
        c.call(
            send_v2("Elastic", 3, format!("e{i}").as_bytes(), ""),
            TIMEOUT,
        )
        .await
        .unwrap();
    }
    create_topic(&c, "Elastic", 2).await;
    create_topic(&c, "Elastic", 4).await;
    let r = c
        .call(send_v2("Elastic", 3, b"after", ""), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.ext["queueOffset"], "5", "offsets continue after a regrow");
    let r = c
        .request(pull_req("G", "Elastic", 3, 0, 32, None, Some("*")), TIMEOUT)
        .await
        .unwrap();
    let bodies: Vec<_> = records(&r.body)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies, vec!["e0", "e1", "e2", "e3", "e4", "after"]);
}

/// A real write error (the process's file-size limit makes RocksDB's writes fail with EFBIG):
/// sends are refused with SERVICE_NOT_AVAILABLE, /healthz says so, what was acknowledged stays
/// readable with no offset hole, and after a restart without the limit the queue continues
/// exactly where the acknowledged messages end.
#[actix_rt::test]
async fn a_write_error_refuses_sends_without_offset_holes() {
    let mut b = BrokerProc::start_with("sync", &[], Some(6 << 20));
    let c = connect(b.broker).await;
    create_topic(&c, "Full", 1).await;
    let body = vec![b'f'; 16 * 1024];
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..2_000u32 {
        let r = c
            .request(
                send_v2("Full", 0, &body, &format!("n\u{1}{i}\u{2}")),
                TIMEOUT,
            )
            .await
            .expect("answered");
        if r.code == 0 {
            acked.push((r.ext["queueOffset"].parse::<u64>().unwrap(), i));
        } else {
            refused = Some(r.code);
            break;
        }
    }
    assert!(!acked.is_empty());
    let code = refused.expect("the file-size limit made a write fail");
    assert!(matches!(code, 14 | 1), "refused with {code}");
    // Later sends are refused too, and /healthz tells.
    let r = c
        .request(send_v2("Full", 0, b"later", ""), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 14, "{:?}", r.remark);
    let (status, text) = http(b.http, "GET", "/healthz", None);
    assert_eq!(status, 503, "{text}");
    // What was acknowledged is there, at consecutive offsets from 0.
    for (i, (off, _)) in acked.iter().enumerate() {
        assert_eq!(*off, i as u64, "acknowledged offsets are consecutive");
    }
    b.kill9_and_restart_unlimited();
    let c = connect(b.broker).await;
    let seen: Vec<u64> = pull_all(&c, "G", "Full", 0)
        .await
        .iter()
        .map(|r| r.queue_offset as u64)
        .collect();
    let want: Vec<u64> = (0..acked.len() as u64).collect();
    assert_eq!(seen, want, "every acknowledged message once, nothing else");
    let r = c
        .call(send_v2("Full", 0, b"again", ""), TIMEOUT)
        .await
        .expect("writable after the restart");
    assert_eq!(r.ext["queueOffset"], acked.len().to_string(), "no hole");
}

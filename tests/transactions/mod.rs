//! Transactional messages (issue #9) with a real transactional producer: crates.io
//! rocketmq-client-rust 1.0 behind tests/clients/rs. Check-backs are timed down to a second
//! (`transaction_timeout_ms`, `transaction_check_interval_ms`) so the tests run in seconds.

use crate::support::*;
use rocktor::client::request;
use std::collections::HashMap;
use std::time::Duration;

/// Fast check-backs: first after 1 s, then every second.
const FAST_CHECKS: [(&str, &str); 2] = [
    ("ROCKTOR_TRANSACTION_TIMEOUT_MS", "1000"),
    ("ROCKTOR_TRANSACTION_CHECK_INTERVAL_MS", "1000"),
];

/// Every body in the topic's queues, with how often it is there.
async fn visible(b: &BrokerProc, topic: &str, queues: u32) -> HashMap<String, usize> {
    let c = connect(b.broker).await;
    let mut seen = HashMap::new();
    for q in 0..queues {
        for r in pull_all(&c, "G_visible", topic, q).await {
            assert!(
                !r.properties.contains("TRAN_MSG"),
                "a committed message keeps no TRAN_MSG: {}",
                r.properties
            );
            *seen
                .entry(String::from_utf8_lossy(&r.body).to_string())
                .or_default() += 1;
        }
    }
    seen
}

fn txn_args<'a>(b: &'a str, topic: &'a str, group: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["txn", "--namesrv", b, "--topic", topic, "--group", group];
    v.extend_from_slice(rest);
    v
}

fn checks(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["event"] == "check")
        .map(|r| r["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Commit, rollback, and unknown answered by a check with commit: exactly the committed and
/// checked-then-committed messages become visible, each once; the check names the real topic.
#[actix_rt::test]
async fn commit_rollback_and_checked_unknown() {
    let b = BrokerProc::start_with("sync", &FAST_CHECKS, None);
    create_topic(&connect(b.broker).await, "TxnA", 2).await;
    let ns = b.namesrv.to_string();
    let recs = run_rs(&txn_args(
        &ns,
        "TxnA",
        "PG_TxnA",
        &[
            "--commit",
            "2",
            "--rollback",
            "2",
            "--unknown",
            "2",
            "--check-answer",
            "commit",
            "--linger",
            "5",
        ],
    ));
    let sent: Vec<_> = recs.iter().filter(|r| r["event"] == "sent").collect();
    assert_eq!(sent.len(), 6);
    for s in &sent {
        assert_eq!(s["status"], "SEND_OK", "{s}");
    }
    let checked = checks(&recs);
    for body in ["tx-unknown-0", "tx-unknown-1"] {
        assert!(
            checked.iter().any(|c| c == body),
            "{body} checked: {checked:?}"
        );
    }
    assert!(
        !checked
            .iter()
            .any(|c| c.contains("commit") || c.contains("rollback")),
        "messages with an outcome are never checked: {checked:?}"
    );
    for r in recs.iter().filter(|r| r["event"] == "check") {
        assert_eq!(r["topic"], "TxnA", "the check shows the real topic");
    }
    let seen = visible(&b, "TxnA", 2).await;
    let mut bodies: Vec<_> = seen.keys().cloned().collect();
    bodies.sort();
    assert_eq!(
        bodies,
        ["tx-commit-0", "tx-commit-1", "tx-unknown-0", "tx-unknown-1"]
    );
    assert!(seen.values().all(|n| *n == 1), "each once: {seen:?}");
}

/// Unknown, then a check answered with rollback: never visible, and never checked again.
#[actix_rt::test]
async fn checked_unknown_rolled_back() {
    let b = BrokerProc::start_with("sync", &FAST_CHECKS, None);
    create_topic(&connect(b.broker).await, "TxnB", 1).await;
    let ns = b.namesrv.to_string();
    let recs = run_rs(&txn_args(
        &ns,
        "TxnB",
        "PG_TxnB",
        &[
            "--unknown",
            "2",
            "--check-answer",
            "rollback",
            "--linger",
            "5",
        ],
    ));
    let checked = checks(&recs);
    assert_eq!(
        checked.len(),
        2,
        "one check each, none after the rollback: {checked:?}"
    );
    assert!(visible(&b, "TxnB", 1).await.is_empty());
}

/// A producer that never knows: checked `transaction_check_max` times, then the message moves
/// to TRANS_CHECK_MAX_TIME_TOPIC and is never visible in its topic.
#[actix_rt::test]
async fn the_check_maximum_moves_the_message_aside() {
    let env = [
        FAST_CHECKS[0],
        FAST_CHECKS[1],
        ("ROCKTOR_TRANSACTION_CHECK_MAX", "2"),
    ];
    let b = BrokerProc::start_with("sync", &env, None);
    create_topic(&connect(b.broker).await, "TxnC", 1).await;
    let ns = b.namesrv.to_string();
    let recs = run_rs(&txn_args(
        &ns,
        "TxnC",
        "PG_TxnC",
        &[
            "--unknown",
            "1",
            "--check-answer",
            "unknown",
            "--linger",
            "6",
        ],
    ));
    assert_eq!(checks(&recs).len(), 2, "checked exactly the maximum");
    assert!(visible(&b, "TxnC", 1).await.is_empty());
    let c = connect(b.broker).await;
    let aside = pull_all(&c, "G_aside", "TRANS_CHECK_MAX_TIME_TOPIC", 0).await;
    assert_eq!(aside.len(), 1);
    assert_eq!(&aside[0].body[..], b"tx-unknown-0");
    assert!(aside[0].properties.contains("REAL_TOPIC\u{1}TxnC"));
}

/// The sending instance leaves before the check: another live instance of the group is asked,
/// and its commit makes the message visible.
#[actix_rt::test]
async fn a_second_instance_answers_after_the_first_left() {
    let b = BrokerProc::start_with("sync", &FAST_CHECKS, None);
    create_topic(&connect(b.broker).await, "TxnD", 1).await;
    let ns = b.namesrv.to_string();
    let first = run_rs(&txn_args(
        &ns,
        "TxnD",
        "PG_TxnD",
        &["--unknown", "1", "--prefix", "first"],
    ));
    assert!(checks(&first).is_empty(), "the first left before any check");
    let second = run_rs(&txn_args(
        &ns,
        "TxnD",
        "PG_TxnD",
        &["--check-answer", "commit", "--linger", "5"],
    ));
    assert!(
        checks(&second).iter().any(|c| c == "first-unknown-0"),
        "{second:?}"
    );
    let seen = visible(&b, "TxnD", 1).await;
    assert_eq!(seen.get("first-unknown-0"), Some(&1), "{seen:?}");
}

/// kill -9 with one committed and one pending half message: after the restart the committed one
/// is visible exactly once and the pending one is still checked and committed.
#[actix_rt::test]
async fn pending_half_messages_survive_kill_9() {
    let env = [("ROCKTOR_TRANSACTION_TIMEOUT_MS", "3000"), FAST_CHECKS[1]];
    let mut b = BrokerProc::start_with("sync", &env, None);
    create_topic(&connect(b.broker).await, "TxnE", 1).await;
    let ns = b.namesrv.to_string();
    run_rs(&txn_args(
        &ns,
        "TxnE",
        "PG_TxnE",
        &["--commit", "1", "--unknown", "1", "--prefix", "pre"],
    ));
    // END_TRANSACTION is oneway: give the commit a moment to land before the crash.
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill9_and_restart();
    let after = run_rs(&txn_args(
        &ns,
        "TxnE",
        "PG_TxnE",
        &["--check-answer", "commit", "--linger", "6"],
    ));
    assert!(
        checks(&after).iter().any(|c| c == "pre-unknown-0"),
        "{after:?}"
    );
    let seen = visible(&b, "TxnE", 1).await;
    assert_eq!(seen.get("pre-commit-0"), Some(&1), "{seen:?}");
    assert_eq!(seen.get("pre-unknown-0"), Some(&1), "{seen:?}");
    assert_eq!(seen.len(), 2);
}

/// END_TRANSACTION on the wire: a wrong producer group or offset is refused and changes
/// nothing, the right one commits, a second outcome is ignored.
#[actix_rt::test]
async fn end_transaction_is_validated() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "TxnF", 1).await;
    let r = c
        .request(
            send_v2(
                "TxnF",
                0,
                b"half",
                "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PG_test\u{2}",
            ),
            TIMEOUT,
        )
        .await
        .expect("send answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let offset = r.ext["queueOffset"].to_string();
    let msg_id = r.ext["msgId"].to_string();
    let (_, seq) =
        rocktor::remoting::message::decode_offset_msg_id(&msg_id).expect("an offset msgId");
    assert!(
        visible(&b, "TxnF", 1).await.is_empty(),
        "a half message is invisible"
    );
    let end = |group: &str, tran: &str, outcome: &str| {
        request(
            37,
            &[
                ("producerGroup", group.into()),
                ("tranStateTableOffset", tran.into()),
                ("commitLogOffset", seq.to_string()),
                ("commitOrRollback", outcome.into()),
                ("fromTransactionCheck", "false".into()),
                ("msgId", msg_id.clone()),
            ],
        )
    };
    let wrong_group = c
        .request(end("PG_other", &offset, "8"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(wrong_group.code, 1, "{:?}", wrong_group.remark);
    let wrong_offset = c
        .request(end("PG_test", "999999", "8"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(wrong_offset.code, 1);
    let bad_outcome = c
        .request(end("PG_test", &offset, "5"), TIMEOUT)
        .await
        .unwrap();
    assert_ne!(bad_outcome.code, 0);
    assert!(visible(&b, "TxnF", 1).await.is_empty());
    let ok = c
        .request(end("PG_test", &offset, "8"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(ok.code, 0, "{:?}", ok.remark);
    let again = c
        .request(end("PG_test", &offset, "12"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(again.code, 0, "a second outcome is ignored");
    assert_eq!(visible(&b, "TxnF", 1).await.get("half"), Some(&1));
    // A transactional batch is refused.
    let mut batch = send_v2("TxnF", 0, b"", "TRAN_MSG\u{1}true\u{2}");
    batch.code = 320;
    batch.ext.insert("m", "true");
    let r = c.request(batch, TIMEOUT).await.unwrap();
    assert_ne!(r.code, 0);
}

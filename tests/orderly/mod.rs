//! Ordered consumption and queue locks, topic message types (issue #9).

use crate::support::*;
use rocktor::client::request;
use rocktor::client::RemotingClient;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

fn lock_body(group: &str, client: &str, queues: &[u32]) -> Vec<u8> {
    let set: Vec<Value> = queues
        .iter()
        .map(|q| json!({"topic": "LockT", "brokerName": "broker-a", "queueId": q}))
        .collect();
    json!({"consumerGroup": group, "clientId": client, "onlyThisBroker": false, "mqSet": set})
        .to_string()
        .into_bytes()
}

async fn lock(c: &RemotingClient, client: &str, queues: &[u32]) -> Vec<u32> {
    let mut req = request(41, &[]);
    req.body = lock_body("LockG", client, queues).into();
    let r = c.request(req, TIMEOUT).await.expect("lock answered");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let v: Value = serde_json::from_slice(&r.body).expect("LockBatchResponseBody");
    let mut got: Vec<u32> = v["lockOKMQSet"]
        .as_array()
        .expect("lockOKMQSet")
        .iter()
        .map(|m| m["queueId"].as_u64().unwrap_or(u64::MAX) as u32)
        .collect();
    got.sort();
    got
}

async fn unlock(c: &RemotingClient, client: &str, queues: &[u32]) {
    let mut req = request(42, &[]);
    req.body = lock_body("LockG", client, queues).into();
    let r = c.request(req, TIMEOUT).await.expect("unlock answered");
    assert_eq!(r.code, 0);
}

/// One owner per queue: contention, renewal, unlock, release on disconnect, expiry; malformed
/// bodies are answered with an error code.
#[actix_rt::test]
async fn queue_locks_contend_expire_and_free_on_disconnect() {
    let b = BrokerProc::start_with("async", &[("ROCKTOR_ORDERLY_LOCK_EXPIRY_MS", "2000")], None);
    let c1 = connect(b.broker).await;
    let c2 = connect(b.broker).await;
    create_topic(&c1, "LockT", 4).await;
    let mut beyond = request(41, &[]);
    beyond.body = lock_body("LockG", "client-1", &[4]).into();
    let r = c1.request(beyond, TIMEOUT).await.unwrap();
    assert_eq!(r.code, 29, "a queue the topic lacks cannot be locked");
    assert_eq!(lock(&c1, "client-1", &[0, 1]).await, [0, 1]);
    assert_eq!(lock(&c2, "client-2", &[1, 2]).await, [2], "queue 1 is held");
    unlock(&c2, "client-2", &[0]).await;
    assert_eq!(
        lock(&c1, "client-1", &[0]).await,
        [0],
        "c2 cannot unlock c1's queue"
    );
    unlock(&c1, "client-1", &[0]).await;
    assert_eq!(
        lock(&c2, "client-2", &[0]).await,
        [0],
        "unlocked queues are free"
    );
    // Expiry: client-2 stops renewing queue 2; after the lease it can be taken.
    assert_eq!(lock(&c1, "client-1", &[2]).await, Vec::<u32>::new());
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        lock(&c1, "client-1", &[2]).await,
        [2],
        "expired leases are free"
    );
    // client-1 renews queue 1 and 2 then disconnects: its locks are free at once.
    assert_eq!(lock(&c1, "client-1", &[1, 2]).await, [1, 2]);
    drop(c1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lock(&c2, "client-2", &[1, 2]).await, [1, 2]);
    for bad in [
        &b"{not json"[..],
        br#"{"consumerGroup":"LockG"}"#,
        br#"{"consumerGroup":"LockG","clientId":"x","mqSet":[{"topic":"LockT","queueId":"q"}]}"#,
    ] {
        let mut req = request(41, &[]);
        req.body = bytes::Bytes::copy_from_slice(bad);
        let r = c2
            .request(req, TIMEOUT)
            .await
            .expect("an answer, not a crash");
        assert_ne!(r.code, 0);
    }
    assert_eq!(
        lock(&c2, "client-2", &[3]).await,
        [3],
        "the broker still serves"
    );
}

/// Processing intervals: (start, end) per queue and label.
type Intervals = HashMap<i64, Vec<(i64, i64, String)>>;

fn spawn_orderly(ns: &str, label: &str, timeout: &str) -> std::process::Child {
    Command::new(rs_client())
        .args([
            "orderly",
            "--namesrv",
            ns,
            "--topic",
            "OrderT",
            "--group",
            "OrderG",
            "--label",
            label,
            "--sleep-ms",
            "20",
            "--timeout",
            timeout,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the orderly consumer starts")
}

fn collect(child: std::process::Child) -> Vec<Value> {
    let out = child.wait_with_output().expect("consumer output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Two orderly consumers share four queues while one of them is killed and started again: no
/// queue is ever processed by two clients at once, each key's messages arrive in order, and
/// every message is consumed.
#[actix_rt::test]
async fn orderly_consumers_never_share_a_queue_across_a_restart() {
    let b = BrokerProc::start("sync");
    create_topic(&connect(b.broker).await, "OrderT", 4).await;
    let ns = b.namesrv.to_string();
    run_rs(&[
        "produce",
        "--namesrv",
        &ns,
        "--topic",
        "OrderT",
        "--count",
        "400",
        "--keys",
        "4",
    ]);
    let a = spawn_orderly(&ns, "A", "60");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = spawn_orderly(&ns, "B", "25");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut a = a;
    let _ = a.kill();
    let first = collect(a);
    let restarted = spawn_orderly(&ns, "A2", "20");
    let mut recs = first;
    recs.extend(collect(second));
    recs.extend(collect(restarted));
    let recv: Vec<&Value> = recs.iter().filter(|r| r["event"] == "recv").collect();
    let mut by_queue: Intervals = HashMap::new();
    let mut bodies = std::collections::HashSet::new();
    for r in &recv {
        by_queue
            .entry(r["queue_id"].as_i64().unwrap_or(-1))
            .or_default()
            .push((
                r["start"].as_i64().unwrap_or(0),
                r["end"].as_i64().unwrap_or(0),
                r["label"].as_str().unwrap_or_default().to_string(),
            ));
        bodies.insert(r["body"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(bodies.len(), 400, "every message consumed");
    let labels: std::collections::HashSet<_> = recv.iter().map(|r| r["label"].clone()).collect();
    assert!(
        labels.len() >= 2,
        "the queues moved between clients: {labels:?}"
    );
    for (q, mut iv) in by_queue {
        iv.sort();
        let (mut max_end, mut owner) = (i64::MIN, String::new());
        for (start, end, label) in iv {
            assert!(
                label == owner || start >= max_end,
                "queue {q}: {label} started at {start} while {owner} worked until {max_end}"
            );
            if end > max_end {
                (max_end, owner) = (end, label);
            }
        }
    }
    // Within each client's run, each key's sequence only goes up.
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for r in &recv {
        let body = r["body"].as_str().unwrap_or_default();
        let mut parts = body.rsplitn(2, '-');
        let n: i64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(-1);
        let key = parts.next().unwrap_or_default().to_string();
        let k = (r["label"].as_str().unwrap_or_default().to_string(), key);
        if let Some(prev) = last.get(&k) {
            assert!(n > *prev, "{} got {body} after sequence {prev}", k.0);
        }
        last.insert(k, n);
    }
}

/// Topic message types: set through `+message.type=…`, shown in GET_TOPIC_CONFIG, validated;
/// remoting sends of every kind are accepted whatever the type (the rule is gRPC's).
#[actix_rt::test]
async fn topic_message_types_are_stored_shown_and_never_refuse_remoting_sends() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    for ty in ["NORMAL", "FIFO", "DELAY", "TRANSACTION", "MIXED"] {
        let topic = format!("Typed{ty}");
        let r = c
            .request(
                request(
                    17,
                    &[
                        ("topic", topic.clone()),
                        ("readQueueNums", "1".into()),
                        ("writeQueueNums", "1".into()),
                        ("perm", "6".into()),
                        ("attributes", format!("+message.type={ty}")),
                    ],
                ),
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{:?}", r.remark);
        let r = c
            .request(request(351, &[("topic", topic.clone())]), TIMEOUT)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["topicConfig"]["attributes"]["message.type"], ty, "{v}");
        let future = rocktor_actors::now_ms() + 60_000;
        for props in [
            String::new(),
            format!("__STARTDELIVERTIME\u{1}{future}\u{2}"),
            "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PG_test\u{2}".to_string(),
        ] {
            let r = c
                .request(send_v2(&topic, 0, b"x", &props), TIMEOUT)
                .await
                .unwrap();
            assert_eq!(
                r.code, 0,
                "{ty} takes {props:?} over remoting: {:?}",
                r.remark
            );
        }
    }
    let bad = c
        .request(
            request(
                17,
                &[
                    ("topic", "TypedBad".into()),
                    ("attributes", "+message.type=SOMETIMES".into()),
                ],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(bad.code, 29, "an unknown type is refused: {:?}", bad.remark);
    // An update keeps the type unless it changes it.
    let r = c
        .request(
            request(
                17,
                &[
                    ("topic", "TypedFIFO".into()),
                    ("readQueueNums", "2".into()),
                    ("writeQueueNums", "2".into()),
                ],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    let r = c
        .request(request(351, &[("topic", "TypedFIFO".into())]), TIMEOUT)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["topicConfig"]["attributes"]["message.type"], "FIFO");
    assert_eq!(v["topicConfig"]["readQueueNums"], 2);
}

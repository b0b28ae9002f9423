//! End-to-end tests: each starts a real rocktor process on free loopback ports and drives it
//! over the wire — with rocktor's own remoting client and with PyPI `rocketmq` 0.4.4 (Apache's
//! C++ client), an independent real client.

mod acl;
mod alarms;
mod cancel;
mod dashboard;
mod grpc;
mod hardening;
mod http_api;
mod migrate;
mod observe;
mod orderly;
mod pop;
mod query;
mod rest;
mod retention;
mod support;
mod tls;
mod trace;
mod transactions;

use rocktor::client::request;
use rocktor::remoting::message::{decode_offset_msg_id, encode_batch, BatchItem};
use rocktor_storage::properties;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::*;

fn json(body: &bytes::Bytes) -> Value {
    serde_json::from_slice(body).expect("JSON body")
}

#[actix_rt::test]
async fn name_server_serves_routes_cluster_and_topic_list() {
    let b = BrokerProc::start("async");
    let ns = connect(b.namesrv).await;
    let r = ns
        .request(request(105, &[("topic", "NoSuchTopic".into())]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 17, "unknown topic is TOPIC_NOT_EXIST");

    let br = connect(b.broker).await;
    create_topic(&br, "RouteTopic", 4).await;
    let r = ns
        .call(request(105, &[("topic", "RouteTopic".into())]), TIMEOUT)
        .await
        .unwrap();
    let v = json(&r.body);
    assert_eq!(v["queueDatas"][0]["readQueueNums"], 4);
    assert_eq!(v["queueDatas"][0]["writeQueueNums"], 4);
    assert_eq!(
        v["brokerDatas"][0]["brokerAddrs"]["0"],
        b.broker.to_string()
    );
    assert_eq!(v["brokerDatas"][0]["enableActingMaster"], false);

    let r = ns.call(request(106, &[]), TIMEOUT).await.unwrap();
    let v = json(&r.body);
    assert_eq!(v["clusterAddrTable"]["DefaultCluster"][0], "broker-a");
    let r = ns.call(request(206, &[]), TIMEOUT).await.unwrap();
    let topics = json(&r.body)["topicList"].as_array().unwrap().clone();
    assert!(topics.iter().any(|t| t == "RouteTopic"), "{topics:?}");

    // KV config round trip, and the documented not-found code.
    ns.call(
        request(
            100,
            &[
                ("namespace", "ns".into()),
                ("key", "k".into()),
                ("value", "v".into()),
            ],
        ),
        TIMEOUT,
    )
    .await
    .unwrap();
    let r = ns
        .call(
            request(101, &[("namespace", "ns".into()), ("key", "k".into())]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.ext["value"], "v");
    let r = ns
        .request(
            request(101, &[("namespace", "ns".into()), ("key", "nope".into())]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 22);
}

#[actix_rt::test]
async fn send_then_pull_returns_the_stored_records() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "PullTopic", 2).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let props = format!(
            "TAGS\u{1}{}\u{2}KEYS\u{1}k{i}\u{2}color\u{1}red\u{2}",
            if i % 2 == 0 { "TagA" } else { "TagB" }
        );
        let r = c
            .call(
                send_v2("PullTopic", 0, format!("m{i}").as_bytes(), &props),
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(r.ext["queueId"], "0");
        assert_eq!(r.ext["queueOffset"], i.to_string());
        assert_eq!(r.ext["MSG_REGION"], "DefaultRegion");
        let (addr, seq) = decode_offset_msg_id(&r.ext["msgId"]).expect("offset msgId");
        assert_eq!(addr, b.broker, "msgId decodes to the broker's address");
        ids.push(seq);
    }
    let r = c
        .request(
            pull_req("G", "PullTopic", 0, 0, 32, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    assert_eq!(r.ext["nextBeginOffset"], "10");
    assert_eq!(r.ext["maxOffset"], "10");
    assert_eq!(r.ext["minOffset"], "0");
    let recs = records(&r.body);
    assert_eq!(recs.len(), 10);
    for (i, rec) in recs.iter().enumerate() {
        assert_eq!(&rec.body[..], format!("m{i}").as_bytes());
        assert_eq!(rec.queue_offset, i as i64);
        assert_eq!(rec.physical_offset as u64, ids[i]);
        assert_eq!(rec.topic, "PullTopic");
        assert_eq!(rec.store_host, b.broker);
        assert_eq!(properties::get(&rec.properties, "color"), Some("red"));
        assert_eq!(
            properties::get(&rec.properties, "KEYS"),
            Some(format!("k{i}").as_str())
        );
        assert!(
            properties::get(&rec.properties, "UNIQ_KEY").is_some(),
            "broker back-fills UNIQ_KEY"
        );
        assert_eq!(
            properties::get(&rec.properties, "CLUSTER"),
            Some("DefaultCluster")
        );
    }
    // Tag filter on the broker: only TagA.
    let r = c
        .request(
            pull_req("G", "PullTopic", 0, 0, 32, None, Some("TagA")),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(records(&r.body).len(), 5);
    // The status table of digest §2.5.
    let r = c
        .request(
            pull_req("G", "PullTopic", 0, 10, 32, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!((r.code, r.ext["nextBeginOffset"].as_str()), (19, "10"));
    let r = c
        .request(
            pull_req("G", "PullTopic", 0, 99, 32, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!((r.code, r.ext["nextBeginOffset"].as_str()), (21, "10"));
    let r = c
        .request(
            pull_req("G", "PullTopic", 1, 0, 32, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 19, "empty queue at offset 0");
    // Offsets and times.
    let r = c
        .call(
            request(
                30,
                &[("topic", "PullTopic".into()), ("queueId", "0".into())],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.ext["offset"], "10");
    let r = c
        .call(
            request(
                31,
                &[("topic", "PullTopic".into()), ("queueId", "0".into())],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.ext["offset"], "0");
    let r = c
        .call(
            request(
                32,
                &[("topic", "PullTopic".into()), ("queueId", "0".into())],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    let first_store: i64 = r.ext["timestamp"].parse().unwrap();
    assert_eq!(first_store, recs[0].store_timestamp);
    let r = c
        .call(
            request(
                29,
                &[
                    ("topic", "PullTopic".into()),
                    ("queueId", "0".into()),
                    ("timestamp", (recs[9].store_timestamp + 1).to_string()),
                ],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        r.ext["offset"], "10",
        "LOWER: first offset stored at or after the time"
    );
}

#[actix_rt::test]
async fn auto_create_batch_and_long_polling() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    // A send to an unknown topic creates it from TBW102 with the client's 4 queues.
    let r = c
        .call(send_v2("AutoTopic", 3, b"first", ""), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.ext["queueId"], "3");
    let ns = connect(b.namesrv).await;
    let r = ns
        .call(request(105, &[("topic", "AutoTopic".into())]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(json(&r.body)["queueDatas"][0]["writeQueueNums"], 4);

    // A batch: five messages, consecutive offsets, five msgIds.
    let items: Vec<BatchItem> = (0..5)
        .map(|i| BatchItem {
            flag: 0,
            body: bytes::Bytes::from(format!("b{i}")),
            properties: format!("seq\u{1}{i}\u{2}"),
        })
        .collect();
    let mut batch = send_v2("AutoTopic", 1, &encode_batch(&items), "");
    batch.code = 320;
    batch.ext.insert("m", "true");
    let mut to_retry = batch.clone();
    to_retry.ext.insert("b", "%RETRY%G");
    let r = c.call(batch, TIMEOUT).await.unwrap();
    assert_eq!(r.ext["msgId"].split(',').count(), 5);
    assert_eq!(r.ext["queueOffset"], "0");
    // Retry topics take no batches (a rule of the broker, not of the wire).
    let r = c.request(to_retry, TIMEOUT).await.unwrap();
    assert_eq!(r.code, 13, "{:?}", r.remark);
    assert!(r.remark.unwrap_or_default().contains("retry group"));
    let r = c
        .request(
            pull_req("G", "AutoTopic", 1, 0, 32, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    let recs = records(&r.body);
    assert_eq!(
        recs.iter().map(|r| r.body.clone()).collect::<Vec<_>>(),
        (0..5)
            .map(|i| bytes::Bytes::from(format!("b{i}")))
            .collect::<Vec<_>>()
    );

    // Long polling: a pull at the head is held, then answered when a message arrives.
    let waiter = c.clone();
    let started = Instant::now();
    let held = tokio::spawn(async move {
        waiter
            .request(
                pull_req("G", "AutoTopic", 2, 0, 32, Some(5000), Some("*")),
                Duration::from_secs(20),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.call(send_v2("AutoTopic", 2, b"wake", ""), TIMEOUT)
        .await
        .unwrap();
    let r = held.await.unwrap().unwrap();
    assert_eq!(r.code, 0);
    assert_eq!(&records(&r.body)[0].body[..], b"wake");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "woken by the arrival, not the hold time"
    );
    // Nothing arrives: answered PULL_NOT_FOUND when the hold ends.
    let started = Instant::now();
    let r = c
        .request(
            pull_req("G", "AutoTopic", 3, 1, 32, Some(700), Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 19);
    assert!(started.elapsed() >= Duration::from_millis(650));
}

#[actix_rt::test]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "BadTopic", 1).await;
    // Oversized body: MESSAGE_ILLEGAL with a remark, and the connection keeps working.
    let big = vec![b'x'; 4 * 1024 * 1024 + 1];
    let r = c
        .request(send_v2("BadTopic", 0, &big, ""), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 13);
    assert!(r.remark.unwrap_or_default().contains("body size"));
    // Oversized properties.
    let r = c
        .request(send_v2("BadTopic", 0, b"x", &"p".repeat(40_000)), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 13);
    // Unknown request code.
    let r = c.request(request(9999, &[]), TIMEOUT).await.unwrap();
    assert_eq!(r.code, 3);
    assert!(r.remark.unwrap_or_default().contains("9999"));
    // A missing required field.
    let r = c
        .request(request(11, &[("topic", "BadTopic".into())]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 1);
    assert!(r.remark.unwrap_or_default().contains("consumerGroup"));
    // A bad topic name.
    let r = c
        .request(send_v2("bad topic", 0, b"x", ""), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 13);
    // Oneway requests get no answer, but are still processed.
    c.oneway(send_v2("BadTopic", 0, b"oneway", "")).unwrap();
    let r = c
        .call(send_v2("BadTopic", 0, b"after", ""), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.ext["queueOffset"], "1");

    // A malformed frame closes only its own connection.
    let evil = connect(b.broker).await;
    let mut frame = bytes::BytesMut::new();
    frame.extend_from_slice(&20u32.to_be_bytes());
    frame.extend_from_slice(&100u32.to_be_bytes());
    frame.extend_from_slice(&[0u8; 16]);
    evil.send_raw(frame.freeze()).unwrap();
    let r = evil
        .request(
            request(30, &[("topic", "BadTopic".into()), ("queueId", "0".into())]),
            Duration::from_secs(2),
        )
        .await;
    assert!(r.is_err(), "the bad connection is closed");
    let r = c
        .call(
            request(30, &[("topic", "BadTopic".into()), ("queueId", "0".into())]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        r.ext["offset"], "2",
        "nothing lost, other connections unaffected"
    );
}

fn heartbeat(
    client_id: &str,
    group: &str,
    topic: &str,
) -> rocktor::remoting::command::RemotingCommand {
    subscribe_req(client_id, group, topic, "*")
}

#[actix_rt::test]
async fn membership_offsets_and_graceful_restart() {
    let mut b = BrokerProc::start("async");
    let c1 = connect(b.broker).await;
    let (c2, mut c2_requests) = rocktor::client::RemotingClient::connect(b.broker)
        .await
        .unwrap();
    create_topic(&c1, "GroupTopic", 2).await;
    c1.call(send_v2("GroupTopic", 0, b"x", ""), TIMEOUT)
        .await
        .unwrap();
    c2.call(heartbeat("client-2", "G1", "GroupTopic"), TIMEOUT)
        .await
        .unwrap();
    c1.call(heartbeat("client-1", "G1", "GroupTopic"), TIMEOUT)
        .await
        .unwrap();
    // The earlier member is told to rebalance.
    let notice = tokio::time::timeout(TIMEOUT, c2_requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notice.code, 40);
    assert_eq!(notice.ext["consumerGroup"], "G1");
    let r = c1
        .call(request(38, &[("consumerGroup", "G1".into())]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        json(&r.body)["consumerIdList"],
        serde_json::json!(["client-1", "client-2"])
    );
    // The retry topic exists after the heartbeat.
    let ns = connect(b.namesrv).await;
    ns.call(request(105, &[("topic", "%RETRY%G1".into())]), TIMEOUT)
        .await
        .unwrap();
    // Pull without its own subscription uses the heartbeat's.
    let r = c1
        .request(pull_req("G1", "GroupTopic", 0, 0, 32, None, None), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    let r = c1
        .request(pull_req("G2", "GroupTopic", 0, 0, 32, None, None), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 24, "no subscription registered for that group");
    // A new group at a queue that starts at 0 gets offset 0 (Apache's rule).
    let q = |g: &str| {
        request(
            14,
            &[
                ("consumerGroup", g.into()),
                ("topic", "GroupTopic".into()),
                ("queueId", "0".into()),
            ],
        )
    };
    assert_eq!(c1.call(q("G1"), TIMEOUT).await.unwrap().ext["offset"], "0");
    c1.call(commit_offset_req("G1", "GroupTopic", 0, 1), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(c1.call(q("G1"), TIMEOUT).await.unwrap().ext["offset"], "1");
    // Closing a connection drops its members at once.
    drop(c2);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = c1
            .call(request(38, &[("consumerGroup", "G1".into())]), TIMEOUT)
            .await
            .unwrap();
        if json(&r.body)["consumerIdList"] == serde_json::json!(["client-1"]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member of a closed connection still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGTERM: exit 0, offsets flushed, everything back after the restart.
    let status = b.terminate();
    assert!(
        status.success(),
        "graceful stop exits 0: {status}\n{}",
        b.log()
    );
    b.restart();
    let c = connect(b.broker).await;
    assert_eq!(c.call(q("G1"), TIMEOUT).await.unwrap().ext["offset"], "1");
    let r = c
        .call(
            request(
                30,
                &[("topic", "GroupTopic".into()), ("queueId", "0".into())],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.ext["offset"], "1");
}

#[actix_rt::test]
async fn sync_flush_keeps_every_acknowledged_message_through_kill9() {
    let mut b = BrokerProc::start("sync");
    let c = connect(b.broker).await;
    create_topic(&c, "DurableTopic", 4).await;
    // Pipelined sends: many in flight at once, so group commit is exercised.
    let mut tasks = Vec::new();
    for i in 0..800u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.call(
                send_v2(
                    "DurableTopic",
                    (i % 4) as i32,
                    format!("d{i}").as_bytes(),
                    "",
                ),
                TIMEOUT,
            )
            .await
        }));
    }
    // Where each send result said its message is.
    let mut acked = std::collections::BTreeMap::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap().expect("acknowledged");
        let q: u32 = r.ext["queueId"].parse().unwrap();
        let off: u64 = r.ext["queueOffset"].parse().unwrap();
        assert!(
            acked.insert((q, off), format!("d{i}")).is_none(),
            "two sends acknowledged at {q}/{off}"
        );
    }
    assert_eq!(acked.len(), 800);
    b.kill9_and_restart();
    let c = connect(b.broker).await;
    let mut stored = std::collections::BTreeMap::new();
    let mut bodies = Vec::new();
    for q in 0..4 {
        for rec in pull_all(&c, "G", "DurableTopic", q).await {
            let body = String::from_utf8_lossy(&rec.body).into_owned();
            bodies.push(body.clone());
            stored.insert((q, rec.queue_offset as u64), body);
        }
    }
    // Every acknowledged message is back at the queue and offset its send result named, and
    // nothing is stored twice (duplicates are counted, not hidden in a set).
    assert_eq!(
        stored, acked,
        "every acknowledged message where its send result said"
    );
    let mut sorted = bodies.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), bodies.len(), "duplicates after kill -9");
    assert_eq!(bodies.len(), 800);
}

#[actix_rt::test]
async fn real_cpp_client_produces_and_push_consumes() {
    let Some(py) = python_client() else {
        panic!("PyPI rocketmq 0.4.4 is not installed: run scripts/test (it sets up ~/.cache/rocktor-test-clients/py) or set ROCKTOR_PYTHON");
    };
    let b = BrokerProc::start("async");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/pyclient.py");
    let ns = b.namesrv.to_string();
    let run = |args: Vec<String>| {
        let py = py.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(py)
                    .arg(script)
                    .args(args)
                    .output()
            })
            .await
            .unwrap()
            .unwrap()
        }
    };
    // Auto-created topic (TBW102 flow), 40 sync sends with tags, keys and a property.
    let out = run(vec![
        "produce".into(),
        ns.clone(),
        "PyTopic".into(),
        "40".into(),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "producer failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sent.len(), 40);
    // A new push consumer group reads them all from the start, with tags, keys, properties.
    let out = run(vec![
        "push".into(),
        ns.clone(),
        "PyTopic".into(),
        "CG_py".into(),
        "40".into(),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "consumer failed: {text}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    let got: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 40);
    for g in &got {
        let i: usize = g["seq"].as_str().unwrap().parse().unwrap();
        assert_eq!(g["body"], format!("body-{i}"));
        assert_eq!(g["keys"], format!("key-{i}"));
        assert_eq!(g["tags"], if i.is_multiple_of(2) { "TagA" } else { "TagB" });
    }
    // A tag-filtered group sees only TagA.
    let out = run(vec![
        "push".into(),
        ns,
        "PyTopic".into(),
        "CG_py_tags".into(),
        "20".into(),
        "TagA".into(),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tag consumer failed: {text}");
    let got: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|g| g["tags"] == "TagA"));
}

/// Pulls queue 0 of `topic` from `offset` until something arrives or `within` passes.
async fn pull_until_found(
    c: &rocktor::client::RemotingClient,
    topic: &str,
    offset: u64,
    within: Duration,
) -> Vec<rocktor_storage::record::Record> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let r = c
            .request(
                pull_req("G", topic, 0, offset, 32, Some(500), Some("*")),
                TIMEOUT,
            )
            .await
            .unwrap();
        if r.code == 0 {
            return records(&r.body);
        }
    }
    Vec::new()
}

#[actix_rt::test]
async fn delayed_messages_wait_their_time_and_survive_kill9() {
    let mut b = BrokerProc::start("sync");
    let c = connect(b.broker).await;
    create_topic(&c, "DelayTopic", 1).await;
    // Delay level 2 = 5 s; and an absolute start-deliver time 1.5 s ahead.
    let sent = Instant::now();
    c.call(
        send_v2("DelayTopic", 0, b"level2", "DELAY\u{1}2\u{2}"),
        TIMEOUT,
    )
    .await
    .unwrap();
    let at = rocktor_actors::now_ms() + 1500;
    c.call(
        send_v2(
            "DelayTopic",
            0,
            b"at",
            &format!("__STARTDELIVERTIME\u{1}{at}\u{2}"),
        ),
        TIMEOUT,
    )
    .await
    .unwrap();
    let r = c
        .request(
            pull_req("G", "DelayTopic", 0, 0, 32, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 19, "nothing is visible before its time");
    let first = pull_until_found(&c, "DelayTopic", 0, Duration::from_secs(5)).await;
    assert_eq!(&first[0].body[..], b"at");
    assert!(sent.elapsed() >= Duration::from_millis(1400));
    // Crash before level 2 is due: the pending message is delivered after the restart.
    b.kill9_and_restart();
    let c = connect(b.broker).await;
    let second = pull_until_found(&c, "DelayTopic", 1, Duration::from_secs(10)).await;
    assert_eq!(&second[0].body[..], b"level2");
    assert!(sent.elapsed() >= Duration::from_millis(4900));
    assert_eq!(
        properties::get(&second[0].properties, "DELAY"),
        None,
        "DELAY is removed on delivery"
    );
}

#[actix_rt::test]
async fn send_back_retries_then_dead_letters() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "RetryTopic", 1).await;
    c.call(
        send_v2(
            "RetryTopic",
            0,
            b"fails",
            "TAGS\u{1}T\u{2}origin\u{1}x\u{2}",
        ),
        TIMEOUT,
    )
    .await
    .unwrap();
    let r = c
        .request(
            pull_req("G", "RetryTopic", 0, 0, 32, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    let orig = &records(&r.body)[0];
    let back = |offset: i64, level: i32| {
        request(
            36,
            &[
                ("offset", offset.to_string()),
                ("group", "CG_R".into()),
                ("delayLevel", level.to_string()),
                ("originMsgId", "ORIG".into()),
                ("maxReconsumeTimes", "1".into()),
            ],
        )
    };
    // Level 1 (1 s) instead of the default back-off, to keep the test short.
    c.call(back(orig.physical_offset, 1), TIMEOUT)
        .await
        .unwrap();
    let retried = pull_until_found(&c, "%RETRY%CG_R", 0, Duration::from_secs(5)).await;
    let r1 = &retried[0];
    assert_eq!(&r1.body[..], b"fails");
    assert_eq!(r1.reconsume_times, 1);
    assert_eq!(
        properties::get(&r1.properties, "RETRY_TOPIC"),
        Some("RetryTopic")
    );
    assert_eq!(
        properties::get(&r1.properties, "ORIGIN_MESSAGE_ID"),
        Some("ORIG")
    );
    assert_eq!(properties::get(&r1.properties, "origin"), Some("x"));
    // At the limit: straight to the dead-letter queue, created on demand with one queue.
    c.call(back(r1.physical_offset, 0), TIMEOUT).await.unwrap();
    let dlq = pull_until_found(&c, "%DLQ%CG_R", 0, Duration::from_secs(5)).await;
    assert_eq!(&dlq[0].body[..], b"fails");
    assert_eq!(
        properties::get(&dlq[0].properties, "DLQ_ORIGIN_TOPIC"),
        Some("RetryTopic")
    );
    let ns = connect(b.namesrv).await;
    let r = ns
        .call(request(105, &[("topic", "%DLQ%CG_R".into())]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(json(&r.body)["queueDatas"][0]["writeQueueNums"], 1);
    // An unknown offset is a clear error.
    let r = c.request(back(999_999, 0), TIMEOUT).await.unwrap();
    assert_ne!(r.code, 0);
}

#[actix_rt::test]
async fn sql92_filters_on_the_broker_and_rejects_bad_expressions() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "SqlTopic", 1).await;
    for i in 0..10 {
        let props = format!(
            "a\u{1}{i}\u{2}b\u{1}{}\u{2}",
            if i % 2 == 0 { "x" } else { "y" }
        );
        c.call(
            send_v2("SqlTopic", 0, format!("s{i}").as_bytes(), &props),
            TIMEOUT,
        )
        .await
        .unwrap();
    }
    let sql_pull = |expr: &str| {
        let mut r = pull_req("G", "SqlTopic", 0, 0, 32, None, Some(expr));
        r.ext.insert("expressionType", "SQL92");
        r
    };
    let r = c
        .request(sql_pull("a > 5 AND b = 'x'"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    let bodies: Vec<_> = records(&r.body).iter().map(|r| r.body.clone()).collect();
    assert_eq!(
        bodies,
        vec![bytes::Bytes::from("s6"), bytes::Bytes::from("s8")]
    );
    assert_eq!(r.ext["nextBeginOffset"], "10");
    // A bad expression: SUBSCRIPTION_PARSE_FAILED, and the remark says where.
    let r = c.request(sql_pull("a > AND"), TIMEOUT).await.unwrap();
    assert_eq!(r.code, 23);
    assert!(
        r.remark.clone().unwrap_or_default().contains("column 5"),
        "{:?}",
        r.remark
    );
    let check = |expr: &str| {
        let body = serde_json::json!({"clientId": "c", "group": "G",
            "subscriptionData": {"topic": "SqlTopic", "subString": expr, "expressionType": "SQL92"}});
        request(46, &[]).with_body(body.to_string().into_bytes())
    };
    assert_eq!(
        c.request(check("a BETWEEN 1 AND 3"), TIMEOUT)
            .await
            .unwrap()
            .code,
        0
    );
    assert_eq!(
        c.request(check("a BETWEEN 1 OR 3"), TIMEOUT)
            .await
            .unwrap()
            .code,
        23
    );
}

#[actix_rt::test]
async fn reset_offsets_by_time_with_a_consumer_online() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    let (member, mut member_requests) = rocktor::client::RemotingClient::connect(b.broker)
        .await
        .unwrap();
    create_topic(&c, "ResetTopic", 1).await;
    for i in 0..10 {
        c.call(
            send_v2("ResetTopic", 0, format!("r{i}").as_bytes(), ""),
            TIMEOUT,
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = c
        .request(
            pull_req("G", "ResetTopic", 0, 0, 32, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    let recs = records(&r.body);
    member
        .call(heartbeat("online-1", "CG_Reset", "ResetTopic"), TIMEOUT)
        .await
        .unwrap();
    let commit = |o: i64| {
        request(
            15,
            &[
                ("consumerGroup", "CG_Reset".into()),
                ("topic", "ResetTopic".into()),
                ("queueId", "0".into()),
                ("commitOffset", o.to_string()),
            ],
        )
    };
    c.call(commit(10), TIMEOUT).await.unwrap();
    // Rewind to the store time of message 5.
    let reset = |ts: i64| {
        request(
            222,
            &[
                ("group", "CG_Reset".into()),
                ("topic", "ResetTopic".into()),
                ("timestamp", ts.to_string()),
                ("isForce", "true".into()),
            ],
        )
    };
    let r = c
        .call(reset(recs[5].store_timestamp), TIMEOUT)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        body.contains("\"queueId\":0,\"topic\":\"ResetTopic\"}:5"),
        "{body}"
    );
    // The online member is told, with the same offset table.
    let pushed = loop {
        let cmd = tokio::time::timeout(TIMEOUT, member_requests.recv())
            .await
            .unwrap()
            .unwrap();
        if cmd.code == 220 {
            break cmd;
        }
    };
    assert_eq!(pushed.ext["group"], "CG_Reset");
    assert!(String::from_utf8_lossy(&pushed.body).contains("}:5"));
    let q = request(
        14,
        &[
            ("consumerGroup", "CG_Reset".into()),
            ("topic", "ResetTopic".into()),
            ("queueId", "0".into()),
        ],
    );
    assert_eq!(c.call(q.clone(), TIMEOUT).await.unwrap().ext["offset"], "5");
    // Offline too: after the member leaves, a reset to the end (-1) commits the max offset.
    drop(member);
    c.call(reset(-1), TIMEOUT).await.unwrap();
    assert_eq!(c.call(q, TIMEOUT).await.unwrap().ext["offset"], "10");
}

#[actix_rt::test]
async fn dead_letters_are_listed_and_resent_to_the_retry_topic() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "DlqTopic", 1).await;
    c.call(heartbeat("m1", "CG_D", "DlqTopic"), TIMEOUT)
        .await
        .unwrap();
    c.call(
        send_v2("DlqTopic", 0, b"poison", "TAGS\u{1}T\u{2}k\u{1}v\u{2}"),
        TIMEOUT,
    )
    .await
    .unwrap();
    let r = c
        .request(
            pull_req("G", "DlqTopic", 0, 0, 32, None, Some("*")),
            TIMEOUT,
        )
        .await
        .unwrap();
    let rec = &records(&r.body)[0];
    // delayLevel -1: straight to the dead-letter queue.
    let back = request(
        36,
        &[
            ("offset", rec.physical_offset.to_string()),
            ("group", "CG_D".into()),
            ("delayLevel", "-1".into()),
        ],
    );
    c.call(back, TIMEOUT).await.unwrap();
    let http = b.http;
    let (status, body) = tokio::task::spawn_blocking(move || {
        support::http(http, "GET", "/api/v1/groups/CG_D/dlq?from=0", None)
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["body"], "poison");
    assert_eq!(msgs[0]["originTopic"], "DlqTopic");
    assert_eq!(msgs[0]["properties"]["k"], "v");
    // A time range that excludes it lists nothing.
    let (_, body) = tokio::task::spawn_blocking(move || {
        support::http(http, "GET", "/api/v1/groups/CG_D/dlq?from=0&to=1", None)
    })
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["messages"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Re-send: back in %RETRY%CG_D with a fresh retry budget and its properties.
    let (status, body) = tokio::task::spawn_blocking(move || {
        support::http(
            http,
            "POST",
            "/api/v1/groups/CG_D/dlq/resend",
            Some(r#"{"offsets":[0]}"#),
        )
    })
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"resent":1}"#));
    let retried = pull_until_found(&c, "%RETRY%CG_D", 0, Duration::from_secs(5)).await;
    assert_eq!(&retried[0].body[..], b"poison");
    assert_eq!(retried[0].reconsume_times, 0);
    assert_eq!(
        properties::get(&retried[0].properties, "RETRY_TOPIC"),
        Some("DlqTopic")
    );
    assert_eq!(properties::get(&retried[0].properties, "k"), Some("v"));
    // Unknown group: a clear 404.
    let (status, _) = tokio::task::spawn_blocking(move || {
        support::http(
            http,
            "POST",
            "/api/v1/groups/Nobody/dlq/resend",
            Some(r#"{"offsets":[0]}"#),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 404);
}

#[actix_rt::test]
async fn members_that_disagree_on_subscriptions_are_reported() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "SubTopic", 1).await;
    c.call(heartbeat("m-a", "CG_S", "SubTopic"), TIMEOUT)
        .await
        .unwrap();
    let body = serde_json::json!({
        "clientID": "m-b", "producerDataSet": [],
        "consumerDataSet": [{"groupName": "CG_S", "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{"topic": "SubTopic", "subString": "TagA", "subVersion": 2, "expressionType": "TAG"}]}]
    });
    c.call(
        request(34, &[]).with_body(body.to_string().into_bytes()),
        TIMEOUT,
    )
    .await
    .unwrap();
    let r = c
        .call(request(203, &[("consumerGroup", "CG_S".into())]), TIMEOUT)
        .await
        .unwrap();
    let v = json(&r.body);
    assert_eq!(v["subscriptionConsistent"], false);
    let why = v["subscriptionInconsistencies"][0].as_str().unwrap();
    assert!(
        why.contains("m-b subscribes [SubTopic:TAG:TagA] while m-a subscribes [SubTopic:TAG:*]"),
        "{why}"
    );
    // A consistent group reports no such field.
    c.call(heartbeat("m-c", "CG_OK", "SubTopic"), TIMEOUT)
        .await
        .unwrap();
    let r = c
        .call(request(203, &[("consumerGroup", "CG_OK".into())]), TIMEOUT)
        .await
        .unwrap();
    assert!(json(&r.body).get("subscriptionConsistent").is_none());
}

#[actix_rt::test]
async fn admin_codes_for_producers_consumers_and_group_switches() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    let (member, mut member_requests) = rocktor::client::RemotingClient::connect(b.broker)
        .await
        .unwrap();
    create_topic(&c, "AdmTopic", 2).await;
    c.call(send_v2("AdmTopic", 0, b"a", ""), TIMEOUT)
        .await
        .unwrap();
    // A producer heartbeat, listed by group.
    let hb = serde_json::json!({"clientID": "p-1", "producerDataSet": [{"groupName": "PG_Adm"}, {"groupName": "CLIENT_INNER_PRODUCER"}], "consumerDataSet": []});
    c.call(
        request(34, &[]).with_body(hb.to_string().into_bytes()),
        TIMEOUT,
    )
    .await
    .unwrap();
    let r = c
        .call(request(204, &[("producerGroup", "PG_Adm".into())]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(json(&r.body)["connectionSet"][0]["clientId"], "p-1");
    member
        .call(heartbeat("c-1", "CG_Adm", "AdmTopic"), TIMEOUT)
        .await
        .unwrap();
    c.call(
        request(
            15,
            &[
                ("consumerGroup", "CG_Adm".into()),
                ("topic", "AdmTopic".into()),
                ("queueId", "0".into()),
                ("commitOffset", "1".into()),
            ],
        ),
        TIMEOUT,
    )
    .await
    .unwrap();
    let r = c
        .call(request(300, &[("topic", "AdmTopic".into())]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(json(&r.body)["groupList"], serde_json::json!(["CG_Adm"]));
    let r = c
        .call(request(343, &[("group", "CG_Adm".into())]), TIMEOUT)
        .await
        .unwrap();
    assert!(json(&r.body)["topicList"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "AdmTopic"));
    let r = c
        .call(
            request(
                303,
                &[("topic", "AdmTopic".into()), ("group", "CG_Adm".into())],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    let spans = json(&r.body)["consumeTimeSpanSet"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(spans.len(), 2);
    assert!(spans[0]["minTimeStamp"].as_i64().unwrap() > 0);
    // Consume stats: lag per queue in the fastjson object-key shape.
    let r = c
        .call(request(208, &[("consumerGroup", "CG_Adm".into())]), TIMEOUT)
        .await
        .unwrap();
    let stats = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        stats.contains(
            "\"queueId\":0,\"topic\":\"AdmTopic\"}:{\"brokerOffset\":1,\"consumerOffset\":1"
        ),
        "{stats}"
    );
    // GET_CONSUMER_RUNNING_INFO is forwarded to the client, and its answer comes back.
    let asked = tokio::spawn({
        let c = c.clone();
        async move {
            c.request(
                request(
                    307,
                    &[
                        ("consumerGroup", "CG_Adm".into()),
                        ("clientId", "c-1".into()),
                    ],
                ),
                TIMEOUT,
            )
            .await
        }
    });
    let fwd = loop {
        let cmd = tokio::time::timeout(TIMEOUT, member_requests.recv())
            .await
            .unwrap()
            .unwrap();
        if cmd.code == 307 {
            break cmd;
        }
    };
    let mut answer = rocktor::remoting::command::RemotingCommand::response_to(&fwd, 0)
        .with_body(&b"{\"running\":true}"[..]);
    answer.serialize_type = rocktor::remoting::command::SerializeType::Json;
    let mut frame = bytes::BytesMut::new();
    answer.encode(&mut frame);
    member.send_raw(frame.freeze()).unwrap();
    let r = asked.await.unwrap().unwrap();
    assert_eq!((r.code, &r.body[..]), (0, &b"{\"running\":true}"[..]));
    // consumeEnable=false: pulls get NO_PERMISSION; consumeBroadcastEnable=false refuses broadcasting.
    let group_cfg = |name: &str, consume: bool, broadcast: bool| {
        let body = serde_json::json!({"groupName": name, "consumeEnable": consume, "consumeBroadcastEnable": broadcast});
        request(200, &[]).with_body(body.to_string().into_bytes())
    };
    c.call(group_cfg("CG_Adm", false, true), TIMEOUT)
        .await
        .unwrap();
    let r = c
        .request(
            pull_req("CG_Adm", "AdmTopic", 0, 0, 32, None, None),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 16);
    c.call(group_cfg("CG_Bc", true, false), TIMEOUT)
        .await
        .unwrap();
    let bc = serde_json::json!({"clientID": "b-1", "producerDataSet": [], "consumerDataSet": [{"groupName": "CG_Bc",
        "consumeType": "CONSUME_PASSIVELY", "messageModel": "BROADCASTING", "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
        "subscriptionDataSet": [{"topic": "AdmTopic", "subString": "*", "subVersion": 1}]}]});
    c.call(
        request(34, &[]).with_body(bc.to_string().into_bytes()),
        TIMEOUT,
    )
    .await
    .unwrap();
    let r = c
        .request(pull_req("CG_Bc", "AdmTopic", 0, 0, 32, None, None), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 16);
}

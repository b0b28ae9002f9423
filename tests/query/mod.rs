//! Message query (issue #10): QUERY_MESSAGE by key and by unique key, VIEW_MESSAGE_BY_ID by
//! commit-log offset, on messages a real client (rocketmq-client-rust) sent.

use crate::support::*;
use rocktor::client::request;
use rocktor::remoting::command::RemotingCommand;
use rocktor_storage::properties;

fn query_req(topic: &str, key: &str, unique: bool, max: u32) -> RemotingCommand {
    request(
        12,
        &[
            ("topic", topic.into()),
            ("key", key.into()),
            ("maxNum", max.to_string()),
            ("beginTimestamp", "0".into()),
            ("endTimestamp", i64::MAX.to_string()),
            ("_UNIQUE_KEY_QUERY", unique.to_string()),
        ],
    )
}

fn bodies(body: &bytes::Bytes) -> Vec<String> {
    records(body)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect()
}

#[actix_rt::test]
async fn query_by_key_unique_key_and_offset() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "QueryT", 2).await;
    let ns = b.namesrv.to_string();
    // Three messages share the key "shared"; each has a key of its own too.
    let mut sent = Vec::new();
    for i in 0..3 {
        let prefix = format!("q{i}");
        let keys = format!("own-{i} shared");
        let recs = run_rs(&[
            "produce",
            "--namesrv",
            &ns,
            "--topic",
            "QueryT",
            "--count",
            "1",
            "--keys",
            "1",
            "--prefix",
            &prefix,
            "--msg-keys",
            &keys,
        ]);
        sent.push(sent_id(&recs));
    }
    let r = c
        .request(query_req("QueryT", "own-1", false, 64), TIMEOUT)
        .await
        .unwrap();
    let stored: Vec<String> = pull_all(&c, "G", "QueryT", 0)
        .await
        .iter()
        .map(|r| r.properties.replace(['\u{1}', '\u{2}'], "|"))
        .collect();
    assert_eq!(r.code, 0, "{:?}: {stored:?}", r.remark);
    assert_eq!(bodies(&r.body), ["q1-0-0"]);
    let r = c
        .request(query_req("QueryT", "shared", false, 64), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        bodies(&r.body),
        ["q2-0-0", "q1-0-0", "q0-0-0"],
        "newest first"
    );
    let r = c
        .request(query_req("QueryT", "shared", false, 2), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(bodies(&r.body), ["q2-0-0", "q1-0-0"], "maxNum");
    // Key tokens match whole; another topic's keys are not this topic's.
    let r = c
        .request(query_req("QueryT", "own", false, 64), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 22, "QUERY_NOT_FOUND");
    create_topic(&c, "QueryOther", 1).await;
    let r = c
        .request(query_req("QueryOther", "shared", false, 64), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 22);
    // By unique key (and a unique key is not a KEYS token).
    let r = c
        .request(query_req("QueryT", &sent[2], true, 32), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    let found = records(&r.body);
    assert_eq!(found.len(), 1);
    assert_eq!(
        properties::get(&found[0].properties, "UNIQ_KEY"),
        Some(sent[2].as_str())
    );
    let r = c
        .request(query_req("QueryT", &sent[2], false, 32), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 22);
    // By commit-log offset (what an offset msgId decodes to).
    let seq = found[0].physical_offset;
    let view = |offset: String| request(33, &[("offset", offset), ("topic", "QueryT".into())]);
    let r = c.request(view(seq.to_string()), TIMEOUT).await.unwrap();
    assert_eq!(r.code, 0);
    let viewed = records(&r.body);
    assert_eq!(viewed.len(), 1);
    assert_eq!(&viewed[0].body[..], b"q2-0-0");
    assert_eq!(viewed[0].queue_offset, found[0].queue_offset);
    let r = c.request(view("987654321".into()), TIMEOUT).await.unwrap();
    assert_eq!(r.code, 1, "an offset with no message");
    let r = c.request(view("-5".into()), TIMEOUT).await.unwrap();
    assert_ne!(r.code, 0);
    // A time window before the messages were stored finds nothing.
    let mut early = query_req("QueryT", "shared", false, 64);
    early.ext.insert("endTimestamp", "1000");
    let r = c.request(early, TIMEOUT).await.unwrap();
    assert_eq!(r.code, 22);
}

/// The admin tool's paths: crates.io rocketmq-admin-cli 1.0 finds a message by key, by unique
/// key and by offset msgId, and prints its trace (queryMsgTraceById reads the trace topic).
#[actix_rt::test]
async fn admin_cli_queries_and_traces() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "AdminQ", 2).await;
    let ns = b.namesrv.to_string();
    let sent = run_rs(&[
        "produce",
        "--namesrv",
        &ns,
        "--topic",
        "AdminQ",
        "--count",
        "1",
        "--keys",
        "1",
        "--msg-keys",
        "adm-key-1",
        "--trace",
        "1",
    ]);
    let id = sent_id(&sent);
    run_rs(&[
        "consume",
        "--namesrv",
        &ns,
        "--topic",
        "AdminQ",
        "--group",
        "CG_Admin",
        "--expect",
        "1",
        "--timeout",
        "30",
        "--trace",
        "1",
    ]);
    let by_key = run_admin(
        b.namesrv,
        &[
            "message",
            "queryMsgByKey",
            "-t",
            "AdminQ",
            "-k",
            "adm-key-1",
        ],
    );
    assert!(by_key.contains("adm-key-1"), "{by_key}");
    let row = by_key
        .lines()
        .find(|l| l.contains("adm-key-1") && !l.trim_start().starts_with('#'))
        .expect("a row for the key");
    let offset_id = row
        .split_whitespace()
        .next()
        .expect("a message id")
        .to_string();
    let by_uniq = run_admin(
        b.namesrv,
        &["message", "queryMsgByUniqueKey", "-t", "AdminQ", "-i", &id],
    );
    assert!(
        by_uniq.contains("Keys:") && by_uniq.contains("adm-key-1"),
        "{by_uniq}"
    );
    let by_id = run_admin(
        b.namesrv,
        &["message", "queryMsgById", "-t", "AdminQ", "-i", &offset_id],
    );
    assert!(by_id.contains("adm-key-1"), "{by_id}");
    // Trace records reach the trace topic in batches: look until the consumer's are there.
    let mut trace = String::new();
    for _ in 0..30 {
        trace = run_admin(b.namesrv, &["message", "queryMsgTraceById", "-i", &id]);
        if trace.contains("SubAfter") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(
        trace.contains("Pub") && trace.contains("PG_AdminQ"),
        "{trace}"
    );
    assert!(
        trace.contains("SubAfter") && trace.contains("CG_Admin"),
        "{trace}"
    );
    let none = run_admin(
        b.namesrv,
        &[
            "message",
            "queryMsgByKey",
            "-t",
            "AdminQ",
            "-k",
            "no-such-key",
        ],
    );
    assert!(!none.contains("adm-key-1"), "{none}");
}

/// Delivery status per group (`GET /api/topics/{topic}/messages/{id}/delivery`): consumed, not
/// yet consumed, filtered out by tag, dead-lettered, and a group with no client online.
#[actix_rt::test]
async fn delivery_status_per_group() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "DelT", 1).await;
    let mut ids = Vec::new();
    for (i, tag) in ["TagA", "TagB"].iter().enumerate() {
        let r = c
            .request(
                send_v2(
                    "DelT",
                    0,
                    format!("m{i}").as_bytes(),
                    &format!("TAGS\u{1}{tag}\u{2}"),
                ),
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(r.code, 0);
        ids.push((
            r.ext["msgId"].to_string(),
            r.ext["transactionId"].to_string(),
        ));
    }
    for (client, group, expr) in [
        ("c-all", "G_all", "*"),
        ("c-tagb", "G_tagb", "TagB"),
        ("c-dlq", "G_dlq", "*"),
    ] {
        let r = c
            .request(subscribe_req(client, group, "DelT", expr), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(r.code, 0);
    }
    // G_all consumed m0; G_off committed nothing past it and has no client online.
    c.request(commit_offset_req("G_all", "DelT", 0, 1), TIMEOUT)
        .await
        .unwrap();
    c.request(commit_offset_req("G_off", "DelT", 0, 0), TIMEOUT)
        .await
        .unwrap();
    // G_dlq gives m0 back straight to its dead-letter queue.
    let (_, seq0) = rocktor::remoting::message::decode_offset_msg_id(&ids[0].0).expect("msgId");
    let r = c
        .request(
            request(
                36,
                &[
                    ("group", "G_dlq".into()),
                    ("offset", seq0.to_string()),
                    ("delayLevel", "-1".into()),
                    ("originMsgId", ids[0].1.clone()),
                ],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);
    // Offsets reach the group actors asynchronously; the status reads them from there.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = |id: &str| {
        let v = http_json(
            b.http,
            &format!("/api/v1/topics/DelT/messages/{id}/delivery"),
        );
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["group"].as_str().unwrap().to_string(),
                    g["status"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let m0 = status(&ids[0].1);
    let want = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        m0,
        want(&[
            ("G_all", "CONSUMED"),
            ("G_dlq", "IN_DLQ"),
            ("G_off", "CONSUMER_OFFLINE"),
            ("G_tagb", "FILTERED_OUT"),
        ])
    );
    let m1 = status(&ids[1].1);
    assert_eq!(
        m1,
        want(&[
            ("G_all", "NOT_CONSUMED"),
            ("G_dlq", "NOT_CONSUMED"),
            ("G_off", "CONSUMER_OFFLINE"),
            ("G_tagb", "NOT_CONSUMED"),
        ])
    );
    let (code, _) = http(
        b.http,
        "GET",
        "/api/v1/topics/DelT/messages/NOSUCHID/delivery",
        None,
    );
    assert_eq!(code, 404);
}

/// Messages by store-time range (`GET /api/topics/{topic}/messages?begin=&end=&max=`), oldest
/// first across queues.
#[actix_rt::test]
async fn messages_by_store_time() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "TimeT", 2).await;
    let send = |i: usize| send_v2("TimeT", (i % 2) as i32, format!("t{i}").as_bytes(), "");
    for i in 0..3 {
        c.request(send(i), TIMEOUT).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let middle = rocktor_actors::now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    for i in 3..6 {
        c.request(send(i), TIMEOUT).await.unwrap();
    }
    let list = |q: String| {
        let v = http_json(b.http, &format!("/api/v1/topics/TimeT/messages?{q}"));
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["queueId"].as_i64().unwrap() * 100 + m["queueOffset"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    // queue*100 + offset: t0 0/0, t1 1/0, t2 0/1, t3 1/1, t4 0/2, t5 1/2.
    assert_eq!(list(String::new()), [0, 100, 1, 101, 2, 102]);
    assert_eq!(list(format!("begin={middle}")), [101, 2, 102]);
    assert_eq!(list(format!("end={middle}")), [0, 100, 1]);
    assert_eq!(list(format!("begin={middle}&max=2")), [101, 2]);
    let (code, _) = http(b.http, "GET", "/api/v1/topics/NoSuchTopic/messages", None);
    assert_eq!(code, 404);
    let (code, _) = http(
        b.http,
        "GET",
        "/api/v1/topics/TimeT/messages?begin=10&end=5",
        None,
    );
    assert_eq!(code, 400, "a range that ends before it begins");
}

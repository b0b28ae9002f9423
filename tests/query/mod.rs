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
        let s = recs
            .into_iter()
            .find(|r| r["event"] == "sent")
            .expect("a sent record");
        sent.push(s["msg_id"].as_str().expect("a unique key").to_string());
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

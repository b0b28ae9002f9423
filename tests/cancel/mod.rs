//! Scheduled-message cancel (Huawei DMS's `__CANCEL_SCHEDULED_MSG`) and Apache 5.5's
//! RECALL_MESSAGE (issue #9).

use crate::support::*;
use rocktor::client::request;
use std::time::Duration;

fn bodies(recs: &[rocktor_storage::record::Record]) -> Vec<String> {
    recs.iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect()
}

fn produce(ns: &str, prefix: &str, props: &str) -> serde_json::Value {
    let recs = run_rs(&[
        "produce",
        "--namesrv",
        ns,
        "--topic",
        "CancelT",
        "--count",
        "1",
        "--keys",
        "1",
        "--prefix",
        prefix,
        "--props",
        props,
    ]);
    let sent = recs
        .into_iter()
        .find(|r| r["event"] == "sent")
        .expect("a sent record");
    assert_eq!(sent["status"], "SEND_OK", "{sent}");
    sent
}

/// With the Rust client: a cancel before the due time removes the message (and is not
/// delivered itself); a cancel after the due time, or of an unknown id, answers SEND_OK and
/// changes nothing.
#[actix_rt::test]
async fn cancel_before_and_after_the_due_time() {
    let b = BrokerProc::start("sync");
    let c = connect(b.broker).await;
    create_topic(&c, "CancelT", 1).await;
    let ns = b.namesrv.to_string();
    let due = rocktor_actors::now_ms() + 3000;
    let at = format!("__STARTDELIVERTIME={due}");
    let a = produce(&ns, "A", &at);
    produce(&ns, "B", &at);
    let a_id = a["msg_id"].as_str().expect("A's message id");
    produce(
        &ns,
        "CANCEL",
        &format!("{at};__CANCEL_SCHEDULED_MSG={a_id}"),
    );
    produce(
        &ns,
        "UNKNOWN",
        &format!("{at};__CANCEL_SCHEDULED_MSG=0A0B0C0D"),
    );
    assert!(
        pull_all(&c, "G", "CancelT", 0).await.is_empty(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(3800)).await;
    let got = bodies(&pull_all(&c, "G", "CancelT", 0).await);
    assert_eq!(got, ["B-0-0"], "only B, and never a cancel message");
    // After the due time a cancel finds nothing to change.
    let b_id = first_uniq_key(&c).await;
    produce(&ns, "LATE", &format!("{at};__CANCEL_SCHEDULED_MSG={b_id}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bodies(&pull_all(&c, "G", "CancelT", 0).await), ["B-0-0"]);
}

async fn first_uniq_key(c: &rocktor::client::RemotingClient) -> String {
    let recs = pull_all(c, "G", "CancelT", 0).await;
    rocktor_storage::properties::get(&recs[0].properties, "UNIQ_KEY")
        .expect("UNIQ_KEY")
        .to_string()
}

/// RECALL_MESSAGE with the handle a scheduled send answered with: the message is never
/// delivered; a forged handle is refused and a recall after the due time fails.
#[actix_rt::test]
async fn recall_by_handle() {
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "RecallT", 1).await;
    let due = rocktor_actors::now_ms() + 2000;
    let send = |body: &'static [u8]| {
        send_v2(
            "RecallT",
            0,
            body,
            &format!("TIMER_DELIVER_MS\u{1}{due}\u{2}"),
        )
    };
    let r = c.request(send(b"recalled"), TIMEOUT).await.unwrap();
    assert_eq!(r.code, 0);
    let handle = r
        .ext
        .get("recallHandle")
        .expect("a recall handle")
        .to_string();
    let kept = c.request(send(b"kept"), TIMEOUT).await.unwrap();
    let kept_handle = kept.ext.get("recallHandle").unwrap().to_string();
    let recall = |topic: &str, h: &str| {
        request(
            370,
            &[
                ("producerGroup", "PG_test".into()),
                ("topic", topic.into()),
                ("recallHandle", h.into()),
            ],
        )
    };
    let r = c
        .request(recall("RecallT", &handle), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);
    assert!(!r.ext.get("msgId").unwrap_or_default().is_empty());
    for (topic, h) in [
        ("RecallT", "bm90IGEgaGFuZGxl"),
        ("RecallT", "%%%"),
        ("Other", handle.as_str()),
    ] {
        let r = c.request(recall(topic, h), TIMEOUT).await.unwrap();
        assert_ne!(r.code, 0, "{topic} {h}");
    }
    tokio::time::sleep(Duration::from_millis(2800)).await;
    assert_eq!(bodies(&pull_all(&c, "G", "RecallT", 0).await), ["kept"]);
    let late = c
        .request(recall("RecallT", &kept_handle), TIMEOUT)
        .await
        .unwrap();
    assert_ne!(late.code, 0, "a delivered message cannot be recalled");
}

//! The HTTP messaging API (issue #12), driven by the real PyPI `mq-http-sdk` 1.0.3 (through
//! tests/clients/http_sdk.py) and by raw requests for what an SDK never sends: receipt handles
//! forged, stale and used; redelivery after the invisible time; the DLQ after the maximum;
//! ordered consumption; transactions (commit, rollback, the polled check); kill -9 with
//! unacked messages; one protocol per group; messages crossing HTTP and remoting; signatures.

use crate::support::*;
use rocktor_storage::properties;
use serde_json::Value;
use std::time::{Duration, Instant};

fn py() -> std::path::PathBuf {
    python_client().expect("PyPI mq-http-sdk is not installed: run scripts/test (it sets up ~/.cache/rocktor-test-clients/py) or set ROCKTOR_PYTHON")
}

/// Runs the SDK driver; its JSON lines.
fn sdk(b: &BrokerProc, args: &[&str]) -> Vec<Value> {
    sdk_as(b, "ak", "sk", args)
}

fn sdk_as(b: &BrokerProc, ak: &str, sk: &str, args: &[&str]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/http_sdk.py");
    let endpoint = format!("http://{}", b.http);
    let out = std::process::Command::new(py())
        .arg(script)
        .args(args)
        .args(["--endpoint", &endpoint, "--ak", ak, "--sk", sk])
        .output()
        .expect("the HTTP SDK driver runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "http_sdk.py {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn publish(b: &BrokerProc, topic: &str, body: &str, extra: &[&str]) -> Value {
    let mut args = vec!["publish", "--topic", topic, "--body", body];
    args.extend_from_slice(extra);
    let r = sdk(b, &args);
    assert_eq!(r[0]["event"], "published", "{r:?}");
    r[0].clone()
}

/// The messages of one consume, or the SDK's error type ("MessageNotExist", ...).
fn consume(b: &BrokerProc, topic: &str, group: &str, extra: &[&str]) -> Result<Vec<Value>, String> {
    let mut args = vec!["consume", "--topic", topic, "--group", group];
    args.extend_from_slice(extra);
    let r = sdk(b, &args);
    match r.first() {
        Some(v) if v["event"] == "error" => Err(v["type"].as_str().unwrap_or("?").to_string()),
        _ => Ok(r),
    }
}

fn ack(b: &BrokerProc, topic: &str, group: &str, handles: &[&str]) -> Value {
    let mut args = vec!["ack", "--topic", topic, "--group", group];
    args.extend_from_slice(handles);
    sdk(b, &args).remove(0)
}

/// Consumes until `n` messages arrived (or 20 s passed).
fn consume_n(b: &BrokerProc, topic: &str, group: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if let Ok(ms) = consume(b, topic, group, &["--n", "16", "--wait", "2"]) {
            got.extend(ms);
        }
    }
    got
}

fn xml_field<'a>(doc: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    doc.match_indices(&open)
        .filter_map(|(at, _)| {
            let rest = &doc[at + open.len()..];
            rest.find(&close).map(|end| &rest[..end])
        })
        .collect()
}

async fn topic(b: &BrokerProc, name: &str, queues: u32) {
    let c = connect(b.broker).await;
    create_topic(&c, name, queues).await;
}

#[actix_rt::test]
async fn sdk_publish_consume_ack_and_receipt_handles() {
    let b = BrokerProc::start("sync");
    topic(&b, "HttpT", 4).await;
    let bodies = ["plain", "<xml & \"quotes\">", "中文 body"];
    let mut ids = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let key = format!("k{i}");
        let r = publish(
            &b,
            "HttpT",
            body,
            &["--tag", "TagA", "--key", &key, "--prop", "color=red"],
        );
        assert_eq!(r["md5"].as_str().unwrap().len(), 32);
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    let got = consume_n(&b, "HttpT", "HttpG", 3);
    assert_eq!(got.len(), 3, "{got:?}");
    for m in &got {
        let i = ids
            .iter()
            .position(|id| m["id"] == *id)
            .expect("a published id");
        assert_eq!(m["body"], bodies[i]);
        assert_eq!(m["tag"], "TagA");
        assert_eq!(m["key"], format!("k{i}"));
        assert_eq!(m["props"]["color"], "red");
        assert_eq!(m["consumed_times"], 1);
    }
    let handles: Vec<&str> = got.iter().map(|m| m["handle"].as_str().unwrap()).collect();
    // A forged handle and junk fail one by one; the good handle in the same request is acked.
    let forged = "0_0_1_1_0000000000000000";
    let body = format!(
        "<ReceiptHandles><ReceiptHandle>{forged}</ReceiptHandle><ReceiptHandle>junk</ReceiptHandle><ReceiptHandle>{}</ReceiptHandle></ReceiptHandles>",
        handles[0]
    );
    let (status, doc) = http(
        b.http,
        "DELETE",
        "/topics/HttpT/messages?consumer=HttpG",
        Some(&body),
    );
    assert_eq!(status, 404, "{doc}");
    assert_eq!(
        xml_field(&doc, "ErrorCode"),
        ["ReceiptHandleError", "ReceiptHandleError"]
    );
    assert_eq!(xml_field(&doc, "ReceiptHandle"), [forged, "junk"]);
    // Used once: the same handle again has expired.
    let again = ack(&b, "HttpT", "HttpG", &[handles[0]]);
    assert_eq!(again["type"], "MessageNotExist", "{again}");
    // Another group's handle is not this group's.
    let other = ack(&b, "HttpT", "OtherG", &[handles[1]]);
    assert_eq!(other["type"], "ReceiptHandleError", "{other}");
    assert_eq!(ack(&b, "HttpT", "HttpG", &handles[1..])["event"], "acked");
    assert_eq!(
        consume(&b, "HttpT", "HttpG", &["--wait", "1"]).unwrap_err(),
        "MessageNotExist"
    );
    // Bad requests get an error document, not a 500 or a closed connection.
    for (method, path, body, code) in [
        (
            "DELETE",
            "/topics/HttpT/messages?consumer=HttpG",
            "<ReceiptHandles>",
            "MalformedXML",
        ),
        (
            "DELETE",
            "/topics/HttpT/messages?consumer=HttpG",
            "<ReceiptHandles/>",
            "MissingReceiptHandle",
        ),
        (
            "GET",
            "/topics/HttpT/messages?consumer=HttpG&numOfMessages=17",
            "",
            "InvalidArgument",
        ),
        (
            "GET",
            "/topics/HttpT/messages?numOfMessages=1",
            "",
            "InvalidArgument",
        ),
        (
            "GET",
            "/topics/HttpT/messages?consumer=HttpG&numOfMessages=1&waitseconds=31",
            "",
            "InvalidArgument",
        ),
        (
            "GET",
            "/topics/HttpT/messages?consumer=HttpG&numOfMessages=1&trans=bogus",
            "",
            "InvalidArgument",
        ),
        (
            "GET",
            "/topics/NoSuchT/messages?consumer=HttpG&numOfMessages=1",
            "",
            "TopicNotExist",
        ),
        (
            "POST",
            "/topics/HttpT/messages",
            "<Message><MessageBody>x</Message>",
            "MalformedXML",
        ),
        ("POST", "/topics/HttpT/messages", "<Other/>", "MalformedXML"),
    ] {
        let (status, doc) = http(b.http, method, path, Some(body));
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {doc}"
        );
        assert_eq!(
            xml_field(&doc, "Code"),
            [code],
            "{method} {path} {body}: {doc}"
        );
    }
}

#[actix_rt::test]
async fn redelivery_dead_letters_and_unacked_messages_across_kill9() {
    let mut b = BrokerProc::start_with(
        "sync",
        &[
            ("ROCKTOR_HTTP_INVISIBLE_SECS", "2"),
            ("ROCKTOR_HTTP_MAX_DELIVERIES", "2"),
        ],
        None,
    );
    topic(&b, "RedT", 1).await;
    publish(&b, "RedT", "m1", &[]);
    let first = consume(&b, "RedT", "RedG", &["--wait", "3"]).unwrap();
    assert_eq!(first[0]["consumed_times"], 1);
    let next = first[0]["next_consume_time"].as_i64().unwrap();
    let at = first[0]["first_consume_time"].as_i64().unwrap();
    assert!((1900..=2100).contains(&(next - at)), "{first:?}");
    // Invisible until its time is up.
    assert_eq!(
        consume(&b, "RedT", "RedG", &[]).unwrap_err(),
        "MessageNotExist"
    );
    std::thread::sleep(Duration::from_millis(2200));
    let second = consume(&b, "RedT", "RedG", &["--wait", "3"]).unwrap();
    assert_eq!(second[0]["id"], first[0]["id"]);
    assert_eq!(second[0]["consumed_times"], 2);
    assert_ne!(second[0]["handle"], first[0]["handle"]);
    // The first delivery's handle is stale now.
    let stale = ack(&b, "RedT", "RedG", &[first[0]["handle"].as_str().unwrap()]);
    assert_eq!(stale["type"], "MessageNotExist", "{stale}");
    // Its second delivery was the last: next it goes to %DLQ%RedG.
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(
        consume(&b, "RedT", "RedG", &["--wait", "2"]).unwrap_err(),
        "MessageNotExist"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dlq = http_json(b.http, "/api/v1/groups/RedG/dlq");
        let bodies: Vec<_> = dlq["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].clone())
            .collect();
        if bodies == [Value::from("m1")] {
            break;
        }
        assert!(Instant::now() < deadline, "not in the DLQ: {dlq}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Acked survives kill -9 as acked; unacked comes back.
    publish(&b, "RedT", "a1", &[]);
    publish(&b, "RedT", "a2", &[]);
    let got = consume_n(&b, "RedT", "RedG", 2);
    assert_eq!(got.len(), 2, "{got:?}");
    let a1 = got.iter().find(|m| m["body"] == "a1").unwrap();
    assert_eq!(
        ack(&b, "RedT", "RedG", &[a1["handle"].as_str().unwrap()])["event"],
        "acked"
    );
    b.kill9_and_restart();
    std::thread::sleep(Duration::from_millis(2200));
    let again = consume_n(&b, "RedT", "RedG", 1);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["body"], "a2");
    assert_eq!(again[0]["consumed_times"], 2);
    assert_eq!(
        ack(&b, "RedT", "RedG", &[again[0]["handle"].as_str().unwrap()])["event"],
        "acked"
    );
    assert_eq!(
        consume(&b, "RedT", "RedG", &["--wait", "3"]).unwrap_err(),
        "MessageNotExist"
    );
}

#[actix_rt::test]
async fn ordered_consumption_waits_for_the_previous_batch() {
    let b = BrokerProc::start("async");
    topic(&b, "OrdT", 4).await;
    for i in 0..4 {
        publish(&b, "OrdT", &format!("o{i}"), &["--sharding-key", "order-1"]);
    }
    let mut seen = Vec::new();
    for i in 0..4 {
        let batch = consume(&b, "OrdT", "OrdG", &["--order", "--n", "1", "--wait", "3"]).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0]["body"], format!("o{i}"));
        assert_eq!(batch[0]["props"]["__SHARDINGKEY"], "order-1");
        // The partition is held until this batch is acked.
        assert_eq!(
            consume(&b, "OrdT", "OrdG", &["--order", "--n", "1"]).unwrap_err(),
            "MessageNotExist"
        );
        assert_eq!(
            ack(&b, "OrdT", "OrdG", &[batch[0]["handle"].as_str().unwrap()])["event"],
            "acked"
        );
        seen.push(batch[0]["body"].clone());
    }
    assert_eq!(seen, ["o0", "o1", "o2", "o3"]);
}

#[actix_rt::test]
async fn transactions_commit_rollback_and_the_polled_check() {
    let b = BrokerProc::start("sync");
    topic(&b, "TxT", 2).await;
    let trans = ["--trans-check", "10", "--group", "GID_TX"];
    let commit_me = publish(&b, "TxT", "commit-me", &trans);
    let rollback_me = publish(&b, "TxT", "rollback-me", &trans);
    let check_me = publish(&b, "TxT", "check-me", &trans);
    let published = Instant::now();
    for (p, what) in [(&commit_me, "commit"), (&rollback_me, "rollback")] {
        let h = p["handle"].as_str().unwrap();
        assert!(!h.is_empty(), "{p}");
        let r = sdk(&b, &[what, "--topic", "TxT", "--group", "GID_TX", h]);
        assert_eq!(r[0]["event"], what, "{r:?}");
    }
    let got = consume_n(&b, "TxT", "TxG", 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"], "commit-me");
    assert_eq!(got[0]["id"], commit_me["id"]);
    // Not due for its check before __TransCheckT.
    let early = sdk(&b, &["half", "--topic", "TxT", "--group", "GID_TX"]);
    assert_eq!(early[0]["type"], "MessageNotExist", "{early:?}");
    std::thread::sleep(Duration::from_secs(10).saturating_sub(published.elapsed()));
    let half = sdk(
        &b,
        &["half", "--topic", "TxT", "--group", "GID_TX", "--wait", "5"],
    );
    assert_eq!(half.len(), 1, "{half:?}");
    assert_eq!(half[0]["body"], "check-me");
    assert_eq!(half[0]["id"], check_me["id"]);
    let h = half[0]["handle"].as_str().unwrap();
    assert_eq!(
        sdk(&b, &["commit", "--topic", "TxT", "--group", "GID_TX", h])[0]["event"],
        "commit"
    );
    let got = consume_n(&b, "TxT", "TxG", 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["body"], "check-me");
    // The rolled-back one never shows.
    assert_eq!(
        consume(&b, "TxT", "TxG", &["--wait", "2"]).unwrap_err(),
        "MessageNotExist"
    );
}

#[actix_rt::test]
async fn one_protocol_per_group_and_messages_crossing_protocols() {
    let b = BrokerProc::start("async");
    topic(&b, "CrossT", 1).await;
    let c = connect(b.broker).await;
    // remoting → HTTP
    let mut props = String::new();
    properties::push(&mut props, "TAGS", "TagR");
    properties::push(&mut props, "KEYS", "rk");
    properties::push(&mut props, "UNIQ_KEY", "7F00000100002A9F0000000000000001");
    properties::push(&mut props, "color", "blue");
    let r = c
        .request(send_v2("CrossT", 0, b"from remoting", &props), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let got = consume_n(&b, "CrossT", "CrossHttpG", 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], "7F00000100002A9F0000000000000001");
    assert_eq!(got[0]["body"], "from remoting");
    assert_eq!(got[0]["tag"], "TagR");
    assert_eq!(got[0]["key"], "rk");
    assert_eq!(got[0]["props"]["color"], "blue");
    // HTTP → remoting
    let p = publish(
        &b,
        "CrossT",
        "from http",
        &["--tag", "TagH", "--key", "hk", "--prop", "size=9"],
    );
    let records = pull_all(&c, "CrossPullG", "CrossT", 0).await;
    let rec = records
        .iter()
        .find(|r| properties::get(&r.properties, "UNIQ_KEY") == p["id"].as_str())
        .expect("the HTTP message over remoting");
    assert_eq!(&rec.body[..], b"from http");
    assert_eq!(properties::get(&rec.properties, "TAGS"), Some("TagH"));
    assert_eq!(properties::get(&rec.properties, "KEYS"), Some("hk"));
    assert_eq!(properties::get(&rec.properties, "size"), Some("9"));
    // A group just consumed over HTTP refuses a remoting consumer...
    let hb = c
        .request(subscribe_req("cid-1", "CrossHttpG", "CrossT", "*"), TIMEOUT)
        .await
        .unwrap();
    assert_ne!(hb.code, 0);
    assert!(hb.remark.unwrap_or_default().contains("HTTP"));
    // ...and a group with a live remoting consumer refuses HTTP.
    let hb = c
        .request(subscribe_req("cid-2", "CrossTcpG", "CrossT", "*"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(hb.code, 0, "{:?}", hb.remark);
    assert_eq!(
        consume(&b, "CrossT", "CrossTcpG", &[]).unwrap_err(),
        "HTTPForbidden"
    );
}

const ACL: &str = r#"
globalWhiteRemoteAddresses: []
accounts:
  - accessKey: AdminAK
    secretKey: admin-secret
    admin: true
  - accessKey: HttpAK
    secretKey: http-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms: [ "SigT=PUB|SUB" ]
"#;

#[actix_rt::test]
async fn signed_requests_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain_acl.yml");
    std::fs::write(&file, ACL).unwrap();
    let b = BrokerProc::start_with("async", &[("ROCKTOR_ACL", file.to_str().unwrap())], None);
    let c = connect(b.broker).await;
    let mut create = rocktor::client::create_topic_request("SigT", 2);
    rocktor::client::sign_request(&mut create, "AdminAK", "admin-secret");
    assert_eq!(c.request(create, TIMEOUT).await.unwrap().code, 0);
    let good = |args: &[&str]| sdk_as(&b, "HttpAK", "http-secret", args);
    let r = good(&[
        "publish", "--topic", "SigT", "--body", "signed", "--tag", "A",
    ]);
    assert_eq!(r[0]["event"], "published", "{r:?}");
    let wrong = sdk_as(
        &b,
        "HttpAK",
        "wrong-secret",
        &["publish", "--topic", "SigT", "--body", "x"],
    );
    assert_eq!(wrong[0]["type"], "SignatureDoesNotMatch", "{wrong:?}");
    let wrong = sdk_as(
        &b,
        "HttpAK",
        "wrong-secret",
        &["consume", "--topic", "SigT", "--group", "SigG"],
    );
    assert_eq!(wrong[0]["type"], "SignatureDoesNotMatch", "{wrong:?}");
    let unknown = sdk_as(
        &b,
        "NoSuchAK",
        "whatever",
        &["publish", "--topic", "SigT", "--body", "x"],
    );
    assert_eq!(unknown[0]["type"], "InvalidAccessKeyId", "{unknown:?}");
    // A topic the account may not use.
    let denied = good(&["publish", "--topic", "OtherT", "--body", "x"]);
    assert_eq!(denied[0]["type"], "AccessDenied", "{denied:?}");
    let (status, doc) = http(
        b.http,
        "GET",
        "/topics/SigT/messages?consumer=SigG&numOfMessages=1",
        None,
    );
    assert_eq!(status, 400, "{doc}");
    assert_eq!(xml_field(&doc, "Code"), ["MissingAuthorizationHeader"]);
    // Signed consume with a tag filter (signed over the still-encoded query), and the ack.
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        let r = good(&[
            "consume", "--topic", "SigT", "--group", "SigG", "--tag", "A||B", "--wait", "2",
        ]);
        if r[0]["event"] == "message" || Instant::now() > deadline {
            break r;
        }
    };
    assert_eq!(got[0]["body"], "signed", "{got:?}");
    let h = got[0]["handle"].as_str().unwrap();
    let acked = good(&["ack", "--topic", "SigT", "--group", "SigG", h]);
    assert_eq!(acked[0]["event"], "acked", "{acked:?}");
}

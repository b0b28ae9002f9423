//! The admin REST API under `/api/v1` (issue #14): every route the OpenAPI document names is
//! driven against a running broker, with bad input (4xx, never 500); the document validates;
//! with ACL on, only a signed admin gets in, and a signed body must match its digest.

use crate::support::*;
use serde_json::{json, Value};

fn call(b: &BrokerProc, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|v| v.to_string());
    let (code, text) = http(b.http, method, path, body.as_deref());
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn must(b: &BrokerProc, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
    let (code, v) = call(b, method, path, body);
    assert_eq!(code, want, "{method} {path}: {v}");
    v
}

fn refused(b: &BrokerProc, method: &str, path: &str, body: &str, want: u16, code: &str) {
    let (status, text) = http(b.http, method, path, Some(body));
    assert_eq!(status, want, "{method} {path} {body}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(v["code"], code, "{method} {path} {body}: {v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

#[actix_rt::test]
async fn every_route_works_and_bad_input_is_a_4xx() {
    let b = BrokerProc::start("sync");
    let info = must(&b, "GET", "/api/v1/broker", None, 200);
    assert_eq!(info["brokerName"], "broker-a", "{info}");
    assert_eq!(info["aclEnabled"], false);

    // Topics: create, refusals, list, update.
    let t = must(
        &b,
        "POST",
        "/api/v1/topics",
        Some(json!({"name": "RestT", "queues": 2, "messageType": "NORMAL"})),
        201,
    );
    assert_eq!(t["queues"].as_array().unwrap().len(), 2, "{t}");
    assert_eq!(t["messageType"], "NORMAL");
    refused(
        &b,
        "POST",
        "/api/v1/topics",
        r#"{"name":"RestT"}"#,
        409,
        "TopicAlreadyExist",
    );
    refused(
        &b,
        "POST",
        "/api/v1/topics",
        r#"{"name":"bad name!"}"#,
        400,
        "InvalidArgument",
    );
    refused(
        &b,
        "POST",
        "/api/v1/topics",
        r#"{"name":"Q0","queues":0}"#,
        400,
        "InvalidArgument",
    );
    refused(
        &b,
        "POST",
        "/api/v1/topics",
        r#"{"name":"Ty","messageType":"X"}"#,
        400,
        "InvalidArgument",
    );
    refused(
        &b,
        "POST",
        "/api/v1/topics",
        r#"{"name":"U","colour":1}"#,
        400,
        "InvalidArgument",
    );
    refused(
        &b,
        "POST",
        "/api/v1/topics",
        r#"{"name": "#,
        400,
        "InvalidArgument",
    );
    refused(
        &b,
        "POST",
        "/api/v1/topics",
        r#"{"queues":"many"}"#,
        400,
        "InvalidArgument",
    );
    refused(
        &b,
        "POST",
        "/api/v1/topics",
        r#"{"name":"TBW102"}"#,
        409,
        "TopicAlreadyExist",
    );
    refused(
        &b,
        "PUT",
        "/api/v1/topics/RestT",
        r#"{"perm":9}"#,
        400,
        "InvalidArgument",
    );
    refused(
        &b,
        "PUT",
        "/api/v1/topics/Nope",
        r#"{"perm":6}"#,
        404,
        "TopicNotExist",
    );
    refused(&b, "GET", "/api/v1/topics/Nope", "", 404, "TopicNotExist");
    refused(
        &b,
        "DELETE",
        "/api/v1/topics/Nope",
        "",
        404,
        "TopicNotExist",
    );
    refused(&b, "GET", "/api/v1/nothing", "", 404, "NoSuchRoute");
    refused(
        &b,
        "DELETE",
        "/api/v1/topics/TBW102",
        "",
        400,
        "InvalidArgument",
    );
    // What a page on another site could make a browser send: refused before anything runs.
    let as_text = [("Content-Type".to_string(), "text/plain".to_string())];
    let (code, text) = http_with(
        b.http,
        "POST",
        "/api/v1/topics",
        &as_text,
        Some(r#"{"name":"Csrf1"}"#),
    );
    assert_eq!(code, 415, "{text}");
    for h in [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Origin", "null"),
    ] {
        let h = [(h.0.to_string(), h.1.to_string())];
        let (code, text) = http_with(
            b.http,
            "POST",
            "/api/v1/topics",
            &h,
            Some(r#"{"name":"Csrf2"}"#),
        );
        assert_eq!(code, 403, "{h:?}: {text}");
        assert!(text.contains("CrossOriginRefused"), "{text}");
    }
    let same = [("Origin".to_string(), format!("http://{}", b.http))];
    let (code, text) = http_with(b.http, "GET", "/api/v1/broker", &same, None);
    assert_eq!(code, 200, "its own page's origin: {text}");
    refused(&b, "PATCH", "/api/v1/topics", "", 404, "NoSuchRoute");
    let t = must(
        &b,
        "PUT",
        "/api/v1/topics/RestT",
        Some(json!({"perm": 4})),
        200,
    );
    assert_eq!(t["perm"], 4, "{t}");
    must(
        &b,
        "PUT",
        "/api/v1/topics/RestT",
        Some(json!({"perm": 6})),
        200,
    );
    let list = must(&b, "GET", "/api/v1/topics", None, 200);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("RestT")],
        "system topics are left out: {list}"
    );
    let all = must(&b, "GET", "/api/v1/topics?system=true", None, 200);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "TBW102"),
        "{all}"
    );
    refused(
        &b,
        "GET",
        "/api/v1/topics?system=maybe",
        "",
        400,
        "InvalidArgument",
    );

    // Messages: four sent over remoting, found by time, key, id, body, delivery, trace.
    let c = connect(b.broker).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = c
            .request(
                send_v2(
                    "RestT",
                    i % 2,
                    format!("body-{i}").as_bytes(),
                    &format!("KEYS\u{1}key{i}\u{2}"),
                ),
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{:?}", r.remark);
        ids.push(r.ext["msgId"].to_string());
    }
    let t = must(&b, "GET", "/api/v1/topics/RestT", None, 200);
    assert_eq!(t["messages"], 4, "{t}");
    assert_eq!(t["queues"][1]["maxOffset"], 2, "{t}");
    let found = must(
        &b,
        "GET",
        "/api/v1/topics/RestT/messages?begin=0&max=10",
        None,
        200,
    );
    assert_eq!(found["messages"].as_array().unwrap().len(), 4, "{found}");
    let by_key = must(
        &b,
        "GET",
        "/api/v1/topics/RestT/messages?key=key2",
        None,
        200,
    );
    let one = &by_key["messages"][0];
    assert_eq!(one["keys"], "key2", "{by_key}");
    let uniq = one["msgId"].as_str().unwrap().to_string();
    let m = must(
        &b,
        "GET",
        &format!("/api/v1/topics/RestT/messages/{uniq}"),
        None,
        200,
    );
    assert_eq!(m["body"], "body-2", "{m}");
    // The offset msgId a remoting send answers finds it as well.
    let m = must(
        &b,
        "GET",
        &format!("/api/v1/topics/RestT/messages/{}", ids[3]),
        None,
        200,
    );
    assert_eq!(m["body"], "body-3", "{m}");
    let (code, body) = http(
        b.http,
        "GET",
        &format!("/api/v1/topics/RestT/messages/{uniq}/body"),
        None,
    );
    assert_eq!((code, body.as_str()), (200, "body-2"));
    refused(
        &b,
        "GET",
        "/api/v1/topics/RestT/messages/NOSUCHID",
        "",
        404,
        "MessageNotExist",
    );
    refused(
        &b,
        "GET",
        "/api/v1/topics/RestT/messages?begin=10&end=5",
        "",
        400,
        "InvalidArgument",
    );
    refused(
        &b,
        "GET",
        "/api/v1/topics/RestT/messages?max=-1",
        "",
        400,
        "InvalidArgument",
    );
    must(
        &b,
        "GET",
        &format!("/api/v1/topics/RestT/messages/{uniq}/delivery"),
        None,
        200,
    );
    let tr = must(
        &b,
        "GET",
        &format!("/api/v1/messages/{uniq}/trace?topic=RestT"),
        None,
        200,
    );
    assert!(tr.is_object(), "{tr}");

    // Groups: create, refusals, update, lag after a commit, consumers, reset, DLQ.
    let g = must(
        &b,
        "POST",
        "/api/v1/groups",
        Some(json!({"name": "RestG", "retryMaxTimes": 3})),
        201,
    );
    assert_eq!(g["retryMaxTimes"], 3, "{g}");
    refused(
        &b,
        "POST",
        "/api/v1/groups",
        r#"{"name":"RestG"}"#,
        409,
        "GroupAlreadyExist",
    );
    refused(
        &b,
        "POST",
        "/api/v1/groups",
        r#"{"retryMaxTimes":3}"#,
        400,
        "InvalidArgument",
    );
    refused(
        &b,
        "POST",
        "/api/v1/groups",
        r#"{"name":"G2","retryMaxTimes":-5}"#,
        400,
        "InvalidArgument",
    );
    refused(&b, "GET", "/api/v1/groups/NoG", "", 404, "GroupNotExist");
    refused(
        &b,
        "GET",
        "/api/v1/groups/NoG/lag",
        "",
        404,
        "GroupNotExist",
    );
    let g = must(
        &b,
        "PUT",
        "/api/v1/groups/RestG",
        Some(json!({"consumeMessageOrderly": true})),
        200,
    );
    assert_eq!(
        (
            g["consumeMessageOrderly"].clone(),
            g["retryMaxTimes"].clone()
        ),
        (json!(true), json!(3))
    );
    let r = c
        .request(commit_offset_req("RestG", "RestT", 0, 1), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    let lag = must(&b, "GET", "/api/v1/groups/RestG/lag?topic=RestT", None, 200);
    let q0 = lag
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queueId"] == 0)
        .unwrap();
    assert_eq!(
        (q0["consumerOffset"].clone(), q0["lag"].clone()),
        (json!(1), json!(1)),
        "{lag}"
    );
    let list = must(&b, "GET", "/api/v1/groups", None, 200);
    let g = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "RestG")
        .unwrap();
    assert_eq!(g["lag"], 3, "{list}");
    let cons = must(&b, "GET", "/api/v1/groups/RestG/consumers", None, 200);
    assert_eq!(cons["consumers"], json!([]), "{cons}");
    assert_eq!(cons["subscriptionConsistent"], true);
    let reset = must(
        &b,
        "POST",
        "/api/v1/groups/RestG/reset-offset",
        Some(json!({"topic": "RestT", "timestamp": 0})),
        200,
    );
    assert_eq!(reset["queues"][0]["offset"], 0, "{reset}");
    refused(
        &b,
        "POST",
        "/api/v1/groups/RestG/reset-offset",
        r#"{"topic":"Nope","timestamp":0}"#,
        404,
        "TopicNotExist",
    );
    refused(
        &b,
        "POST",
        "/api/v1/groups/RestG/reset-offset",
        r#"{"topic":"RestT"}"#,
        400,
        "InvalidArgument",
    );
    let bad_time = r#"{"topic":"RestT","timestamp":-2}"#;
    refused(
        &b,
        "POST",
        "/api/v1/groups/RestG/reset-offset",
        bad_time,
        400,
        "InvalidArgument",
    );
    let dlq = must(&b, "GET", "/api/v1/groups/RestG/dlq", None, 200);
    assert_eq!(dlq["messages"], json!([]), "{dlq}");
    // No message went dead yet, so the group has no dead-letter topic to re-send from.
    refused(
        &b,
        "POST",
        "/api/v1/groups/RestG/dlq/resend",
        r#"{"offsets":[0]}"#,
        404,
        "TopicNotExist",
    );
    refused(
        &b,
        "POST",
        "/api/v1/groups/RestG/dlq/resend",
        r#"{"offsets":"all"}"#,
        400,
        "InvalidArgument",
    );

    // Overview, retention, ACL (off here).
    let o = must(&b, "GET", "/api/v1/overview", None, 200);
    assert_eq!(
        (o["messagesIn"].clone(), o["topics"].clone()),
        (json!(4), json!(1)),
        "{o}"
    );
    assert!(o["connections"]["remoting"].as_u64().unwrap() >= 1, "{o}");
    must(&b, "GET", "/api/v1/retention", None, 200);
    refused(&b, "GET", "/api/v1/acl/accounts", "", 409, "AclOff");
    refused(
        &b,
        "POST",
        "/api/v1/acl/accounts",
        r#"{"accessKey":"SomeUser1","secretKey":"12345678"}"#,
        409,
        "AclOff",
    );
    refused(
        &b,
        "DELETE",
        "/api/v1/acl/accounts/SomeUser1",
        "",
        409,
        "AclOff",
    );

    // Every route of the document answers with something other than "no such route" or a 500.
    let doc = must(&b, "GET", "/api/v1/openapi.json", None, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{:?}", paths.keys());
    for (path, ops) in paths {
        let concrete = path
            .replace("{topic}", "RestT")
            .replace("{group}", "RestG")
            .replace("{msg_id}", &uniq)
            .replace("{access_key}", "SomeUser1");
        for method in ops.as_object().unwrap().keys() {
            if method == "delete" {
                continue; // deletes run last, below
            }
            let (code, v) = call(&b, &method.to_uppercase(), &concrete, Some(json!({})));
            assert!(
                code < 500 && v["code"] != "NoSuchRoute",
                "{method} {concrete}: {code} {v}"
            );
        }
    }
    validate_openapi(&doc);

    // Deletes.
    refused(&b, "DELETE", "/api/v1/groups/NoG", "", 404, "GroupNotExist");
    must(
        &b,
        "DELETE",
        "/api/v1/groups/RestG?cleanOffsets=true",
        None,
        204,
    );
    must(&b, "DELETE", "/api/v1/topics/RestT", None, 204);
    refused(&b, "GET", "/api/v1/topics/RestT", "", 404, "TopicNotExist");
}

/// With `ROCKTOR_OPENAPI_VALIDATOR` (a Python with `openapi-spec-validator`, which scripts/test
/// sets up), the document is checked against the OpenAPI 3.1 schema.
fn validate_openapi(doc: &Value) {
    let Ok(python) = std::env::var("ROCKTOR_OPENAPI_VALIDATOR") else {
        eprintln!("ROCKTOR_OPENAPI_VALIDATOR is not set: the document's schema check did not run");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "the OpenAPI document does not validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const ACL: &str = r#"
globalWhiteRemoteAddresses: []
accounts:
  - accessKey: RestAdmin
    secretKey: rest-admin-secret
    admin: true
  - accessKey: RestUser
    secretKey: rest-user-secret
    defaultTopicPerm: PUB|SUB
    defaultGroupPerm: SUB
"#;

/// The headers of a request signed as the dashboard signs it.
fn signed(
    ak: &str,
    sk: &str,
    method: &str,
    target: &str,
    body: Option<&str>,
) -> Vec<(String, String)> {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut mq = Vec::new();
    if let Some(body) = body {
        let d = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
        let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        mq.push(("x-mq-content-sha256".to_string(), hex));
    }
    mq.push(("x-mq-date".to_string(), date));
    let mut text = format!("{method}\n\napplication/json\n\n");
    for (k, v) in &mq {
        text.push_str(&format!("{k}:{v}\n"));
    }
    text.push_str(target);
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    mq.push(("Authorization".into(), format!("MQ {ak}:{sig}")));
    mq
}

#[actix_rt::test]
async fn with_acl_only_a_signed_admin_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain_acl.yml");
    std::fs::write(&file, ACL).unwrap();
    let b = BrokerProc::start_with("async", &[("ROCKTOR_ACL", file.to_str().unwrap())], None);
    let get = |ak: &str, sk: &str, target: &str| {
        let (code, text) = http_with(
            b.http,
            "GET",
            target,
            &signed(ak, sk, "GET", target, None),
            None,
        );
        (
            code,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    };
    // No credentials, a wrong secret, a non-admin, a bad header: refused, and said why.
    let (code, v) = call(&b, "GET", "/api/v1/topics", None);
    assert_eq!(
        (code, v["code"].clone()),
        (401, json!("MissingAuthorizationHeader")),
        "{v}"
    );
    let (code, v) = get("RestAdmin", "not-the-secret", "/api/v1/topics");
    assert_eq!(
        (code, v["code"].clone()),
        (403, json!("SignatureDoesNotMatch")),
        "{v}"
    );
    let (code, v) = get("RestUser", "rest-user-secret", "/api/v1/topics");
    assert_eq!(
        (code, v["code"].clone()),
        (403, json!("AccessDenied")),
        "{v}"
    );
    let (code, v) = get("Nobody", "x", "/api/v1/topics");
    assert_eq!(
        (code, v["code"].clone()),
        (403, json!("InvalidAccessKeyId")),
        "{v}"
    );
    let bad = vec![("Authorization".to_string(), "Basic abc".to_string())];
    let (code, text) = http_with(b.http, "GET", "/api/v1/topics", &bad, None);
    assert_eq!(code, 400, "{text}");
    // A signature is for its own target only.
    let moved = signed(
        "RestAdmin",
        "rest-admin-secret",
        "GET",
        "/api/v1/topics",
        None,
    );
    let (code, _) = http_with(b.http, "GET", "/api/v1/groups", &moved, None);
    assert_eq!(code, 403);
    // The admin reads, and writes with a body bound to the signature.
    let (code, v) = get("RestAdmin", "rest-admin-secret", "/api/v1/broker");
    assert_eq!((code, v["aclEnabled"].clone()), (200, json!(true)), "{v}");
    let body = r#"{"name":"AclRestT","queues":1}"#;
    let mut h = signed(
        "RestAdmin",
        "rest-admin-secret",
        "POST",
        "/api/v1/topics",
        Some(body),
    );
    let (code, text) = http_with(
        b.http,
        "POST",
        "/api/v1/topics",
        &h,
        Some(r#"{"name":"Other","queues":1}"#),
    );
    assert_eq!(code, 403, "another body under the same signature: {text}");
    assert!(text.contains("ContentDigestMismatch"), "{text}");
    let (code, text) = http_with(b.http, "POST", "/api/v1/topics", &h, Some(body));
    assert_eq!(code, 201, "{text}");
    h.retain(|(k, _)| k != "x-mq-content-sha256");
    let (code, _) = http_with(b.http, "POST", "/api/v1/topics", &h, Some(body));
    assert!(code == 403, "a body without its digest header: {code}");
    // Accounts through the API: listed without secrets, added, usable, deleted.
    let (code, v) = get("RestAdmin", "rest-admin-secret", "/api/v1/acl/accounts");
    assert_eq!(code, 200, "{v}");
    assert!(
        !v.to_string().contains("rest-user-secret"),
        "a secret is listed: {v}"
    );
    let body = r#"{"accessKey":"RestAdmin2","secretKey":"second-admin-secret","admin":true}"#;
    let h = signed(
        "RestAdmin",
        "rest-admin-secret",
        "POST",
        "/api/v1/acl/accounts",
        Some(body),
    );
    let (code, text) = http_with(b.http, "POST", "/api/v1/acl/accounts", &h, Some(body));
    assert_eq!(code, 200, "{text}");
    let (code, _) = get("RestAdmin2", "second-admin-secret", "/api/v1/groups");
    assert_eq!(code, 200);
    let target = "/api/v1/acl/accounts/RestAdmin2";
    let h = signed("RestAdmin", "rest-admin-secret", "DELETE", target, None);
    let (code, text) = http_with(b.http, "DELETE", target, &h, None);
    assert_eq!(code, 204, "{text}");
    let (code, _) = get("RestAdmin2", "second-admin-secret", "/api/v1/groups");
    assert_eq!(code, 403);
    // /metrics, /healthz and the page itself stay open; its data needs the signed API.
    for open in ["/metrics", "/healthz", "/"] {
        assert_eq!(http(b.http, "GET", open, None).0, 200, "{open}");
    }
}

//! The gRPC MessagingService for RocketMQ 5.x clients (issue #13), driven over real HTTP/2
//! with tonic's client and the same apache.rocketmq.v2 messages: invisible-time redelivery,
//! FIFO blocking, ChangeInvisibleDuration, the DLQ (forwarded and after the last attempt),
//! the transaction check over Telemetry, credentials, bad requests, TLS beside plain on one
//! port, and messages crossing gRPC, remoting and HTTP. The real 5.x clients (Python, Node)
//! run against the same server in the conformance scenarios.

use crate::support::*;
use rocktor::client::request;
use rocktor::grpc::pb::{self, messaging_service_client::MessagingServiceClient, Code};
use std::time::Duration;
use tonic::transport::Channel;

type Client = MessagingServiceClient<Channel>;

async fn client(b: &BrokerProc) -> Client {
    MessagingServiceClient::connect(format!("http://{}", b.grpc))
        .await
        .expect("gRPC connect")
}

fn call<T>(msg: T, client_id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if !client_id.is_empty() {
        r.metadata_mut()
            .insert("x-mq-client-id", client_id.parse().unwrap());
    }
    r
}

fn res(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

fn message(topic: &str, id: &str, body: &str) -> pb::Message {
    pb::Message {
        topic: res(topic),
        user_properties: [("color".to_string(), "blue".to_string())].into(),
        system_properties: Some(pb::SystemProperties {
            tag: Some("TagA".into()),
            keys: vec!["k1".into()],
            message_id: id.into(),
            message_type: pb::MessageType::Normal as i32,
            ..Default::default()
        }),
        body: bytes::Bytes::from(body.to_string()),
    }
}

async fn send(c: &mut Client, m: pb::Message) -> pb::SendResultEntry {
    let r = c
        .send_message(call(pb::SendMessageRequest { messages: vec![m] }, "cli"))
        .await
        .expect("SendMessage answered")
        .into_inner();
    r.entries.into_iter().next().unwrap_or(pb::SendResultEntry {
        status: r.status,
        ..Default::default()
    })
}

fn code(s: &Option<pb::Status>) -> i32 {
    s.as_ref().map(|s| s.code).unwrap_or(-1)
}

/// One ReceiveMessage: its first status and the messages.
async fn receive(
    c: &mut Client,
    group: &str,
    topic: &str,
    max: i32,
    invisible_ms: i64,
    poll_ms: i64,
) -> (i32, Vec<pb::Message>) {
    let req = pb::ReceiveMessageRequest {
        group: res(group),
        message_queue: Some(pb::MessageQueue {
            topic: res(topic),
            id: -1,
            ..Default::default()
        }),
        filter_expression: Some(pb::FilterExpression {
            r#type: pb::FilterType::Tag as i32,
            expression: "*".into(),
        }),
        batch_size: max,
        invisible_duration: Some(prost_types::Duration {
            seconds: invisible_ms / 1000,
            nanos: ((invisible_ms % 1000) * 1_000_000) as i32,
        }),
        auto_renew: false,
        long_polling_timeout: Some(prost_types::Duration {
            seconds: poll_ms / 1000,
            nanos: 0,
        }),
        attempt_id: None,
    };
    let mut stream = c
        .receive_message(call(req, "consumer-1"))
        .await
        .expect("ReceiveMessage answered")
        .into_inner();
    let (mut first, mut out) = (-1, Vec::new());
    while let Some(item) = stream.message().await.expect("stream item") {
        match item.content {
            Some(pb::receive_message_response::Content::Status(s)) if first == -1 => first = s.code,
            Some(pb::receive_message_response::Content::Message(m)) => out.push(m),
            _ => {}
        }
    }
    (first, out)
}

fn handle(m: &pb::Message) -> String {
    m.system_properties
        .as_ref()
        .and_then(|s| s.receipt_handle.clone())
        .expect("a receipt handle")
}

fn attempt(m: &pb::Message) -> i32 {
    m.system_properties
        .as_ref()
        .and_then(|s| s.delivery_attempt)
        .unwrap_or(0)
}

fn id_of(m: &pb::Message) -> String {
    m.system_properties
        .as_ref()
        .map(|s| s.message_id.clone())
        .unwrap_or_default()
}

async fn ack(c: &mut Client, group: &str, topic: &str, handle: &str) -> i32 {
    let r = c
        .ack_message(call(
            pb::AckMessageRequest {
                group: res(group),
                topic: res(topic),
                entries: vec![pb::AckMessageEntry {
                    message_id: String::new(),
                    receipt_handle: handle.into(),
                }],
            },
            "consumer-1",
        ))
        .await
        .expect("AckMessage answered")
        .into_inner();
    code(&r.status)
}

async fn typed_topic(b: &BrokerProc, topic: &str, ty: &str, queues: u32) {
    let c = connect(b.broker).await;
    let r = c
        .request(
            request(
                17,
                &[
                    ("topic", topic.into()),
                    ("readQueueNums", queues.to_string()),
                    ("writeQueueNums", queues.to_string()),
                    ("perm", "6".into()),
                    ("attributes", format!("+message.type={ty}")),
                ],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);
}

async fn group(b: &BrokerProc, name: &str, orderly: bool, retry_max: i32) {
    let c = connect(b.broker).await;
    let body = serde_json::json!({"groupName": name, "consumeEnable": true,
        "consumeMessageOrderly": orderly, "retryMaxTimes": retry_max, "retryQueueNums": 1});
    let r = c
        .request(
            request(200, &[]).with_body(body.to_string().into_bytes()),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);
}

#[actix_rt::test]
async fn send_receive_ack_redelivery_and_change_invisible() {
    let b = BrokerProc::start("sync");
    typed_topic(&b, "GT", "NORMAL", 4).await;
    let mut c = client(&b).await;
    // Route: the topic's four queues at this server's gRPC address, NORMAL only.
    let route = c
        .query_route(call(
            pb::QueryRouteRequest {
                topic: res("GT"),
                endpoints: None,
            },
            "cli",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&route.status), Code::Ok as i32);
    assert_eq!(route.message_queues.len(), 4);
    let q = &route.message_queues[0];
    let ep = &q
        .broker
        .as_ref()
        .unwrap()
        .endpoints
        .as_ref()
        .unwrap()
        .addresses[0];
    assert_eq!(ep.port, i32::from(b.grpc.port()));
    assert_eq!(q.accept_message_types, vec![pb::MessageType::Normal as i32]);

    let sent = send(&mut c, message("GT", "ID-1", "one")).await;
    assert_eq!(code(&sent.status), Code::Ok as i32, "{sent:?}");
    assert_eq!(sent.message_id, "ID-1");
    // A FIFO message is refused by a NORMAL topic (the domain's topic-type rule).
    let mut fifo = message("GT", "ID-F", "f");
    fifo.system_properties.as_mut().unwrap().message_group = Some("g".into());
    let r = send(&mut c, fifo).await;
    assert_eq!(
        code(&r.status),
        Code::MessagePropertyConflictWithType as i32
    );

    let (st, got) = receive(&mut c, "GG", "GT", 16, 1000, 5000).await;
    assert_eq!(st, Code::Ok as i32);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(id_of(m), "ID-1");
    assert_eq!(&m.body[..], b"one");
    assert_eq!(
        m.user_properties.get("color").map(String::as_str),
        Some("blue")
    );
    let sys = m.system_properties.as_ref().unwrap();
    assert_eq!(sys.tag.as_deref(), Some("TagA"));
    assert_eq!(sys.keys, vec!["k1".to_string()]);
    assert_eq!(attempt(m), 1);
    let first = handle(m);
    // Not acked within its 1 s: back, attempt 2, a new handle; the old one is stale.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, again) = receive(&mut c, "GG", "GT", 16, 30_000, 5000).await;
    assert_eq!(again.len(), 1);
    assert_eq!(attempt(&again[0]), 2);
    let second = handle(&again[0]);
    assert_ne!(first, second);
    assert_eq!(
        ack(&mut c, "GG", "GT", &first).await,
        Code::InvalidReceiptHandle as i32
    );
    // ChangeInvisibleDuration: a new handle, visible again at once with 0.
    let changed = c
        .change_invisible_duration(call(
            pb::ChangeInvisibleDurationRequest {
                group: res("GG"),
                topic: res("GT"),
                receipt_handle: second.clone(),
                invisible_duration: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 0,
                }),
                message_id: "ID-1".into(),
            },
            "consumer-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&changed.status), Code::Ok as i32);
    assert_ne!(changed.receipt_handle, second);
    assert_eq!(
        ack(&mut c, "GG", "GT", &second).await,
        Code::InvalidReceiptHandle as i32
    );
    let (_, third) = receive(&mut c, "GG", "GT", 16, 30_000, 5000).await;
    assert_eq!(third.len(), 1);
    assert_eq!(attempt(&third[0]), 3);
    assert_eq!(
        ack(&mut c, "GG", "GT", &handle(&third[0])).await,
        Code::Ok as i32
    );
    let (st, none) = receive(&mut c, "GG", "GT", 16, 30_000, 5000).await;
    assert_eq!((st, none.len()), (Code::MessageNotFound as i32, 0));
}

#[actix_rt::test]
async fn fifo_groups_wait_for_the_previous_message_and_dead_letters() {
    let b = BrokerProc::start("async");
    typed_topic(&b, "GF", "FIFO", 2).await;
    group(&b, "GFG", true, 16).await;
    let mut c = client(&b).await;
    for i in 0..3 {
        let mut m = message("GF", &format!("F-{i}"), &format!("{i}"));
        m.system_properties.as_mut().unwrap().message_group = Some("order-1".into());
        m.system_properties.as_mut().unwrap().message_type = pb::MessageType::Fifo as i32;
        assert_eq!(code(&send(&mut c, m).await.status), Code::Ok as i32);
    }
    let (_, a) = receive(&mut c, "GFG", "GF", 1, 30_000, 5000).await;
    assert_eq!(a.iter().map(id_of).collect::<Vec<_>>(), ["F-0"]);
    let sys = a[0].system_properties.as_ref().unwrap();
    assert_eq!(sys.message_group.as_deref(), Some("order-1"));
    assert_eq!(sys.message_type, pb::MessageType::Fifo as i32);
    // The group's next message waits for this one.
    let (st, blocked) = receive(&mut c, "GFG", "GF", 1, 30_000, 5000).await;
    assert_eq!((st, blocked.len()), (Code::MessageNotFound as i32, 0));
    // Forwarded to the DLQ, the message is settled and the next one comes.
    let f = c
        .forward_message_to_dead_letter_queue(call(
            pb::ForwardMessageToDeadLetterQueueRequest {
                group: res("GFG"),
                topic: res("GF"),
                receipt_handle: handle(&a[0]),
                message_id: "F-0".into(),
                delivery_attempt: 1,
                max_delivery_attempts: 1,
            },
            "consumer-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&f.status), Code::Ok as i32);
    let (_, next) = receive(&mut c, "GFG", "GF", 1, 30_000, 5000).await;
    assert_eq!(next.iter().map(id_of).collect::<Vec<_>>(), ["F-1"]);
    let r = connect(b.broker).await;
    let dlq = pull_all(&r, "G_dlq_reader", "%DLQ%GFG", 0).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(&dlq[0].body[..], b"0");

    // After its last attempt a message moves to the DLQ by itself (retry max 0: 1 attempt).
    typed_topic(&b, "GD", "NORMAL", 1).await;
    group(&b, "GDG", false, 0).await;
    assert_eq!(
        code(&send(&mut c, message("GD", "D-1", "dead")).await.status),
        Code::Ok as i32
    );
    let (_, got) = receive(&mut c, "GDG", "GD", 1, 1000, 5000).await;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (st, _) = receive(&mut c, "GDG", "GD", 1, 1000, 5000).await;
    assert_eq!(st, Code::MessageNotFound as i32);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dlq = pull_all(&r, "G_dlq_reader", "%DLQ%GDG", 0).await;
        if dlq.len() == 1 {
            assert_eq!(&dlq[0].body[..], b"dead");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the message never reached the DLQ"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_rt::test]
async fn transaction_checks_travel_over_telemetry() {
    let b = BrokerProc::start_with(
        "async",
        &[
            ("ROCKTOR_TRANSACTION_TIMEOUT_MS", "1000"),
            ("ROCKTOR_TRANSACTION_CHECK_INTERVAL_MS", "1000"),
        ],
        None,
    );
    typed_topic(&b, "GX", "TRANSACTION", 2).await;
    let mut c = client(&b).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::TelemetryCommand {
        status: None,
        command: Some(pb::telemetry_command::Command::Settings(pb::Settings {
            client_type: Some(pb::ClientType::Producer as i32),
            pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
                topics: vec![res("GX").unwrap()],
                max_body_size: 0,
                validate_message_type: true,
            })),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut telemetry = c
        .telemetry(call(tokio_stream::wrappers::ReceiverStream::new(rx), "cli"))
        .await
        .expect("Telemetry opened")
        .into_inner();
    let settings = telemetry.message().await.unwrap().expect("settings answer");
    assert_eq!(code(&settings.status), Code::Ok as i32);
    let Some(pb::telemetry_command::Command::Settings(s)) = settings.command else {
        panic!("not settings: {settings:?}")
    };
    assert_eq!(s.backoff_policy.map(|p| p.max_attempts), Some(3));

    let mut m = message("GX", "X-1", "half");
    m.system_properties.as_mut().unwrap().message_type = pb::MessageType::Transaction as i32;
    let sent = send(&mut c, m).await;
    assert_eq!(code(&sent.status), Code::Ok as i32, "{sent:?}");
    assert!(!sent.transaction_id.is_empty());
    // Not visible while open.
    let (st, _) = receive(&mut c, "GXG", "GX", 16, 30_000, 5000).await;
    assert_eq!(st, Code::MessageNotFound as i32);
    // Left open, the broker asks this producer over its Telemetry stream.
    let cmd = tokio::time::timeout(Duration::from_secs(20), telemetry.message())
        .await
        .expect("a check within 20 s")
        .unwrap()
        .expect("a command");
    let Some(pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(check)) =
        cmd.command
    else {
        panic!("not a transaction check: {cmd:?}")
    };
    assert_eq!(check.transaction_id, sent.transaction_id);
    assert_eq!(check.message.as_ref().map(id_of).as_deref(), Some("X-1"));
    // A forged id is refused; the check's answer commits.
    let end = |tid: String, source| pb::EndTransactionRequest {
        topic: res("GX"),
        message_id: "X-1".into(),
        transaction_id: tid,
        resolution: pb::TransactionResolution::Commit as i32,
        source,
        trace_context: String::new(),
    };
    let r = c
        .end_transaction(call(end("T1_0000000000000000".into(), 2), "cli"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::InvalidTransactionId as i32);
    let r = c
        .end_transaction(call(end(check.transaction_id.clone(), 2), "cli"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::Ok as i32);
    let (_, got) = receive(&mut c, "GXG", "GX", 16, 30_000, 5000).await;
    assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), ["X-1"]);
    assert_eq!(
        got[0].system_properties.as_ref().unwrap().message_type,
        pb::MessageType::Transaction as i32
    );
}

#[actix_rt::test]
async fn bad_requests_get_status_codes() {
    let b = BrokerProc::start("async");
    typed_topic(&b, "GB", "MIXED", 1).await;
    let mut c = client(&b).await;
    // No client id.
    let r = c
        .send_message(call(
            pb::SendMessageRequest {
                messages: vec![message("GB", "B-1", "x")],
            },
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::ClientIdRequired as i32);
    assert_eq!(
        code(&send(&mut c, message("Nope", "B-2", "x")).await.status),
        Code::TopicNotFound as i32
    );
    assert_eq!(
        code(&send(&mut c, message("GB", "", "x")).await.status),
        Code::IllegalMessageId as i32
    );
    let big = "x".repeat(4 * 1024 * 1024 + 1);
    assert_eq!(
        code(&send(&mut c, message("GB", "B-3", &big)).await.status),
        Code::MessageBodyTooLarge as i32
    );
    let (st, _) = receive(&mut c, "GBG", "GB", 16, 0, 5000).await;
    assert_eq!(st, Code::IllegalInvisibleTime as i32);
    assert_eq!(
        ack(&mut c, "GBG", "GB", "forged").await,
        Code::InvalidReceiptHandle as i32
    );
    // A delivery time past the broker's maximum delay.
    let mut late = message("GB", "B-4", "x");
    late.system_properties.as_mut().unwrap().delivery_timestamp = Some(prost_types::Timestamp {
        seconds: 32_503_680_000,
        nanos: 0,
    });
    assert_eq!(
        code(&send(&mut c, late).await.status),
        Code::IllegalDeliveryTime as i32
    );
    // Heartbeat before settings; a Telemetry with settings of neither kind.
    let r = c
        .heartbeat(call(
            pb::HeartbeatRequest {
                group: None,
                client_type: 1,
            },
            "stranger",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::UnrecognizedClientType as i32);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::TelemetryCommand {
        status: None,
        command: Some(pb::telemetry_command::Command::Settings(
            pb::Settings::default(),
        )),
    })
    .await
    .unwrap();
    let mut t = c
        .telemetry(call(tokio_stream::wrappers::ReceiverStream::new(rx), "cli"))
        .await
        .unwrap()
        .into_inner();
    let e = t.message().await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // The server is still there for everyone else.
    assert_eq!(
        code(&send(&mut c, message("GB", "B-5", "x")).await.status),
        Code::Ok as i32
    );
}

const ACL: &str = r#"
globalWhiteRemoteAddresses: []
accounts:
  - accessKey: AdminAK
    secretKey: admin-secret
    admin: true
  - accessKey: GrpcAK
    secretKey: grpc-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms: [ "GA=PUB|SUB" ]
"#;

fn signed<T>(msg: T, ak: &str, sk: &str) -> tonic::Request<T> {
    use hmac::{KeyInit, Mac};
    let mut r = call(msg, "cli");
    let date = "20261203T120000Z";
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(date.as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let auth =
        format!("MQv2-HMAC-SHA1 Credential={ak}, SignedHeaders=x-mq-date-time, Signature={sig}");
    r.metadata_mut()
        .insert("x-mq-date-time", date.parse().unwrap());
    r.metadata_mut()
        .insert("authorization", auth.parse().unwrap());
    r
}

#[actix_rt::test]
async fn credentials_are_checked_by_the_shared_authenticator() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain_acl.yml");
    std::fs::write(&file, ACL).unwrap();
    let b = BrokerProc::start_with("async", &[("ROCKTOR_ACL", file.to_str().unwrap())], None);
    let r = connect(b.broker).await;
    for t in ["GA", "GOther"] {
        let mut create = rocktor::client::create_topic_request(t, 1);
        rocktor::client::sign_request(&mut create, "AdminAK", "admin-secret");
        assert_eq!(r.request(create, TIMEOUT).await.unwrap().code, 0);
    }
    let mut c = client(&b).await;
    let req = |topic: &str| pb::SendMessageRequest {
        messages: vec![message(topic, "A-1", "x")],
    };
    let status = |r: pb::SendMessageResponse| code(&r.status);
    let good = c
        .send_message(signed(req("GA"), "GrpcAK", "grpc-secret"))
        .await
        .unwrap();
    assert_eq!(status(good.into_inner()), Code::Ok as i32);
    let wrong = c
        .send_message(signed(req("GA"), "GrpcAK", "wrong"))
        .await
        .unwrap();
    assert_eq!(status(wrong.into_inner()), Code::Unauthorized as i32);
    let unknown = c
        .send_message(signed(req("GA"), "Nobody", "x"))
        .await
        .unwrap();
    assert_eq!(status(unknown.into_inner()), Code::Unauthorized as i32);
    let anonymous = c.send_message(call(req("GA"), "cli")).await.unwrap();
    assert_eq!(status(anonymous.into_inner()), Code::Unauthorized as i32);
    let denied = c
        .send_message(signed(req("GOther"), "GrpcAK", "grpc-secret"))
        .await
        .unwrap();
    assert_eq!(status(denied.into_inner()), Code::Forbidden as i32);
}

#[actix_rt::test]
async fn messages_cross_grpc_remoting_and_http_and_tls_shares_the_port() {
    let b = BrokerProc::start("async");
    typed_topic(&b, "GI", "NORMAL", 1).await;
    let mut c = client(&b).await;
    // gRPC → remoting pull and HTTP consume: same id, tag, keys and properties.
    let sent = send(&mut c, message("GI", "I-1", "from-grpc")).await;
    assert_eq!(code(&sent.status), Code::Ok as i32);
    let r = connect(b.broker).await;
    let pulled = pull_all(&r, "G_remoting", "GI", 0).await;
    assert_eq!(pulled.len(), 1);
    let p = &pulled[0].properties;
    use rocktor_storage::properties::get;
    assert_eq!(get(p, "UNIQ_KEY"), Some("I-1"));
    assert_eq!(get(p, "TAGS"), Some("TagA"));
    assert_eq!(get(p, "KEYS"), Some("k1"));
    assert_eq!(get(p, "color"), Some("blue"));
    let (status, body) = http(
        b.http,
        "GET",
        "/topics/GI/messages?consumer=G_http&numOfMessages=4",
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<MessageId>I-1</MessageId>") && body.contains("color:blue"),
        "{body}"
    );
    // remoting → gRPC.
    let sent = r
        .request(
            send_v2(
                "GI",
                0,
                b"from-remoting",
                "UNIQ_KEY\u{1}R-1\u{2}TAGS\u{1}TagB\u{2}size\u{1}XL\u{2}",
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    let (_, got) = receive(&mut c, "G_grpc", "GI", 16, 30_000, 5000).await;
    let by_id: std::collections::HashMap<String, &pb::Message> =
        got.iter().map(|m| (id_of(m), m)).collect();
    let m = by_id.get("R-1").expect("the remoting message over gRPC");
    assert_eq!(&m.body[..], b"from-remoting");
    assert_eq!(
        m.user_properties.get("size").map(String::as_str),
        Some("XL")
    );
    assert_eq!(
        m.system_properties.as_ref().unwrap().tag.as_deref(),
        Some("TagB")
    );
    assert!(by_id.contains_key("I-1"));

    // TLS on the same port: a handshake that chooses h2 by ALPN.
    let mut roots = rustls::RootCertStore::empty();
    let pem =
        std::fs::read(b.data_dir().join("grpc-tls/cert.pem")).expect("the self-signed certificate");
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(b.grpc).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake on the gRPC port");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

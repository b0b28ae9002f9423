//! `--protocol grpc`: the 5.x gRPC MessagingService as the 5.x clients use it — one HTTP/2
//! channel per producer with `--inflight` SendMessage calls of one message each in flight;
//! consumers receive in batches of `--pull-batch` (≤ 32, long polling) and ack each batch in
//! one AckMessage. Unsigned: run the broker without ACL.

use super::{hist, now_us, report_run, Args, Mode};
use rocktor::grpc::pb::{self, messaging_service_client::MessagingServiceClient};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const MARK: &[u8; 8] = b"RKBENCH!";
const OK: i32 = pb::Code::Ok as i32;

type Hist = Arc<Mutex<hdrhistogram::Histogram<u64>>>;

struct Totals {
    sent: AtomicU64,
    failed: AtomicU64,
    consumed: AtomicU64,
    seq: AtomicU64,
    producing: AtomicBool,
}

async fn channel(addr: SocketAddr) -> Result<MessagingServiceClient<Channel>, String> {
    let c = MessagingServiceClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| format!("gRPC connect {addr}: {e}"))?;
    Ok(c.max_decoding_message_size(64 << 20))
}

fn call<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "x-mq-client-id",
        tonic::metadata::MetadataValue::from_static("rocktor-bench"),
    );
    r
}

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.to_string(),
    })
}

pub async fn run(args: Arc<Args>, addr: SocketAddr) -> Result<Value, String> {
    let totals = Arc::new(Totals {
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        producing: AtomicBool::new(args.mode != Mode::Consume),
    });
    let (send_lat, e2e_lat): (Hist, Hist) =
        (Arc::new(Mutex::new(hist())), Arc::new(Mutex::new(hist())));
    let started = Instant::now();
    let mut consumers = Vec::new();
    if args.mode != Mode::Produce {
        for _ in 0..args.consumers.max(1) {
            let (args, totals, lat) = (args.clone(), totals.clone(), e2e_lat.clone());
            consumers.push(tokio::spawn(consume(args, addr, totals, lat)));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut produce_secs = 0.0;
    if args.mode != Mode::Consume {
        let t0 = Instant::now();
        let mut producers = Vec::new();
        for _ in 0..args.producers.max(1) {
            let client = channel(addr).await?;
            for _ in 0..args.inflight.max(1) {
                let (args, totals, lat, c) = (
                    args.clone(),
                    totals.clone(),
                    send_lat.clone(),
                    client.clone(),
                );
                producers.push(tokio::spawn(produce(args, c, totals, lat)));
            }
        }
        for p in producers {
            p.await.map_err(|e| e.to_string())??;
        }
        produce_secs = t0.elapsed().as_secs_f64();
        totals.producing.store(false, Ordering::Release);
    }
    let mut consume_secs = 0.0f64;
    for c in consumers {
        let last = c.await.map_err(|e| e.to_string())??;
        consume_secs = consume_secs.max(last.duration_since(started).as_secs_f64());
    }
    let mut out = json!({"protocol": "grpc", "topic": args.topic, "size": args.size,
                         "producers": args.producers, "inflight": args.inflight, "consumers": args.consumers});
    let (send_lat, e2e_lat) = (
        send_lat.lock().map_err(|_| "poisoned")?,
        e2e_lat.lock().map_err(|_| "poisoned")?,
    );
    report_run(
        &mut out,
        &args,
        "send",
        (
            totals.sent.load(Ordering::Relaxed),
            totals.failed.load(Ordering::Relaxed),
            produce_secs,
            &send_lat,
        ),
        (
            totals.consumed.load(Ordering::Relaxed),
            consume_secs,
            &e2e_lat,
        ),
    );
    Ok(out)
}

/// One in-flight slot of a producer channel: a SendMessage at a time, for --duration.
async fn produce(
    args: Arc<Args>,
    mut client: MessagingServiceClient<Channel>,
    totals: Arc<Totals>,
    lat: Hist,
) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(args.duration);
    let pad = vec![b'x'; args.size.saturating_sub(MARK.len() + 8)];
    let mut local = hist();
    while Instant::now() < end {
        if args
            .count
            .is_some_and(|c| totals.sent.load(Ordering::Relaxed) >= c)
        {
            break;
        }
        let seq = totals.seq.fetch_add(1, Ordering::Relaxed);
        let mut body = Vec::with_capacity(args.size.max(16));
        body.extend_from_slice(MARK);
        body.extend_from_slice(&now_us().to_be_bytes());
        body.extend_from_slice(&pad);
        let m = pb::Message {
            topic: resource(&args.topic),
            user_properties: Default::default(),
            system_properties: Some(pb::SystemProperties {
                tag: Some("bench".into()),
                message_id: format!("RKB{:x}{seq:016x}", std::process::id()),
                message_type: pb::MessageType::Normal as i32,
                ..Default::default()
            }),
            body: body.into(),
        };
        let t = Instant::now();
        let r = client
            .send_message(call(pb::SendMessageRequest { messages: vec![m] }))
            .await;
        match r.map(|r| r.into_inner().status.map(|s| s.code)) {
            Ok(Some(OK)) => {
                totals.sent.fetch_add(1, Ordering::Relaxed);
                let _ = local.record(t.elapsed().as_micros().max(1) as u64);
            }
            _ => {
                totals.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    lat.lock()
        .map_err(|_| "poisoned")?
        .add(&local)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Receives and acks until the producers are done and nothing came for --consume-idle-secs;
/// answers when the last message arrived.
async fn consume(
    args: Arc<Args>,
    addr: SocketAddr,
    totals: Arc<Totals>,
    lat: Hist,
) -> Result<Instant, String> {
    let mut client = channel(addr).await?;
    let mut local = hist();
    let mut last = Instant::now();
    loop {
        let idle = Duration::from_secs(args.consume_idle_secs);
        if !totals.producing.load(Ordering::Acquire) && last.elapsed() > idle {
            break;
        }
        let req = pb::ReceiveMessageRequest {
            group: resource(&args.group),
            message_queue: Some(pb::MessageQueue {
                topic: resource(&args.topic),
                id: -1,
                ..Default::default()
            }),
            filter_expression: Some(pb::FilterExpression {
                r#type: pb::FilterType::Tag as i32,
                expression: "*".into(),
            }),
            batch_size: args.pull_batch.clamp(1, 32) as i32,
            invisible_duration: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            auto_renew: false,
            long_polling_timeout: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            attempt_id: None,
        };
        let mut stream = match client.receive_message(call(req)).await {
            Ok(s) => s.into_inner(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut entries = Vec::new();
        while let Ok(Some(item)) = stream.message().await {
            if let Some(pb::receive_message_response::Content::Message(m)) = item.content {
                let now = now_us();
                if let Some(sent) = m
                    .body
                    .strip_prefix(&MARK[..])
                    .and_then(|r| r.get(..8))
                    .and_then(|t| <[u8; 8]>::try_from(t).ok())
                {
                    let _ = local.record(now.saturating_sub(u64::from_be_bytes(sent)).max(1));
                }
                let sys = m.system_properties.unwrap_or_default();
                entries.push(pb::AckMessageEntry {
                    message_id: sys.message_id,
                    receipt_handle: sys.receipt_handle.unwrap_or_default(),
                });
            }
        }
        if entries.is_empty() {
            continue;
        }
        let n = entries.len() as u64;
        let ack = pb::AckMessageRequest {
            group: resource(&args.group),
            topic: resource(&args.topic),
            entries,
        };
        if let Ok(r) = client.ack_message(call(ack)).await {
            if r.into_inner().status.map(|s| s.code) == Some(OK) {
                totals.consumed.fetch_add(n, Ordering::Relaxed);
                last = Instant::now();
            }
        }
    }
    lat.lock()
        .map_err(|_| "poisoned")?
        .add(&local)
        .map_err(|e| e.to_string())?;
    Ok(last)
}

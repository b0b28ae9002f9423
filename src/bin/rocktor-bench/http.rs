//! `--protocol http`: the Aliyun-style HTTP messaging API, as the HTTP SDKs use it — keep-alive
//! connections (hyper's HTTP/1.1 client), one request at a time per connection: publish
//! (`POST`), consume (`GET`, batches of `--pull-batch` ≤ 16, long polling) and ack (`DELETE`
//! with the batch's handles). Unsigned: run the broker without ACL.

use super::{hist, now_us, report_run, Args, Mode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MARK: &str = "RKBENCH!";

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            host: addr.to_string(),
        })
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: String,
    ) -> Result<(u16, Bytes), String> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "text/xml;charset=UTF-8")
            .header("x-mq-version", "2015-06-06")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

fn fields<'a>(doc: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    doc.match_indices(&open)
        .filter_map(|(at, _)| {
            let rest = &doc[at + open.len()..];
            rest.find(&close).map(|end| &rest[..end])
        })
        .collect()
}

struct Totals {
    sent: AtomicU64,
    failed: AtomicU64,
    consumed: AtomicU64,
    producing: AtomicBool,
}

pub async fn run(args: Arc<Args>, addr: SocketAddr) -> Result<Value, String> {
    let totals = Arc::new(Totals {
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        producing: AtomicBool::new(args.mode != Mode::Consume),
    });
    let send_lat = Arc::new(Mutex::new(hist()));
    let e2e_lat = Arc::new(Mutex::new(hist()));
    let started = Instant::now();
    let mut consumers = Vec::new();
    if args.mode != Mode::Produce {
        for _ in 0..args.consumers.max(1) {
            let (args, totals, lat) = (args.clone(), totals.clone(), e2e_lat.clone());
            consumers.push(tokio::spawn(consume(args, addr, totals, lat)));
        }
    }
    let mut produce_secs = 0.0;
    if args.mode != Mode::Consume {
        let mut producers = Vec::new();
        for i in 0..args.producers.max(1) {
            let (args, totals, lat) = (args.clone(), totals.clone(), send_lat.clone());
            producers.push(tokio::spawn(produce(args, addr, totals, lat, i)));
        }
        for p in producers {
            p.await.map_err(|e| e.to_string())??;
        }
        produce_secs = started.elapsed().as_secs_f64();
        totals.producing.store(false, Ordering::Release);
    }
    let mut consume_secs = 0.0f64;
    for c in consumers {
        let last = c.await.map_err(|e| e.to_string())??;
        consume_secs = consume_secs.max(last.duration_since(started).as_secs_f64());
    }
    let mut out = json!({"protocol": "http", "topic": args.topic, "size": args.size,
                         "producers": args.producers, "consumers": args.consumers, "rate": args.rate});
    let (send_lat, e2e_lat) = (
        send_lat.lock().map_err(|_| "poisoned")?,
        e2e_lat.lock().map_err(|_| "poisoned")?,
    );
    report_run(
        &mut out,
        &args,
        "publish",
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

async fn produce(
    args: Arc<Args>,
    addr: SocketAddr,
    totals: Arc<Totals>,
    lat: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    index: usize,
) -> Result<(), String> {
    let mut conn = Conn::open(addr).await?;
    let path = format!("/topics/{}/messages", args.topic);
    let pad = "x".repeat(args.size.saturating_sub(MARK.len() + 16));
    // Open loop at this connection's share of --rate, from a staggered start.
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.producers.max(1) as f64 / r.max(1) as f64));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let mut next = start
        + interval
            .map(|i| i.mul_f64(index as f64 / args.producers.max(1) as f64))
            .unwrap_or_default();
    let mut local = hist();
    while Instant::now() < end {
        if let Some(i) = interval {
            tokio::time::sleep_until(next.into()).await;
            next += i;
        }
        if args
            .count
            .is_some_and(|c| totals.sent.load(Ordering::Relaxed) >= c)
        {
            break;
        }
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Message xmlns=\"http://mq.aliyuncs.com/doc/v1/\"><MessageBody>{MARK}{:016}{pad}</MessageBody><MessageTag>bench</MessageTag></Message>",
            now_us()
        );
        let t = Instant::now();
        match conn.call("POST", &path, body).await {
            Ok((201, _)) => {
                totals.sent.fetch_add(1, Ordering::Relaxed);
                let _ = local.record(t.elapsed().as_micros().max(1) as u64);
            }
            Ok(_) => {
                totals.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                totals.failed.fetch_add(1, Ordering::Relaxed);
                conn = Conn::open(addr).await?;
            }
        }
    }
    lat.lock()
        .map_err(|_| "poisoned")?
        .add(&local)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Consumes and acks until the producers are done and nothing came for --consume-idle-secs;
/// answers when the last message arrived.
async fn consume(
    args: Arc<Args>,
    addr: SocketAddr,
    totals: Arc<Totals>,
    lat: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
) -> Result<Instant, String> {
    let mut conn = Conn::open(addr).await?;
    let get = format!(
        "/topics/{}/messages?consumer={}&numOfMessages={}&waitseconds=1",
        args.topic,
        args.group,
        args.pull_batch.clamp(1, 16)
    );
    let del = format!("/topics/{}/messages?consumer={}", args.topic, args.group);
    let mut local = hist();
    let mut last = Instant::now();
    loop {
        let idle = Duration::from_secs(args.consume_idle_secs);
        if !totals.producing.load(Ordering::Acquire) && last.elapsed() > idle {
            break;
        }
        let (status, body) = match conn.call("GET", &get, String::new()).await {
            Ok(r) => r,
            Err(_) => {
                conn = Conn::open(addr).await?;
                continue;
            }
        };
        if status != 200 {
            continue;
        }
        let doc = String::from_utf8_lossy(&body);
        let handles = fields(&doc, "ReceiptHandle");
        let now = now_us();
        for b in fields(&doc, "MessageBody") {
            if let Some(sent) = b
                .strip_prefix(MARK)
                .and_then(|r| r.get(..16))
                .and_then(|t| t.parse::<u64>().ok())
            {
                let _ = local.record(now.saturating_sub(sent).max(1));
            }
        }
        if handles.is_empty() {
            continue;
        }
        let mut ack = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ReceiptHandles xmlns=\"http://mq.aliyuncs.com/doc/v1/\">");
        for h in &handles {
            ack.push_str("<ReceiptHandle>");
            ack.push_str(h);
            ack.push_str("</ReceiptHandle>");
        }
        ack.push_str("</ReceiptHandles>");
        if let Ok((204, _)) = conn.call("DELETE", &del, ack).await {
            totals
                .consumed
                .fetch_add(handles.len() as u64, Ordering::Relaxed);
            last = Instant::now();
        }
    }
    lat.lock()
        .map_err(|_| "poisoned")?
        .add(&local)
        .map_err(|e| e.to_string())?;
    Ok(last)
}

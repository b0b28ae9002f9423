//! rocktor-bench: a load generator for any RocketMQ-compatible broker. It speaks only standard
//! RocketMQ remoting: routes from the name server, SEND_MESSAGE_V2 with pipelined requests,
//! long-poll PULL_MESSAGE with the request's own subscription.
//!
//!     cargo run --release --bin rocktor-bench -- --namesrv 127.0.0.1:9876 --mode both --duration 30
//!
//! `--kind transaction` sends half messages and commits each (oneway END_TRANSACTION) once its
//! send is answered; `--kind scheduled` gives each message a delivery time up to
//! `--delay-spread-ms` ahead (`__STARTDELIVERTIME`), and consumers report how late (or early)
//! each arrived.
//!
//! `--protocol http` speaks the Aliyun-style HTTP messaging API instead (publish; consume in
//! batches + ack), on `--http ADDR`, over `--producers` / `--consumers` keep-alive connections.
//!
//! `--protocol grpc` speaks the 5.x gRPC MessagingService on `--grpc ADDR`: `--producers`
//! HTTP/2 channels with `--inflight` one-message SendMessage calls each; `--consumers`
//! channels receiving batches of `--pull-batch` and acking each batch in one call.
//!
//! Prints throughput and latency percentiles; never asserts anything about them.

/// mimalloc: glibc malloc spent a quarter of the arbiter threads' time on frees of buffers
/// allocated on another thread (measured with perf, see the performance notes in README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "rocktor-bench/grpc.rs"]
mod grpc;
#[path = "rocktor-bench/http.rs"]
mod http;

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rocktor::client::{request, RemotingClient};
use rocktor::remoting::command::{check_frame, RemotingCommand, OUR_VERSION};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    Produce,
    Consume,
    Both,
    /// QUERY_MESSAGE by key (keys `k0`..`k{N-1}` of `--message-keys N`) for `--duration`,
    /// one query at a time per `--producers` connection.
    Query,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Protocol {
    Remoting,
    /// The HTTP messaging API (publish, consume + ack).
    Http,
    /// The 5.x gRPC MessagingService (SendMessage; ReceiveMessage + AckMessage).
    Grpc,
}

/// What the producers send.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Kind {
    Normal,
    /// Half message, then COMMIT once the send is answered.
    Transaction,
    /// Delivery time up to --delay-spread-ms ahead.
    Scheduled,
}

#[derive(Debug, Parser)]
#[command(
    name = "rocktor-bench",
    about = "Load generator for RocketMQ-compatible brokers (standard remoting only)"
)]
struct Args {
    /// Name server address.
    #[arg(long, default_value = "127.0.0.1:9876")]
    namesrv: SocketAddr,
    #[arg(long, default_value = "BenchTopic")]
    topic: String,
    /// Create (or update) the topic with --queues queues on every broker first (UPDATE_AND_CREATE_TOPIC).
    #[arg(long)]
    create_topic: bool,
    #[arg(long, default_value_t = 8)]
    queues: u32,
    #[arg(long, value_enum, default_value = "produce")]
    mode: Mode,
    /// Producer connections.
    #[arg(long, default_value_t = 16)]
    producers: usize,
    /// Requests in flight per producer connection.
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Producer run time in seconds; consumers stop once producers are done and they caught up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many messages in total.
    #[arg(long)]
    count: Option<u64>,
    /// Target send rate, messages per second in total (open loop); unlimited when absent.
    #[arg(long)]
    rate: Option<u64>,
    /// Consumer group for consume mode.
    #[arg(long, default_value = "rocktor_bench_group")]
    group: String,
    /// Consume from the queues' first offsets instead of their current ends.
    #[arg(long)]
    from_start: bool,
    /// Messages per pull.
    #[arg(long, default_value_t = 32)]
    pull_batch: u32,
    /// Worker threads of the generator (one keeps it off the broker's cores when both share a box).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "normal")]
    kind: Kind,
    /// Scheduled messages are due at send time + --delay-min-ms + a uniform share of this.
    #[arg(long, default_value_t = 60_000)]
    delay_spread_ms: u64,
    #[arg(long, default_value_t = 0)]
    delay_min_ms: u64,
    /// Give message i the key `k{i % N}` (KEYS), for `--mode query` later.
    #[arg(long)]
    message_keys: Option<u64>,
    /// ACL 1.0 credentials: every request is signed (HmacSHA1) as the Java client signs it.
    #[arg(long)]
    ak: Option<String>,
    #[arg(long)]
    sk: Option<String>,
    #[arg(long, value_enum, default_value = "remoting")]
    protocol: Protocol,
    /// The broker's HTTP port, for `--protocol http`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The broker's gRPC port, for `--protocol grpc`.
    #[arg(long, default_value = "127.0.0.1:8081")]
    grpc: SocketAddr,
    /// Consumer connections for `--protocol http` and `--protocol grpc`.
    #[arg(long, default_value_t = 16)]
    consumers: usize,
    /// Consumers stop after this long without a message once the producers are done.
    #[arg(long, default_value_t = 2)]
    consume_idle_secs: u64,
}

/// Bodies start with this marker and the send time in µs, so consumers measure end to end
/// with microsecond resolution; other bodies fall back to the born timestamp (ms).
const MARK: &[u8; 8] = b"RKBENCH!";
/// Scheduled bodies: this marker, the send time in µs, the due time in ms.
const SCHED_MARK: &[u8; 8] = b"RKSCHED!";
const PRODUCER_GROUP: &str = "rocktor_bench_producer";
const TIMEOUT: Duration = Duration::from_secs(10);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds")
}

#[derive(Clone)]
struct Route {
    brokers: Vec<(String, SocketAddr)>,
    write_queues: u32,
    read_queues: u32,
}

async fn route(ns: &RemotingClient, topic: &str) -> Result<Route, String> {
    let r = ns
        .call(request(105, &[("topic", topic.to_string())]), TIMEOUT)
        .await
        .map_err(|e| format!("route of {topic}: {e}"))?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("route JSON: {e}"))?;
    let mut brokers = Vec::new();
    for b in v["brokerDatas"].as_array().into_iter().flatten() {
        if let Some(addr) = b["brokerAddrs"]["0"].as_str().and_then(|a| a.parse().ok()) {
            brokers.push((
                b["brokerName"].as_str().unwrap_or_default().to_string(),
                addr,
            ));
        }
    }
    let q = v["queueDatas"]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_default();
    let write_queues = q["writeQueueNums"].as_u64().unwrap_or(0) as u32;
    let read_queues = q["readQueueNums"].as_u64().unwrap_or(0) as u32;
    if brokers.is_empty() || write_queues == 0 {
        return Err(format!("route of {topic} has no writable master"));
    }
    Ok(Route {
        brokers,
        write_queues,
        read_queues,
    })
}

/// The request signed with --ak/--sk, when given.
fn signed(args: &Args, mut cmd: RemotingCommand) -> RemotingCommand {
    if let Some(ak) = &args.ak {
        rocktor::client::sign_request(&mut cmd, ak, args.sk.as_deref().unwrap_or(""));
    }
    cmd
}

async fn create_topic(
    args: &Args,
    ns: &RemotingClient,
    topic: &str,
    queues: u32,
) -> Result<(), String> {
    let r = ns
        .call(request(106, &[]), TIMEOUT)
        .await
        .map_err(|e| format!("cluster info: {e}"))?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("cluster JSON: {e}"))?;
    for (_, b) in v["brokerAddrTable"].as_object().into_iter().flatten() {
        let Some(addr) = b["brokerAddrs"]["0"]
            .as_str()
            .and_then(|a| a.parse::<SocketAddr>().ok())
        else {
            continue;
        };
        let (c, _) = RemotingClient::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        c.call(
            signed(args, rocktor::client::create_topic_request(topic, queues)),
            TIMEOUT,
        )
        .await
        .map_err(|e| format!("create topic on {addr}: {e}"))?;
    }
    Ok(())
}

/// Appends one SEND_MESSAGE_V2 frame (JSON header, as the Java client sends it) to `out`. Written
/// by hand so that the generator spends its CPU on the broker, not on building requests.
fn encode_send(out: &mut Vec<u8>, args: &Args, queue_id: u32, opaque: i32, seq: u64) {
    use std::io::Write;
    let (topic, size) = (&args.topic, args.size);
    let sent_us = now_us();
    let due_ms = match args.kind {
        Kind::Scheduled => {
            // A cheap spread: the golden-ratio sequence over the window.
            let frac = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
            sent_us / 1000 + args.delay_min_ms + (frac * args.delay_spread_ms as f64) as u64
        }
        _ => 0,
    };
    // The properties as sent (raw) and as written into the JSON header (escaped).
    let mut props = String::from("WAIT\u{1}true\u{2}");
    match args.kind {
        Kind::Normal => {}
        Kind::Transaction => {
            props.push_str(&format!(
                "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}{PRODUCER_GROUP}\u{2}"
            ));
        }
        Kind::Scheduled => {
            props.push_str(&format!("__STARTDELIVERTIME\u{1}{due_ms}\u{2}"));
        }
    }
    if let Some(n) = args.message_keys {
        props.push_str(&format!("KEYS\u{1}k{}\u{2}", seq % n.max(1)));
    }
    let size = size.max(24);
    let mut body = Vec::with_capacity(size);
    if args.kind == Kind::Scheduled {
        body.extend_from_slice(SCHED_MARK);
        body.extend_from_slice(&sent_us.to_be_bytes());
        body.extend_from_slice(&due_ms.to_be_bytes());
    } else {
        body.extend_from_slice(MARK);
        body.extend_from_slice(&sent_us.to_be_bytes());
    }
    body.resize(size, b'x');
    let (born, queue) = ((sent_us / 1000).to_string(), queue_id.to_string());
    let signature = args.ak.as_deref().map(|ak| {
        let fields = [
            ("AccessKey", ak),
            ("a", PRODUCER_GROUP),
            ("b", topic.as_str()),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", queue.as_str()),
            ("f", "0"),
            ("g", born.as_str()),
            ("h", "0"),
            ("i", props.as_str()),
            ("j", "0"),
            ("k", "false"),
            ("m", "false"),
        ];
        (
            ak,
            rocktor_actors::auth::sign(args.sk.as_deref().unwrap_or(""), &fields, &body),
        )
    });
    let start = out.len();
    out.extend_from_slice(&[0; 8]); // frame length and header word, patched below
    let escaped = props
        .replace('\u{1}', "\\u0001")
        .replace('\u{2}', "\\u0002");
    let _ = write!(
        out,
        "{{\"code\":310,\"extFields\":{{\"a\":\"{PRODUCER_GROUP}\",\"b\":\"{topic}\",\"c\":\"TBW102\",\"d\":\"4\",\
         \"e\":\"{queue}\",\"f\":\"0\",\"g\":\"{born}\",\"h\":\"0\",\"i\":\"{escaped}\",\
         \"j\":\"0\",\"k\":\"false\",\"m\":\"false\""
    );
    if let Some((ak, sig)) = &signature {
        let _ = write!(out, ",\"AccessKey\":\"{ak}\",\"Signature\":\"{sig}\"");
    }
    let _ = write!(
        out,
        "}},\"flag\":0,\"language\":\"JAVA\",\
         \"opaque\":{opaque},\"serializeTypeCurrentRPC\":\"JSON\",\"version\":{OUR_VERSION}}}"
    );
    let header_len = out.len() - start - 8;
    out.extend_from_slice(&body);
    let total = (4 + header_len + size) as u32;
    out[start..start + 4].copy_from_slice(&total.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&(header_len as u32).to_be_bytes());
}

/// Appends a oneway END_TRANSACTION (COMMIT) for the half message a send answer names.
fn encode_commit(out: &mut Vec<u8>, frame: &[u8], opaque: i32) -> Option<()> {
    use std::io::Write;
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "extFields")]
        ext: Ext,
    }
    #[derive(serde::Deserialize)]
    struct Ext {
        #[serde(rename = "msgId")]
        msg_id: String,
        #[serde(rename = "queueOffset")]
        queue_offset: String,
    }
    let word = u32::from_be_bytes(frame.get(4..8)?.try_into().ok()?);
    let header = frame.get(8..8 + (word & 0xFF_FFFF) as usize)?;
    let head: Head = serde_json::from_slice(header).ok()?;
    let hex = head
        .ext
        .msg_id
        .get(head.ext.msg_id.len().checked_sub(16)?..)?;
    let commit_log_offset = u64::from_str_radix(hex, 16).ok()?;
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    let _ = write!(
        out,
        "{{\"code\":37,\"extFields\":{{\"producerGroup\":\"{PRODUCER_GROUP}\",\"tranStateTableOffset\":\"{}\",\
         \"commitLogOffset\":\"{commit_log_offset}\",\"commitOrRollback\":\"8\",\"fromTransactionCheck\":\"false\",\
         \"msgId\":\"{}\"}},\"flag\":2,\"language\":\"JAVA\",\"opaque\":{opaque},\
         \"serializeTypeCurrentRPC\":\"JSON\",\"version\":{OUR_VERSION}}}",
        head.ext.queue_offset, head.ext.msg_id
    );
    let header_len = out.len() - start - 8;
    out[start..start + 4].copy_from_slice(&((4 + header_len) as u32).to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&(header_len as u32).to_be_bytes());
    Some(())
}

/// The two fields of a response header the generator needs; serde skips the rest unallocated.
#[derive(serde::Deserialize)]
struct ResponseHead {
    code: i32,
    opaque: i32,
}

/// Code and opaque of one response frame (JSON or binary header).
fn response_head(frame: &[u8]) -> Option<ResponseHead> {
    let word = u32::from_be_bytes(frame.get(4..8)?.try_into().ok()?);
    let header = frame.get(8..8 + (word & 0xFF_FFFF) as usize)?;
    match word >> 24 {
        0 => serde_json::from_slice(header).ok(),
        _ => Some(ResponseHead {
            code: i16::from_be_bytes(header.get(0..2)?.try_into().ok()?) as i32,
            opaque: i32::from_be_bytes(header.get(5..9)?.try_into().ok()?),
        }),
    }
}

#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    failed: AtomicU64,
    consumed: AtomicU64,
    consumed_bytes: AtomicU64,
}

struct Shared {
    totals: Totals,
    send_lat: Mutex<Histogram<u64>>,
    e2e_lat: Mutex<Histogram<u64>>,
    /// Scheduled messages: how late each arrived after its due time (µs), and how many early.
    lateness: Mutex<Histogram<u64>>,
    early: AtomicU64,
    producing: AtomicBool,
    last_receive: Mutex<Option<Instant>>,
}

/// Claims one message of the `--count` budget (always granted without one).
fn claim(args: &Args, shared: &Shared) -> bool {
    match args.count {
        Some(limit) => shared.totals.sent.fetch_add(1, Ordering::Relaxed) < limit,
        None => true,
    }
}

/// One producer connection: keeps up to `--inflight` sends outstanding (or paces them at its
/// share of `--rate`), matches answers by opaque, records send latency.
async fn produce_on(
    addr: SocketAddr,
    p: usize,
    args: Arc<Args>,
    queues: u32,
    shared: Arc<Shared>,
    deadline: Instant,
) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let window = args.inflight.max(1);
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.producers as f64 / r.max(1) as f64));
    let mut next_due = Instant::now()
        + interval
            .map(|iv| iv.mul_f64(p as f64 / args.producers as f64))
            .unwrap_or_default();
    // Outstanding sends by slot; a request's opaque names its slot (`opaque % window`), and
    // answers may come back in any order.
    let mut sent_at: Vec<Option<(i32, Instant)>> = vec![None; window];
    let mut free: Vec<usize> = (0..window).rev().collect();
    let (mut round, mut q) = (1i32, p as u32);
    let (mut wbuf, mut rbuf) = (
        Vec::with_capacity(64 * 1024),
        bytes::BytesMut::with_capacity(256 * 1024),
    );
    let mut local = hist();
    let mut stopping = false;
    loop {
        let now = Instant::now();
        stopping |= now >= deadline;
        while !stopping && interval.is_none_or(|_| next_due <= now) {
            let Some(&slot) = free.last() else { break };
            if !claim(&args, &shared) {
                stopping = true;
                break;
            }
            free.pop();
            let opaque = (round % (i32::MAX / window as i32)) * window as i32 + slot as i32;
            round += 1;
            encode_send(
                &mut wbuf,
                &args,
                q % queues,
                opaque,
                round as u64 * 7919 + p as u64,
            );
            sent_at[slot] = Some((opaque, Instant::now()));
            q = q.wrapping_add(1);
            if let Some(iv) = interval {
                next_due += iv;
            }
        }
        if !wbuf.is_empty() {
            wr.write_all(&wbuf)
                .await
                .map_err(|e| format!("send to {addr}: {e}"))?;
            wbuf.clear();
        }
        let outstanding = window - free.len();
        if stopping && outstanding == 0 {
            // Commits of the last answers are still queued.
            if !wbuf.is_empty() {
                wr.write_all(&wbuf)
                    .await
                    .map_err(|e| format!("send to {addr}: {e}"))?;
            }
            break;
        }
        let pace = interval
            .filter(|_| !stopping && outstanding < window)
            .map(|_| next_due);
        let read = async {
            match tokio::time::timeout(TIMEOUT, rd.read_buf(&mut rbuf)).await {
                Ok(Ok(0)) => Err("connection closed".to_string()),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer in {TIMEOUT:?}")),
            }
        };
        let got = match pace {
            Some(due) => tokio::select! {
                r = read => Some(r),
                _ = tokio::time::sleep_until(due.into()) => None,
            },
            None => Some(read.await),
        };
        if let Some(Err(e)) = got {
            shared
                .totals
                .failed
                .fetch_add(outstanding as u64, Ordering::Relaxed);
            return Err(format!("producer connection to {addr}: {e}"));
        }
        while let Ok(Some(n)) = check_frame(&rbuf) {
            let frame = rbuf.split_to(n);
            let Some(head) = response_head(&frame) else {
                return Err(format!("bad response frame from {addr}"));
            };
            let slot = head.opaque.max(0) as usize % window;
            let at = match sent_at[slot] {
                Some((opaque, at)) if opaque == head.opaque => at,
                _ => continue, // not one of ours (e.g. a request from the broker)
            };
            sent_at[slot] = None;
            free.push(slot);
            if head.code == 0 {
                let _ = local.record(at.elapsed().as_micros().max(1) as u64);
                if args.kind == Kind::Transaction
                    && encode_commit(&mut wbuf, &frame, -head.opaque.max(1)).is_none()
                {
                    shared.totals.failed.fetch_add(1, Ordering::Relaxed);
                }
                if args.count.is_none() {
                    shared.totals.sent.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                shared.totals.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if check_frame(&rbuf).is_err() {
            return Err(format!("bad frame from {addr}"));
        }
        rbuf.reserve(64 * 1024);
    }
    if let Ok(mut h) = shared.send_lat.lock() {
        let _ = h.add(&local);
    }
    Ok(())
}

async fn produce(args: Arc<Args>, route: Route, shared: Arc<Shared>) -> Result<Duration, String> {
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.producers {
        let (_, addr) = route.brokers[p % route.brokers.len()];
        let (args, shared) = (args.clone(), shared.clone());
        tasks.push(tokio::spawn(produce_on(
            addr,
            p,
            args,
            route.write_queues,
            shared,
            deadline,
        )));
    }
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("rocktor-bench: {e}"),
            Err(e) => eprintln!("rocktor-bench: producer task: {e}"),
        }
    }
    if let Some(limit) = args.count {
        // The counter over-counts by the senders that stopped at the limit.
        let s = shared.totals.sent.load(Ordering::Relaxed).min(limit);
        shared.totals.sent.store(
            s.saturating_sub(shared.totals.failed.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }
    shared.producing.store(false, Ordering::Release);
    Ok(started.elapsed())
}

/// Per pulled body: end-to-end latency, and for scheduled messages the lateness.
struct Latencies {
    e2e: Histogram<u64>,
    late: Histogram<u64>,
    early: u64,
}

fn decode_latencies(body: &bytes::Bytes, now: u64, l: &mut Latencies) -> (u64, u64) {
    let mut rest = body.clone();
    let (mut n, mut bytes) = (0, 0);
    while !rest.is_empty() {
        let Ok((rec, len)) = rocktor_storage::record::decode(&rest) else {
            break;
        };
        let b = &rec.body;
        let word = |at: usize| {
            b.get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0)
        };
        let sent_us = if b.len() >= 16 && (&b[..8] == MARK || &b[..8] == SCHED_MARK) {
            word(8)
        } else {
            rec.born_timestamp.max(0) as u64 * 1000
        };
        if b.len() >= 24 && &b[..8] == SCHED_MARK {
            let due_us = word(16).saturating_mul(1000);
            if now < due_us {
                l.early += 1;
            } else {
                let _ = l.late.record((now - due_us).max(1));
            }
        }
        let _ = l.e2e.record(now.saturating_sub(sent_us).max(1));
        n += 1;
        bytes += rec.body.len() as u64;
        rest = rest.slice(len..);
    }
    (n, bytes)
}

async fn consume(args: Arc<Args>, route: Route, shared: Arc<Shared>) -> Result<Duration, String> {
    let started = Instant::now();
    let scheduled_for = match args.kind {
        Kind::Scheduled => (args.delay_min_ms + args.delay_spread_ms) / 1000,
        _ => 0,
    };
    let hard_deadline = started + Duration::from_secs(args.duration + scheduled_for + 30);
    let mut tasks = Vec::new();
    for (_, addr) in &route.brokers {
        let (client, _) = RemotingClient::connect(*addr)
            .await
            .map_err(|e| e.to_string())?;
        for q in 0..route.read_queues {
            let (client, args, shared) = (client.clone(), args.clone(), shared.clone());
            tasks.push(tokio::spawn(async move {
                let code = if args.from_start { 31 } else { 30 };
                let q_ext = [("topic", args.topic.clone()), ("queueId", q.to_string())];
                let mut offset: u64 = match client
                    .call(signed(&args, request(code, &q_ext)), TIMEOUT)
                    .await
                {
                    Ok(r) => r
                        .ext
                        .get("offset")
                        .and_then(|o| o.parse().ok())
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                let mut local = Latencies {
                    e2e: hist(),
                    late: hist(),
                    early: 0,
                };
                let idle_limit = Duration::from_secs(args.consume_idle_secs);
                let mut idle_since: Option<Instant> = None;
                loop {
                    let producing = shared.producing.load(Ordering::Acquire);
                    if Instant::now() > hard_deadline
                        || (!producing && idle_since.is_some_and(|t| t.elapsed() > idle_limit))
                    {
                        break;
                    }
                    let ext = [
                        ("consumerGroup", args.group.clone()),
                        ("topic", args.topic.clone()),
                        ("queueId", q.to_string()),
                        ("queueOffset", offset.to_string()),
                        ("maxMsgNums", args.pull_batch.to_string()),
                        ("sysFlag", "6".into()),
                        ("commitOffset", "0".into()),
                        ("suspendTimeoutMillis", "1000".into()),
                        ("subscription", "*".into()),
                        ("subVersion", "0".into()),
                        ("expressionType", "TAG".into()),
                    ];
                    let Ok(r) = client
                        .request(signed(&args, request(11, &ext)), Duration::from_secs(15))
                        .await
                    else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    if let Some(next) = r.ext.get("nextBeginOffset").and_then(|o| o.parse().ok()) {
                        offset = next;
                    }
                    if r.code == 0 {
                        let (n, b) = decode_latencies(&r.body, now_us(), &mut local);
                        shared.totals.consumed.fetch_add(n, Ordering::Relaxed);
                        shared.totals.consumed_bytes.fetch_add(b, Ordering::Relaxed);
                        if let Ok(mut last) = shared.last_receive.lock() {
                            *last = Some(Instant::now());
                        }
                        idle_since = None;
                    } else {
                        idle_since.get_or_insert_with(Instant::now);
                    }
                }
                if let Ok(mut h) = shared.e2e_lat.lock() {
                    let _ = h.add(&local.e2e);
                }
                if let Ok(mut h) = shared.lateness.lock() {
                    let _ = h.add(&local.late);
                }
                shared.early.fetch_add(local.early, Ordering::Relaxed);
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    // The rate counts up to the last message received, not the idle wait that ends the run.
    let last = shared.last_receive.lock().ok().and_then(|l| *l);
    Ok(last
        .map(|l| l.duration_since(started))
        .unwrap_or_else(|| started.elapsed()))
}

fn percentiles(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| v as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// The results of a request/response run (`--protocol http|grpc`), printed and put in `out`:
/// sends under `send_label` (sent, failed, seconds, latency), then consumption (consumed,
/// seconds, end-to-end latency), each when the mode ran it.
fn report_run(
    out: &mut Value,
    args: &Args,
    send_label: &str,
    sent: (u64, u64, f64, &Histogram<u64>),
    consumed: (u64, f64, &Histogram<u64>),
) {
    if args.mode != Mode::Consume {
        let (n, failed, secs, h) = sent;
        let lat = percentiles(h);
        print_line(send_label, n, n * args.size as u64, secs, &lat);
        out[send_label] = json!({"messages": n, "failed": failed, "seconds": secs,
            "msgs_per_sec": n as f64 / secs, "latency": lat});
        if failed > 0 {
            println!("{send_label} failures: {failed}");
        }
    }
    if args.mode != Mode::Produce {
        let (n, secs, h) = consumed;
        let lat = percentiles(h);
        let secs = secs.max(0.001);
        print_line("consume", n, n * args.size as u64, secs, &lat);
        out["consume"] = json!({"messages": n, "seconds": secs, "msgs_per_sec": n as f64 / secs,
            "end_to_end_latency": lat});
    }
}

fn print_line(label: &str, n: u64, bytes: u64, secs: f64, lat: &Value) {
    println!(
        "{label:<8} {n:>10} msgs  {:>10.0} msg/s  {:>8.1} MiB/s  latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        n as f64 / secs,
        bytes as f64 / secs / (1024.0 * 1024.0),
        lat["p50_ms"].as_f64().unwrap_or(0.0),
        lat["p90_ms"].as_f64().unwrap_or(0.0),
        lat["p99_ms"].as_f64().unwrap_or(0.0),
        lat["p999_ms"].as_f64().unwrap_or(0.0),
        lat["max_ms"].as_f64().unwrap_or(0.0),
    );
}

/// `--mode query`: QUERY_MESSAGE latency by key, from `--producers` connections at once.
async fn query(args: Arc<Args>, route: Route) -> Result<Value, String> {
    let keys = args
        .message_keys
        .ok_or("--mode query needs --message-keys N (the keys the messages were sent with)")?
        .max(1);
    let (_, addr) = route.brokers.first().cloned().ok_or("no broker")?;
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.producers.max(1) {
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            let (client, _) = RemotingClient::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let (mut h, mut found, mut x) = (hist(), 0u64, 0x9E37_79B9_7F4A_7C15u64 ^ p as u64);
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let ext = [
                    ("topic", args.topic.clone()),
                    ("key", format!("k{}", x % keys)),
                    ("maxNum", "64".to_string()),
                    ("beginTimestamp", "0".to_string()),
                    ("endTimestamp", i64::MAX.to_string()),
                ];
                let at = Instant::now();
                let r = client
                    .request(signed(&args, request(12, &ext)), TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = h.record(at.elapsed().as_micros().max(1) as u64);
                if r.code == 0 {
                    found += 1;
                }
            }
            Ok::<_, String>((h, found))
        }));
    }
    let (mut all, mut found) = (hist(), 0);
    for t in tasks {
        let (h, f) = t.await.map_err(|e| e.to_string())??;
        let _ = all.add(&h);
        found += f;
    }
    let secs = started.elapsed().as_secs_f64();
    let lat = percentiles(&all);
    print_line("query", all.len(), 0, secs, &lat);
    println!("queries that found messages: {found} of {}", all.len());
    Ok(json!({"query": {"queries": all.len(), "found": found, "seconds": secs, "latency": lat}}))
}

async fn run(args: Args) -> Result<Value, String> {
    let args = Arc::new(args);
    let (ns, _) = RemotingClient::connect(args.namesrv)
        .await
        .map_err(|e| e.to_string())?;
    if args.create_topic {
        create_topic(&args, &ns, &args.topic, args.queues).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if args.protocol == Protocol::Http {
        return http::run(args.clone(), args.http).await;
    }
    if args.protocol == Protocol::Grpc {
        return grpc::run(args.clone(), args.grpc).await;
    }
    let route = route(&ns, &args.topic).await?;
    if args.mode == Mode::Query {
        return query(args, route).await;
    }
    let shared = Arc::new(Shared {
        totals: Totals::default(),
        send_lat: Mutex::new(hist()),
        e2e_lat: Mutex::new(hist()),
        lateness: Mutex::new(hist()),
        early: AtomicU64::new(0),
        producing: AtomicBool::new(args.mode != Mode::Consume),
        last_receive: Mutex::new(None),
    });
    let consumer = (args.mode != Mode::Produce)
        .then(|| tokio::spawn(consume(args.clone(), route.clone(), shared.clone())));
    if consumer.is_some() {
        tokio::time::sleep(Duration::from_millis(300)).await; // consumers find their start offsets first
    }
    let produced = if args.mode != Mode::Consume {
        Some(produce(args.clone(), route.clone(), shared.clone()).await?)
    } else {
        None
    };
    let consumed = match consumer {
        Some(c) => Some(c.await.map_err(|e| e.to_string())??),
        None => None,
    };
    let mut out = json!({"topic": args.topic, "size": args.size, "producers": args.producers, "inflight": args.inflight,
                         "rate": args.rate, "queues": route.write_queues});
    if let Some(d) = produced {
        let n = shared.totals.sent.load(Ordering::Relaxed);
        let guard = shared
            .send_lat
            .lock()
            .map_err(|_| "latency histogram poisoned".to_string())?;
        let lat = percentiles(&guard);
        drop(guard);
        print_line("send", n, n * args.size as u64, d.as_secs_f64(), &lat);
        out["send"] = json!({"messages": n, "failed": shared.totals.failed.load(Ordering::Relaxed), "seconds": d.as_secs_f64(),
                             "msgs_per_sec": n as f64 / d.as_secs_f64(),
                             "mib_per_sec": (n * args.size as u64) as f64 / d.as_secs_f64() / 1048576.0, "latency": lat});
        if shared.totals.failed.load(Ordering::Relaxed) > 0 {
            println!(
                "send failures: {}",
                shared.totals.failed.load(Ordering::Relaxed)
            );
        }
    }
    if let Some(d) = consumed {
        let n = shared.totals.consumed.load(Ordering::Relaxed);
        let bytes = shared.totals.consumed_bytes.load(Ordering::Relaxed);
        let guard = shared
            .e2e_lat
            .lock()
            .map_err(|_| "latency histogram poisoned".to_string())?;
        let lat = percentiles(&guard);
        drop(guard);
        print_line("consume", n, bytes, d.as_secs_f64(), &lat);
        out["consume"] = json!({"messages": n, "seconds": d.as_secs_f64(), "msgs_per_sec": n as f64 / d.as_secs_f64(),
                                "mib_per_sec": bytes as f64 / d.as_secs_f64() / 1048576.0, "end_to_end_latency": lat});
        if args.kind == Kind::Scheduled {
            let guard = shared
                .lateness
                .lock()
                .map_err(|_| "lateness histogram poisoned".to_string())?;
            let late = percentiles(&guard);
            drop(guard);
            let early = shared.early.load(Ordering::Relaxed);
            println!(
                "lateness after the due time, ms: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (early: {early})",
                late["p50_ms"].as_f64().unwrap_or(0.0),
                late["p99_ms"].as_f64().unwrap_or(0.0),
                late["p999_ms"].as_f64().unwrap_or(0.0),
                late["max_ms"].as_f64().unwrap_or(0.0),
            );
            out["consume"]["lateness"] = late;
            out["consume"]["early"] = json!(early);
        }
    }
    Ok(out)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let json_path = args.json.clone();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rocktor-bench: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(v) => {
            if let Some(p) = json_path {
                if let Err(e) =
                    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap_or_default())
                {
                    eprintln!("rocktor-bench: cannot write {}: {e}", p.display());
                    return std::process::ExitCode::FAILURE;
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rocktor-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

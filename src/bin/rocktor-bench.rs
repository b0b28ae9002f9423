//! rocktor-bench: a load generator for any RocketMQ-compatible broker. It speaks only standard
//! RocketMQ remoting: routes from the name server, SEND_MESSAGE_V2 with pipelined requests,
//! long-poll PULL_MESSAGE with the request's own subscription.
//!
//!     cargo run --release --bin rocktor-bench -- --namesrv 127.0.0.1:9876 --mode both --duration 30
//!
//! Prints throughput and latency percentiles; never asserts anything about them.

/// mimalloc: glibc malloc spent a quarter of the arbiter threads' time on frees of buffers
/// allocated on another thread (measured with perf, see the performance notes in README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rocktor::client::{request, RemotingClient};
use rocktor::remoting::command::RemotingCommand;
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
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Bodies start with this marker and the send time in µs, so consumers measure end to end
/// with microsecond resolution; other bodies fall back to the born timestamp (ms).
const MARK: &[u8; 8] = b"RKBENCH!";
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

async fn create_topic(ns: &RemotingClient, topic: &str, queues: u32) -> Result<(), String> {
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
            rocktor::client::create_topic_request(topic, queues),
            TIMEOUT,
        )
        .await
        .map_err(|e| format!("create topic on {addr}: {e}"))?;
    }
    Ok(())
}

fn send_request(topic: &str, queue_id: u32, body: Vec<u8>) -> RemotingCommand {
    let mut cmd = request(
        310,
        &[
            ("a", "rocktor_bench_producer".into()),
            ("b", topic.to_string()),
            ("c", "TBW102".into()),
            ("d", "4".into()),
            ("e", queue_id.to_string()),
            ("f", "0".into()),
            ("g", (now_us() / 1000).to_string()),
            ("h", "0".into()),
            ("i", "WAIT\u{1}true\u{2}".into()),
            ("j", "0".into()),
            ("k", "false".into()),
            ("m", "false".into()),
        ],
    );
    cmd.body = body.into();
    cmd
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
    producing: AtomicBool,
    last_receive: Mutex<Option<Instant>>,
}

async fn produce(args: Arc<Args>, route: Route, shared: Arc<Shared>) -> Result<Duration, String> {
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let senders = (args.producers * args.inflight).max(1) as u64;
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(senders as f64 / r.max(1) as f64));
    let mut tasks = Vec::new();
    for p in 0..args.producers {
        let (_, addr) = route.brokers[p % route.brokers.len()];
        let (client, _) = RemotingClient::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        for k in 0..args.inflight {
            let (client, args, shared) = (client.clone(), args.clone(), shared.clone());
            let queues = route.write_queues;
            let start_q = (p * args.inflight + k) as u32;
            tasks.push(tokio::spawn(async move {
                let mut local = hist();
                let mut i = 0u32;
                let mut next = Instant::now()
                    + interval
                        .map(|iv| iv.mul_f64(k as f64 / args.inflight as f64))
                        .unwrap_or_default();
                while Instant::now() < deadline {
                    if let Some(limit) = args.count {
                        if shared.totals.sent.fetch_add(1, Ordering::Relaxed) >= limit {
                            break;
                        }
                    }
                    if let Some(iv) = interval {
                        tokio::time::sleep_until(next.into()).await;
                        next += iv;
                    }
                    let mut body = vec![b'x'; args.size.max(16)];
                    body[..8].copy_from_slice(MARK);
                    body[8..16].copy_from_slice(&now_us().to_be_bytes());
                    let q = (start_q + i) % queues;
                    i = i.wrapping_add(1);
                    let t = Instant::now();
                    match client
                        .call(send_request(&args.topic, q, body), TIMEOUT)
                        .await
                    {
                        Ok(_) => {
                            let _ = local.record(t.elapsed().as_micros().max(1) as u64);
                            if args.count.is_none() {
                                shared.totals.sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            shared.totals.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if let Ok(mut h) = shared.send_lat.lock() {
                    let _ = h.add(&local);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
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

fn decode_latencies(body: &bytes::Bytes, now: u64, h: &mut Histogram<u64>) -> (u64, u64) {
    let mut rest = body.clone();
    let (mut n, mut bytes) = (0, 0);
    while !rest.is_empty() {
        let Ok((rec, len)) = rocktor_storage::record::decode(&rest) else {
            break;
        };
        let sent_us = if rec.body.len() >= 16 && &rec.body[..8] == MARK {
            u64::from_be_bytes(rec.body[8..16].try_into().unwrap_or([0; 8]))
        } else {
            rec.born_timestamp.max(0) as u64 * 1000
        };
        let _ = h.record(now.saturating_sub(sent_us).max(1));
        n += 1;
        bytes += rec.body.len() as u64;
        rest = rest.slice(len..);
    }
    (n, bytes)
}

async fn consume(args: Arc<Args>, route: Route, shared: Arc<Shared>) -> Result<Duration, String> {
    let started = Instant::now();
    let hard_deadline = started + Duration::from_secs(args.duration + 30);
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
                let mut offset: u64 = match client.call(request(code, &q_ext), TIMEOUT).await {
                    Ok(r) => r
                        .ext
                        .get("offset")
                        .and_then(|o| o.parse().ok())
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                let mut local = hist();
                let mut idle_since: Option<Instant> = None;
                loop {
                    let producing = shared.producing.load(Ordering::Acquire);
                    if Instant::now() > hard_deadline
                        || (!producing
                            && idle_since.is_some_and(|t| t.elapsed() > Duration::from_secs(2)))
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
                        .request(request(11, &ext), Duration::from_secs(15))
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
                    let _ = h.add(&local);
                }
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

async fn run(args: Args) -> Result<Value, String> {
    let args = Arc::new(args);
    let (ns, _) = RemotingClient::connect(args.namesrv)
        .await
        .map_err(|e| e.to_string())?;
    if args.create_topic {
        create_topic(&ns, &args.topic, args.queues).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let route = route(&ns, &args.topic).await?;
    let shared = Arc::new(Shared {
        totals: Totals::default(),
        send_lat: Mutex::new(hist()),
        e2e_lat: Mutex::new(hist()),
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
    }
    Ok(out)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let json_path = args.json.clone();
    let rt = match tokio::runtime::Builder::new_multi_thread()
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

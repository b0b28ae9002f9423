//! rocktor-rs-client: drives rocktor with crates.io rocketmq-client-rust 1.0 in the end-to-end
//! tests. One JSON object per line on stdout, then a summary line `OK ...`; errors print
//! `ERROR: ...` and exit 1.
//!
//!   txn     --namesrv A --topic T --group PG [--commit N] [--rollback N] [--unknown N]
//!           [--check-answer commit|rollback|unknown] [--linger S] [--prefix P]
//!           Sends transactional messages whose local transaction commits, rolls back or stays
//!           unknown, then stays S seconds answering the broker's check-backs.
//!   orderly --namesrv A --topic T --group G --label L [--expect N] [--timeout S] [--sleep-ms MS]
//!           An orderly push consumer (LOCK_BATCH_MQ); records when it starts and ends each
//!           message, so the test can tell whether two clients ever held one queue at once.
//!   produce --namesrv A --topic T --count N --keys K [--prefix P] [--props "k=v;k2=v2"]
//!           [--msg-keys "k1 k2"]
//!           Orderly sends: message i of key i % K goes to queue (i % K) % queues.
//!   consume --namesrv A --topic T --group G [--fail 1] [--fail-first 1] [--max-reconsume R]
//!           [--expect N] [--timeout S] [--pop 1 --broker B]
//!           A concurrent push consumer; with --fail every delivery answers RECONSUME_LATER, so
//!           a message is retried R times and then dead-lettered; with --fail-first only a
//!           message's first delivery does. With --pop the group is first put in POP mode on
//!           broker B (SET_MESSAGE_REQUEST_MODE) and the consumer lets the broker assign queues
//!           (QUERY_ASSIGNMENT), so it consumes with POP_MESSAGE / ACK_MESSAGE /
//!           CHANGE_MESSAGE_INVISIBLETIME.
//!
//!   acl     --namesrv A --broker B (upsert --access-key K [--secret-key S] [--topic-perms "t=PUB,u=SUB"]
//!           [--group-perms ...] [--default-topic-perm P] [--default-group-perm P] [--admin true]
//!           | delete --access-key K | white --addrs "10.*,1.2.3.4" | version)
//!           The ACL 1.0 admin requests (DefaultMQAdminExt), signed with --ak/--sk.
//!
//! Every command takes --trace 1: the client sends message traces (RMQ_SYS_TRACE_TOPIC);
//! --namespace NS (resources become NS%name); --ak/--sk (ACL 1.0 signatures); --tls-ca PEM
//! (remoting over TLS, the server's certificate checked against PEM).

use cheetah_string::CheetahString;
use rocketmq_client_rust::prelude::ClientConfig;
use rocketmq_client_rust::{AclClientRPCHook, AuthAdmin, DefaultMQAdminExt, SessionCredentials};
use rocketmq_client_rust::{
    ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQProducer, DefaultMQPushConsumer,
    LocalTransactionState, MQPushConsumer, MessageListenerConcurrently, MessageListenerOrderly,
    TopicAdmin, TransactionListener, TransactionMQProducer,
};
use rocketmq_model::common::base::plain_access_config::PlainAccessConfig;
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_enum::MessageRequestMode;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use serde_json::json;
use std::any::Any;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse(raw: &[String]) -> Result<Self, String> {
        let mut m = HashMap::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            let k = k.strip_prefix("--").ok_or(format!("unexpected {k}"))?;
            let v = it.next().ok_or(format!("--{k} needs a value"))?;
            m.insert(k.to_string(), v.clone());
        }
        Ok(Args(m))
    }
    fn req(&self, k: &str) -> Result<String, String> {
        self.0.get(k).cloned().ok_or(format!("--{k} is required"))
    }
    fn num<T: std::str::FromStr>(&self, k: &str, d: T) -> Result<T, String> {
        match self.0.get(k) {
            Some(v) => v.parse().map_err(|_| format!("--{k}: not a number")),
            None => Ok(d),
        }
    }
}

/// The client config: message trace on with `--trace 1`, a namespace, TLS.
fn client_config(a: &Args) -> Result<ClientConfig, String> {
    let mut b = ClientConfig::builder().enable_trace(a.num("trace", 0u8)? == 1);
    if let Some(ns) = a.0.get("namespace") {
        b = b.namespace(ns.as_str());
    }
    if let Some(ca) = a.0.get("tls-ca") {
        b = b
            .enable_tls(true)
            .tls_client_auth_server(true)
            .tls_client_trust_cert_path(ca.as_str());
    }
    Ok(b.build_unvalidated())
}

/// ACL 1.0 signing with `--ak`/`--sk`.
fn acl_hook(a: &Args) -> Option<Arc<AclClientRPCHook>> {
    match (a.0.get("ak"), a.0.get("sk")) {
        (Some(ak), Some(sk)) => Some(Arc::new(AclClientRPCHook::new(
            SessionCredentials::with_keys(ak.as_str(), sk.as_str()),
        ))),
        _ => None,
    }
}

async fn acl(rt: Arc<ClientRuntime>, a: &Args) -> Result<String, String> {
    let mut admin = match acl_hook(a) {
        Some(h) => DefaultMQAdminExt::with_rpc_hook(rt, h),
        None => DefaultMQAdminExt::new(rt),
    };
    *admin.client_config_mut() = client_config(a)?;
    admin.set_namesrv_addr(a.req("namesrv")?);
    admin.start().await.map_err(|e| format!("start: {e:?}"))?;
    let broker = CheetahString::from(a.req("broker")?);
    let list = |k: &str| -> Vec<CheetahString> {
        a.0.get(k)
            .map(|v| v.split(',').map(CheetahString::from).collect())
            .unwrap_or_default()
    };
    let opt = |k: &str| a.0.get(k).map(|v| CheetahString::from(v.as_str()));
    let op = a.req("op")?;
    let r = match op.as_str() {
        "upsert" => {
            let config = PlainAccessConfig {
                access_key: opt("access-key"),
                secret_key: opt("secret-key"),
                white_remote_address: opt("white"),
                admin: a.0.get("admin").is_some_and(|v| v == "true"),
                default_topic_perm: opt("default-topic-perm"),
                default_group_perm: opt("default-group-perm"),
                topic_perms: list("topic-perms"),
                group_perms: list("group-perms"),
            };
            admin
                .create_and_update_plain_access_config(broker, config)
                .await
                .map(|()| "updated".to_string())
        }
        "delete" => admin
            .delete_plain_access_config(broker, CheetahString::from(a.req("access-key")?))
            .await
            .map(|()| "deleted".to_string()),
        "white" => admin
            .update_global_white_addr_config(broker, CheetahString::from(a.req("addrs")?), None)
            .await
            .map(|()| "white list set".to_string()),
        "version" => admin
            .examine_broker_cluster_acl_version_info(broker)
            .await
            .map(|v| v.to_string()),
        other => Ok(format!("unknown op {other}")),
    };
    admin.shutdown().await;
    r.map(|s| format!("OK {s}"))
        .map_err(|e| format!("{op}: {e}"))
}

fn state(name: &str) -> LocalTransactionState {
    match name {
        "commit" => LocalTransactionState::CommitMessage,
        "rollback" => LocalTransactionState::RollbackMessage,
        _ => LocalTransactionState::Unknown,
    }
}

struct Listener {
    check_answer: String,
    checks: Arc<AtomicUsize>,
}

impl TransactionListener for Listener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let kind = msg
            .get_properties()
            .get("txn")
            .map(|v| v.to_string())
            .unwrap_or_default();
        state(&kind)
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        self.checks.fetch_add(1, Ordering::SeqCst);
        let body = msg
            .body()
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default();
        let times = msg
            .properties()
            .get("TRANSACTION_CHECK_TIMES")
            .map(|v| v.to_string());
        emit(
            json!({"event": "check", "body": body, "topic": msg.topic().to_string(),
                    "check_times": times, "answer": self.check_answer, "t": now_ms()}),
        );
        state(&self.check_answer)
    }
}

async fn txn(rt: Arc<ClientRuntime>, a: &Args) -> Result<String, String> {
    let topic = a.req("topic")?;
    let checks = Arc::new(AtomicUsize::new(0));
    let listener = Listener {
        check_answer: a.0.get("check-answer").cloned().unwrap_or("commit".into()),
        checks: checks.clone(),
    };
    let mut p = TransactionMQProducer::builder(rt)
        .client_config(client_config(a)?)
        .producer_group(a.req("group")?)
        .name_server_addr(a.req("namesrv")?)
        .topics(vec![topic.clone()])
        .transaction_listener(listener)
        .build();
    p.start().await.map_err(|e| format!("start: {e:?}"))?;
    let prefix = a.0.get("prefix").cloned().unwrap_or("tx".into());
    let mut sent = 0;
    for kind in ["commit", "rollback", "unknown"] {
        for i in 0..a.num(kind, 0usize)? {
            let body = format!("{prefix}-{kind}-{i}");
            let msg = Message::builder()
                .topic(topic.as_str())
                .body_slice(body.as_bytes())
                .raw_property("txn", kind)
                .map_err(|e| format!("property: {e}"))?
                .build()
                .map_err(|e| format!("build: {e}"))?;
            let r = p
                .send_message_in_transaction::<(), _>(msg, None)
                .await
                .map_err(|e| format!("send {body}: {e:?}"))?;
            let sr = r.send_result.as_ref();
            emit(json!({"event": "sent", "body": body, "kind": kind,
                "status": sr.map(|s| s.send_status.to_string()),
                "msg_id": sr.and_then(|s| s.msg_id.as_ref().map(|m| m.to_string())),
                "offset_msg_id": sr.and_then(|s| s.offset_msg_id.as_ref().map(|m| m.to_string())),
                "queue_offset": sr.map(|s| s.queue_offset)}));
            sent += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(a.num("linger", 0u64)?)).await;
    p.shutdown().await;
    Ok(format!(
        "OK sent={sent} checks={}",
        checks.load(Ordering::SeqCst)
    ))
}

struct Orderly {
    label: String,
    sleep: Duration,
    seen: Arc<AtomicUsize>,
}

impl MessageListenerOrderly for Orderly {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        ctx: &mut ConsumeOrderlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeOrderlyStatus> {
        ctx.set_auto_commit(true);
        let q = ctx.get_message_queue().queue_id();
        for m in msgs {
            let start = now_ms();
            std::thread::sleep(self.sleep);
            let body = m
                .body()
                .map(|b| String::from_utf8_lossy(&b).to_string())
                .unwrap_or_default();
            emit(
                json!({"event": "recv", "label": self.label, "queue_id": q, "body": body,
                        "offset": m.queue_offset(), "start": start, "end": now_ms()}),
            );
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
        Ok(ConsumeOrderlyStatus::Success)
    }
}

/// Waits until `--expect` messages were seen, or `--timeout` seconds passed.
async fn wait_seen(seen: &AtomicUsize, a: &Args) -> Result<(), String> {
    let expect = a.num("expect", usize::MAX)?;
    let until = Instant::now() + Duration::from_secs(a.num("timeout", 60u64)?);
    while seen.load(Ordering::SeqCst) < expect && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn orderly(rt: Arc<ClientRuntime>, a: &Args) -> Result<String, String> {
    let seen = Arc::new(AtomicUsize::new(0));
    let mut c = DefaultMQPushConsumer::builder(rt)
        .client_config(client_config(a)?)
        .consumer_group(a.req("group")?)
        .name_server_addr(a.req("namesrv")?)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    c.subscribe(a.req("topic")?, "*".to_string())
        .await
        .map_err(|e| format!("subscribe: {e:?}"))?;
    c.register_message_listener_orderly(Orderly {
        label: a.req("label")?,
        sleep: Duration::from_millis(a.num("sleep-ms", 0u64)?),
        seen: seen.clone(),
    });
    c.start().await.map_err(|e| format!("start: {e:?}"))?;
    emit(json!({"event": "started", "t": now_ms()}));
    wait_seen(&seen, a).await?;
    c.shutdown().await;
    Ok(format!("OK seen={}", seen.load(Ordering::SeqCst)))
}

async fn produce(rt: Arc<ClientRuntime>, a: &Args) -> Result<String, String> {
    let topic = a.req("topic")?;
    let mut b = DefaultMQProducer::builder(rt)
        .client_config(client_config(a)?)
        .producer_group(format!("PG_{topic}"))
        .name_server_addr(a.req("namesrv")?);
    if let Some(h) = acl_hook(a) {
        b = b.rpc_hook(h);
    }
    let mut p = b.build();
    p.start().await.map_err(|e| format!("start: {e:?}"))?;
    let keys = a.num("keys", 1u64)?.max(1);
    let prefix = a.0.get("prefix").cloned().unwrap_or("ord".into());
    let count = a.num("count", 0u64)?;
    let seq = Arc::new(Mutex::new(HashMap::<u64, u64>::new()));
    for i in 0..count {
        let key = i % keys;
        let n = {
            let mut s = seq.lock().map_err(|_| "poisoned")?;
            let e = s.entry(key).or_default();
            *e += 1;
            *e - 1
        };
        let body = format!("{prefix}-{key}-{n}");
        let mut b = Message::builder()
            .topic(topic.as_str())
            .body_slice(body.as_bytes());
        if let Some(keys) = a.0.get("msg-keys") {
            b = b.keys(keys.split(' ').map(str::to_string).collect());
        }
        for kv in
            a.0.get("props")
                .map(String::as_str)
                .unwrap_or("")
                .split(';')
        {
            if let Some((k, v)) = kv.split_once('=') {
                b = b
                    .raw_property(k, v)
                    .map_err(|e| format!("property {k}: {e}"))?;
            }
        }
        let msg = b.build().map_err(|e| format!("build: {e}"))?;
        let r = p
            .send_with_selector_timeout(
                msg,
                |mqs: &[MessageQueue], _: &Message, k: &u64| {
                    mqs.get((*k as usize) % mqs.len().max(1)).cloned()
                },
                key,
                5000,
            )
            .await
            .map_err(|e| format!("send {body}: {e:?}"))?;
        let r = r.as_ref();
        emit(json!({"event": "sent", "body": body,
            "status": r.map(|s| s.send_status.to_string()),
            "msg_id": r.and_then(|s| s.msg_id.as_ref().map(|m| m.to_string())),
            "queue_id": r.and_then(|s| s.message_queue.as_ref().map(|q| q.queue_id()))}));
    }
    p.shutdown().await;
    Ok(format!("OK sent={count}"))
}

struct Concurrent {
    fail: bool,
    fail_first: bool,
    seen: Arc<AtomicUsize>,
}

impl MessageListenerConcurrently for Concurrent {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        for m in msgs {
            let body = m
                .body()
                .map(|b| String::from_utf8_lossy(&b).to_string())
                .unwrap_or_default();
            emit(
                json!({"event": "recv", "body": body, "topic": m.topic().to_string(),
                "reconsume_times": m.reconsume_times(), "msg_id": m.msg_id().to_string(),
                "queue_id": m.queue_id(),
                "t": now_ms()}),
            );
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
        let first = msgs.iter().any(|m| m.reconsume_times() == 0);
        Ok(if self.fail || (self.fail_first && first) {
            ConsumeConcurrentlyStatus::ReconsumeLater
        } else {
            ConsumeConcurrentlyStatus::ConsumeSuccess
        })
    }
}

/// Puts `--group` in POP mode for `--topic` on `--broker`, as `mqadmin setConsumeMode` does.
async fn set_pop_mode(rt: Arc<ClientRuntime>, a: &Args) -> Result<(), String> {
    let mut admin = match acl_hook(a) {
        Some(h) => DefaultMQAdminExt::with_rpc_hook(rt, h),
        None => DefaultMQAdminExt::new(rt),
    };
    *admin.client_config_mut() = client_config(a)?;
    admin.set_namesrv_addr(a.req("namesrv")?);
    admin.start().await.map_err(|e| format!("admin start: {e:?}"))?;
    let r = admin
        .set_message_request_mode(
            CheetahString::from(a.req("broker")?),
            CheetahString::from(a.req("topic")?),
            CheetahString::from(a.req("group")?),
            MessageRequestMode::Pop,
            0,
            5000,
        )
        .await;
    admin.shutdown().await;
    r.map_err(|e| format!("set_message_request_mode: {e}"))
}

async fn consume(rt: Arc<ClientRuntime>, a: &Args) -> Result<String, String> {
    let seen = Arc::new(AtomicUsize::new(0));
    let pop = a.num("pop", 0u8)? == 1;
    if pop {
        set_pop_mode(rt.clone(), a).await?;
        emit(json!({"event": "pop_mode", "t": now_ms()}));
    }
    let mut c = DefaultMQPushConsumer::builder(rt)
        .client_rebalance(!pop)
        .client_config(client_config(a)?)
        .consumer_group(a.req("group")?)
        .name_server_addr(a.req("namesrv")?)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .max_reconsume_times(a.num("max-reconsume", 16i32)?);
    if let Some(h) = acl_hook(a) {
        c = c.rpc_hook(Some(h));
    }
    let mut c = c.build();
    c.subscribe(a.req("topic")?, "*".to_string())
        .await
        .map_err(|e| format!("subscribe: {e:?}"))?;
    c.register_message_listener_concurrently(Concurrent {
        fail: a.num("fail", 0u8)? == 1,
        fail_first: a.num("fail-first", 0u8)? == 1,
        seen: seen.clone(),
    });
    c.start().await.map_err(|e| format!("start: {e:?}"))?;
    emit(json!({"event": "started", "t": now_ms()}));
    wait_seen(&seen, a).await?;
    // Time for the last answer (and its trace) to reach the broker.
    tokio::time::sleep(Duration::from_secs(a.num("linger", 2u64)?)).await;
    c.shutdown().await;
    Ok(format!("OK seen={}", seen.load(Ordering::SeqCst)))
}

fn main() {
    let raw: Vec<String> = std::env::args().collect();
    let Some(cmd) = raw.get(1).cloned() else {
        println!("ERROR: usage: rocktor-rs-client txn|orderly|produce --namesrv A ...");
        std::process::exit(2);
    };
    let args = match Args::parse(&raw[2..]) {
        Ok(a) => a,
        Err(e) => {
            println!("ERROR: {e}");
            std::process::exit(2);
        }
    };
    let mut cfg = RuntimeConfig::for_parallelism("rocktor-e2e", 8);
    cfg.worker_threads = 2;
    let owner = match RuntimeOwner::plan(cfg)
        .map_err(|e| e.to_string())
        .and_then(|p| p.build().map_err(|e| e.to_string()))
    {
        Ok(o) => o,
        Err(e) => {
            println!("ERROR: runtime: {e}");
            std::process::exit(1);
        }
    };
    let telemetry = rocketmq_observability::TelemetryRuntimeGuard::noop();
    let rt = match ClientRuntime::try_new(
        owner.root_context().component("client"),
        ClientRuntimeConfig::default(),
        telemetry.handle(),
    ) {
        Ok(rt) => rt,
        Err(e) => {
            println!("ERROR: client runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = owner.block_on(async {
        match cmd.as_str() {
            "txn" => txn(rt.clone(), &args).await,
            "orderly" => orderly(rt.clone(), &args).await,
            "produce" => produce(rt.clone(), &args).await,
            "consume" => consume(rt.clone(), &args).await,
            "acl" => acl(rt.clone(), &args).await,
            other => Err(format!("unknown command {other}")),
        }
    });
    match result {
        Ok(s) => println!("{s}"),
        Err(e) => {
            println!("ERROR: {e}");
            let _ = std::io::stdout().flush();
            std::process::exit(1);
        }
    }
    let _ = std::io::stdout().flush();
    // The client runtime may keep background tasks alive.
    std::process::exit(0);
}

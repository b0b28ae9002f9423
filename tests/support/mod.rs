//! Test harness: a rocktor process on free loopback ports, stopped when dropped, plus a few
//! remoting helpers over `rocktor::client`.

#![allow(dead_code)]

use rocktor::client::{request, RemotingClient};
use rocktor::remoting::command::RemotingCommand;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    // Ports whose port-2 is free too, so the VIP listener does not collide with another test.
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let p = l.local_addr().expect("local addr").port();
        if p > 1026 && TcpListener::bind(("127.0.0.1", p - 2)).is_ok() {
            return p;
        }
    }
}

pub struct BrokerProc {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub namesrv: SocketAddr,
    pub broker: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    flush: &'static str,
    /// Extra `ROCKTOR_*` settings for the process.
    pub env: Vec<(String, String)>,
    /// RLIMIT_FSIZE for the process (SIGXFSZ ignored, so writes past it fail with EFBIG).
    pub file_size_limit: Option<u64>,
}

impl BrokerProc {
    pub fn start(flush: &'static str) -> BrokerProc {
        Self::start_with(flush, &[], None)
    }

    /// Starts with extra environment settings and an optional file-size limit.
    pub fn start_with(
        flush: &'static str,
        env: &[(&str, &str)],
        file_size_limit: Option<u64>,
    ) -> BrokerProc {
        Self::start_prepared(flush, env, file_size_limit, |_| {})
    }

    /// Like `start_with`, after `prepare` ran on the (not yet created) data directory path,
    /// e.g. to mount a small file system there.
    pub fn start_prepared(
        flush: &'static str,
        env: &[(&str, &str)],
        file_size_limit: Option<u64>,
        prepare: impl FnOnce(&std::path::Path),
    ) -> BrokerProc {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut b = BrokerProc {
            child: None,
            dir,
            namesrv: SocketAddr::from(([127, 0, 0, 1], free_port())),
            broker: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            grpc: SocketAddr::from(([127, 0, 0, 1], free_port())),
            flush,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            file_size_limit,
        };
        prepare(&b.data_dir());
        // A port picked free may be taken before the broker binds it (by another test's
        // connection or listener): pick again.
        for _ in 0..4 {
            match b.try_spawn() {
                Err(log) if log.contains("Address already in use") => {
                    let _ = std::fs::write(b.log_path(), "");
                    b.namesrv = SocketAddr::from(([127, 0, 0, 1], free_port()));
                    b.broker = SocketAddr::from(([127, 0, 0, 1], free_port()));
                    b.http = SocketAddr::from(([127, 0, 0, 1], free_port()));
                    b.grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
                }
                Err(log) => panic!("rocktor exited early: {log}"),
                Ok(()) => return b,
            }
        }
        b.spawn();
        b
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("rocktor.log")
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("rocktor exited early: {log}");
        }
    }

    /// Starts the process and waits until it listens; its log if it exited first.
    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rocktor"));
        if let Some(limit) = self.file_size_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .args(["--data-dir", &self.data_dir().display().to_string()])
            .args(["--listen", "127.0.0.1"])
            .args(["--namesrv-port", &self.namesrv.port().to_string()])
            .args(["--broker-port", &self.broker.port().to_string()])
            .args(["--http-port", &self.http.port().to_string()])
            .args(["--grpc-port", &self.grpc.port().to_string()])
            .args(["--flush-mode", self.flush])
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn rocktor");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Ready when every front end listens (HTTP binds after remoting).
            if [self.broker, self.namesrv, self.http, self.grpc]
                .iter()
                .all(|a| TcpStream::connect(a).is_ok())
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!("{status}: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rocktor did not start listening: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGKILL, then start again on the same data and ports.
    pub fn kill9_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running broker");
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("rocktor did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.spawn();
    }

    /// SIGKILL, then start again without the file-size limit.
    pub fn kill9_and_restart_unlimited(&mut self) {
        self.file_size_limit = None;
        self.kill9_and_restart();
    }

    /// Resident memory of the broker process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn connect(addr: SocketAddr) -> RemotingClient {
    RemotingClient::connect(addr).await.expect("connect").0
}

pub fn send_v2(topic: &str, queue_id: i32, body: &[u8], props: &str) -> RemotingCommand {
    let mut cmd = request(
        310,
        &[
            ("a", "PG_test".into()),
            ("b", topic.into()),
            ("c", "TBW102".into()),
            ("d", "4".into()),
            ("e", queue_id.to_string()),
            ("f", "0".into()),
            ("g", "1700000000000".into()),
            ("h", "0".into()),
            ("i", props.into()),
            ("j", "0".into()),
            ("k", "false".into()),
            ("m", "false".into()),
        ],
    );
    cmd.body = bytes::Bytes::copy_from_slice(body);
    cmd
}

pub fn pull_req(
    group: &str,
    topic: &str,
    queue_id: u32,
    offset: u64,
    max: u32,
    suspend_ms: Option<u64>,
    sub: Option<&str>,
) -> RemotingCommand {
    let mut sys_flag = 0;
    if suspend_ms.is_some() {
        sys_flag |= 2;
    }
    if sub.is_some() {
        sys_flag |= 4;
    }
    let mut ext = vec![
        ("consumerGroup", group.to_string()),
        ("topic", topic.to_string()),
        ("queueId", queue_id.to_string()),
        ("queueOffset", offset.to_string()),
        ("maxMsgNums", max.to_string()),
        ("sysFlag", sys_flag.to_string()),
        ("commitOffset", "0".into()),
        ("suspendTimeoutMillis", suspend_ms.unwrap_or(0).to_string()),
        ("subVersion", "0".into()),
    ];
    if let Some(s) = sub {
        ext.push(("subscription", s.to_string()));
        ext.push(("expressionType", "TAG".into()));
    }
    request(11, &ext)
}

/// Every record of one queue from offset 0, pulled until the broker has nothing more.
pub async fn pull_all(
    c: &RemotingClient,
    group: &str,
    topic: &str,
    queue_id: u32,
) -> Vec<rocktor_storage::record::Record> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = c
            .request(
                pull_req(group, topic, queue_id, offset, 64, None, Some("*")),
                TIMEOUT,
            )
            .await
            .expect("pull answered");
        if r.code != 0 {
            return out;
        }
        out.extend(records(&r.body));
        offset = r.ext["nextBeginOffset"].parse().expect("nextBeginOffset");
    }
}

/// A HEART_BEAT (34) of one clustering consumer subscribing to `topic` with a tag expression.
pub fn subscribe_req(client_id: &str, group: &str, topic: &str, expr: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [],
        "consumerDataSet": [{"groupName": group, "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET", "unitMode": false,
            "subscriptionDataSet": [{"topic": topic, "subString": expr, "tagsSet": [], "codeSet": [], "subVersion": 1, "expressionType": "TAG"}]}]
    });
    request(34, &[]).with_body(body.to_string().into_bytes())
}

/// UPDATE_CONSUMER_OFFSET (15).
pub fn commit_offset_req(group: &str, topic: &str, queue_id: u32, offset: u64) -> RemotingCommand {
    request(
        15,
        &[
            ("consumerGroup", group.into()),
            ("topic", topic.into()),
            ("queueId", queue_id.to_string()),
            ("commitOffset", offset.to_string()),
        ],
    )
}

/// Decodes a pull body into records.
pub fn records(body: &bytes::Bytes) -> Vec<rocktor_storage::record::Record> {
    let mut out = Vec::new();
    let mut rest = body.clone();
    while !rest.is_empty() {
        let (r, n) = rocktor_storage::record::decode(&rest).expect("well-formed record");
        out.push(r);
        rest = rest.slice(n..);
    }
    out
}

pub async fn create_topic(c: &RemotingClient, topic: &str, queues: u32) {
    c.call(
        rocktor::client::create_topic_request(topic, queues),
        TIMEOUT,
    )
    .await
    .expect("create topic");
}

/// The rocketmq-client-rust driver scripts/test builds (ROCKTOR_RS_CLIENT). Tests that need it
/// fail without it: a missing client must not pass as a skipped feature.
pub fn rs_client() -> PathBuf {
    let p = std::env::var("ROCKTOR_RS_CLIENT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            dirs_home().join(".cache/rocktor-test-clients/rs-target/release/rocktor-rs-client")
        });
    assert!(
        p.exists(),
        "the Rust test client is not built: run scripts/test (it builds tests/clients/rs) or set ROCKTOR_RS_CLIENT"
    );
    p
}

/// The rocketmq-admin-cli 1.0 binary scripts/test builds (ROCKTOR_ADMIN_CLI); tests that need it
/// fail without it.
pub fn admin_cli() -> PathBuf {
    let p = std::env::var("ROCKTOR_ADMIN_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            dirs_home().join(".cache/rocktor-test-clients/admin/bin/rocketmq-admin-cli")
        });
    assert!(
        p.exists(),
        "rocketmq-admin-cli is not built: run scripts/test (it builds it) or set ROCKTOR_ADMIN_CLI"
    );
    p
}

/// Runs `rocketmq-admin-cli <args>` against a name server; answers its stdout and stderr.
pub fn run_admin(namesrv: SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new(admin_cli())
        .env("NAMESRV_ADDR", namesrv.to_string())
        .args(args)
        .output()
        .expect("rocketmq-admin-cli runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

/// Runs the Rust test client to completion; answers its JSON records (the summary line must
/// start with OK).
pub fn run_rs(args: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(rs_client())
        .args(args)
        .output()
        .expect("the Rust test client runs");
    parse_rs(&String::from_utf8_lossy(&out.stdout), args)
}

/// The JSON records of a finished Rust client run; panics unless it ended with OK.
pub fn parse_rs(stdout: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("OK"),
        "rocktor-rs-client {args:?} failed:\n{stdout}"
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The message id (UNIQ_KEY) of the first `sent` record of a Rust client run.
pub fn sent_id(records: &[serde_json::Value]) -> String {
    records
        .iter()
        .find(|r| r["event"] == "sent")
        .and_then(|r| r["msg_id"].as_str())
        .expect("a sent record with its id")
        .to_string()
}

/// GET `path`, which must answer 200 with JSON.
pub fn http_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("a JSON answer")
}

/// The PyPI rocketmq 0.4.4 interpreter set up by scripts/test (ROCKTOR_PYTHON), if any.
pub fn python_client() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ROCKTOR_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").ok()?;
    let p = PathBuf::from(home).join(".cache/rocktor-test-clients/py/bin/python");
    p.exists().then_some(p)
}

/// A minimal HTTP/1.1 exchange (Connection: close), so tests need no HTTP client crate.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_with(addr, method, path, &[], body)
}

/// `http` with extra request headers (signed REST requests).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).expect("connect HTTP");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let body = body.unwrap_or("");
    let mut extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        extra.push_str("Content-Type: application/json\r\n");
    }
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write HTTP request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read HTTP response");
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

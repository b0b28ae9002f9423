//! Alarms (issue #14): a lag rule fires to a webhook (a local HTTP receiver) after its points,
//! clears when the group catches up, and its rules are set through the REST API and kept
//! over a restart; the Prometheus rules file in the repo says the same and promtool takes it.

use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A webhook receiver on a free port: every POST body it gets, answered 200.
fn receiver() -> (std::net::SocketAddr, mpsc::Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if tx.send((request_line.trim().to_string(), value)).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

fn next_notification(rx: &mpsc::Receiver<(String, Value)>, b: &BrokerProc) -> (String, Value) {
    rx.recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| panic!("no notification in 15 s\n{}", b.log()))
}

fn rest(b: &BrokerProc, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    // http() sends a body as application/json.
    let (code, text) = http(b.http, method, path, body);
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn a_lag_alarm_fires_to_the_webhook_and_clears() {
    let (hook, rx) = receiver();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("rocktor.toml");
    std::fs::write(
        &config,
        format!(
            "alarm_interval_ms = 200\nalarm_period_secs = 3600\n\
             alarm_webhook = \"http://{hook}/alarm?token=s3cret\"\n\
             [[alarms]]\nname = \"heap\"\nmetric = \"lag\"\nthreshold = 3\npoints = 3\ngroup = \"AlarmG\"\n\
             [[alarms]]\nname = \"dead-letters\"\nmetric = \"dlq_growth\"\nthreshold = 0\n"
        ),
    )
    .expect("write the config");
    let config = config.display().to_string();
    let mut b = BrokerProc::start_with("async", &[("ROCKTOR_CONFIG", &config)], None);
    let c = connect(b.broker).await;
    create_topic(&c, "AlarmT", 1).await;
    for i in 0..5 {
        let r = c
            .request(
                send_v2("AlarmT", 0, format!("m{i}").as_bytes(), ""),
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{:?}", r.remark);
    }
    // Committed at 0: 5 messages behind, over the threshold of 3.
    let r = c
        .request(commit_offset_req("AlarmG", "AlarmT", 0, 0), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let over_since = Instant::now();
    let (line, fired) = next_notification(&rx, &b);
    assert!(
        line.starts_with("POST /alarm?token=s3cret "),
        "the configured path and query: {line}"
    );
    assert_eq!(
        (
            fired["rule"].clone(),
            fired["metric"].clone(),
            fired["subject"].clone(),
            fired["state"].clone(),
            fired["value"].clone(),
            fired["threshold"].clone(),
            fired["points"].clone(),
            fired["broker"].clone(),
        ),
        (
            json!("heap"),
            json!("lag"),
            json!("AlarmG"),
            json!("firing"),
            json!(5.0),
            json!(3.0),
            json!(3),
            json!("broker-a")
        ),
        "{fired}"
    );
    // Three points of 200 ms over the threshold, not one.
    assert!(
        over_since.elapsed() >= Duration::from_millis(350),
        "fired too soon"
    );

    let (code, view) = rest(&b, "GET", "/api/v1/alarms", None);
    assert_eq!(code, 200, "{view}");
    let point = view["points"]
        .as_array()
        .expect("points")
        .iter()
        .find(|p| p["rule"] == "heap")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (point["firing"].clone(), point["value"].clone()),
        (json!(true), json!(5.0)),
        "{view}"
    );
    assert_eq!(view["events"][0]["notified"], true, "{view}");
    assert_eq!(view["rulesFrom"], "config");
    let shown = view["webhook"].as_str().unwrap_or_default();
    assert!(
        shown.starts_with("http://127.0.0.1:") && !shown.contains("s3cret"),
        "{view}"
    );

    // The group catches up: the next notification clears it (none repeats within the period).
    let r = c
        .request(commit_offset_req("AlarmG", "AlarmT", 0, 5), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    let (_, cleared) = next_notification(&rx, &b);
    assert_eq!(
        (
            cleared["rule"].clone(),
            cleared["state"].clone(),
            cleared["value"].clone()
        ),
        (json!("heap"), json!("resolved"), json!(0.0)),
        "{cleared}"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(800)).is_err(),
        "nothing else to tell"
    );

    // Rules through the REST API: checked, stored, in force over a restart, given back.
    for bad in [
        r#"[{"name":"x","metric":"lag","threshold":1,"points":0}]"#,
        r#"[{"name":"x","metric":"cpu","threshold":1}]"#,
        r#"[{"name":"x","metric":"disk_used_percent","threshold":1,"group":"G"}]"#,
        r#"[{"name":"x","metric":"lag","threshold":1},{"name":"x","metric":"lag","threshold":2}]"#,
    ] {
        let (code, v) = rest(&b, "PUT", "/api/v1/alarms/rules", Some(bad));
        assert_eq!(
            (code, v["code"].clone()),
            (400, json!("InvalidArgument")),
            "{bad}: {v}"
        );
    }
    let rules =
        r#"[{"name":"disk-full","metric":"disk_used_percent","threshold":99.5,"points":2}]"#;
    let (code, v) = rest(&b, "PUT", "/api/v1/alarms/rules", Some(rules));
    assert_eq!(code, 200, "{v}");
    b.terminate();
    b.restart();
    let (_, view) = rest(&b, "GET", "/api/v1/alarms", None);
    assert_eq!(
        (
            view["rulesFrom"].clone(),
            view["rules"][0]["name"].clone(),
            view["rules"].as_array().map(Vec::len)
        ),
        (json!("api"), json!("disk-full"), Some(1)),
        "{view}"
    );
    let (code, _) = rest(&b, "DELETE", "/api/v1/alarms/rules", None);
    assert_eq!(code, 204);
    let (_, view) = rest(&b, "GET", "/api/v1/alarms", None);
    assert_eq!(
        (view["rulesFrom"].clone(), view["rules"][0]["name"].clone()),
        (json!("config"), json!("heap"))
    );
}

fn promtool() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("ROCKTOR_PROMTOOL") {
        return p.into();
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = std::path::Path::new(dir).join("promtool");
        if p.exists() {
            return p;
        }
    }
    panic!("promtool is not installed: run scripts/test (it installs Debian's prometheus) or set ROCKTOR_PROMTOOL");
}

#[test]
fn the_prometheus_rules_are_the_builtin_ones_and_promtool_takes_them() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/prometheus/rocktor-alerts.yml"
    );
    let text = std::fs::read_to_string(path).expect("docs/prometheus/rocktor-alerts.yml");
    for rule in rocktor_actors::alarms::AlarmRule::defaults() {
        let at = text
            .find(&format!("rocktor_rule: {}\n", rule.name))
            .unwrap_or_else(|| panic!("no Prometheus rule for {}", rule.name));
        // The alert is the one that names the rule: its text runs back to its "- alert:".
        let start = text[..at].rfind("- alert:").unwrap_or(0);
        let alert = &text[start..at];
        assert!(
            alert.contains(&format!("> {}\n", rule.threshold)),
            "{}: threshold {}\n{alert}",
            rule.name,
            rule.threshold
        );
        match rule.points {
            1 => assert!(!alert.contains("for:"), "{}: one point\n{alert}", rule.name),
            n => assert!(
                alert.contains(&format!("for: {}m\n", n - 1)),
                "{}: {n} points\n{alert}",
                rule.name
            ),
        }
    }
    let out = std::process::Command::new(promtool())
        .args(["check", "rules", path])
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

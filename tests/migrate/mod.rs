//! `rocktor import` and `rocktor export` on a real Apache-format config directory (written by
//! rocketmq-rust 1.0, `../shared/fixtures/apache-config`, copied into `tests/fixtures/`): the
//! import brings the user topics, groups and committed offsets into a fresh broker, and a real
//! consumer (PyPI rocketmq 0.4.4, Apache's C++ client) resumes from those offsets.

use crate::support::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apache-config");

/// Committed offsets of GID_orders on OrdersTopic in the fixture, by queue (120 in all).
const IMPORTED: [u64; 8] = [16, 15, 15, 15, 14, 15, 15, 15];

fn rocktor(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rocktor"))
        .args(["--data-dir", &data_dir.display().to_string()])
        .args(args)
        .output()
        .expect("run rocktor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn get(b: &BrokerProc, path: &str) -> Value {
    let (code, body) = http(b.http, "GET", path, None);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn lag_rows(b: &BrokerProc) -> Vec<(u64, i64)> {
    let lag = get(b, "/api/v1/groups/GID_orders/lag?topic=OrdersTopic");
    let mut rows: Vec<_> = lag
        .as_array()
        .expect("rows")
        .iter()
        .map(|q| {
            (
                q["queueId"].as_u64().unwrap_or(99),
                q["consumerOffset"].as_i64().unwrap_or(-9),
            )
        })
        .collect();
    rows.sort_unstable();
    rows
}

fn py(args: &[&str]) -> (bool, Vec<Value>, String) {
    let Some(py) = python_client() else {
        panic!("PyPI rocketmq 0.4.4 is not installed: run scripts/test or set ROCKTOR_PYTHON");
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/pyclient.py");
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .output()
        .expect("run the Python client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), lines, all)
}

#[test]
fn an_apache_config_imports_and_a_real_consumer_resumes_from_its_offsets() {
    let mut report = String::new();
    let mut b = BrokerProc::start_prepared("sync", &[], None, |data| {
        let (ok, text) = rocktor(data, &["import", "--apache-config", FIXTURE]);
        assert!(ok, "import failed: {text}");
        report = text;
    });
    for line in [
        "imported topic OrdersTopic (8 queues",
        "imported topic PaymentsTopic (4 queues",
        "imported topic FifoTopic (4 queues, perm 6, +message.type=FIFO",
        "imported topic DelayTopic (4 queues, perm 6, +message.type=DELAY",
        "imported group GID_orders (retryMaxTimes 5",
        "imported group GID_fifo (retryMaxTimes 3, orderly true",
        "imported group GID_broadcast (retryMaxTimes 16, orderly false, broadcast true",
        "imported offsets of OrdersTopic@GID_orders (8 queues, next offsets summing to 120)",
        "skipped plain_acl.yml: not in ",
        "skipped topic TBW102: ",
        "skipped topic SCHEDULE_TOPIC_XXXX: ",
        "skipped topic %RETRY%GID_orders: ",
        "skipped topic broker-a: ",
        "skipped topic DefaultCluster: ",
        "skipped topic BenchmarkTest: ",
        "skipped group TOOLS_CONSUMER: ",
        "skipped group CID_RMQ_SYS_TRANS: ",
    ] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
    assert!(report.contains("\n8 imported,"), "{report}");

    // What the broker serves: the topics with their queues and attributes, the groups with
    // their settings, and every OrdersTopic queue beginning at GID_orders' committed offset.
    let topics = get(&b, "/api/v1/topics");
    let names: Vec<_> = topics
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for t in ["OrdersTopic", "PaymentsTopic", "FifoTopic", "DelayTopic"] {
        assert!(names.contains(&t), "{t} not in {names:?}");
    }
    assert!(!names.contains(&"BenchmarkTest"), "{names:?}");
    let fifo = get(&b, "/api/v1/topics/FifoTopic");
    assert_eq!(
        (fifo["messageType"].clone(), fifo["readQueues"].clone()),
        (Value::from("FIFO"), Value::from(4)),
        "{fifo}"
    );
    let orders = get(&b, "/api/v1/topics/OrdersTopic");
    let bounds: Vec<(u64, u64)> = orders["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| {
            (
                q["minOffset"].as_u64().unwrap_or(0),
                q["maxOffset"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let expected: Vec<(u64, u64)> = IMPORTED.iter().map(|o| (*o, *o)).collect();
    assert_eq!(bounds, expected, "{orders}");
    let g = get(&b, "/api/v1/groups/GID_fifo");
    assert_eq!(
        (
            g["consumeMessageOrderly"].clone(),
            g["retryMaxTimes"].clone()
        ),
        (Value::from(true), Value::from(3)),
        "{g}"
    );
    let offsets: Vec<(u64, i64)> = (0..8u64).zip(IMPORTED.iter().map(|o| *o as i64)).collect();
    assert_eq!(lag_rows(&b), offsets);

    // The store holds one process: an export while the broker runs is refused, clearly.
    let out = b.dir.path().join("exported");
    let (ok, text) = rocktor(
        &b.data_dir(),
        &["export", "--apache-config", &out.display().to_string()],
    );
    assert!(!ok && text.contains("stop it first"), "{text}");

    // New messages continue each queue's offsets; GID_orders, started after them, reads them
    // all: the C++ client consumes from the last offset when a group committed none, so only
    // the imported offsets bring it to these messages.
    let ns = b.namesrv.to_string();
    let (ok, sent, text) = py(&["produce", &ns, "OrdersTopic", "24"]);
    assert!(ok && sent.len() == 24, "producer failed: {text}");
    assert!(
        sent.iter()
            .all(|s| s["offset"].as_u64().is_some_and(|o| o >= 14)),
        "offsets restarted: {text}"
    );
    let (ok, got, text) = py(&["push", &ns, "OrdersTopic", "GID_orders", "24"]);
    assert!(ok, "consumer failed: {text}\n{}", b.log());
    assert_eq!(got.len(), 24, "{text}");
    // Its progress is committed on top of the imported offsets: 120 + 24.
    let deadline = Instant::now() + Duration::from_secs(15);
    let total = loop {
        let total: i64 = lag_rows(&b).iter().map(|(_, o)| o).sum();
        if total == 144 || Instant::now() > deadline {
            break total;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(total, 144, "{:?}", lag_rows(&b));

    // A restart keeps the bases and offsets; an export then writes them in Apache's formats.
    b.terminate();
    b.restart();
    let total: i64 = lag_rows(&b).iter().map(|(_, o)| o).sum();
    assert_eq!(total, 144);
    b.terminate();
    // For an Apache broker, whose queues start empty: the caught-up group is at 0 everywhere.
    let (ok, text) = rocktor(
        &b.data_dir(),
        &["export", "--apache-config", &out.display().to_string()],
    );
    assert!(ok, "export failed: {text}");
    let relative: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("consumerOffset.json")).expect("exported offsets"),
    )
    .expect("standard JSON");
    let queues = relative["offsetTable"]["OrdersTopic@GID_orders"]
        .as_object()
        .expect("GID_orders' offsets");
    assert!(
        queues.len() == 8 && queues.values().all(|o| o == 0),
        "{relative}"
    );
    // For another rocktor: the offsets as committed.
    let (ok, text) = rocktor(
        &b.data_dir(),
        &[
            "export",
            "--keep-offsets",
            "--apache-config",
            &out.display().to_string(),
        ],
    );
    assert!(ok, "export failed: {text}");
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(out.join(name)).expect("exported file");
        serde_json::from_str(&text).expect("standard JSON")
    };
    let topics = read("topics.json");
    assert_eq!(
        topics["topicConfigTable"]["FifoTopic"]["attributes"]["message.type"], "FIFO",
        "{topics}"
    );
    assert_eq!(
        topics["topicConfigTable"]["OrdersTopic"]["readQueueNums"],
        8
    );
    assert!(topics["topicConfigTable"].get("TBW102").is_none());
    let groups = read("subscriptionGroup.json");
    assert_eq!(
        groups["subscriptionGroupTable"]["GID_orders"]["retryMaxTimes"],
        5
    );
    let offsets = read("consumerOffset.json");
    let orders = offsets["offsetTable"]["OrdersTopic@GID_orders"]
        .as_object()
        .expect("GID_orders' offsets");
    assert_eq!(
        orders.values().filter_map(Value::as_i64).sum::<i64>(),
        144,
        "{offsets}"
    );

    // The export imports again into another fresh broker: the same topics, groups, offsets.
    let again = tempfile::tempdir().expect("temp dir");
    let (ok, text) = rocktor(
        again.path(),
        &["import", "--apache-config", &out.display().to_string()],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "imported offsets of OrdersTopic@GID_orders (8 queues, next offsets summing to 144)"
        ),
        "{text}"
    );
    let (ok, text) = rocktor(again.path(), &["import", "--apache-config", FIXTURE]);
    assert!(
        ok && text.contains("skipped topic OrdersTopic: exists here"),
        "{text}"
    );
}

#[test]
fn a_directory_without_apache_files_or_with_a_broken_one_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let (ok, text) = rocktor(
        &data,
        &["import", "--apache-config", &empty.display().to_string()],
    );
    assert!(!ok && text.contains("holds none of topics.json"), "{text}");
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::write(
        broken.join("topics.json"),
        r#"{"topicConfigTable":{"A":{"topicName":"A","readQueueNums":4,"writeQueueNums":4}}}"#,
    )
    .expect("write");
    std::fs::write(broken.join("consumerOffset.json"), "{\"offsetTable\":{").expect("write");
    let (ok, text) = rocktor(
        &data,
        &["import", "--apache-config", &broken.display().to_string()],
    );
    assert!(!ok && text.contains("consumerOffset.json"), "{text}");
    // Nothing was created: the good file alone now imports topic A.
    std::fs::remove_file(broken.join("consumerOffset.json")).expect("rm");
    let (ok, text) = rocktor(
        &data,
        &["import", "--apache-config", &broken.display().to_string()],
    );
    assert!(ok && text.contains("imported topic A (4 queues"), "{text}");
}

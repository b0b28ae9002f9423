//! RocketMQ 5's metrics on `/metrics` (issue #14): what a remoting producer and consumer did
//! shows under Apache's names and labels, made-up request codes share one label set, and the
//! process and connection figures are there.

use crate::support::*;
use rocktor::remoting::command::RemotingCommand;

/// The value of the series `name{labels}` (labels as rendered, in order), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[actix_rt::test]
async fn remoting_traffic_shows_under_rocketmq_5_names() {
    let b = BrokerProc::start("sync");
    let c = connect(b.broker).await;
    create_topic(&c, "ObsT", 1).await;
    for i in 0..5 {
        let r = c
            .request(
                send_v2("ObsT", 0, &[b'x'; 100], &format!("KEYS\u{1}k{i}\u{2}")),
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{:?}", r.remark);
    }
    for code in [9991, 9992, 9993] {
        let r = c
            .request(RemotingCommand::request(code, 0), TIMEOUT)
            .await
            .unwrap();
        assert_ne!(r.code, 0);
    }
    assert_eq!(pull_all(&c, "ObsG", "ObsT", 0).await.len(), 5);
    let r = c
        .request(commit_offset_req("ObsG", "ObsT", 0, 2), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);

    let (status, text) = http(b.http, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let get = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        get(r#"rocketmq_messages_in_total{topic="ObsT",message_type="normal"}"#),
        5.0
    );
    assert_eq!(
        get(r#"rocketmq_throughput_in_total{topic="ObsT",message_type="normal"}"#),
        500.0
    );
    assert_eq!(
        get(r#"rocketmq_messages_out_total{topic="ObsT",consumer_group="ObsG"}"#),
        5.0
    );
    assert_eq!(
        get(r#"rocketmq_consumer_ready_messages{topic="ObsT",consumer_group="ObsG"}"#),
        3.0,
        "5 stored, committed at 2"
    );
    assert!(get(r#"rocketmq_consumer_lag_latency{topic="ObsT",consumer_group="ObsG"}"#) >= 0.0);
    assert_eq!(
        get(r#"rocketmq_message_size_count{topic="ObsT",message_type="normal"}"#),
        5.0
    );
    assert!(
        text.contains(
            r#"rocketmq_message_size_bucket{topic="ObsT",message_type="normal",le="1024"} 5"#
        ),
        "a histogram with Apache's buckets"
    );
    assert_eq!(
        get(
            r#"rocketmq_rpc_latency_count{protocol_type="remoting",request_code="unsupported",response_code="3"}"#
        ),
        3.0,
        "unknown codes share one label set"
    );
    assert!(!text.contains(r#"request_code="9991""#));
    assert!(
        get(
            r#"rocketmq_rpc_latency_count{protocol_type="remoting",request_code="310",response_code="0"}"#
        ) >= 5.0
    );
    assert!(get(r#"rocketmq_connections{protocol_type="remoting"}"#) >= 1.0);
    assert!(get("rocketmq_storage_size") > 0.0);
    assert!(get("process_resident_memory_bytes") > 0.0);
    assert!(text.contains("rocketmq_storage_flush_latency"));
    // The scrape itself is an HTTP request: the next one shows it.
    let (_, text) = http(b.http, "GET", "/metrics", None);
    assert!(
        text.contains(r#"rocketmq_rpc_latency_count{protocol_type="http",request_code="GET /metrics",response_code="200"}"#),
        "{text}"
    );
    drop(c);
    drop(b);
}

/// Metric names in a PromQL expression: the identifiers of rocktor's own families.
fn series_named(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            ["rocketmq_", "rocktor_", "process_"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

#[actix_rt::test]
async fn the_grafana_dashboard_names_only_series_the_broker_exports() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana/rocktor.json"
    ))
    .expect("docs/grafana/rocktor.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut named = std::collections::BTreeSet::new();
    for p in dash["panels"].as_array().expect("panels") {
        // Rows and text panels have no queries.
        for t in p["targets"].as_array().into_iter().flatten() {
            named.extend(series_named(t["expr"].as_str().unwrap_or_default()));
        }
    }
    for v in dash["templating"]["list"].as_array().expect("variables") {
        named.extend(series_named(v["definition"].as_str().unwrap_or_default()));
    }
    assert!(named.len() >= 15, "{named:?}");

    // Traffic that makes every family appear: sends, a pull with a commit, a pop left
    // unacked, a dead letter.
    let b = BrokerProc::start("sync");
    let c = connect(b.broker).await;
    create_topic(&c, "GrafT", 1).await;
    for _ in 0..4 {
        let r = c
            .request(send_v2("GrafT", 0, b"x", ""), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{:?}", r.remark);
    }
    let got = pull_all(&c, "GrafG", "GrafT", 0).await;
    assert_eq!(got.len(), 4);
    let r = c
        .request(commit_offset_req("GrafG", "GrafT", 0, 1), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    let r = c
        .request(
            crate::pop::pop_req("GrafPop", "GrafT", 2, 60_000, 0),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let back = rocktor::client::request(
        36,
        &[
            ("offset", got[0].physical_offset.to_string()),
            ("group", "GrafG".into()),
            ("delayLevel", "-1".into()),
            ("originMsgId", "ORIG".into()),
            ("maxReconsumeTimes", "16".into()),
        ],
    );
    let r = c.request(back, TIMEOUT).await.unwrap();
    assert_eq!(r.code, 0, "{:?}", r.remark);

    let _ = http(b.http, "GET", "/metrics", None);
    let (status, metrics) = http(b.http, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let exported: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<_> = named
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not on /metrics: {missing:?}\n{metrics}"
    );
}

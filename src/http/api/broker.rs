//! `/api/v1/broker`, `/overview`, `/retention`: who this broker is, its running totals (the
//! dashboard's rates and figures), and what retention did.

use super::{ok, Admin, RestError, RestResult};
use rocktor_actors::metrics::PROTOCOLS;
use rocktor_actors::model;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerInfo {
    cluster_name: String,
    broker_name: String,
    broker_id: u64,
    broker_addr: String,
    version: String,
    auto_create_topic: bool,
    auto_create_group: bool,
    default_topic_queues: u32,
    max_message_size: usize,
    acl_enabled: bool,
    trace_enabled: bool,
    retention_secs: i64,
}

/// Who this broker is and how it is set up.
#[utoipa::path(operation_id = "broker_info", get, path = "/api/v1/broker", tag = "broker",
    responses((status = 200, body = BrokerInfo), (status = 403, body = super::ErrorBody)))]
pub async fn info(Admin(b): Admin) -> RestResult {
    let s = &b.settings;
    ok(BrokerInfo {
        cluster_name: s.cluster_name.clone(),
        broker_name: s.broker_name.clone(),
        broker_id: s.broker_id,
        broker_addr: s.broker_addr.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        auto_create_topic: s.auto_create_topic,
        auto_create_group: s.auto_create_group,
        default_topic_queues: s.default_topic_queues,
        max_message_size: s.max_message_size,
        acl_enabled: b.auth.enabled(),
        trace_enabled: s.trace_on,
        retention_secs: s.retention.retention_ms / 1000,
    })
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Milliseconds since the epoch, when these figures were read.
    now: i64,
    /// Messages stored since the broker started (all front ends).
    messages_in: u64,
    /// Messages handed to consumers since start (redeliveries included).
    messages_out: u64,
    /// Open client connections by protocol (remoting, grpc, http).
    connections: BTreeMap<String, u64>,
    topics: usize,
    groups: usize,
    /// Messages stored and not yet consumed, over every group and queue.
    backlog: u64,
    disk_used_ratio: f64,
    store_bytes: u64,
    writable: bool,
}

/// Totals since start and the state now: what the dashboard charts.
#[utoipa::path(operation_id = "broker_overview", get, path = "/api/v1/overview", tag = "broker",
    responses((status = 200, body = Overview), (status = 403, body = super::ErrorBody)))]
pub async fn overview(Admin(b): Admin) -> RestResult {
    // The backlog walks every group: computed at most once a second, shared with /metrics.
    b.refresh_metrics().await;
    let totals = b.metrics.totals();
    let registry = b.registry.load_full();
    let backlog = b.metrics.backlog.load(Ordering::Relaxed);
    let store_bytes = b.metrics.store_bytes.load(Ordering::Relaxed);
    ok(Overview {
        now: rocktor_actors::now_ms(),
        messages_in: totals.messages_in,
        messages_out: totals.messages_out,
        connections: PROTOCOLS
            .iter()
            .zip(totals.connections)
            .map(|(p, n)| (p.to_string(), n))
            .collect(),
        topics: registry
            .topics
            .keys()
            .filter(|t| !model::is_system_topic(t))
            .count(),
        groups: registry
            .groups
            .keys()
            .filter(|g| !model::is_system_group(g))
            .count(),
        backlog,
        disk_used_ratio: b.disk.used_ratio(),
        store_bytes,
        writable: b.writable(),
    })
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionState {
    floor: u64,
    disk_used_ratio: f64,
    forced_clean: bool,
    writes_refused: bool,
    queues_moved: u64,
    /// The record (sequence) that held the horizon back, if one did.
    held_by: Option<u64>,
    retention_secs: i64,
}

/// What the last retention pass did, and the disk state.
#[utoipa::path(operation_id = "broker_retention", get, path = "/api/v1/retention", tag = "broker",
    responses((status = 200, body = RetentionState), (status = 403, body = super::ErrorBody)))]
pub async fn retention(Admin(b): Admin) -> RestResult {
    let r = b
        .retention
        .send(rocktor_actors::retention::RetentionStatus)
        .await
        .map_err(|e| RestError::from(rocktor_actors::BrokerError::from(e)))?;
    ok(RetentionState {
        floor: r.floor,
        disk_used_ratio: r.disk_used,
        forced_clean: r.forced,
        writes_refused: r.writes_refused,
        queues_moved: r.queues_moved as u64,
        held_by: r.held_by,
        retention_secs: b.settings.retention.retention_ms / 1000,
    })
}

//! `/api/v1/groups`: list, create, read, update, delete; a group's consumers (connections,
//! language, version, subscriptions, consistency), its lag per queue, offset reset by time,
//! and its dead letters with re-send.

use super::messages::message_json;
use super::{ok, Admin, Body, RestResult};
use actix_web::{web, HttpResponse};
use rocktor_actors::consumer_group::GetConnections;
use rocktor_actors::model::{self, GroupConfig};
use rocktor_actors::service::ResetTarget;
use rocktor_actors::{BrokerContext, BrokerError};
use rocktor_storage::properties;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    name: String,
    consume_enable: bool,
    consume_broadcast_enable: bool,
    consume_message_orderly: bool,
    consume_from_min_enable: bool,
    retry_max_times: i32,
    retry_queue_nums: u32,
    /// Clients connected now.
    online: usize,
    /// Messages behind its committed offsets, over the topics it consumes.
    lag: u64,
}

async fn summary(b: &BrokerContext, c: &GroupConfig) -> Result<GroupSummary, BrokerError> {
    let online = match b.group(&c.name) {
        Some(g) => g.addr.send(GetConnections).await?.connections.len(),
        None => 0,
    };
    let lag = b
        .consume_stats(&c.name, None)
        .await?
        .iter()
        .map(|r| {
            r.broker_offset
                .saturating_sub(r.consumer_offset.max(0) as u64)
        })
        .sum();
    Ok(GroupSummary {
        name: c.name.clone(),
        consume_enable: c.consume_enable,
        consume_broadcast_enable: c.consume_broadcast_enable,
        consume_message_orderly: c.consume_message_orderly,
        consume_from_min_enable: c.consume_from_min_enable,
        retry_max_times: c.retry_max_times,
        retry_queue_nums: c.retry_queue_nums,
        online,
        lag,
    })
}

/// The subscription groups, by name.
#[utoipa::path(operation_id = "groups_list", get, path = "/api/v1/groups", tag = "groups",
    responses((status = 200, body = Vec<GroupSummary>), (status = 403, body = super::ErrorBody)))]
pub async fn list(Admin(b): Admin) -> RestResult {
    let registry = b.registry.load_full();
    let mut names: Vec<_> = registry.groups.values().collect();
    names.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    let mut out = Vec::with_capacity(names.len());
    for g in names {
        match summary(&b, &g.config).await {
            Ok(s) => out.push(s),
            // Deleted while listed.
            Err(BrokerError::GroupNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    ok(out)
}

/// A group to create, or the settings to change (what is left out stays).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupBody {
    /// Required to create; must match the path to update.
    name: Option<String>,
    consume_enable: Option<bool>,
    consume_broadcast_enable: Option<bool>,
    consume_message_orderly: Option<bool>,
    consume_from_min_enable: Option<bool>,
    /// Deliveries before a message goes to the dead-letter queue (default 16).
    retry_max_times: Option<i32>,
    retry_queue_nums: Option<u32>,
}

fn merged(mut c: GroupConfig, body: GroupBody) -> GroupConfig {
    let set = |to: &mut bool, v: Option<bool>| {
        if let Some(v) = v {
            *to = v;
        }
    };
    set(&mut c.consume_enable, body.consume_enable);
    set(
        &mut c.consume_broadcast_enable,
        body.consume_broadcast_enable,
    );
    set(&mut c.consume_message_orderly, body.consume_message_orderly);
    set(&mut c.consume_from_min_enable, body.consume_from_min_enable);
    if let Some(n) = body.retry_max_times {
        c.retry_max_times = n;
    }
    if let Some(n) = body.retry_queue_nums {
        c.retry_queue_nums = n;
    }
    c
}

/// Creates a group (409 when it exists).
#[utoipa::path(operation_id = "groups_create", post, path = "/api/v1/groups", tag = "groups", request_body = GroupBody,
    responses((status = 201, body = GroupSummary), (status = 400, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn create(Admin(b): Admin, Body(body): Body<GroupBody>) -> RestResult {
    let Some(name) = body.name.clone().filter(|n| !n.is_empty()) else {
        return Err(BrokerError::InvalidParameter("the group needs a name".into()).into());
    };
    if b.group(&name).is_some() {
        return Err(super::ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "GroupAlreadyExist",
            format!("the group {name} exists (PUT /api/v1/groups/{name} changes it)"),
        )
        .into());
    }
    let config = merged(GroupConfig::new(&name), body);
    b.upsert_group(config.clone()).await?;
    Ok(HttpResponse::Created().json(summary(&b, &config).await?))
}

fn existing(b: &BrokerContext, name: &str) -> Result<GroupConfig, BrokerError> {
    b.group(name)
        .map(|g| g.config.clone())
        .ok_or_else(|| BrokerError::GroupNotExist(name.to_string()))
}

/// One group's settings, connections and lag.
#[utoipa::path(operation_id = "groups_get", get, path = "/api/v1/groups/{group}", tag = "groups",
    params(("group" = String, Path)),
    responses((status = 200, body = GroupSummary), (status = 404, body = super::ErrorBody)))]
pub async fn get(Admin(b): Admin, group: web::Path<String>) -> RestResult {
    let c = existing(&b, &group)?;
    ok(summary(&b, &c).await?)
}

/// Changes a group's retry maximum and consume switches.
#[utoipa::path(operation_id = "groups_update", put, path = "/api/v1/groups/{group}", tag = "groups",
    params(("group" = String, Path)), request_body = GroupBody,
    responses((status = 200, body = GroupSummary), (status = 400, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody)))]
pub async fn update(
    Admin(b): Admin,
    group: web::Path<String>,
    Body(body): Body<GroupBody>,
) -> RestResult {
    if body.name.as_ref().is_some_and(|n| *n != *group) {
        return Err(BrokerError::InvalidParameter("the body names another group".into()).into());
    }
    let config = merged(existing(&b, &group)?, body);
    b.upsert_group(config.clone()).await?;
    ok(summary(&b, &config).await?)
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    /// Also forget its committed offsets.
    #[serde(default)]
    clean_offsets: bool,
}

/// Deletes a group.
#[utoipa::path(operation_id = "groups_delete", delete, path = "/api/v1/groups/{group}", tag = "groups",
    params(("group" = String, Path), DeleteQuery),
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub async fn delete(
    Admin(b): Admin,
    group: web::Path<String>,
    q: web::Query<DeleteQuery>,
) -> RestResult {
    existing(&b, &group)?;
    b.delete_group(&group, q.clean_offsets).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    client_id: String,
    client_addr: String,
    language: String,
    version: i32,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    topic: String,
    expression: String,
    expression_type: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumers {
    group: String,
    consumers: Vec<Consumer>,
    subscriptions: Vec<SubscriptionView>,
    /// Whether every member subscribes alike.
    subscription_consistent: bool,
    inconsistencies: Vec<String>,
    /// CLUSTERING or BROADCASTING, when members said.
    message_model: Option<String>,
    consume_type: Option<String>,
}

/// The group's connected consumers and their subscriptions.
#[utoipa::path(operation_id = "groups_consumers", get, path = "/api/v1/groups/{group}/consumers", tag = "groups",
    params(("group" = String, Path)),
    responses((status = 200, body = Consumers), (status = 404, body = super::ErrorBody)))]
pub async fn consumers(Admin(b): Admin, group: web::Path<String>) -> RestResult {
    let g = b
        .group(&group)
        .ok_or_else(|| BrokerError::GroupNotExist(group.to_string()))?;
    let c = g
        .addr
        .send(GetConnections)
        .await
        .map_err(BrokerError::from)?;
    ok(Consumers {
        group: group.into_inner(),
        consumers: c
            .connections
            .iter()
            .map(|x| Consumer {
                client_id: x.client_id.clone(),
                client_addr: x.client_addr.to_string(),
                language: x.language.clone(),
                version: x.version,
            })
            .collect(),
        subscriptions: c
            .subscriptions
            .iter()
            .map(|s| SubscriptionView {
                topic: s.topic.clone(),
                expression: s.expression.clone(),
                expression_type: s.expression_type.clone(),
            })
            .collect(),
        subscription_consistent: c.inconsistencies.is_empty(),
        inconsistencies: c.inconsistencies.clone(),
        message_model: c.message_model.map(|m| m.as_str().to_string()),
        consume_type: c.consume_type.clone(),
    })
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueLag {
    topic: String,
    queue_id: u32,
    broker_offset: u64,
    consumer_offset: i64,
    lag: u64,
    /// Store time of the newest message in the queue (ms).
    last_timestamp: i64,
}

#[derive(Deserialize, IntoParams)]
pub struct LagQuery {
    /// Only this topic.
    topic: Option<String>,
}

/// The group's progress on each queue it consumes.
#[utoipa::path(operation_id = "groups_lag", get, path = "/api/v1/groups/{group}/lag", tag = "groups",
    params(("group" = String, Path), LagQuery),
    responses((status = 200, body = Vec<QueueLag>), (status = 404, body = super::ErrorBody)))]
pub async fn lag(Admin(b): Admin, group: web::Path<String>, q: web::Query<LagQuery>) -> RestResult {
    let rows = b.consume_stats(&group, q.topic.as_deref()).await?;
    ok(rows
        .into_iter()
        .map(|r| QueueLag {
            lag: r
                .broker_offset
                .saturating_sub(r.consumer_offset.max(0) as u64),
            topic: r.topic,
            queue_id: r.queue_id,
            broker_offset: r.broker_offset,
            consumer_offset: r.consumer_offset,
            last_timestamp: r.last_timestamp,
        })
        .collect::<Vec<_>>())
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetBody {
    topic: String,
    /// Store time to restart from (ms); -1 for the end of the queues.
    timestamp: i64,
    /// Also move offsets forward (default true, as the admin tools do).
    force: Option<bool>,
}

/// Moves the group's offsets on a topic to a store time; online consumers are told at once.
#[utoipa::path(operation_id = "groups_reset_offset", post, path = "/api/v1/groups/{group}/reset-offset", tag = "groups",
    params(("group" = String, Path)), request_body = ResetBody,
    responses((status = 200, description = "The offsets set, per queue"),
        (status = 404, body = super::ErrorBody)))]
pub async fn reset_offset(
    Admin(b): Admin,
    group: web::Path<String>,
    Body(body): Body<ResetBody>,
) -> RestResult {
    let target = match body.timestamp {
        -1 => ResetTarget::Latest,
        t if t >= 0 => ResetTarget::Timestamp(t),
        t => {
            return Err(BrokerError::InvalidParameter(format!(
                "timestamp {t} is neither a store time (ms) nor -1 (the end of the queues)"
            ))
            .into())
        }
    };
    let offsets = b
        .reset_offsets(&group, &body.topic, target, body.force.unwrap_or(true))
        .await?;
    let queues: Vec<_> = offsets
        .iter()
        .map(|(q, o)| json!({"queueId": q, "offset": o}))
        .collect();
    ok(json!({"group": group.as_str(), "topic": body.topic, "queues": queues}))
}

/// Dead letters one listing shows at most (each with its body).
const MAX_LISTED: usize = 1000;

#[derive(Deserialize, IntoParams)]
pub struct DlqQuery {
    /// Store time range (ms).
    from: Option<i64>,
    to: Option<i64>,
    /// At most this many (default 100, at most 1000).
    max: Option<usize>,
}

/// The group's dead letters stored in a time range, with bodies and properties.
#[utoipa::path(operation_id = "groups_dead_letters", get, path = "/api/v1/groups/{group}/dlq", tag = "groups",
    params(("group" = String, Path), DlqQuery),
    responses((status = 200, description = "The dead letters"),
        (status = 404, body = super::ErrorBody)))]
pub async fn dead_letters(
    Admin(b): Admin,
    group: web::Path<String>,
    q: web::Query<DlqQuery>,
) -> RestResult {
    model::validate_group(&group).map_err(BrokerError::InvalidParameter)?;
    let letters = b
        .list_dead_letters(
            &group,
            q.from.unwrap_or(0),
            q.to.unwrap_or(i64::MAX),
            q.max.unwrap_or(100).min(MAX_LISTED),
        )
        .await?;
    let items: Vec<_> = letters
        .iter()
        .map(|d| {
            let mut v = message_json(&d.record, d.seq, true);
            v["queueOffset"] = json!(d.queue_offset);
            v["originTopic"] = json!(properties::get(&d.record.properties, "DLQ_ORIGIN_TOPIC"));
            v
        })
        .collect();
    ok(json!({ "group": group.as_str(), "messages": items }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendBody {
    /// Queue offsets in the dead-letter queue, as listed.
    offsets: Vec<u64>,
}

/// Sends dead letters back to the group's retry topic, to be consumed again.
#[utoipa::path(operation_id = "groups_resend_dead_letters", post, path = "/api/v1/groups/{group}/dlq/resend", tag = "groups",
    params(("group" = String, Path)), request_body = ResendBody,
    responses((status = 200, description = "How many were re-sent"),
        (status = 404, body = super::ErrorBody)))]
pub async fn resend_dead_letters(
    Admin(b): Admin,
    group: web::Path<String>,
    Body(body): Body<ResendBody>,
) -> RestResult {
    let n = b.resend_dead_letters(&group, &body.offsets).await?;
    ok(json!({ "resent": n }))
}

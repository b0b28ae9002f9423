//! `/api/v1/topics`: list (with stored message counts), create, read (per-queue offsets and
//! last store time), update, delete — the same domain calls as UPDATE_AND_CREATE_TOPIC.

use super::{ok, Admin, Body, RestResult};
use actix_web::{web, HttpResponse};
use rocktor_actors::model::{self, TopicConfig, TopicMessageType, PERM_READ, PERM_WRITE};
use rocktor_actors::{BrokerError, TopicSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSummary {
    name: String,
    read_queues: u32,
    write_queues: u32,
    /// Apache's perm bits: 4 read, 2 write, 1 inherit.
    perm: i32,
    /// NORMAL, FIFO, DELAY, TRANSACTION or MIXED (no limit).
    message_type: String,
    /// Messages held now: the sum over queues of max − min offset.
    messages: u64,
    /// The newest store time over its queues (ms; 0 when empty).
    last_store_time: i64,
    system: bool,
    attributes: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueState {
    queue_id: u32,
    min_offset: u64,
    max_offset: u64,
    last_store_time: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicDetail {
    #[serde(flatten)]
    summary: TopicSummary,
    queues: Vec<QueueState>,
    /// Groups that subscribe to it or committed offsets on it.
    groups: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// Include the broker's own topics (retry, DLQ, schedule, transaction, trace).
    #[serde(default)]
    system: bool,
}

fn summary(b: &rocktor_actors::BrokerContext, c: &TopicConfig) -> TopicSummary {
    let queues = b.queue_offsets(&c.name).unwrap_or_default();
    TopicSummary {
        name: c.name.clone(),
        read_queues: c.read_queues,
        write_queues: c.write_queues,
        perm: c.perm,
        message_type: TopicMessageType::of_topic(c).as_str().to_string(),
        messages: queues.iter().map(|q| q.max.saturating_sub(q.min)).sum(),
        last_store_time: queues.iter().map(|q| q.last_store_time).max().unwrap_or(0),
        system: model::is_system_topic(&c.name),
        attributes: c.attributes.clone(),
    }
}

/// The topics, by name.
#[utoipa::path(operation_id = "topics_list", get, path = "/api/v1/topics", tag = "topics", params(ListQuery),
    responses((status = 200, body = Vec<TopicSummary>), (status = 403, body = super::ErrorBody)))]
pub async fn list(Admin(b): Admin, q: web::Query<ListQuery>) -> RestResult {
    let registry = b.registry.load_full();
    let mut topics: Vec<_> = registry
        .topics
        .values()
        .filter(|t| q.system || !model::is_system_topic(&t.config.name))
        .map(|t| summary(&b, &t.config))
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    ok(topics)
}

/// A topic to create or the changes to one.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicBody {
    /// Required to create; must match the path to update.
    name: Option<String>,
    /// Read and write queues (default 8 on create).
    queues: Option<u32>,
    read_queues: Option<u32>,
    write_queues: Option<u32>,
    /// Apache's perm bits (default 6, read and write).
    perm: Option<i32>,
    /// NORMAL, FIFO, DELAY, TRANSACTION or MIXED.
    message_type: Option<String>,
}

async fn apply(
    b: &rocktor_actors::BrokerContext,
    name: String,
    body: TopicBody,
    current: Option<&TopicConfig>,
) -> Result<(), BrokerError> {
    let default_queues = current.map_or(8, |c| c.read_queues);
    let queues = body.queues.unwrap_or(default_queues);
    let mut changes = String::new();
    if let Some(t) = &body.message_type {
        let kind = TopicMessageType::from_name(t).ok_or_else(|| {
            BrokerError::InvalidParameter(format!(
                "messageType {t:?} is not NORMAL, FIFO, DELAY, TRANSACTION or MIXED"
            ))
        })?;
        changes = format!("+{}={}", model::ATTR_MESSAGE_TYPE, kind.as_str());
    }
    let spec = TopicSpec {
        name,
        read_queues: body
            .read_queues
            .or(body.queues)
            .unwrap_or(current.map_or(queues, |c| c.read_queues)),
        write_queues: body
            .write_queues
            .or(body.queues)
            .unwrap_or(current.map_or(queues, |c| c.write_queues)),
        perm: body
            .perm
            .or(current.map(|c| c.perm))
            .unwrap_or(PERM_READ | PERM_WRITE),
        topic_sys_flag: current.map_or(0, |c| c.topic_sys_flag),
        order: current.is_some_and(|c| c.order),
        attributes: BTreeMap::new(),
    };
    if !(0..=7).contains(&spec.perm) {
        return Err(BrokerError::InvalidParameter(format!(
            "perm {} is not Apache's perm bits (0..7)",
            spec.perm
        )));
    }
    b.create_topic(spec, &changes).await
}

/// Creates a topic (409 when it exists).
#[utoipa::path(operation_id = "topics_create", post, path = "/api/v1/topics", tag = "topics", request_body = TopicBody,
    responses((status = 201, body = TopicDetail), (status = 400, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn create(Admin(b): Admin, Body(body): Body<TopicBody>) -> RestResult {
    let Some(name) = body.name.clone().filter(|n| !n.is_empty()) else {
        return Err(BrokerError::InvalidParameter("the topic needs a name".into()).into());
    };
    if b.topic(&name).is_some() {
        return Err(super::ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "TopicAlreadyExist",
            format!("the topic {name} exists (PUT /api/v1/topics/{name} changes it)"),
        )
        .into());
    }
    apply(&b, name.clone(), body, None).await?;
    Ok(HttpResponse::Created().json(detail(&b, &name).await?))
}

async fn detail(b: &rocktor_actors::BrokerContext, name: &str) -> Result<TopicDetail, BrokerError> {
    let t = b.existing_topic(name)?;
    let queues = b
        .queue_offsets(name)?
        .into_iter()
        .map(|q| QueueState {
            queue_id: q.queue_id,
            min_offset: q.min,
            max_offset: q.max,
            last_store_time: q.last_store_time,
        })
        .collect();
    Ok(TopicDetail {
        summary: summary(b, &t.config),
        queues,
        groups: b.groups_of_topic(name).await?,
    })
}

/// A topic with each queue's min and max offset and last store time.
#[utoipa::path(operation_id = "topics_get", get, path = "/api/v1/topics/{topic}", tag = "topics",
    params(("topic" = String, Path)),
    responses((status = 200, body = TopicDetail), (status = 404, body = super::ErrorBody)))]
pub async fn get(Admin(b): Admin, topic: web::Path<String>) -> RestResult {
    ok(detail(&b, &topic).await?)
}

/// Changes a topic's queues, perm or message type (what the body leaves out stays).
#[utoipa::path(operation_id = "topics_update", put, path = "/api/v1/topics/{topic}", tag = "topics",
    params(("topic" = String, Path)), request_body = TopicBody,
    responses((status = 200, body = TopicDetail), (status = 400, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody)))]
pub async fn update(
    Admin(b): Admin,
    topic: web::Path<String>,
    Body(body): Body<TopicBody>,
) -> RestResult {
    let name = topic.into_inner();
    if body.name.as_ref().is_some_and(|n| *n != name) {
        return Err(BrokerError::InvalidParameter("the body names another topic".into()).into());
    }
    let current = b.existing_topic(&name)?;
    apply(&b, name.clone(), body, Some(&current.config)).await?;
    ok(detail(&b, &name).await?)
}

/// Deletes a topic and its messages.
#[utoipa::path(operation_id = "topics_delete", delete, path = "/api/v1/topics/{topic}", tag = "topics",
    params(("topic" = String, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub async fn delete(Admin(b): Admin, topic: web::Path<String>) -> RestResult {
    b.existing_topic(&topic)?;
    b.delete_topic(&topic).await?;
    Ok(HttpResponse::NoContent().finish())
}

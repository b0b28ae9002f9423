//! Client membership and offsets: HEART_BEAT, UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP,
//! QUERY/UPDATE_CONSUMER_OFFSET, GET_MAX/MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP,
//! GET_EARLIEST_MSG_STORETIME — digest §2.2.

use super::{ok, ok_json, HandlerResult};
use crate::remoting::body;
use crate::remoting::codes::response as rc;
use crate::remoting::command::RemotingCommand;
use crate::remoting::connection::Connection;
use crate::remoting::errors::HandlerError;
use crate::remoting::ext::Ext;
use rocktor_actors::consumer_group::ClientChannel;
use rocktor_actors::service::HeartbeatRequest;
use rocktor_actors::BrokerContext;
use serde_json::json;
use std::sync::Arc;

pub async fn heartbeat(
    b: &BrokerContext,
    conn: &Arc<Connection>,
    req: &RemotingCommand,
) -> HandlerResult {
    let hb = body::parse_heartbeat(&req.body, &req.language, req.version)
        .map_err(HandlerError::BadBody)?;
    for (g, _) in &hb.consumers {
        conn.joined_group(g);
    }
    let channel: Arc<dyn ClientChannel> = conn.clone();
    let changed = b
        .heartbeat(HeartbeatRequest {
            language: req.language.clone(),
            version: req.version,
            client_id: hb.client_id,
            producer_groups: hb.producer_groups,
            consumers: hb.consumers,
            channel,
        })
        .await?;
    Ok(Some(
        RemotingCommand::response_to(req, 0)
            .with_ext("IS_SUPPORT_HEART_BEAT_V2", "false")
            .with_ext("IS_SUB_CHANGE", changed),
    ))
}

/// CHECK_CLIENT_CONFIG (46): SQL92 consumers ask at start whether their expression compiles.
pub async fn check_client_config(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let v: serde_json::Value =
        serde_json::from_slice(&req.body).map_err(|e| HandlerError::BadBody(e.to_string()))?;
    let sub = &v["subscriptionData"];
    let expression = sub["subString"].as_str().unwrap_or("*");
    let expression_type = sub["expressionType"].as_str().unwrap_or("TAG");
    b.check_expression(expression, expression_type)?;
    ok(req)
}

pub async fn unregister(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    b.unregister(
        e.str("clientID")?,
        e.opt_str("consumerGroup"),
        e.opt_str("producerGroup"),
    );
    ok(req)
}

pub async fn consumer_list(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let group = Ext::of(req).str("consumerGroup")?;
    let ids = b.consumer_ids(group).await?;
    if ids.is_empty() {
        return Ok(Some(
            RemotingCommand::response_to(req, rc::SYSTEM_ERROR)
                .with_remark(format!("no consumer for this group, {group}")),
        ));
    }
    ok_json(req, &json!({ "consumerIdList": ids }))
}

pub async fn query_offset(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let zero = e
        .opt_str("setZeroIfNotFound")
        .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    let off = b
        .query_offset(
            e.str("consumerGroup")?,
            e.str("topic")?,
            e.i64("queueId")?.max(0) as u32,
            zero,
        )
        .await?;
    Ok(Some(match off {
        Some(o) => RemotingCommand::response_to(req, 0).with_ext("offset", o),
        None => RemotingCommand::response_to(req, rc::QUERY_NOT_FOUND)
            .with_remark("Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first"),
    }))
}

pub async fn update_offset(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    b.commit_offset(
        e.str("consumerGroup")?,
        e.str("topic")?,
        e.i64("queueId")?.max(0) as u32,
        e.i64("commitOffset")?,
    )
    .await?;
    ok(req)
}

pub async fn max_offset(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let stats = b.queue_stats(e.str("topic")?, e.i64("queueId")?.max(0) as u32)?;
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_ext("offset", stats.max()),
    ))
}

pub async fn min_offset(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let stats = b.queue_stats(e.str("topic")?, e.i64("queueId")?.max(0) as u32)?;
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_ext("offset", stats.min()),
    ))
}

pub async fn search_offset(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let upper = e
        .opt_str("boundaryType")
        .is_some_and(|t| t.eq_ignore_ascii_case("upper"));
    let off = b
        .search_offset(
            e.str("topic")?,
            e.i64("queueId")?.max(0) as u32,
            e.i64("timestamp")?,
            upper,
        )
        .await?;
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_ext("offset", off),
    ))
}

pub async fn earliest_store_time(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let ts = b
        .earliest_store_time(e.str("topic")?, e.i64("queueId")?.max(0) as u32)
        .await?;
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_ext("timestamp", ts),
    ))
}

/// LOCK_BATCH_MQ (41): the queues granted to the client, of those it asks for — digest §4.8.
pub async fn lock(
    b: &BrokerContext,
    conn: &Arc<Connection>,
    req: &RemotingCommand,
) -> HandlerResult {
    let lb = body::parse_lock_body(&req.body, rocktor_actors::service::MAX_LOCK_QUEUES)
        .map_err(HandlerError::BadBody)?;
    let granted = b
        .lock_queues(&lb.group, &lb.client_id, conn.id, lb.queues)
        .await?;
    // A closed connection must reach the group, to free its locks at once.
    conn.joined_group(&lb.group);
    ok_json(req, &body::lock_response(&b.settings.broker_name, &granted))
}

/// UNLOCK_BATCH_MQ (42): releases the client's locks among the named queues.
pub async fn unlock(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let lb = body::parse_lock_body(&req.body, rocktor_actors::service::MAX_LOCK_QUEUES)
        .map_err(HandlerError::BadBody)?;
    b.unlock_queues(&lb.group, &lb.client_id, lb.queues).await?;
    ok(req)
}

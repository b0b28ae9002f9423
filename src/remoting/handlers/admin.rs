//! Admin codes used by mqadmin-style tools — digest §2.7.

use super::{ok, ok_json, HandlerResult};
use crate::remoting::body;
use crate::remoting::codes::response as rc;
use crate::remoting::command::RemotingCommand;
use crate::remoting::errors::HandlerError;
use crate::remoting::ext::Ext;
use rocktor_actors::consumer_group::{FindMember, GetConnections};
use rocktor_actors::model::{PERM_READ, PERM_WRITE};
use rocktor_actors::producers::ListProducers;
use rocktor_actors::service::ResetTarget;
use rocktor_actors::{BrokerContext, BrokerError, TopicSpec};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub async fn create_topic(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let queues = |k: &'static str| -> Result<u32, HandlerError> {
        let n = e.opt_i64(k)?.unwrap_or(8);
        Ok(n.clamp(0, u32::MAX as i64) as u32)
    };
    let spec = TopicSpec {
        name: e.str("topic")?.to_string(),
        read_queues: queues("readQueueNums")?,
        write_queues: queues("writeQueueNums")?,
        perm: e
            .opt_i64("perm")?
            .map(|p| p as i32)
            .unwrap_or(PERM_READ | PERM_WRITE),
        topic_sys_flag: e.opt_i64("topicSysFlag")?.unwrap_or(0) as i32,
        order: e.bool("order").unwrap_or(false),
        attributes: BTreeMap::new(),
    };
    // `attributes` arrives as "+key=value,-key2"; the domain applies it.
    b.create_topic(spec, e.opt_str("attributes").unwrap_or(""))
        .await?;
    ok(req)
}

pub async fn delete_topic(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    b.delete_topic(Ext::of(req).str("topic")?).await?;
    ok(req)
}

pub async fn all_topic_config(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let reg = b.registry.load();
    let mut v = body::topic_config_table(reg.topics.values().map(|t| &t.config));
    v["topicQueueMappingDetailMap"] = json!({});
    v["mappingDataVersion"] = body::data_version(0);
    let mut resp = RemotingCommand::response_to(req, 0).with_body(v.to_string().into_bytes());
    resp = resp.with_ext("totalTopicNum", reg.topics.len());
    Ok(Some(resp))
}

pub async fn topic_config(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let name = Ext::of(req).str("topic")?;
    let t = b
        .topic(name)
        .ok_or_else(|| BrokerError::TopicNotExist(name.to_string()))?;
    ok_json(req, &json!({"topicConfig": body::topic_config(&t.config)}))
}

pub async fn topic_stats(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let name = Ext::of(req).str("topic")?;
    let body = body::topic_stats_table(&b.settings.broker_name, name, &b.queue_offsets(name)?);
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_body(body.into_bytes()),
    ))
}

pub async fn upsert_group(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let v: Value =
        serde_json::from_slice(&req.body).map_err(|e| HandlerError::BadBody(e.to_string()))?;
    let config = body::parse_group_config(&v)
        .ok_or_else(|| HandlerError::BadBody("groupName is missing".into()))?;
    b.upsert_group(config).await?;
    ok(req)
}

pub async fn all_group_config(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let reg = b.registry.load();
    ok_json(
        req,
        &body::group_config_table(reg.groups.values().map(|g| &g.config)),
    )
}

pub async fn group_config(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let name = Ext::of(req).str("group")?;
    match b.group(name) {
        Some(g) => ok_json(req, &body::group_config(&g.config)),
        None => Ok(Some(
            RemotingCommand::response_to(req, rc::SUBSCRIPTION_GROUP_NOT_EXIST)
                .with_remark(format!("subscription group [{name}] does not exist")),
        )),
    }
}

pub async fn runtime_info(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let reg = b.registry.load();
    let mut t = BTreeMap::new();
    t.insert("brokerVersionDesc".to_string(), "V5_3_3".to_string());
    t.insert("brokerVersion".to_string(), "479".to_string());
    t.insert(
        "rocktorVersion".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    t.insert("msgPutTotalTodayNow".to_string(), "0".to_string());
    t.insert("msgGetTotalTodayNow".to_string(), "0".to_string());
    t.insert("putTps".to_string(), "0.0 0.0 0.0".to_string());
    t.insert("getTransferredTps".to_string(), "0.0 0.0 0.0".to_string());
    t.insert("commitLogDiskRatio".to_string(), "0.0".to_string());
    t.insert("pageCacheLockTimeMills".to_string(), "0".to_string());
    t.insert("earliestMessageTimeStamp".to_string(), "0".to_string());
    t.insert("topicCount".to_string(), reg.topics.len().to_string());
    t.insert("groupCount".to_string(), reg.groups.len().to_string());
    t.insert(
        "flushMode".to_string(),
        format!("{:?}", b.store.flush_mode()),
    );
    ok_json(req, &body::kv_table(&t))
}

pub async fn consume_stats(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let topic = e.opt_str("topic").filter(|t| !t.is_empty());
    let rows = b.consume_stats(e.str("consumerGroup")?, topic).await?;
    let body = body::consume_stats(&b.settings.broker_name, &rows);
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_body(body.into_bytes()),
    ))
}

pub async fn consumer_connections(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let group_name = Ext::of(req).str("consumerGroup")?;
    let conns = match b.group(group_name) {
        Some(g) => g
            .addr
            .send(GetConnections)
            .await
            .map_err(BrokerError::from)?,
        None => Default::default(),
    };
    if conns.connections.is_empty() {
        return Ok(Some(
            RemotingCommand::response_to(req, rc::CONSUMER_NOT_ONLINE)
                .with_remark(format!("the consumer group[{group_name}] not online")),
        ));
    }
    ok_json(req, &body::consumer_connection(&conns))
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222): by timestamp (`-1`: the end of the queues) or, from
/// 5.x tools, to an explicit `offset`; online consumers are told at once.
pub async fn reset_offset(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let group = e.str("group")?;
    let topic = e.str("topic")?;
    let force = e.bool("isForce").unwrap_or(true);
    let target = match (e.opt_i64("offset")?, e.i64("timestamp")?) {
        (Some(o), _) if o >= 0 => ResetTarget::Offset(o),
        (_, ts) if ts < 0 => ResetTarget::Latest,
        (_, ts) => ResetTarget::Timestamp(ts),
    };
    let offsets = b.reset_offsets(group, topic, target, force).await?;
    let body = body::reset_offset_body(&b.settings.broker_name, topic, &offsets);
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_body(body.into_bytes()),
    ))
}

/// DELETE_SUBSCRIPTIONGROUP (207).
pub async fn delete_group(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let name = e.str("groupName")?.to_string();
    let clean_offsets = e.bool("cleanOffset").unwrap_or(false);
    b.delete_group(&name, clean_offsets).await?;
    ok(req)
}

/// GET_PRODUCER_CONNECTION_LIST (204).
pub async fn producer_connections(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let group = Ext::of(req).str("producerGroup")?.to_string();
    let list = b
        .producers
        .send(ListProducers { group })
        .await
        .map_err(BrokerError::from)?;
    let conns: Vec<Value> = list
        .iter()
        .map(|c| json!({"clientId": c.client_id, "clientAddr": c.client_addr.to_string(), "language": c.language, "version": c.version}))
        .collect();
    ok_json(req, &json!({ "connectionSet": conns }))
}

pub async fn groups_of_topic(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let groups = b.groups_of_topic(Ext::of(req).str("topic")?).await?;
    ok_json(req, &json!({ "groupList": groups }))
}

pub async fn topics_of_group(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let topics = b.topics_of_group(Ext::of(req).str("group")?).await?;
    ok_json(
        req,
        &json!({ "topicList": topics, "brokerAddr": b.settings.broker_addr.to_string() }),
    )
}

pub async fn consume_time_span(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let topic = e.str("topic")?;
    let spans: Vec<Value> = b
        .consume_time_span(topic, e.str("group")?)
        .await?
        .iter()
        .map(|s| {
            json!({
                "messageQueue": {"topic": topic, "brokerName": b.settings.broker_name, "queueId": s.queue_id},
                "minTimeStamp": s.min_timestamp, "maxTimeStamp": s.max_timestamp,
                "consumeTimeStamp": s.consume_timestamp,
                "delayTime": (s.max_timestamp - s.consume_timestamp).max(0),
            })
        })
        .collect();
    ok_json(req, &json!({ "consumeTimeSpanSet": spans }))
}

/// GET_CONSUMER_RUNNING_INFO (307): forwarded to the client, its answer passed back.
pub async fn consumer_running_info(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let (group, client_id) = (e.str("consumerGroup")?, e.str("clientId")?);
    let jstack = e.bool("jstackEnable").unwrap_or(false);
    let member = match b.group(group) {
        Some(g) => g
            .addr
            .send(FindMember {
                client_id: client_id.to_string(),
            })
            .await
            .map_err(BrokerError::from)?,
        None => None,
    };
    let Some(channel) = member else {
        return Ok(Some(
            RemotingCommand::response_to(req, rc::SYSTEM_ERROR)
                .with_remark(format!("The Consumer <{client_id}> <{group}> not online")),
        ));
    };
    match channel
        .consumer_running_info(group, client_id, jstack)
        .await
    {
        Ok(body) => Ok(Some(RemotingCommand::response_to(req, 0).with_body(body))),
        Err(why) => Ok(Some(
            RemotingCommand::response_to(req, rc::SYSTEM_ERROR).with_remark(why),
        )),
    }
}

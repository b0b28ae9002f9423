//! Admin codes used by mqadmin-style tools — digest §2.7.

use super::{ok, ok_json, HandlerResult};
use crate::remoting::body::{self, ConsumeRow};
use crate::remoting::codes::response as rc;
use crate::remoting::command::RemotingCommand;
use crate::remoting::errors::HandlerError;
use crate::remoting::ext::Ext;
use rocktor_actors::broker::GroupHandle;
use rocktor_actors::broker::{DeleteGroup, DeleteTopic, UpsertGroup};
use rocktor_actors::consumer_group::{FindMember, GetConnections, GetOffsets};
use rocktor_actors::model::{self, PERM_READ, PERM_WRITE};
use rocktor_actors::producers::ListProducers;
use rocktor_actors::service::ResetTarget;
use rocktor_actors::{BrokerContext, BrokerError, TopicSpec};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub async fn create_topic(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let name = e.str("topic")?.to_string();
    if name == model::DEFAULT_TOPIC || model::NOT_ALLOWED_SEND_TOPICS.contains(&name.as_str()) {
        return Err(BrokerError::InvalidParameter(format!(
            "The topic[{name}] is conflict with system topic."
        ))
        .into());
    }
    let queues = |k: &'static str| -> Result<u32, HandlerError> {
        let n = e.opt_i64(k)?.unwrap_or(8);
        if !(1..=1024).contains(&n) {
            return Err(
                BrokerError::InvalidParameter(format!("{k} {n} is out of range 1..1024")).into(),
            );
        }
        Ok(n as u32)
    };
    let mut attributes = BTreeMap::new();
    if let Some(a) = e.opt_str("attributes") {
        for item in a.split(',').filter(|s| !s.is_empty()) {
            if let Some((k, v)) = item.trim_start_matches('+').split_once('=') {
                attributes.insert(k.to_string(), v.to_string());
            }
        }
    }
    let spec = TopicSpec {
        read_queues: queues("readQueueNums")?,
        write_queues: queues("writeQueueNums")?,
        perm: e
            .opt_i64("perm")?
            .map(|p| p as i32)
            .unwrap_or(PERM_READ | PERM_WRITE),
        topic_sys_flag: e.opt_i64("topicSysFlag")?.unwrap_or(0) as i32,
        order: e.bool("order").unwrap_or(false),
        attributes,
        name,
    };
    b.create_topic(spec).await?;
    ok(req)
}

pub async fn delete_topic(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let name = Ext::of(req).str("topic")?.to_string();
    if name == model::DEFAULT_TOPIC {
        return Err(
            BrokerError::InvalidParameter("The topic TBW102 is a system topic.".into()).into(),
        );
    }
    b.broker
        .send(DeleteTopic { name })
        .await
        .map_err(BrokerError::from)??;
    ok(req)
}

pub async fn all_topic_config(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let reg = b.registry.load();
    let table: Map<String, Value> = reg
        .topics
        .values()
        .map(|t| (t.config.name.clone(), body::topic_config(&t.config)))
        .collect();
    let v = json!({"topicConfigTable": table, "dataVersion": body::data_version(reg.topics.len() as u64),
                   "topicQueueMappingDetailMap": {}, "mappingDataVersion": body::data_version(0)});
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
    let t = b
        .topic(name)
        .ok_or_else(|| BrokerError::TopicNotExist(name.to_string()))?;
    let rows: Vec<(u32, u64, u64, i64)> = t
        .stats
        .iter()
        .enumerate()
        .map(|(q, s)| {
            (
                q as u32,
                s.min(),
                s.max(),
                s.last_store_time.load(std::sync::atomic::Ordering::Acquire),
            )
        })
        .collect();
    let body = body::topic_stats_table(&b.settings.broker_name, name, &rows);
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_body(body.into_bytes()),
    ))
}

pub async fn upsert_group(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let v: Value =
        serde_json::from_slice(&req.body).map_err(|e| HandlerError::BadBody(e.to_string()))?;
    let config = body::parse_group_config(&v)
        .ok_or_else(|| HandlerError::BadBody("groupName is missing".into()))?;
    model::validate_group(&config.name).map_err(BrokerError::InvalidParameter)?;
    b.broker
        .send(UpsertGroup { config })
        .await
        .map_err(BrokerError::from)??;
    ok(req)
}

pub async fn all_group_config(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let reg = b.registry.load();
    let table: Map<String, Value> = reg
        .groups
        .values()
        .map(|g| (g.config.name.clone(), body::group_config(&g.config)))
        .collect();
    ok_json(
        req,
        &json!({"subscriptionGroupTable": table, "dataVersion": body::data_version(reg.groups.len() as u64)}),
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
    let group_name = e.str("consumerGroup")?;
    let only_topic = e
        .opt_str("topic")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let g = b
        .group(group_name)
        .ok_or_else(|| BrokerError::GroupNotExist(group_name.to_string()))?;
    let offsets = g
        .addr
        .send(GetOffsets {
            topic: only_topic.clone(),
        })
        .await
        .map_err(BrokerError::from)?;
    let mut topics: Vec<String> = offsets.iter().map(|(t, _, _)| t.clone()).collect();
    topics.extend(g.view.load().subscriptions.keys().cloned());
    if let Some(t) = &only_topic {
        topics.retain(|x| x == t);
    }
    topics.sort();
    topics.dedup();
    let mut rows = Vec::new();
    for topic in topics {
        let Some(t) = b.topic(&topic) else { continue };
        for (q, s) in t.stats.iter().enumerate() {
            let committed = offsets
                .iter()
                .find(|(tt, qq, _)| *tt == topic && *qq == q as u32)
                .map(|(_, _, o)| *o)
                .unwrap_or(0);
            rows.push(ConsumeRow {
                topic: topic.clone(),
                queue_id: q as u32,
                broker_offset: s.max(),
                consumer_offset: committed,
                last_timestamp: s.last_store_time.load(std::sync::atomic::Ordering::Acquire),
            });
        }
    }
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
    b.broker
        .send(DeleteGroup {
            name,
            clean_offsets,
        })
        .await
        .map_err(BrokerError::from)??;
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

/// Topics a group consumes: its subscriptions and the topics it committed offsets for.
async fn group_topics(b: &BrokerContext, group: &GroupHandle) -> Result<Vec<String>, BrokerError> {
    let offsets = group.addr.send(GetOffsets { topic: None }).await?;
    let mut topics: Vec<String> = offsets.into_iter().map(|(t, _, _)| t).collect();
    topics.extend(group.view.load().subscriptions.keys().cloned());
    topics.retain(|t| b.topic(t).is_some());
    topics.sort();
    topics.dedup();
    Ok(topics)
}

/// QUERY_TOPIC_CONSUME_BY_WHO (300): the groups that consume a topic.
pub async fn groups_of_topic(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let topic = Ext::of(req).str("topic")?;
    let groups: Vec<_> = b.registry.load().groups.values().cloned().collect();
    let mut names = Vec::new();
    for g in groups {
        if group_topics(b, &g).await?.iter().any(|t| t == topic) {
            names.push(g.config.name.clone());
        }
    }
    names.sort();
    ok_json(req, &json!({ "groupList": names }))
}

/// QUERY_TOPICS_BY_CONSUMER (343): the topics a group consumes.
pub async fn topics_of_group(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let name = Ext::of(req).str("group")?;
    let g = b
        .group(name)
        .ok_or_else(|| BrokerError::GroupNotExist(name.to_string()))?;
    let topics = group_topics(b, &g).await?;
    ok_json(
        req,
        &json!({ "topicList": topics, "brokerAddr": b.settings.broker_addr.to_string() }),
    )
}

/// QUERY_CONSUME_TIME_SPAN (303): per queue, the oldest and newest store times and the store
/// time of the last consumed message.
pub async fn consume_time_span(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let (topic, group) = (e.str("topic")?, e.str("group")?);
    let t = b
        .topic(topic)
        .ok_or_else(|| BrokerError::TopicNotExist(topic.to_string()))?;
    let offsets = match b.group(group) {
        Some(g) => g
            .addr
            .send(GetOffsets {
                topic: Some(topic.to_string()),
            })
            .await
            .map_err(BrokerError::from)?,
        None => Vec::new(),
    };
    let mut spans = Vec::new();
    for (q, stats) in t.stats.iter().enumerate() {
        let q = q as u32;
        let min_ts = b.earliest_store_time(topic, q).await?;
        let max_ts = stats
            .last_store_time
            .load(std::sync::atomic::Ordering::Acquire);
        let consumed = offsets
            .iter()
            .find(|(_, qq, _)| *qq == q)
            .map(|(_, _, o)| *o)
            .unwrap_or(0);
        let consume_ts = if consumed > stats.min() as i64 && consumed > 0 {
            b.store_time_at(topic, q, consumed as u64 - 1)
                .await?
                .unwrap_or(min_ts)
        } else {
            min_ts
        };
        spans.push(json!({
            "messageQueue": {"topic": topic, "brokerName": b.settings.broker_name, "queueId": q},
            "minTimeStamp": min_ts, "maxTimeStamp": max_ts, "consumeTimeStamp": consume_ts,
            "delayTime": (max_ts - consume_ts).max(0),
        }));
    }
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

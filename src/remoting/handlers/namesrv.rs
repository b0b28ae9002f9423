//! Name-server codes (digest §2.8, §5).

use super::{ok, ok_json, HandlerResult};
use crate::remoting::body;
use crate::remoting::codes::{request as rq, response as rc};
use crate::remoting::command::RemotingCommand;
use crate::remoting::ext::Ext;
use rocktor_actors::routes::{
    GetClusterInfo, GetRoute, KvOp, KvReply, ListTopics, RemoveTopicRoute,
};
use rocktor_actors::{BrokerContext, BrokerError};
use serde_json::json;

pub async fn route(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let topic = Ext::of(req).str("topic")?;
    match b
        .routes
        .send(GetRoute {
            topic: topic.to_string(),
        })
        .await
        .map_err(BrokerError::from)?
    {
        Some(r) => ok_json(req, &body::route_data(&r)),
        None => Ok(Some(
            RemotingCommand::response_to(req, rc::TOPIC_NOT_EXIST).with_remark(format!(
                "No topic route info in name server for the topic: {topic}"
            )),
        )),
    }
}

pub async fn cluster_info(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let info = b
        .routes
        .send(GetClusterInfo)
        .await
        .map_err(BrokerError::from)?;
    ok_json(req, &body::cluster_info(&info))
}

pub async fn topic_list(
    b: &BrokerContext,
    req: &RemotingCommand,
    cluster: Option<String>,
) -> HandlerResult {
    let topics = b
        .routes
        .send(ListTopics { cluster })
        .await
        .map_err(BrokerError::from)?;
    ok_json(req, &json!({ "topicList": topics }))
}

pub async fn topics_by_cluster(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let cluster = Ext::of(req).str("cluster")?.to_string();
    topic_list(b, req, Some(cluster)).await
}

pub async fn delete_topic(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let topic = Ext::of(req).str("topic")?.to_string();
    b.routes
        .send(RemoveTopicRoute {
            broker_name: None,
            topic,
        })
        .await
        .map_err(BrokerError::from)?;
    ok(req)
}

pub async fn kv(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let namespace = e.str("namespace")?.to_string();
    let op = match req.code {
        rq::PUT_KV_CONFIG => KvOp::Put {
            namespace,
            key: e.str("key")?.to_string(),
            value: e.str("value")?.to_string(),
        },
        rq::GET_KV_CONFIG => KvOp::Get {
            namespace,
            key: e.str("key")?.to_string(),
        },
        rq::DELETE_KV_CONFIG => KvOp::Delete {
            namespace,
            key: e.str("key")?.to_string(),
        },
        _ => KvOp::List { namespace },
    };
    let not_found = |what: String| {
        Ok(Some(
            RemotingCommand::response_to(req, rc::QUERY_NOT_FOUND)
                .with_remark(format!("No config item, {what}")),
        ))
    };
    match b.routes.send(op).await.map_err(BrokerError::from)? {
        KvReply::Done => ok(req),
        KvReply::Value(Some(v)) => Ok(Some(
            RemotingCommand::response_to(req, 0).with_ext("value", v),
        )),
        KvReply::Value(None) => not_found(format!(
            "Namespace: {} Key: {}",
            e.str("namespace")?,
            e.str("key")?
        )),
        KvReply::Table(Some(t)) => ok_json(req, &body::kv_table(&t)),
        KvReply::Table(None) => not_found(format!("Namespace: {}", e.str("namespace")?)),
    }
}

//! ACL 1.0 on the broker port: which resources each request code needs (Apache's
//! PlainAccessResource), with the request's own credentials, decided by the domain's
//! Authenticator. A refusal answers NO_PERMISSION naming the account and resource.

use crate::remoting::body::parse_heartbeat;
use crate::remoting::codes::{request as rq, response as rc};
use crate::remoting::command::RemotingCommand;
use rocktor_actors::auth::{AccessRequest, Perm, Resource};
use rocktor_actors::BrokerContext;
use std::net::IpAddr;

/// Requests only an admin account may make: Apache's list, and the ACL admin codes (which
/// would otherwise let any account grant itself anything).
const ADMIN_ONLY: [i32; 11] = [
    rq::UPDATE_AND_CREATE_TOPIC,
    25, // UPDATE_BROKER_CONFIG
    rq::DELETE_TOPIC_IN_BROKER,
    rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    rq::DELETE_SUBSCRIPTIONGROUP,
    rq::UPDATE_AND_CREATE_ACL_CONFIG,
    rq::DELETE_ACL_CONFIG,
    rq::GET_BROKER_CLUSTER_ACL_INFO,
    rq::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG,
    rq::GET_BROKER_CLUSTER_ACL_CONFIG,
    rq::SET_MESSAGE_REQUEST_MODE,
];

/// The resources a request needs, from its header (and a heartbeat's body).
fn resources(req: &RemotingCommand) -> Vec<(Resource, Perm)> {
    let ext = &req.ext;
    let topic = |k: &str| ext.get(k).map(|t| Resource::Topic(t.to_string()));
    let group = |k: &str| ext.get(k).map(|g| Resource::Group(g.to_string()));
    let mut out = Vec::new();
    let mut need = |r: Option<Resource>, p: Perm| {
        if let Some(r) = r {
            out.push((r, p));
        }
    };
    match req.code {
        rq::SEND_MESSAGE => need(topic("topic"), Perm::PUB),
        rq::SEND_MESSAGE_V2 | rq::SEND_BATCH_MESSAGE => {
            need(topic("b").or_else(|| topic("topic")), Perm::PUB)
        }
        rq::CONSUMER_SEND_MSG_BACK => need(group("group"), Perm::SUB),
        rq::PULL_MESSAGE | rq::LITE_PULL_MESSAGE => {
            need(topic("topic"), Perm::SUB);
            need(group("consumerGroup"), Perm::SUB);
        }
        rq::POP_MESSAGE | rq::ACK_MESSAGE | rq::CHANGE_MESSAGE_INVISIBLETIME => {
            need(topic("topic"), Perm::SUB);
            need(group("consumerGroup"), Perm::SUB);
        }
        rq::BATCH_ACK_MESSAGE => {
            for (g, t) in super::pop::batch_ack_resources(&req.body) {
                need(Some(Resource::Topic(t)), Perm::SUB);
                need(Some(Resource::Group(g)), Perm::SUB);
            }
        }
        rq::QUERY_ASSIGNMENT => {
            if let Some((t, g)) = super::pop::query_assignment_resources(&req.body) {
                need(Some(Resource::Topic(t)), Perm::SUB);
                need(Some(Resource::Group(g)), Perm::SUB);
            }
        }
        rq::QUERY_MESSAGE => need(topic("topic"), Perm::SUB),
        rq::UPDATE_CONSUMER_OFFSET => {
            need(topic("topic"), Perm::SUB);
            need(group("consumerGroup"), Perm::SUB);
        }
        rq::UNREGISTER_CLIENT => need(group("consumerGroup"), Perm::SUB),
        rq::GET_CONSUMER_LIST_BY_GROUP => need(group("consumerGroup"), Perm::SUB),
        rq::HEART_BEAT => {
            if let Ok(hb) = parse_heartbeat(&req.body, "", 0) {
                for (g, info) in &hb.consumers {
                    need(Some(Resource::Group(g.clone())), Perm::SUB);
                    for sub in &info.subscriptions {
                        need(Some(Resource::Topic(sub.topic.clone())), Perm::SUB);
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// None when the request may go on; otherwise the NO_PERMISSION answer.
pub fn refuse(b: &BrokerContext, remote: IpAddr, req: &RemotingCommand) -> Option<RemotingCommand> {
    if !b.auth.enabled() {
        return None;
    }
    let fields: Vec<(&str, &str)> = req.ext.iter().collect();
    let access = AccessRequest {
        remote,
        access_key: req.ext.get("AccessKey"),
        signature: req.ext.get("Signature"),
        fields,
        body: &req.body,
        string_to_sign: None,
        admin_only: ADMIN_ONLY.contains(&req.code),
        resources: resources(req),
    };
    match b.auth.check(&access) {
        Ok(()) => None,
        Err(e) => {
            tracing::debug!(code = req.code, %remote, error = %e, "request refused by ACL");
            Some(RemotingCommand::response_to(req, rc::NO_PERMISSION).with_remark(e.to_string()))
        }
    }
}

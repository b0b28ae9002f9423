//! One handler module per request family; `dispatch` routes a request by role and code.

mod access;
mod acl_admin;
mod admin;
mod consumer;
mod namesrv;
mod pop;
mod pull;
mod query;
mod send;
mod transaction;

use super::codes::request as rq;
use super::command::RemotingCommand;
use super::connection::Connection;
use super::errors::{not_supported, HandlerError, Reply};
use rocktor_actors::BrokerContext;
use std::sync::Arc;

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    NameServer,
    Broker,
}

pub type HandlerResult = Result<Reply, HandlerError>;

/// Answers one request. `None` for oneway requests (and for requests answered later).
pub async fn dispatch(
    broker: &BrokerContext,
    conn: &Arc<Connection>,
    role: Role,
    req: RemotingCommand,
) -> Reply {
    if role == Role::Broker {
        use rocktor_actors::client_channel::ClientChannel;
        if let Some(denied) = access::refuse(broker, conn.remote_addr().ip(), &req) {
            return (!req.is_oneway()).then_some(denied);
        }
    }
    let started = std::time::Instant::now();
    let result = match role {
        Role::NameServer => namesrv_codes(broker, &req).await,
        Role::Broker => broker_codes(broker, conn, &req).await,
    };
    let reply = match result {
        Ok(r) => r,
        Err(e) => Some(e.into_response(&req)),
    };
    if let Some(r) = &reply {
        // An unknown request code is one label set (REQUEST_CODE_NOT_SUPPORTED), so a peer
        // inventing codes cannot spend the series budget.
        let request = if r.code == super::codes::response::REQUEST_CODE_NOT_SUPPORTED {
            "unsupported".to_string()
        } else {
            req.code.to_string()
        };
        broker
            .metrics
            .rpc("remoting", &request, &r.code.to_string(), started.elapsed());
    }
    if req.is_oneway() {
        None
    } else {
        reply
    }
}

async fn namesrv_codes(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    match req.code {
        rq::GET_ROUTEINFO_BY_TOPIC => namesrv::route(b, req).await,
        rq::GET_BROKER_CLUSTER_INFO => namesrv::cluster_info(b, req).await,
        rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => namesrv::topic_list(b, req, None).await,
        rq::GET_TOPICS_BY_CLUSTER => namesrv::topics_by_cluster(b, req).await,
        rq::DELETE_TOPIC_IN_NAMESRV => namesrv::delete_topic(b, req).await,
        rq::PUT_KV_CONFIG
        | rq::GET_KV_CONFIG
        | rq::DELETE_KV_CONFIG
        | rq::GET_KVLIST_BY_NAMESPACE => namesrv::kv(b, req).await,
        _ => Ok(Some(not_supported(req))),
    }
}

async fn broker_codes(
    b: &BrokerContext,
    conn: &Arc<Connection>,
    req: &RemotingCommand,
) -> HandlerResult {
    match req.code {
        rq::SEND_MESSAGE | rq::SEND_MESSAGE_V2 | rq::SEND_BATCH_MESSAGE => {
            send::send(b, conn, req).await
        }
        rq::PULL_MESSAGE | rq::LITE_PULL_MESSAGE => pull::pull(b, conn, req).await,
        rq::POP_MESSAGE => pop::pop(b, req).await,
        rq::ACK_MESSAGE => pop::ack(b, req).await,
        rq::BATCH_ACK_MESSAGE => pop::batch_ack(b, req).await,
        rq::CHANGE_MESSAGE_INVISIBLETIME => pop::change_invisible(b, req).await,
        rq::QUERY_ASSIGNMENT => pop::query_assignment(b, req).await,
        rq::SET_MESSAGE_REQUEST_MODE => pop::set_request_mode(b, req).await,
        rq::QUERY_MESSAGE => query::query(b, req).await,
        rq::VIEW_MESSAGE_BY_ID => query::view(b, req).await,
        rq::CONSUMER_SEND_MSG_BACK => send::send_back(b, req).await,
        rq::END_TRANSACTION => transaction::end_transaction(b, req).await,
        rq::RECALL_MESSAGE => transaction::recall(b, req).await,
        rq::LOCK_BATCH_MQ => consumer::lock(b, conn, req).await,
        rq::UNLOCK_BATCH_MQ => consumer::unlock(b, req).await,
        rq::HEART_BEAT => consumer::heartbeat(b, conn, req).await,
        rq::UNREGISTER_CLIENT => consumer::unregister(b, req).await,
        rq::CHECK_CLIENT_CONFIG => consumer::check_client_config(b, req).await,
        rq::GET_CONSUMER_LIST_BY_GROUP => consumer::consumer_list(b, req).await,
        rq::QUERY_CONSUMER_OFFSET => consumer::query_offset(b, req).await,
        rq::UPDATE_CONSUMER_OFFSET => consumer::update_offset(b, req).await,
        rq::GET_MAX_OFFSET => consumer::max_offset(b, req).await,
        rq::GET_MIN_OFFSET => consumer::min_offset(b, req).await,
        rq::SEARCH_OFFSET_BY_TIMESTAMP => consumer::search_offset(b, req).await,
        rq::GET_EARLIEST_MSG_STORETIME => consumer::earliest_store_time(b, req).await,
        rq::UPDATE_AND_CREATE_TOPIC => admin::create_topic(b, req).await,
        rq::DELETE_TOPIC_IN_BROKER => admin::delete_topic(b, req).await,
        rq::GET_ALL_TOPIC_CONFIG => admin::all_topic_config(b, req).await,
        rq::GET_TOPIC_CONFIG => admin::topic_config(b, req).await,
        rq::GET_TOPIC_STATS_INFO => admin::topic_stats(b, req).await,
        rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => admin::upsert_group(b, req).await,
        rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => admin::all_group_config(b, req).await,
        rq::GET_SUBSCRIPTIONGROUP_CONFIG => admin::group_config(b, req).await,
        rq::GET_BROKER_RUNTIME_INFO => admin::runtime_info(b, req).await,
        rq::GET_CONSUME_STATS => admin::consume_stats(b, req).await,
        rq::GET_CONSUMER_CONNECTION_LIST => admin::consumer_connections(b, req).await,
        rq::INVOKE_BROKER_TO_RESET_OFFSET => admin::reset_offset(b, req).await,
        rq::DELETE_SUBSCRIPTIONGROUP => admin::delete_group(b, req).await,
        rq::GET_PRODUCER_CONNECTION_LIST => admin::producer_connections(b, req).await,
        rq::QUERY_TOPIC_CONSUME_BY_WHO => admin::groups_of_topic(b, req).await,
        rq::QUERY_TOPICS_BY_CONSUMER => admin::topics_of_group(b, req).await,
        rq::QUERY_CONSUME_TIME_SPAN => admin::consume_time_span(b, req).await,
        rq::GET_CONSUMER_RUNNING_INFO => admin::consumer_running_info(b, req).await,
        rq::UPDATE_AND_CREATE_ACL_CONFIG => acl_admin::upsert(b, req).await,
        rq::DELETE_ACL_CONFIG => acl_admin::delete(b, req).await,
        rq::GET_BROKER_CLUSTER_ACL_INFO => acl_admin::version_info(b, req).await,
        rq::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG => acl_admin::global_white(b, req).await,
        rq::GET_BROKER_CLUSTER_ACL_CONFIG => acl_admin::listing(b, req).await,
        // A broker answers route queries too, for tools pointed at it directly.
        rq::GET_ROUTEINFO_BY_TOPIC => namesrv::route(b, req).await,
        rq::GET_BROKER_CLUSTER_INFO => namesrv::cluster_info(b, req).await,
        _ => Ok(Some(not_supported(req))),
    }
}

/// A success response with a JSON body.
fn ok_json(req: &RemotingCommand, v: &serde_json::Value) -> HandlerResult {
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_body(v.to_string().into_bytes()),
    ))
}

fn ok(req: &RemotingCommand) -> HandlerResult {
    Ok(Some(RemotingCommand::response_to(req, 0)))
}

//! The ACL 1.0 admin codes (50–54; admin accounts only, see `access`). Requests come in two
//! shapes: Java's tools put the account into the header (CreateAccessConfigRequestHeader,
//! permission lists comma-separated), rocketmq-client-rust puts a PlainAccessConfig JSON in
//! the body (and a deletion's access key as the body). Absent or empty fields keep the
//! account's current values. Listings never carry a secret.

use super::{ok, HandlerResult};
use crate::remoting::codes::response as rc;
use crate::remoting::command::RemotingCommand;
use crate::remoting::errors::HandlerError;
use crate::remoting::ext::Ext;
use rocktor_actors::auth::{AccountPatch, AclVersion};
use rocktor_actors::service::acl::AclChangeError;
use rocktor_actors::BrokerContext;
use serde::Deserialize;
use serde_json::json;

/// PlainAccessConfig as the Rust client's JSON body carries it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PlainAccessConfigBody {
    access_key: Option<String>,
    secret_key: Option<String>,
    white_remote_address: Option<String>,
    admin: Option<bool>,
    default_topic_perm: Option<String>,
    default_group_perm: Option<String>,
    topic_perms: Option<Vec<String>>,
    group_perms: Option<Vec<String>>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn list(s: Option<&str>) -> Option<Vec<String>> {
    let items: Vec<String> = s?
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    (!items.is_empty()).then_some(items)
}

fn patch_of(req: &RemotingCommand) -> Result<AccountPatch, HandlerError> {
    let e = Ext::of(req);
    if let Some(ak) = e.opt_str("accessKey") {
        let s = |k: &'static str| nonempty(e.opt_str(k).map(String::from));
        return Ok(AccountPatch {
            access_key: ak.to_string(),
            secret_key: s("secretKey"),
            white_remote_address: e.opt_str("whiteRemoteAddress").map(String::from),
            admin: e.opt_str("admin").map(|v| v.eq_ignore_ascii_case("true")),
            default_topic_perm: s("defaultTopicPerm"),
            default_group_perm: s("defaultGroupPerm"),
            topic_perms: list(e.opt_str("topicPerms")),
            group_perms: list(e.opt_str("groupPerms")),
        });
    }
    // serde's message is left out: it may quote a value, and a value may be a secret.
    let body: PlainAccessConfigBody = serde_json::from_slice(&req.body).map_err(|_| {
        HandlerError::BadBody(
            "neither an accessKey header nor a PlainAccessConfig JSON body".into(),
        )
    })?;
    let vec = |v: Option<Vec<String>>| v.filter(|v| !v.is_empty());
    Ok(AccountPatch {
        access_key: body.access_key.unwrap_or_default(),
        secret_key: nonempty(body.secret_key),
        white_remote_address: body.white_remote_address,
        admin: body.admin,
        default_topic_perm: nonempty(body.default_topic_perm),
        default_group_perm: nonempty(body.default_group_perm),
        topic_perms: vec(body.topic_perms),
        group_perms: vec(body.group_perms),
    })
}

fn answer(req: &RemotingCommand, r: Result<(), AclChangeError>) -> HandlerResult {
    match r {
        Ok(()) => ok(req),
        Err(e) => Ok(Some(
            RemotingCommand::response_to(req, rc::SYSTEM_ERROR).with_remark(e.to_string()),
        )),
    }
}

/// UPDATE_AND_CREATE_ACL_CONFIG (50).
pub async fn upsert(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let patch = patch_of(req)?;
    answer(req, b.acl_upsert(patch).await)
}

/// DELETE_ACL_CONFIG (51): the access key in the header, or as the body.
pub async fn delete(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let ak = match Ext::of(req).opt_str("accessKey") {
        Some(ak) => ak.to_string(),
        None => String::from_utf8_lossy(&req.body).trim().to_string(),
    };
    answer(req, b.acl_delete(&ak).await)
}

/// UPDATE_GLOBAL_WHITE_ADDRS_CONFIG (53): `globalWhiteAddrs`, comma-separated (required; an
/// empty value clears the list).
pub async fn global_white(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let addrs = Ext::of(req).str("globalWhiteAddrs")?;
    let list = addrs.split(',').map(String::from).collect();
    answer(req, b.acl_set_global_white(list).await)
}

fn off(req: &RemotingCommand) -> HandlerResult {
    let e = rocktor_actors::auth::AclAdminError::Off;
    Ok(Some(
        RemotingCommand::response_to(req, rc::SYSTEM_ERROR).with_remark(e.to_string()),
    ))
}

fn data_version(v: AclVersion) -> serde_json::Value {
    json!({"timestamp": v.timestamp_ms, "counter": v.counter, "stateVersion": 0})
}

/// GET_BROKER_CLUSTER_ACL_INFO (52): the configuration's version, in the header (Java's
/// GetBrokerAclConfigResponseHeader) and as a ClusterAclVersionInfo body (the Rust client).
pub async fn version_info(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let Some((_, version)) = b.auth.listing() else {
        return off(req);
    };
    let s = &b.settings;
    let dv = data_version(version);
    let body = json!({
        "brokerName": s.broker_name,
        "brokerAddr": s.broker_addr.to_string(),
        "clusterName": s.cluster_name,
        "aclConfigDataVersion": dv,
        "allAclConfigDataVersion": {"plain_acl": dv},
    });
    Ok(Some(
        RemotingCommand::response_to(req, 0)
            .with_ext("version", &dv)
            .with_ext("allAclFileVersion", json!({"plain_acl": dv}))
            .with_ext("brokerName", &s.broker_name)
            .with_ext("brokerAddr", s.broker_addr)
            .with_ext("clusterName", &s.cluster_name)
            .with_body(body.to_string().into_bytes()),
    ))
}

/// GET_BROKER_CLUSTER_ACL_CONFIG (54, 4.7–4.9.0): the allow list and the accounts in force,
/// secrets left out.
pub async fn listing(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let Some((source, _)) = b.auth.listing() else {
        return off(req);
    };
    let accounts: Vec<_> = source.accounts.values().map(|a| a.redacted()).collect();
    let body = json!({"globalWhiteAddrs": source.global_white, "plainAccessConfigs": accounts});
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_body(body.to_string().into_bytes()),
    ))
}

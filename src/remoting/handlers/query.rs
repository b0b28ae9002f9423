//! QUERY_MESSAGE (12) and VIEW_MESSAGE_BY_ID (33) — digest §2.2.

use super::HandlerResult;
use crate::remoting::codes::response as rc;
use crate::remoting::command::RemotingCommand;
use crate::remoting::ext::Ext;
use rocktor_actors::service::MessageQuery;
use rocktor_actors::{BrokerContext, BrokerError};

pub async fn query(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let q = MessageQuery {
        topic: e.str("topic")?.to_string(),
        key: e.str("key")?.to_string(),
        unique: e.bool("_UNIQUE_KEY_QUERY").unwrap_or(false),
        begin_ms: e.opt_i64("beginTimestamp")?.unwrap_or(0),
        end_ms: e.opt_i64("endTimestamp")?.unwrap_or(i64::MAX),
        max: e.opt_i64("maxNum")?.unwrap_or(32).clamp(1, i32::MAX as i64) as usize,
    };
    // Apache answers an unknown topic as "not found" too.
    let found = match b.query_messages(q).await {
        Err(BrokerError::TopicNotExist(_)) => Vec::new(),
        r => r?,
    };
    if found.is_empty() {
        return Ok(Some(
            RemotingCommand::response_to(req, rc::QUERY_NOT_FOUND)
                .with_remark("can not find message, maybe time range not correct"),
        ));
    }
    let mut resp = RemotingCommand::response_to(req, 0)
        .with_ext("indexLastUpdateTimestamp", rocktor_actors::now_ms())
        .with_ext("indexLastUpdatePhyoffset", 0);
    resp.body_chunks = found;
    Ok(Some(resp))
}

pub async fn view(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let offset = Ext::of(req).i64("offset")?;
    if offset < 0 {
        return Err(BrokerError::InvalidParameter(format!("offset {offset} is negative")).into());
    }
    match b.view_message(offset as u64).await {
        Ok(record) => {
            let mut resp = RemotingCommand::response_to(req, 0);
            resp.body_chunks = vec![record];
            Ok(Some(resp))
        }
        Err(BrokerError::NotFound(m)) => Ok(Some(
            RemotingCommand::response_to(req, rc::SYSTEM_ERROR).with_remark(m),
        )),
        Err(e) => Err(e.into()),
    }
}

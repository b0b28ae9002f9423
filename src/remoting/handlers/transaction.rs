//! END_TRANSACTION (37, oneway from the Java and Go clients) and RECALL_MESSAGE (370) —
//! digest §2.1, §4.4.

use super::HandlerResult;
use crate::remoting::command::RemotingCommand;
use crate::remoting::errors::HandlerError;
use crate::remoting::ext::Ext;
use crate::remoting::message::decode_offset_msg_id;
use rocktor_actors::{BrokerContext, BrokerError};

/// `commitOrRollback` values (MessageSysFlag).
const TRANSACTION_NOT_TYPE: i64 = 0;
const TRANSACTION_COMMIT_TYPE: i64 = 8;
const TRANSACTION_ROLLBACK_TYPE: i64 = 12;

pub async fn end_transaction(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let group = e.str("producerGroup")?;
    let tran_state_offset = e.i64("tranStateTableOffset")?;
    // Clients decode it from the offset message id; fall back to decoding `msgId` ourselves
    // when a client leaves it out.
    let commit_log_offset = match e.opt_i64("commitLogOffset")? {
        Some(o) => o,
        None => e
            .opt_str("msgId")
            .and_then(decode_offset_msg_id)
            .map(|(_, seq)| seq as i64)
            .ok_or(crate::remoting::ext::FieldError::Missing("commitLogOffset"))?,
    };
    let commit = match e.i64("commitOrRollback")? {
        TRANSACTION_COMMIT_TYPE => Some(true),
        TRANSACTION_ROLLBACK_TYPE => Some(false),
        TRANSACTION_NOT_TYPE => None,
        other => {
            return Err(HandlerError::Broker(BrokerError::InvalidParameter(
                format!("commitOrRollback {other} is none of 0, 8 and 12"),
            )))
        }
    };
    if tran_state_offset < 0 || commit_log_offset < 0 {
        return Err(HandlerError::Broker(BrokerError::TransactionMismatch(
            "negative transaction offsets".into(),
        )));
    }
    b.end_transaction(
        group,
        tran_state_offset as u64,
        commit_log_offset as u64,
        commit,
    )
    .await?;
    Ok(Some(RemotingCommand::response_to(req, 0)))
}

pub async fn recall(b: &BrokerContext, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let id = b.recall(e.str("topic")?, e.str("recallHandle")?).await?;
    Ok(Some(
        RemotingCommand::response_to(req, 0).with_ext("msgId", id),
    ))
}

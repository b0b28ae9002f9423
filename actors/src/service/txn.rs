//! The transaction flow: a half message goes to the TxnChecker instead of its queue, and a
//! producer's END_TRANSACTION (its own, or its answer to a check) commits or rolls it back.

use super::*;
use crate::txn::{EndReply, EndTransaction, Prepare, PrepareReply};

impl BrokerContext {
    /// Stores a half message of `topic`/`queue_id`: durable, invisible until committed.
    pub(super) async fn prepare_half(
        &self,
        topic: &TopicHandle,
        queue_id: u32,
        message: PreparedMessage,
        producer_group: String,
        sender: Option<u64>,
    ) -> BrokerResult<u64> {
        let prepare = Prepare {
            topic: topic.config.name.clone(),
            queue_id,
            message,
            producer_group,
            sender,
        };
        crate::reply::call(&self.txn, "transaction checker", |reply| PrepareReply {
            prepare,
            reply,
        })
        .await
    }

    /// A producer's outcome for a half message: COMMIT makes it visible in its queue,
    /// ROLLBACK discards it, UNKNOWN (`None`) leaves it to the next check. A second outcome
    /// for the same half message is ignored.
    pub async fn end_transaction(
        &self,
        producer_group: &str,
        tran_state_offset: u64,
        commit_log_offset: u64,
        commit: Option<bool>,
    ) -> BrokerResult<()> {
        let Some(commit) = commit else {
            return Ok(());
        };
        let end = EndTransaction {
            producer_group: producer_group.to_string(),
            tran_state_offset,
            commit_log_offset,
            commit,
        };
        crate::reply::call(&self.txn, "transaction checker", |reply| EndReply {
            end,
            reply,
        })
        .await
    }
}

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
        polled: bool,
    ) -> BrokerResult<u64> {
        let prepare = Prepare {
            topic: topic.config.name.clone(),
            queue_id,
            message,
            producer_group,
            sender,
            polled,
        };
        crate::reply::call(&self.txn, "transaction checker", |reply| PrepareReply {
            prepare,
            reply,
        })
        .await
    }

    /// The half messages of `topic` that are due for a check and whose producer polls for
    /// checks (HTTP `trans=pop`).
    pub async fn poll_half_messages(
        &self,
        topic: &str,
        max: usize,
    ) -> BrokerResult<Vec<crate::txn::PolledHalf>> {
        self.existing_topic(topic)?;
        crate::reply::call(&self.txn, "transaction checker", |reply| {
            crate::txn::PollHalves {
                topic: topic.to_string(),
                max,
                reply,
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_channel::TransactionCheck;
    use crate::txn::{TxnSettings, CHECK_MAX_TOPIC};

    struct FakeProducer {
        checks: Mutex<Vec<TransactionCheck>>,
    }

    impl ClientChannel for FakeProducer {
        fn connection_id(&self) -> u64 {
            7
        }
        fn remote_addr(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], 5000))
        }
        fn notify_consumer_ids_changed(&self, _: &str) {}
        fn reset_offsets(&self, _: &str, _: &str, _: &str, _: i64, _: &[(u32, i64)]) {}
        fn check_transaction_state(&self, check: &TransactionCheck, _: Bytes) {
            if let Ok(mut c) = self.checks.lock() {
                c.push(check.clone());
            }
        }
        fn consumer_running_info(
            &self,
            _: &str,
            _: &str,
            _: bool,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>> + Send>>
        {
            Box::pin(async { Err("not a real client".to_string()) })
        }
    }

    fn half(body: &'static [u8]) -> SendRequest {
        SendRequest {
            connection_id: Some(7),
            polls_checks: false,
            ..SendRequest::for_test(
                "T",
                Bytes::from_static(body),
                "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PG\u{2}",
            )
        }
    }

    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..100 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what} never happened");
    }

    /// Commit, a wrong group, a repeated outcome, rollback, then checks up to the maximum and
    /// the move to TRANS_CHECK_MAX_TIME_TOPIC.
    #[actix::test]
    async fn outcomes_checks_and_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), rocktor_storage::FlushMode::Async).unwrap();
        let settings = BrokerSettings {
            txn: TxnSettings {
                timeout_ms: 0,
                check_interval_ms: 0,
                max_checks: 2,
                max_pending: 10,
                ..Default::default()
            },
            ..Default::default()
        };
        let b = BrokerContext::start(settings, store).await.unwrap();
        b.create_topic(TopicSpec::single_queue("T"), "")
            .await
            .unwrap();
        let stats = b.queue_stats("T", 0).unwrap();
        let seq = b.send(half(b"a")).await.unwrap().seqs[0];
        assert_eq!(stats.max(), 0, "a half message is invisible");
        let wrong = b.end_transaction("PG_other", seq, seq, Some(true)).await;
        assert!(matches!(wrong, Err(BrokerError::TransactionMismatch(_))));
        let wrong = b.end_transaction("PG", seq + 1, seq, Some(true)).await;
        assert!(matches!(wrong, Err(BrokerError::TransactionMismatch(_))));
        b.end_transaction("PG", seq, seq, None).await.unwrap();
        assert_eq!(stats.max(), 0, "UNKNOWN changes nothing");
        b.end_transaction("PG", seq, seq, Some(true)).await.unwrap();
        assert_eq!(stats.max(), 1);
        b.end_transaction("PG", seq, seq, Some(false))
            .await
            .unwrap();
        b.end_transaction("PG", seq, seq, Some(true)).await.unwrap();
        assert_eq!(stats.max(), 1, "a second outcome is ignored");
        let seq = b.send(half(b"b")).await.unwrap().seqs[0];
        b.end_transaction("PG", seq, seq, Some(false))
            .await
            .unwrap();
        assert_eq!(stats.max(), 1, "rolled back");
        // No outcome: checked with a live producer of the group, then moved aside.
        let producer = Arc::new(FakeProducer {
            checks: Mutex::new(Vec::new()),
        });
        b.heartbeat(HeartbeatRequest {
            client_id: "p1".into(),
            language: "JAVA".into(),
            version: 0,
            producer_groups: vec!["PG".into()],
            consumers: Vec::new(),
            channel: producer.clone(),
        })
        .await
        .unwrap();
        let seq = b.send(half(b"c")).await.unwrap().seqs[0];
        let moved = || {
            b.queue_stats(CHECK_MAX_TOPIC, 0)
                .map(|s| s.max() == 1)
                .unwrap_or(false)
        };
        eventually("the move past the maximum", moved).await;
        let checks = producer.checks.lock().unwrap().clone();
        assert_eq!(checks.len(), 2, "checked exactly the maximum: {checks:?}");
        assert!(checks
            .iter()
            .all(|c| c.commit_log_offset == seq && c.topic == "T"));
        assert_eq!(stats.max(), 1, "never visible in its topic");
        let pending = b.txn.send(crate::txn::PendingCount).await.unwrap();
        assert_eq!(pending, 0);
        b.shutdown().await;
    }
}

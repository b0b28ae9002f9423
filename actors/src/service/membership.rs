//! Membership: heartbeats register producers and consumers, unregister and closed
//! connections remove them.

use super::*;

pub struct HeartbeatRequest {
    pub client_id: String,
    pub language: String,
    pub version: i32,
    pub producer_groups: Vec<String>,
    pub consumers: Vec<(String, ConsumerInfo)>,
    pub channel: Arc<dyn ClientChannel>,
}

impl BrokerContext {
    pub async fn heartbeat(&self, hb: HeartbeatRequest) -> BrokerResult<bool> {
        let producer_groups: Vec<String> = hb
            .producer_groups
            .into_iter()
            .filter(|g| g != "CLIENT_INNER_PRODUCER")
            .collect();
        if !producer_groups.is_empty() {
            // Heartbeats come at the clients' rate: a full mailbox drops this one (the
            // client sends another within 30 s) instead of growing past its bound.
            let registered = self.producers.try_send(RegisterProducer {
                groups: producer_groups,
                client_id: hb.client_id.clone(),
                language: hb.language.clone(),
                version: hb.version,
                channel: hb.channel.clone(),
            });
            if registered.is_err() {
                return Err(BrokerError::SystemBusy);
            }
        }
        let mut changed = false;
        for (group_name, info) in hb.consumers {
            // A group is served by one protocol at a time (the HTTP API's rule).
            self.refuse_if_served_over_http(&group_name)?;
            let group = self.ensure_group(&group_name).await?;
            if info.message_model != model::MessageModel::Broadcasting {
                self.ensure_retry_topic(&group).await?;
            }
            changed |= group
                .addr
                .send(Heartbeat {
                    info,
                    channel: hb.channel.clone(),
                })
                .timeout(MAILBOX_WAIT)
                .await??;
        }
        Ok(changed)
    }

    pub fn unregister(
        &self,
        client_id: &str,
        consumer_group: Option<&str>,
        producer_group: Option<&str>,
    ) {
        // At the clients' rate, so bounded: a full mailbox drops the request, and the member
        // then leaves when its connection closes or its heartbeats stop (120 s).
        if let Some(g) = producer_group {
            let _ = self.producers.try_send(UnregisterProducer {
                group: g.to_string(),
                client_id: client_id.to_string(),
            });
        }
        if let Some(g) = consumer_group.and_then(|g| self.group(g)) {
            let _ = g.addr.try_send(Unregister {
                client_id: client_id.to_string(),
            });
        }
    }

    /// A connection closed: its consumers leave the groups it joined. `do_send`: at most one
    /// per connection, so the rate is bounded by accepted connections, and it must not be lost.
    pub fn connection_closed(&self, connection_id: u64, groups: impl IntoIterator<Item = String>) {
        self.producers
            .do_send(ProducerConnectionClosed { connection_id });
        for g in groups {
            if let Some(g) = self.group(&g) {
                g.addr.do_send(ConnectionClosed { connection_id });
            }
        }
    }

    pub async fn consumer_ids(&self, group: &str) -> BrokerResult<Vec<String>> {
        match self.group(group) {
            Some(g) => Ok(g.addr.send(ListClientIds).await?),
            None => Ok(Vec::new()),
        }
    }
}

/// The most queues one lock or unlock request may name (a client names its own assignment).
pub const MAX_LOCK_QUEUES: usize = 8192;

/// A queue as clients name it: (topic, broker name, queue id).
pub type BrokerQueue = (String, String, u32);

impl BrokerContext {
    /// The queues of this broker among `queues` (an empty broker name counts as ours).
    fn our_queues(&self, queues: Vec<BrokerQueue>) -> Vec<crate::consumer_group::QueueKey> {
        let ours = &self.settings.broker_name;
        queues
            .into_iter()
            .filter(|(_, broker, _)| broker.is_empty() || broker == ours)
            .map(|(topic, _, queue_id)| (topic, queue_id))
            .collect()
    }

    /// LOCK_BATCH_MQ: the queues granted to `client_id` (digest §4.8). A lock request creates
    /// the group as a heartbeat would.
    pub async fn lock_queues(
        &self,
        group: &str,
        client_id: &str,
        connection_id: u64,
        queues: Vec<BrokerQueue>,
    ) -> BrokerResult<Vec<crate::consumer_group::QueueKey>> {
        if queues.len() > MAX_LOCK_QUEUES {
            return Err(BrokerError::LimitExceeded(format!(
                "a lock request names {} queues, more than {MAX_LOCK_QUEUES}",
                queues.len()
            )));
        }
        let queues = self.our_queues(queues);
        if client_id.is_empty() {
            return Err(BrokerError::InvalidParameter(
                "a lock request needs the client id".into(),
            ));
        }
        // Only queues that exist can be locked: a client cannot grow the lock table with
        // made-up names.
        for (topic, queue_id) in &queues {
            let known = self
                .topic(topic)
                .is_some_and(|t| *queue_id < t.config.queue_count());
            if !known {
                return Err(BrokerError::InvalidParameter(format!(
                    "cannot lock queue {queue_id} of topic {topic}: no such queue"
                )));
            }
        }
        let g = self.ensure_group(group).await?;
        Ok(g.addr
            .send(crate::consumer_group::LockQueues {
                client_id: client_id.to_string(),
                connection_id,
                queues,
            })
            .timeout(MAILBOX_WAIT)
            .await?)
    }

    /// UNLOCK_BATCH_MQ: releases the queues `client_id` holds among `queues`.
    pub async fn unlock_queues(
        &self,
        group: &str,
        client_id: &str,
        queues: Vec<BrokerQueue>,
    ) -> BrokerResult<()> {
        if queues.len() > MAX_LOCK_QUEUES {
            return Err(BrokerError::LimitExceeded(format!(
                "an unlock request names {} queues, more than {MAX_LOCK_QUEUES}",
                queues.len()
            )));
        }
        let queues = self.our_queues(queues);
        let Some(g) = self.group(group) else {
            return Ok(());
        };
        g.addr
            .send(crate::consumer_group::UnlockQueues {
                client_id: client_id.to_string(),
                queues,
            })
            .timeout(MAILBOX_WAIT)
            .await?;
        Ok(())
    }
}

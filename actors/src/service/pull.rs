//! The pull flow: permissions, the subscription's filter (compiled once), the long-poll caps,
//! then one message to the queue actor.

use super::*;

/// Compiled filters by (expression, type).
pub(super) type FilterCache = HashMap<(String, String), Arc<Filter>>;

/// The largest answer a pull may build: one record past it still stays well inside clients'
/// 16 MiB frame limit (records are at most 4 MiB + properties).
pub const MAX_PULL_BYTES: usize = 8 << 20;

/// How long a pull over its long-poll cap waits before it is answered "nothing new", so that
/// clients do not spin.
pub const OVER_CAP_HOLD: Duration = Duration::from_millis(500);

/// Distinct self-carried pull subscriptions kept compiled.
const PULL_FILTER_CACHE: usize = 1024;

/// A counter slot held while a pull is parked; given back on drop.
pub(super) struct HoldSlot(Vec<Arc<AtomicUsize>>);

impl HoldSlot {
    /// Takes a slot in every counter, or none when one is at its cap.
    fn take(counters: &[(&Arc<AtomicUsize>, usize)]) -> Option<HoldSlot> {
        let mut taken = Vec::with_capacity(counters.len());
        for (c, cap) in counters {
            if c.fetch_add(1, Ordering::AcqRel) >= *cap {
                c.fetch_sub(1, Ordering::AcqRel);
                drop(HoldSlot(taken));
                return None;
            }
            taken.push(Arc::clone(c));
        }
        Some(HoldSlot(taken))
    }
}

impl Drop for HoldSlot {
    fn drop(&mut self) {
        for c in &self.0 {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

pub struct PullRequest {
    pub group: String,
    pub topic: String,
    pub queue_id: u32,
    pub offset: u64,
    pub max_msgs: usize,
    pub max_bytes: usize,
    /// The expression and its type when the request carries its own subscription.
    pub subscription: Option<(String, String)>,
    pub sub_version: i64,
    pub commit_offset: Option<i64>,
    pub hold: Option<Duration>,
    /// The long polls the caller's connection holds right now (capped per connection).
    pub connection_holds: Option<Arc<AtomicUsize>>,
    /// True once the caller's connection is gone: work for it is skipped.
    pub caller_gone: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The caller's connection's share of the storage-read budget.
    pub caller_budget: Option<Arc<tokio::sync::Semaphore>>,
}

impl BrokerContext {
    /// The filter of a pull: its own subscription, or the one the group registered.
    pub(super) fn pull_filter(
        &self,
        group: &GroupHandle,
        req: &PullRequest,
    ) -> BrokerResult<Arc<Filter>> {
        if let Some((expr, ty)) = &req.subscription {
            self.check_filter_type(ty)?;
            return self.compiled_filter(expr, ty);
        }
        let view = group.view.load();
        let Some(sub) = view.subscriptions.get(&req.topic) else {
            return Err(BrokerError::SubscriptionNotExist(req.group.clone()));
        };
        if sub.subscription.version < req.sub_version {
            return Err(BrokerError::SubscriptionNotLatest(req.group.clone()));
        }
        // Compiled once when the heartbeat registered this subscription version.
        self.check_filter_type(&sub.subscription.expression_type)?;
        sub.filter
            .clone()
            .map_err(BrokerError::SubscriptionParseFailed)
    }

    /// SQL92 needs property filtering on (Apache's `enablePropertyFilter`).
    pub(super) fn check_filter_type(&self, expression_type: &str) -> BrokerResult<()> {
        if expression_type.eq_ignore_ascii_case("SQL92") && !self.settings.enable_property_filter {
            return Err(BrokerError::NotSupported(
                "The broker does not support consumer to filter message by SQL92 (enable_property_filter = false)".into(),
            ));
        }
        Ok(())
    }

    /// A self-carried subscription's filter, compiled once per distinct expression.
    pub(super) fn compiled_filter(&self, expr: &str, ty: &str) -> BrokerResult<Arc<Filter>> {
        let key = (expr.to_string(), ty.to_string());
        if let Some(f) = self
            .pull_filters
            .lock()
            .ok()
            .and_then(|c| c.get(&key).cloned())
        {
            return Ok(f);
        }
        let f = Arc::new(
            Filter::from_subscription(expr, ty).map_err(BrokerError::SubscriptionParseFailed)?,
        );
        if let Ok(mut cache) = self.pull_filters.lock() {
            if cache.len() >= PULL_FILTER_CACHE {
                cache.clear();
            }
            cache.insert(key, f.clone());
        }
        Ok(f)
    }

    /// CHECK_CLIENT_CONFIG and every SQL92 pull: property filtering must be on, and the
    /// expression must compile.
    pub fn check_expression(&self, expression: &str, expression_type: &str) -> BrokerResult<()> {
        self.check_filter_type(expression_type)?;
        self.compiled_filter(expression, expression_type)
            .map(|_| ())
    }

    /// The topic and group of a consume (pull, pop): the topic must exist and be readable, the
    /// group (created on first use) must be allowed to consume.
    pub(super) async fn consumable(
        &self,
        topic: &str,
        group: &str,
    ) -> BrokerResult<(Arc<TopicHandle>, Arc<GroupHandle>)> {
        let t = self.existing_topic(topic)?;
        if !t.config.readable() {
            return Err(BrokerError::NoPermission(format!(
                "the topic[{topic}] pulling message is forbidden"
            )));
        }
        let g = self.ensure_group(group).await?;
        if !g.config.consume_enable {
            return Err(BrokerError::NoPermission(format!(
                "subscription group no permission, {group}"
            )));
        }
        Ok((t, g))
    }

    pub async fn pull(&self, req: PullRequest) -> BrokerResult<PullOutcome> {
        let (topic, group) = self.consumable(&req.topic, &req.group).await?;
        if !group.config.consume_broadcast_enable
            && group.view.load().message_model == Some(model::MessageModel::Broadcasting)
        {
            return Err(BrokerError::NoPermission(format!(
                "the consumer group[{}] can not consume by broadcast way",
                req.group
            )));
        }
        let filter = self.pull_filter(&group, &req)?;
        let Some(queue) = topic.queues.get(req.queue_id as usize) else {
            return Err(BrokerError::InvalidParameter(format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}]",
                req.queue_id, req.topic, topic.config.read_queues
            )));
        };
        if let Some(off) = req.commit_offset {
            // A lost commit is superseded by the next one, so a full mailbox may drop it.
            let _ = group.addr.try_send(CommitOffset {
                topic: req.topic.clone(),
                queue_id: req.queue_id,
                offset: off,
            });
        }
        let mut hold = if self.settings.long_polling {
            req.hold
        } else {
            req.hold.map(|_| Duration::from_secs(1))
        };
        // A long poll holds a slot broker-wide and in its connection; over either cap it is
        // answered as if its hold had elapsed, after a short wait so the client does not spin.
        let mut over_cap = false;
        let slot = match hold {
            Some(_) => {
                let mut counters = vec![(&self.parked_pulls, self.settings.max_parked_pulls)];
                if let Some(c) = &req.connection_holds {
                    counters.push((c, self.settings.max_parked_pulls_per_connection));
                }
                let slot = HoldSlot::take(&counters);
                if slot.is_none() {
                    hold = None;
                    over_cap = true;
                }
                slot
            }
            None => None,
        };
        let out = queue
            .send(Pull {
                offset: req.offset,
                max_msgs: req.max_msgs.clamp(1, 1024),
                max_bytes: req.max_bytes.clamp(1, MAX_PULL_BYTES),
                filter,
                hold,
                caller_gone: req.caller_gone.clone(),
                caller_budget: req.caller_budget.clone(),
            })
            .timeout(hold.unwrap_or_default() + MAILBOX_WAIT)
            .await??;
        drop(slot);
        // Over a cap (the broker's, the connection's, or the queue's own): "nothing new" only
        // after a short wait, so the client does not spin.
        if (over_cap || out.hold_refused) && out.status == PullStatus::NoNewMessage {
            metrics::counter!("rocktor_long_polls_over_cap_total").increment(1);
            tokio::time::sleep(OVER_CAP_HOLD).await;
        }
        let bytes = out.records.iter().map(Bytes::len).sum();
        self.metrics
            .messages_out(&req.topic, &req.group, out.records.len(), bytes);
        Ok(out)
    }
}

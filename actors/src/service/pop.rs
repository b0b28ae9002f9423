//! The invisible-time consumption flow (HTTP messaging API, remoting POP codes, gRPC): the
//! checks a receive needs (topic, group, filter), one `PopState` actor per (group, topic),
//! acks and invisible-time changes by receipt handle, the move to the DLQ, and the rule that
//! a group is consumed over HTTP or over TCP, not both at once.

use super::*;
use crate::pop::{
    self, Ack, AckTarget, ChangeInvisible, Delivery, ForwardToDlq, HandleError, HandleKey,
    PopState, Receive,
};
use std::time::Instant;

/// The meta name of the receipt-handle key.
const HANDLE_KEY_NAME: &str = "receipt-handle-key";

/// A receive as a front end asks for it.
#[derive(Debug, Clone)]
pub struct ReceiveRequest {
    pub group: String,
    pub topic: String,
    pub max: usize,
    pub invisible_ms: i64,
    /// The filter: a tag expression (`A||B`, `*`) or SQL92, by `expression_type`.
    pub expression: String,
    pub expression_type: String,
    pub wait: Duration,
    pub order: bool,
    /// The most deliveries of one message; None: the group's retry maximum plus one.
    pub max_attempts: Option<u32>,
    /// Only this queue; None: any queue of the topic.
    pub queue: Option<u32>,
    /// A group new to the topic starts at the queues' ends (Apache's init mode MAX), not at
    /// their first retained messages; said by the receive that starts the group's state.
    pub start_at_end: bool,
}

/// Which protocol a group's consumers use (the HTTP API's one-protocol rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerProtocol {
    /// Remoting or gRPC: clients with a connection and heartbeats.
    Tcp,
    Http,
}

/// The pop actors, the HTTP-served groups and the request modes.
#[derive(Default)]
pub(crate) struct PopRegistry {
    actors: HashMap<(String, String), Addr<PopState>>,
    http_served: HashMap<String, Instant>,
    request_modes: HashMap<(String, String), super::RequestModeSetting>,
}

impl PopRegistry {
    pub(crate) fn with_request_modes(
        modes: Vec<((String, String), super::RequestModeSetting)>,
    ) -> Self {
        PopRegistry {
            request_modes: modes.into_iter().collect(),
            ..PopRegistry::default()
        }
    }

    pub(super) fn request_mode(
        &self,
        group: &str,
        topic: &str,
    ) -> Option<super::RequestModeSetting> {
        self.request_modes
            .get(&(group.to_string(), topic.to_string()))
            .copied()
    }

    pub(super) fn set_request_mode(
        &mut self,
        group: &str,
        topic: &str,
        setting: super::RequestModeSetting,
    ) {
        self.request_modes
            .insert((group.to_string(), topic.to_string()), setting);
    }
}

/// Reads the receipt-handle key from `meta`, or makes and stores one (first start).
pub(super) fn load_handle_key(store: &Store) -> BrokerResult<HandleKey> {
    let key = rocktor_storage::keys::meta_key(MetaKind::Secret, HANDLE_KEY_NAME);
    if let Some(v) = store.get_meta(&key)? {
        if let Ok(bytes) = <[u8; 32]>::try_from(&v[..]) {
            return Ok(HandleKey::new(bytes));
        }
        tracing::warn!("the stored receipt-handle key is malformed; making a new one");
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| BrokerError::Storage(format!("no randomness for the handle key: {e}")))?;
    store.put_meta(&key, &bytes)?;
    Ok(HandleKey::new(bytes))
}

impl BrokerContext {
    /// The pop actor of (group, topic), started on first use (again if it stopped).
    fn pop_state(
        &self,
        group: &str,
        topic: &str,
        start_at_end: bool,
    ) -> BrokerResult<Addr<PopState>> {
        let mut reg = self
            .pops
            .lock()
            .map_err(|_| BrokerError::Storage("pop registry poisoned".into()))?;
        let k = (group.to_string(), topic.to_string());
        if let Some(a) = reg.actors.get(&k).filter(|a| a.connected()) {
            return Ok(a.clone());
        }
        let (g, t, b, key) = (
            group.to_string(),
            topic.to_string(),
            self.clone(),
            self.handle_key.clone(),
        );
        let addr = PopState::start_in_arbiter(&self.next_arbiter(), move |_| {
            PopState::new(g, t, b, key, start_at_end)
        });
        reg.actors.insert(k, addr.clone());
        Ok(addr)
    }

    /// Hands out up to `max` messages of the topic to the group, invisible for
    /// `invisible_ms`, waiting up to `wait` for one.
    pub async fn receive(&self, req: ReceiveRequest) -> BrokerResult<Vec<Delivery>> {
        let (_, group) = self.consumable(&req.topic, &req.group).await?;
        if req.invisible_ms <= 0 {
            return Err(BrokerError::InvalidParameter(format!(
                "the invisible time {} ms is not positive",
                req.invisible_ms
            )));
        }
        self.check_filter_type(&req.expression_type)?;
        let filter = self.compiled_filter(&req.expression, &req.expression_type)?;
        let max_attempts = req
            .max_attempts
            .unwrap_or_else(|| (group.config.retry_max_times.max(0) as u32).saturating_add(1));
        let actor = self.pop_state(&req.group, &req.topic, req.start_at_end)?;
        let deliveries = crate::reply::call(&actor, "pop state", |reply| Receive {
            max: req.max.clamp(1, pop::MAX_BATCH),
            invisible_ms: req.invisible_ms,
            filter,
            wait: req.wait,
            order: req.order,
            max_attempts,
            queue: req.queue,
            reply,
        })
        .await?;
        Ok(deliveries)
    }

    /// Settles deliveries (by handle, or by queue, offset and deadline): one outcome per
    /// target, in order.
    pub async fn ack(
        &self,
        group: &str,
        topic: &str,
        targets: Vec<AckTarget>,
    ) -> BrokerResult<Vec<Result<(), HandleError>>> {
        let Some(actor) = self.settling_state(group, topic)? else {
            return Ok(targets.iter().map(|_| Err(HandleError::Invalid)).collect());
        };
        crate::reply::call(&actor, "pop state", |reply| Ack { targets, reply }).await
    }

    /// A new invisible time for one delivery, counted from now: its new handle and deadline.
    pub async fn change_invisible(
        &self,
        group: &str,
        topic: &str,
        target: AckTarget,
        invisible_ms: i64,
    ) -> BrokerResult<Result<(String, i64), HandleError>> {
        if invisible_ms < 0 {
            return Err(BrokerError::InvalidParameter(format!(
                "the invisible time {invisible_ms} ms is negative"
            )));
        }
        let Some(actor) = self.settling_state(group, topic)? else {
            return Ok(Err(HandleError::Invalid));
        };
        crate::reply::call(&actor, "pop state", |reply| ChangeInvisible {
            target,
            invisible_ms,
            reply,
        })
        .await
    }

    /// Moves one delivery to the group's DLQ now, settling it (a consumer that gave up on
    /// it: gRPC's ForwardMessageToDeadLetterQueue).
    pub async fn forward_to_dlq(
        &self,
        group: &str,
        topic: &str,
        target: AckTarget,
    ) -> BrokerResult<Result<(), HandleError>> {
        let Some(actor) = self.settling_state(group, topic)? else {
            return Ok(Err(HandleError::Invalid));
        };
        crate::reply::call(&actor, "pop state", |reply| ForwardToDlq { target, reply }).await
    }

    /// The pop actor an ack or invisible-time change goes to. It is started (after a restart,
    /// its deliveries are read back) only for a group and topic that exist: a settle never
    /// creates a group, so made-up names cannot start actors. None: no such group, so nothing
    /// of it is in flight and every handle is another group's.
    fn settling_state(&self, group: &str, topic: &str) -> BrokerResult<Option<Addr<PopState>>> {
        self.existing_topic(topic)?;
        if let Some(a) = self
            .existing_pop_state(group, topic)
            .filter(|a| a.connected())
        {
            return Ok(Some(a));
        }
        if self.group(group).is_none() {
            return Ok(None);
        }
        self.pop_state(group, topic, false).map(Some)
    }

    /// The pop actor of (group, topic), if a pop consumer ever read it.
    fn existing_pop_state(&self, group: &str, topic: &str) -> Option<Addr<PopState>> {
        self.pops.lock().ok().and_then(|r| {
            r.actors
                .get(&(group.to_string(), topic.to_string()))
                .cloned()
        })
    }

    /// Whether the message at (queue, offset) is handed out to the group and not yet settled.
    pub(super) async fn is_inflight(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        offset: u64,
    ) -> bool {
        match self.existing_pop_state(group, topic) {
            Some(a) => a
                .send(pop::IsInflight { queue_id, offset })
                .await
                .unwrap_or(false),
            None => false,
        }
    }

    /// Moves the message at `seq` to the group's DLQ after its last delivery, deleting the
    /// pop entry `pop_key` in the same write.
    pub(crate) async fn dead_letter_seq(
        &self,
        group: &str,
        seq: u64,
        pop_key: Vec<u8>,
        attempts: u32,
    ) -> BrokerResult<()> {
        let bytes = self.view_message(seq).await?;
        let (mut rec, _) = rocktor_storage::record::decode(&bytes)
            .map_err(|e| BrokerError::NotFound(format!("stored record {seq}: {e}")))?;
        let props = rec.properties.clone();
        let origin_topic = properties::get(&props, PROP_RETRY_TOPIC)
            .unwrap_or(&rec.topic)
            .to_string();
        let origin_id = properties::get(&props, PROP_UNIQ_KEY)
            .unwrap_or_default()
            .to_string();
        // The DLQ copy counts the deliveries it had, less the first.
        rec.reconsume_times = (attempts.min(i32::MAX as u32) as i32).saturating_sub(2);
        self.dead_letter(
            group,
            &rec,
            props,
            &origin_topic,
            &origin_id,
            Some((rocktor_storage::cf::POP, pop_key)),
        )
        .await
    }

    /// Claims the group for one protocol: an HTTP consume is refused while the group has live
    /// TCP members, and marks the group as served over HTTP for the configured window.
    pub fn claim_consumer_protocol(
        &self,
        group: &str,
        protocol: ConsumerProtocol,
    ) -> BrokerResult<()> {
        match protocol {
            ConsumerProtocol::Http => {
                if self.group(group).is_some_and(|g| g.view.load().members > 0) {
                    return Err(BrokerError::IllegalOperation(
                        "Consume message through HTTP and TCP at the same time is forbidden."
                            .into(),
                    ));
                }
                if let Ok(mut reg) = self.pops.lock() {
                    let window = self.settings.http_consumer_window;
                    if reg.http_served.len() > 100_000 {
                        reg.http_served.retain(|_, at| at.elapsed() < window);
                    }
                    reg.http_served.insert(group.to_string(), Instant::now());
                }
                Ok(())
            }
            ConsumerProtocol::Tcp => self.refuse_if_served_over_http(group),
        }
    }

    /// A TCP consumer (remoting heartbeat, gRPC) of a group an HTTP consumer used within the
    /// window is refused.
    pub(super) fn refuse_if_served_over_http(&self, group: &str) -> BrokerResult<()> {
        let window = self.settings.http_consumer_window;
        let served = self
            .pops
            .lock()
            .ok()
            .and_then(|r| r.http_served.get(group).copied())
            .is_some_and(|at| at.elapsed() < window);
        if served {
            return Err(BrokerError::IllegalOperation(format!(
                "the consumer group {group} is consumed over HTTP (within the last {} s); consume message through HTTP and TCP at the same time is forbidden",
                window.as_secs()
            )));
        }
        Ok(())
    }
}

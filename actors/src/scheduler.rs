//! Scheduler — delayed delivery: delay levels, the 5.x timer properties, ONS start-deliver
//! times, and the back-off of consumer retries.
//!
//! State it owns: the delivery floor (every timer entry due before it was delivered) and
//! whether a delivery round is running.
//!
//! Messages: `Schedule` (store records now, deliver them later) and its own 100 ms tick.
//!
//! Durability: a scheduled record and its timer entry are written in one batch before the send
//! is acknowledged. When due, the record is appended to its real queue and its timer entry is
//! deleted in the same write batch, so a crash delivers it exactly once.

use crate::broker::Registry;
use crate::error::BrokerError;
use crate::message::{encode_record, from_record, PreparedMessage, DELAY_PROPERTIES};
use crate::topic_queue::Append;
use actix::prelude::*;
use arc_swap::ArcSwap;
use rocktor_storage::{
    cf, properties, record, AppendBatch, AppendRecord, DueTimer, Store, TimerEntry, Writer,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(100);
/// Timer entries delivered per round.
const ROUND: usize = 512;

/// Due messages of one queue, with their timer entries to delete in the same write.
type QueueBatch = (Vec<PreparedMessage>, Vec<(&'static str, Vec<u8>)>);

pub struct Scheduler {
    store: Store,
    writer: Writer,
    registry: Arc<ArcSwap<Registry>>,
    store_host: SocketAddr,
    floor_ms: i64,
    busy: bool,
}

impl Scheduler {
    pub fn new(
        store: Store,
        writer: Writer,
        registry: Arc<ArcSwap<Registry>>,
        store_host: SocketAddr,
    ) -> Self {
        Scheduler {
            store,
            writer,
            registry,
            store_host,
            floor_ms: 0,
            busy: false,
        }
    }

    fn start_round(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let (store, floor, now) = (self.store.clone(), self.floor_ms, crate::now_ms());
        let scan = async move {
            tokio::task::spawn_blocking(move || store.due_timers(floor, now, ROUND))
                .await
                .map_err(|e| BrokerError::Storage(e.to_string()))?
                .map_err(BrokerError::from)
        };
        scan.into_actor(self)
            .then(|due, act, _| {
                let fut = match due {
                    Ok(due) if !due.is_empty() => Some(act.deliver(due)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "reading due timers failed");
                        None
                    }
                };
                async move {
                    match fut {
                        Some(f) => f.await,
                        None => None,
                    }
                }
                .into_actor(act)
            })
            .map(|new_floor, act, _| {
                if let Some(f) = new_floor {
                    act.floor_ms = act.floor_ms.max(f);
                }
                act.busy = false;
            })
            .wait(ctx);
    }

    /// Appends due records to their queues, deleting their timer entries in the same atomic
    /// write. Resolves to the new floor when every entry of the round was delivered.
    fn deliver(&self, due: Vec<DueTimer>) -> impl std::future::Future<Output = Option<i64>> {
        let registry = self.registry.load_full();
        let (writer, store_host) = (self.writer.clone(), self.store_host);
        async move {
            // Group by queue, keeping due order inside each queue.
            let mut by_queue: BTreeMap<(String, u32), QueueBatch> = BTreeMap::new();
            // Timer entries with nothing left to deliver (unreadable record, vanished queue).
            let mut dropped = AppendBatch::default();
            for t in &due {
                let rec = t
                    .record
                    .as_ref()
                    .and_then(|b| record::decode(b).ok())
                    .map(|(r, _)| r);
                let Some(rec) = rec else {
                    dropped.deletes.push((cf::TIMER, t.key.clone()));
                    continue;
                };
                let props = properties::without(&rec.properties, &DELAY_PROPERTIES);
                let entry = by_queue.entry((t.topic.clone(), t.queue_id)).or_default();
                entry.0.push(from_record(&rec, props));
                entry.1.push((cf::TIMER, t.key.clone()));
            }
            let mut all_ok = true;
            for ((topic, queue_id), (messages, timer_keys)) in by_queue {
                let Some(queue) = registry
                    .topics
                    .get(&topic)
                    .and_then(|h| h.queues.get(queue_id as usize).cloned())
                else {
                    tracing::warn!(%topic, queue_id, "dropping delayed messages of a topic or queue that no longer exists");
                    dropped.deletes.extend(timer_keys);
                    continue;
                };
                let appended = queue
                    .send(Append {
                        messages,
                        store_host,
                        delete_with: timer_keys,
                    })
                    .await;
                if let Err(e) = appended.map_err(BrokerError::from).and_then(|r| r) {
                    tracing::warn!(%topic, queue_id, error = %e, "delayed delivery failed; retrying next round");
                    all_ok = false;
                }
            }
            if !dropped.deletes.is_empty() {
                match writer.submit(dropped).await {
                    Ok(Ok(_)) => {}
                    _ => all_ok = false,
                }
            }
            let last_due = due.iter().map(|t| t.due_ms).max();
            if all_ok {
                last_due
            } else {
                None
            }
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, ctx| act.start_round(ctx));
    }
}

/// Stores messages of one queue for delivery at `due_ms`; answers with their sequences.
pub struct Schedule {
    pub topic: String,
    pub queue_id: u32,
    pub messages: Vec<PreparedMessage>,
    pub due_ms: i64,
}

impl Message for Schedule {
    type Result = Result<Vec<u64>, BrokerError>;
}

impl Handler<Schedule> for Scheduler {
    type Result = ResponseFuture<Result<Vec<u64>, BrokerError>>;

    fn handle(&mut self, msg: Schedule, _: &mut Self::Context) -> Self::Result {
        let now = crate::now_ms();
        let records = msg
            .messages
            .iter()
            .map(|m| AppendRecord {
                record: encode_record(&msg.topic, msg.queue_id, 0, m, now, self.store_host),
                cq: None,
                timer: Some(TimerEntry {
                    due_ms: msg.due_ms,
                    topic: msg.topic.clone(),
                    queue_id: msg.queue_id,
                }),
                index_keys: Vec::new(),
            })
            .collect();
        let rx = self.writer.submit(AppendBatch {
            records,
            ..Default::default()
        });
        Box::pin(async move {
            match rx.await {
                Ok(Ok(done)) => Ok(done.seqs),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(BrokerError::Storage("the storage writer stopped".into())),
            }
        })
    }
}

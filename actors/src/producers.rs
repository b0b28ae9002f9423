//! Producers — the live producers of each group, from heartbeats, with a channel back to each.
//! Admin tools list them (GET_PRODUCER_CONNECTION_LIST); transaction checks ask one of them
//! about a half message (`FindProducer`).
//!
//! Messages: `RegisterProducer`, `UnregisterProducer`, `ProducerConnectionClosed`,
//! `ListProducers`, `FindProducer`, and a timer that drops producers silent for 120 s. Soft state: nothing is
//! stored.

use crate::consumer_group::{ClientChannel, ConnectionInfo, MEMBER_EXPIRY};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Producer {
    channel: Arc<dyn ClientChannel>,
    language: String,
    version: i32,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Producers {
    groups: HashMap<String, HashMap<String, Producer>>,
    /// Rotates check-backs over a group's instances when the sender is gone.
    turn: usize,
}

impl Actor for Producers {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Registrations arrive with every producer heartbeat (try_send): room for a burst.
        ctx.set_mailbox_capacity(16384);
        ctx.run_interval(Duration::from_secs(10), |act, _| {
            let now = Instant::now();
            for members in act.groups.values_mut() {
                members.retain(|_, p| now.duration_since(p.last_seen) < MEMBER_EXPIRY);
            }
            act.groups.retain(|_, m| !m.is_empty());
        });
    }
}

pub struct RegisterProducer {
    pub groups: Vec<String>,
    pub client_id: String,
    pub language: String,
    pub version: i32,
    pub channel: Arc<dyn ClientChannel>,
}

impl Message for RegisterProducer {
    type Result = ();
}

impl Handler<RegisterProducer> for Producers {
    type Result = ();

    fn handle(&mut self, msg: RegisterProducer, _: &mut Self::Context) {
        for g in msg.groups {
            self.groups.entry(g).or_default().insert(
                msg.client_id.clone(),
                Producer {
                    channel: msg.channel.clone(),
                    language: msg.language.clone(),
                    version: msg.version,
                    last_seen: Instant::now(),
                },
            );
        }
    }
}

pub struct UnregisterProducer {
    pub group: String,
    pub client_id: String,
}

impl Message for UnregisterProducer {
    type Result = ();
}

impl Handler<UnregisterProducer> for Producers {
    type Result = ();

    fn handle(&mut self, msg: UnregisterProducer, _: &mut Self::Context) {
        if let Some(m) = self.groups.get_mut(&msg.group) {
            m.remove(&msg.client_id);
        }
    }
}

pub struct ProducerConnectionClosed {
    pub connection_id: u64,
}

impl Message for ProducerConnectionClosed {
    type Result = ();
}

impl Handler<ProducerConnectionClosed> for Producers {
    type Result = ();

    fn handle(&mut self, msg: ProducerConnectionClosed, _: &mut Self::Context) {
        for members in self.groups.values_mut() {
            members.retain(|_, p| p.channel.connection_id() != msg.connection_id);
        }
        self.groups.retain(|_, m| !m.is_empty());
    }
}

pub struct ListProducers {
    pub group: String,
}

impl Message for ListProducers {
    type Result = Vec<ConnectionInfo>;
}

impl Handler<ListProducers> for Producers {
    type Result = Vec<ConnectionInfo>;

    fn handle(&mut self, msg: ListProducers, _: &mut Self::Context) -> Vec<ConnectionInfo> {
        let mut v: Vec<ConnectionInfo> = self
            .groups
            .get(&msg.group)
            .map(|m| {
                m.iter()
                    .map(|(id, p)| ConnectionInfo {
                        client_id: id.clone(),
                        client_addr: p.channel.remote_addr(),
                        language: p.language.clone(),
                        version: p.version,
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        v
    }
}

/// One live producer of a group to ask about a half message: the instance on `prefer`
/// (the connection that sent it) while it is connected, else another one, in turn.
pub struct FindProducer {
    pub group: String,
    pub prefer: Option<u64>,
}

impl Message for FindProducer {
    type Result = Option<Arc<dyn ClientChannel>>;
}

impl Handler<FindProducer> for Producers {
    type Result = Option<Arc<dyn ClientChannel>>;

    fn handle(&mut self, msg: FindProducer, _: &mut Self::Context) -> Self::Result {
        let members = self.groups.get(&msg.group)?;
        if let Some(p) = msg
            .prefer
            .and_then(|c| members.values().find(|p| p.channel.connection_id() == c))
        {
            return Some(p.channel.clone());
        }
        let mut ids: Vec<&String> = members.keys().collect();
        if ids.is_empty() {
            return None;
        }
        ids.sort();
        self.turn = self.turn.wrapping_add(1);
        let id = ids[self.turn % ids.len()];
        members.get(id).map(|p| p.channel.clone())
    }
}

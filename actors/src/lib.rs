//! rocktor-actors: the broker's domain — one actix actor per unit of state.
//!
//! - `broker` — the supervisor and metadata writer, publishing the `Registry` snapshot.
//! - `topic_queue` — one actor per (topic, queue): offsets, tail cache, long polls.
//! - `consumer_group` — one actor per group: members, subscriptions, offsets.
//! - `routes` — the name server's tables.
//! - `scheduler` — delayed delivery and its cancel; `producers` — the producer registry.
//! - `txn` — the TxnChecker: half messages, their outcomes and check-backs.
//! - `pop` — invisible-time consumption (HTTP, remoting POP, gRPC): deliveries, receipt handles.
//! - `retention` — expiry of old messages and the disk watermarks.
//! - `auth` — access control (ACL 1.0 accounts, signatures, permissions) for every front end.
//! - `client_channel` — the domain's way back to a connected client.
//! - `service` — the flows front ends call (`BrokerContext`), one file per flow.
//!
//! Actors never see wire formats and never call RocksDB on their own thread.

pub mod admin;
pub mod alarms;
pub mod auth;
pub mod broker;
pub mod client_channel;
pub mod consumer_group;
pub mod error;
pub mod filter;
pub mod message;
pub mod metrics;
pub mod model;
pub mod pop;
pub mod producers;
pub mod reply;
pub mod retention;
pub mod routes;
pub mod scheduler;
pub mod service;
pub mod sql;
pub mod topic_queue;
pub mod trace_data;
pub mod txn;

pub use broker::{BrokerSettings, Registry, TopicSpec};
pub use error::{BrokerError, BrokerResult};
pub use service::BrokerContext;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

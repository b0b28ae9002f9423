//! The RocketMQ remoting front end. `command`, `ext`, `message` and `body` are pure codecs
//! (fuzzable, benchable); `connection` and `server` do the I/O; `handlers` turn requests into
//! calls on the domain (`rocktor_actors::BrokerContext`).

pub mod body;
pub mod codes;
pub mod command;
pub mod connection;
pub mod errors;
pub mod ext;
pub mod ext_fields;
pub mod handlers;
mod json_header;
pub mod message;
pub mod server;
pub mod tls;

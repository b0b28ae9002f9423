//! Configuration: a TOML file, overridden by `ROCKTOR_*` environment variables, overridden by
//! flags. Every knob is documented in `rocktor.example.toml`.

use rocktor_storage::FlushMode;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: IpAddr,
    /// Address clients are told to reach the broker at; derived from `listen` when unset.
    pub advertise: Option<IpAddr>,
    pub namesrv_port: u16,
    pub broker_port: u16,
    /// Also listen on `broker_port - 2`, the port pre-4.5 Java clients use for producers.
    pub vip_port: bool,
    /// 0 disables the HTTP front end.
    pub http_port: u16,
    /// Reserved for the gRPC front end.
    pub grpc_port: u16,
    pub flush_mode: FlushMode,
    pub acl: Option<PathBuf>,
    pub cluster_name: String,
    pub broker_name: String,
    pub auto_create_topic: bool,
    pub auto_create_group: bool,
    pub default_topic_queues: u32,
    pub max_message_size: usize,
    pub tail_cache_entries: usize,
    pub tail_cache_bytes: usize,
    pub long_polling: bool,
    /// SQL92 filters on message properties. On by default (Apache's default is off).
    pub enable_property_filter: bool,
    /// Worker threads for connections and queues; 0 means one per core.
    pub workers: usize,
    /// A `tracing` filter, e.g. `info` or `rocktor=debug`.
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            listen: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise: None,
            namesrv_port: 9876,
            broker_port: 10911,
            vip_port: true,
            http_port: 8080,
            grpc_port: 8081,
            flush_mode: FlushMode::Async,
            acl: None,
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            auto_create_topic: true,
            auto_create_group: true,
            default_topic_queues: 8,
            max_message_size: 4 * 1024 * 1024,
            tail_cache_entries: 4096,
            tail_cache_bytes: 8 << 20,
            long_polling: true,
            enable_property_filter: true,
            workers: 0,
            log: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message_size == 0 || self.max_message_size > 16 * 1024 * 1024 - 64 * 1024 {
            return Err(ConfigError::Invalid(
                "max_message_size must be between 1 byte and 16 MiB - 64 KiB".into(),
            ));
        }
        if self.default_topic_queues == 0 || self.default_topic_queues > 1024 {
            return Err(ConfigError::Invalid(
                "default_topic_queues must be 1..=1024".into(),
            ));
        }
        Ok(())
    }

    /// The address written into records and message ids.
    pub fn advertised_broker_addr(&self) -> SocketAddr {
        let ip = match (self.advertise, self.listen) {
            (Some(ip), _) => ip,
            (None, ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (None, ip) => ip,
        };
        SocketAddr::new(ip, self.broker_port)
    }

    pub fn workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = include_str!("../rocktor.example.toml");
        let c: Config = toml::from_str(text).unwrap();
        let d = Config::default();
        assert_eq!(c.broker_port, d.broker_port);
        assert_eq!(c.flush_mode, d.flush_mode);
        assert_eq!(c.data_dir, d.data_dir);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("no_such_knob = 1").is_err());
    }

    #[test]
    fn advertised_address() {
        let mut c = Config::default();
        assert_eq!(c.advertised_broker_addr().to_string(), "127.0.0.1:10911");
        c.listen = "10.1.2.3".parse().unwrap();
        assert_eq!(c.advertised_broker_addr().to_string(), "10.1.2.3:10911");
    }
}

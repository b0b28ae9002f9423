//! Configuration, in layers, each overriding the ones before it for the keys it sets: the
//! defaults (`Config::default()`), a TOML file, `ROCKTOR_<KEY>` environment variables (every
//! key, e.g. `ROCKTOR_BROKER_PORT`), command-line flags. [`Config::load`] stacks them. Every knob
//! is documented in `rocktor.example.toml`.

use crate::remoting::command::{MAX_FRAME, MAX_HEADER};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use rocktor_storage::FlushMode;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variables named `ROCKTOR_<KEY>` set config keys. Others with the prefix that name
/// no key (`ROCKTOR_CONFIG`, the test harness's `ROCKTOR_PYTHON`, ...) are ignored.
pub const ENV_PREFIX: &str = "ROCKTOR_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// TLS on the remoting ports: a PEM certificate chain and its private key.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `permissive` (TLS and plain clients on one port; the default), `enforcing` (TLS only) or
    /// `disabled`. Without a certificate only plain connections are served.
    pub tls_mode: crate::remoting::tls::TlsMode,
    pub cluster_name: String,
    pub broker_name: String,
    pub auto_create_topic: bool,
    pub auto_create_group: bool,
    pub default_topic_queues: u32,
    pub max_message_size: usize,
    /// The longest a scheduled (delayed) message may wait, in ms; longer delays are rejected.
    /// Huawei's limit is 1 year (the default); 3456000000 is the 40 days of other services.
    pub max_delay_ms: u64,
    pub tail_cache_entries: usize,
    pub tail_cache_bytes: usize,
    pub long_polling: bool,
    /// Long-poll pulls held at once per connection; past it a pull is answered as if its hold
    /// had elapsed, after a short delay.
    pub max_parked_pulls_per_connection: usize,
    /// Metric label sets at most (a topic, a topic and group, an RPC's codes); past it new
    /// ones count under `topic="_other"`.
    pub metrics_max_series: usize,
    /// Whether the domain counts RocketMQ 5's metrics (off: `/metrics` has process figures only).
    pub metrics_enabled: bool,
    /// One alarm point per this many ms.
    pub alarm_interval_ms: u64,
    /// While an alarm stays over its threshold, at most one notification per this many seconds.
    pub alarm_period_secs: u64,
    /// Where alarm notifications are POSTed (http:// or https://); empty for none.
    pub alarm_webhook: String,
    /// The alarm rules (`[[alarms]]` tables); the defaults when the file names none.
    pub alarms: Vec<rocktor_actors::alarms::AlarmRule>,
    /// Long-poll pulls held at once by the whole broker; past it as above.
    pub max_parked_pulls: usize,
    /// Requests of one connection handled at once; past it the broker stops reading that
    /// connection until some are answered.
    pub max_requests_per_connection: usize,
    /// Bytes of answers queued for a connection that does not read them; past it the
    /// connection is closed. At least one maximal frame (16 MiB + 64 KiB).
    pub max_connection_write_queue_bytes: usize,
    /// A connection that sends nothing for this long (seconds) is closed; clients heartbeat
    /// every 30 s. 0 disables.
    pub connection_idle_timeout_secs: u64,
    /// A write that makes no progress for this long (seconds) closes the connection.
    pub connection_write_timeout_secs: u64,
    /// Consumer clients per group.
    pub max_group_members: usize,
    /// Dead letters one re-send request may move.
    pub max_dlq_resend: usize,
    /// A half message with no outcome is first checked this long (ms) after it was stored, or
    /// after its own `CHECK_IMMUNITY_TIME_IN_SECONDS` when that is longer.
    pub transaction_timeout_ms: u64,
    /// Between two checks of one half message (ms).
    pub transaction_check_interval_ms: u64,
    /// Checks before a half message moves to TRANS_CHECK_MAX_TIME_TOPIC.
    pub transaction_check_max: u32,
    /// An orderly consumer's queue lock expires this long (ms) after its last renewal
    /// (clients renew every 20 s).
    pub orderly_lock_expiry_ms: u64,
    /// Messages a query by key or unique key answers at most (the newest), as the consoles.
    pub max_query_messages: usize,
    /// Messages older than this (seconds) are deleted: Apache's fileReservedTime (72 h).
    pub retention_secs: u64,
    /// How often retention runs (ms): expiry, the disk watermarks, the trace of time.
    pub retention_check_interval_ms: u64,
    /// Disk use (% of the data directory's file system) above which the oldest messages are
    /// deleted before their time, a tenth of the log per pass.
    pub disk_clean_percent: u8,
    /// Disk use above which new messages are refused (SERVICE_NOT_AVAILABLE)...
    pub disk_refuse_percent: u8,
    /// ...until it falls below this.
    pub disk_resume_percent: u8,
    /// The region sends answer with (MSG_REGION); trace clients tag their records with it.
    pub region_id: String,
    /// Tells clients whether to send message traces (TRACE_ON), as Apache's traceOn.
    pub trace_on: bool,
    /// SQL92 filters on message properties. On by default (Apache's default is off).
    pub enable_property_filter: bool,
    /// HTTP messaging API: a consumed message not acked comes back after this long (s),
    /// 300 as the seeds' services (5 min)...
    pub http_invisible_secs: u64,
    /// ...and after this long for ordered consumption (`trans=order`), 60 (1 min).
    pub http_order_invisible_secs: u64,
    /// HTTP messaging API: deliveries of one message before it goes to `%DLQ%<group>` (288).
    pub http_max_deliveries: u32,
    /// A group consumed over HTTP within this long (s) refuses TCP consumers, and the
    /// other way round while it has live TCP consumers (one protocol per group).
    pub http_consumer_window_secs: u64,
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
            tls_cert: None,
            tls_key: None,
            tls_mode: crate::remoting::tls::TlsMode::Permissive,
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            auto_create_topic: true,
            auto_create_group: true,
            default_topic_queues: 8,
            max_message_size: 4 * 1024 * 1024,
            max_delay_ms: 365 * 24 * 3600 * 1000,
            tail_cache_entries: 4096,
            tail_cache_bytes: 8 << 20,
            long_polling: true,
            max_parked_pulls_per_connection: 4096,
            metrics_max_series: 100_000,
            metrics_enabled: true,
            alarm_interval_ms: 60_000,
            alarm_period_secs: 3600,
            alarm_webhook: String::new(),
            alarms: rocktor_actors::alarms::AlarmRule::defaults(),
            max_parked_pulls: 131_072,
            max_requests_per_connection: 1024,
            max_connection_write_queue_bytes: 64 << 20,
            connection_idle_timeout_secs: 120,
            connection_write_timeout_secs: 30,
            max_group_members: 10_000,
            max_dlq_resend: 1000,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 30_000,
            transaction_check_max: 15,
            orderly_lock_expiry_ms: 60_000,
            max_query_messages: 64,
            retention_secs: 72 * 3600,
            retention_check_interval_ms: 10_000,
            disk_clean_percent: 85,
            disk_refuse_percent: 90,
            disk_resume_percent: 85,
            region_id: "DefaultRegion".into(),
            trace_on: true,
            enable_property_filter: true,
            http_invisible_secs: 300,
            http_order_invisible_secs: 60,
            http_max_deliveries: 288,
            http_consumer_window_secs: 120,
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
    /// A value that does not fit its key, an unknown key or a TOML syntax error; the message
    /// names the key and where it came from (the file, the environment or the flags).
    #[error("invalid configuration: {source}")]
    Parse {
        // Boxed: figment's error is a few hundred bytes.
        source: Box<figment::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Parse {
            source: Box::new(e),
        }
    }
}

impl Config {
    /// The configuration from the layers, each overriding the ones before it for the keys it
    /// sets: the defaults, the TOML `file` if given (it must exist), `ROCKTOR_<KEY>`
    /// environment variables, then `flags`. `flags` serializes to a map of config keys holding
    /// only the flags given (e.g. a struct of `Option`s with
    /// `#[serde(skip_serializing_if = "Option::is_none")]`; `serde_json::Map::new()` for none).
    /// The result is validated.
    pub fn load(file: Option<&Path>, flags: impl Serialize) -> Result<Config, ConfigError> {
        let config: Config = Self::file_layers(file)?
            .merge(EnvVars)
            .merge(Layer::new(
                Serialized::defaults(flags),
                Some("command-line flags"),
            ))
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults and the file: the layers below the environment.
    fn file_layers(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let figment = Figment::from(Layer::new(
            Serialized::defaults(Config::default()),
            Some("defaults"),
        ));
        let Some(path) = file else {
            return Ok(figment);
        };
        // figment takes a missing file for an empty one; a file that was named must be there.
        // (`file_exact`: `Toml::file` would look for a relative path in every parent directory.)
        std::fs::File::open(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Ok(figment.merge(Layer::new(Toml::file_exact(path), None)))
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
        if self.max_delay_ms < 1000 {
            return Err(ConfigError::Invalid(
                "max_delay_ms must be at least 1000 (1 s)".into(),
            ));
        }
        if self.max_connection_write_queue_bytes < MAX_FRAME + MAX_HEADER {
            return Err(ConfigError::Invalid(format!(
                "max_connection_write_queue_bytes must be at least {} (16 MiB + 64 KiB), so \
                 one maximal frame fits",
                MAX_FRAME + MAX_HEADER
            )));
        }
        if self.connection_write_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "connection_write_timeout_secs must be at least 1".into(),
            ));
        }
        let (clean, refuse, resume) = (
            self.disk_clean_percent,
            self.disk_refuse_percent,
            self.disk_resume_percent,
        );
        if !(1..=100).contains(&clean)
            || !(1..=100).contains(&refuse)
            || resume == 0
            || resume > refuse
        {
            return Err(ConfigError::Invalid(
                "disk_clean_percent and disk_refuse_percent must be 1..=100, and \
                 disk_resume_percent 1..=disk_refuse_percent"
                    .into(),
            ));
        }
        rocktor_actors::alarms::validate(&self.alarms).map_err(ConfigError::Invalid)?;
        if self.alarm_interval_ms < 100 || self.alarm_period_secs == 0 {
            return Err(ConfigError::Invalid(
                "alarm_interval_ms must be at least 100 and alarm_period_secs at least 1".into(),
            ));
        }
        self.alarm_webhook().map_err(ConfigError::Invalid)?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key go together: set both or neither".into(),
            ));
        }
        if self.tls_mode == crate::remoting::tls::TlsMode::Enforcing && self.tls_cert.is_none() {
            return Err(ConfigError::Invalid(
                "tls_mode = \"enforcing\" needs tls_cert and tls_key".into(),
            ));
        }
        for (key, value) in [
            ("retention_secs", self.retention_secs as usize),
            (
                "retention_check_interval_ms",
                self.retention_check_interval_ms as usize,
            ),
            (
                "max_requests_per_connection",
                self.max_requests_per_connection,
            ),
            (
                "max_parked_pulls_per_connection",
                self.max_parked_pulls_per_connection,
            ),
            ("max_parked_pulls", self.max_parked_pulls),
            ("metrics_max_series", self.metrics_max_series),
            ("max_group_members", self.max_group_members),
            ("max_dlq_resend", self.max_dlq_resend),
            ("http_invisible_secs", self.http_invisible_secs as usize),
            (
                "http_order_invisible_secs",
                self.http_order_invisible_secs as usize,
            ),
            ("http_max_deliveries", self.http_max_deliveries as usize),
            (
                "transaction_check_interval_ms",
                self.transaction_check_interval_ms as usize,
            ),
            (
                "orderly_lock_expiry_ms",
                self.orderly_lock_expiry_ms as usize,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
            }
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

    /// The alarm webhook, if one is set (its URL checked).
    pub fn alarm_webhook(&self) -> Result<Option<crate::webhook::Webhook>, String> {
        match self.alarm_webhook.trim() {
            "" => Ok(None),
            url => crate::webhook::Webhook::parse(url).map(Some),
        }
    }

    /// The alarm settings the domain runs with, but where notifications go (the webhook's
    /// delivery task starts with the broker).
    pub fn alarm_settings(&self) -> rocktor_actors::alarms::AlarmSettings {
        rocktor_actors::alarms::AlarmSettings {
            interval: Duration::from_millis(self.alarm_interval_ms.max(100)),
            period: Duration::from_secs(self.alarm_period_secs.max(1)),
            sink: None,
            rules: self.alarms.clone(),
        }
    }

    /// Every key, and whether its value is a string (a default that serializes to one), taken
    /// from the serialized defaults so that a new field needs no list kept by hand.
    fn keys() -> Vec<(String, bool)> {
        match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(fields)) => fields
                .into_iter()
                .map(|(key, value)| (key, value.is_string()))
                .collect(),
            other => unreachable!("Config serializes to a map, not {other:?}"),
        }
    }
}

/// A layer whose errors name keys plainly (`broker_port`, not figment's `default.broker_port`),
/// optionally under a name of ours instead of the provider's.
struct Layer<P> {
    inner: P,
    name: Option<&'static str>,
}

impl<P> Layer<P> {
    fn new(inner: P, name: Option<&'static str>) -> Self {
        Layer { inner, name }
    }
}

impl<P: Provider> Provider for Layer<P> {
    fn metadata(&self) -> Metadata {
        let metadata = match self.name {
            Some(name) => Metadata::named(name),
            None => self.inner.metadata(),
        };
        metadata.interpolater(|_: &Profile, keys: &[&str]| keys.join("."))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// `ROCKTOR_<KEY>` environment variables, for the keys [`Config`] has (others are ignored).
/// The value of a string key (paths, names, `flush_mode`, `log`) is taken as it is, so
/// `ROCKTOR_BROKER_NAME=007` stays a string; others are parsed by figment (numbers, `true`/
/// `false`), then checked against the key's type like any other layer.
struct EnvVars;

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variables").interpolater(|_: &Profile, keys: &[&str]| {
            format!("{ENV_PREFIX}{}", keys.join(".").to_ascii_uppercase())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let keys = Config::keys();
        let names: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
        let mut dict = Dict::new();
        // `only` matches case-insensitively; `iter` yields the keys lowercased.
        for (key, raw) in Env::prefixed(ENV_PREFIX).only(&names).iter() {
            let key = key.as_str();
            let is_string = keys.iter().any(|(k, is_string)| *is_string && k == key);
            let value = if is_string {
                Value::from(raw)
            } else {
                raw.parse::<Value>().unwrap_or_else(|never| match never {})
            };
            dict.insert(key.to_owned(), value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which clippy finds large; tests only.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;
    use serde_json::json;

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rocktor.example.toml")
    }

    #[test]
    fn example_file_is_exactly_the_defaults() {
        let text = include_str!("../rocktor.example.toml");
        let parsed: Config = toml::from_str(text).unwrap();
        assert_eq!(parsed, Config::default());
        let layered: Config = Config::file_layers(Some(example_path().as_path()))
            .unwrap()
            .extract()
            .unwrap();
        assert_eq!(layered, Config::default());
        layered.validate().unwrap();
    }

    #[test]
    fn every_key_is_documented_in_the_example_file() {
        let text = include_str!("../rocktor.example.toml");
        let keys = Config::keys();
        assert!(keys.contains(&("broker_port".into(), false)));
        assert!(keys.contains(&("advertise".into(), false)));
        assert!(keys.contains(&("flush_mode".into(), true)));
        for (key, _) in keys {
            let entry = format!("{key} = ");
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&entry) || l.starts_with(&format!("# {entry}"))),
                "{key} is not in rocktor.example.toml"
            );
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        assert!(toml::from_str::<Config>("no_such_knob = 1").is_err());
        Jail::expect_with(|jail| {
            jail.create_file("rocktor.toml", "broker_port = 1\nno_such_knob = 1\n")?;
            let path = jail.directory().join("rocktor.toml");
            let err = Config::load(Some(path.as_path()), json!({})).unwrap_err();
            assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains("no_such_knob"), "{msg}");
            assert!(msg.contains("rocktor.toml"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_its_key_and_source() {
        Jail::expect_with(|jail| {
            jail.create_file("rocktor.toml", "http_port = \"eighty\"\n")?;
            let path = jail.directory().join("rocktor.toml");
            let msg = Config::load(Some(path.as_path()), json!({}))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("\"http_port\""), "{msg}");
            assert!(msg.contains("rocktor.toml"), "{msg}");

            jail.set_env("ROCKTOR_BROKER_PORT", "abc");
            let msg = Config::load(None, json!({})).unwrap_err().to_string();
            assert!(msg.contains("ROCKTOR_BROKER_PORT"), "{msg}");
            jail.set_env("ROCKTOR_BROKER_PORT", "10911");

            jail.set_env("ROCKTOR_FLUSH_MODE", "fast");
            let msg = Config::load(None, json!({})).unwrap_err().to_string();
            assert!(msg.contains("ROCKTOR_FLUSH_MODE"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "rocktor.toml",
                "broker_port = 1111\nhttp_port = 2222\nmax_delay_ms = 5000\n\
                 max_group_members = 7\nlog = \"warn\"\n",
            )?;
            let path = jail.directory().join("rocktor.toml");

            let c = Config::load(Some(path.as_path()), json!({})).unwrap();
            assert_eq!(
                (c.broker_port, c.max_delay_ms, c.max_group_members),
                (1111, 5000, 7)
            );

            jail.set_env("ROCKTOR_BROKER_PORT", "3333");
            jail.set_env("ROCKTOR_MAX_DELAY_MS", "6000");
            jail.set_env("ROCKTOR_MAX_GROUP_MEMBERS", "8");
            let c = Config::load(Some(path.as_path()), json!({})).unwrap();
            assert_eq!(
                (c.broker_port, c.max_delay_ms, c.max_group_members),
                (3333, 6000, 8)
            );

            let flags = json!({ "broker_port": 4444, "max_delay_ms": 7000 });
            let c = Config::load(Some(path.as_path()), flags).unwrap();
            assert_eq!(c.broker_port, 4444);
            assert_eq!(c.max_delay_ms, 7000);
            assert_eq!(c.max_group_members, 8);
            assert_eq!(c.http_port, 2222);
            assert_eq!(c.log, "warn");
            assert_eq!(c.namesrv_port, Config::default().namesrv_port);
            Ok(())
        });
    }

    #[test]
    fn environment_values_take_their_keys_types() {
        Jail::expect_with(|jail| {
            jail.set_env("ROCKTOR_FLUSH_MODE", "sync");
            jail.set_env("ROCKTOR_VIP_PORT", "false");
            jail.set_env("ROCKTOR_LISTEN", "127.0.0.1");
            jail.set_env("ROCKTOR_ADVERTISE", "10.0.0.5");
            jail.set_env("ROCKTOR_DATA_DIR", "/var/lib/rocktor");
            jail.set_env("ROCKTOR_ACL", "conf/plain_acl.yml");
            jail.set_env("ROCKTOR_BROKER_NAME", "007");
            jail.set_env("ROCKTOR_MAX_CONNECTION_WRITE_QUEUE_BYTES", "33554432");
            jail.set_env("ROCKTOR_CONNECTION_IDLE_TIMEOUT_SECS", "0");
            let c = Config::load(None, json!({})).unwrap();
            assert_eq!(c.flush_mode, FlushMode::Sync);
            assert!(!c.vip_port);
            assert_eq!(c.listen, IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert_eq!(c.advertise, Some("10.0.0.5".parse().unwrap()));
            assert_eq!(c.data_dir, PathBuf::from("/var/lib/rocktor"));
            assert_eq!(c.acl, Some(PathBuf::from("conf/plain_acl.yml")));
            assert_eq!(c.broker_name, "007");
            assert_eq!(c.max_connection_write_queue_bytes, 32 << 20);
            assert_eq!(c.connection_idle_timeout_secs, 0);
            Ok(())
        });
    }

    #[test]
    fn other_rocktor_variables_are_ignored() {
        Jail::expect_with(|jail| {
            jail.set_env("ROCKTOR_FOO", "1");
            jail.set_env("ROCKTOR_CONFIG", "/no/such/rocktor.toml");
            jail.set_env("ROCKTOR_PYTHON", "/usr/bin/python3");
            jail.set_env("ROCKTOR_TEST_CLIENTS", "/tmp/clients");
            jail.set_env("ROCKTOR_BIN", "target/release/rocktor");
            Config::load(None, json!({})).unwrap();
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err =
            Config::load(Some(Path::new("/no/such/dir/rocktor.toml")), json!({})).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/no/such/dir/rocktor.toml"));
    }

    #[test]
    fn load_validates() {
        // In a jail: other tests' jails set ROCKTOR_* variables that `load` would read.
        Jail::expect_with(|_| {
            let flags = json!({ "max_requests_per_connection": 0 });
            let err = Config::load(None, flags).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid(_)), "{err:?}");
            Ok(())
        });
    }

    #[test]
    fn limits_are_validated() {
        let bad = [
            Config {
                max_requests_per_connection: 0,
                ..Config::default()
            },
            Config {
                max_connection_write_queue_bytes: 16 << 20,
                ..Config::default()
            },
            Config {
                max_delay_ms: 999,
                ..Config::default()
            },
            Config {
                max_parked_pulls: 0,
                ..Config::default()
            },
            Config {
                connection_write_timeout_secs: 0,
                ..Config::default()
            },
            Config {
                tls_cert: Some("broker.crt".into()),
                ..Config::default()
            },
            Config {
                tls_mode: crate::remoting::tls::TlsMode::Enforcing,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        Config {
            max_connection_write_queue_bytes: MAX_FRAME + MAX_HEADER,
            max_delay_ms: 3_456_000_000,
            connection_idle_timeout_secs: 0,
            ..Config::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn advertised_address() {
        let mut c = Config::default();
        assert_eq!(c.advertised_broker_addr().to_string(), "127.0.0.1:10911");
        c.listen = "10.1.2.3".parse().unwrap();
        assert_eq!(c.advertised_broker_addr().to_string(), "10.1.2.3:10911");
    }
}

//! Access control, the domain side (issue #11, first part): Apache's ACL 1.0 accounts
//! (`plain_acl.yml`), IP allow lists, the `AccessKey`/`Signature` check (Base64 HmacSHA1 over
//! the sorted field values, then the body) and the permission decision, for every front end to
//! call with the credentials its protocol carries (remoting: `src/remoting/handlers/access.rs`;
//! HTTP and gRPC when they land). Pure: no actor, no storage, no wire format.

use hmac::{KeyInit, Mac};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// A permission: publish, subscribe, both, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm(u8);

impl Perm {
    pub const DENY: Perm = Perm(0);
    pub const PUB: Perm = Perm(1);
    pub const SUB: Perm = Perm(2);
    pub const PUB_SUB: Perm = Perm(3);

    /// Apache's spellings: DENY, PUB, SUB, PUB|SUB, SUB|PUB.
    pub fn parse(s: &str) -> Option<Perm> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DENY" => Some(Perm::DENY),
            "PUB" => Some(Perm::PUB),
            "SUB" => Some(Perm::SUB),
            "PUB|SUB" | "SUB|PUB" => Some(Perm::PUB_SUB),
            _ => None,
        }
    }

    /// Whether this permission includes `needed` (DENY includes nothing).
    pub fn allows(self, needed: Perm) -> bool {
        needed.0 != 0 && self.0 & needed.0 == needed.0
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "PUB",
            2 => "SUB",
            3 => "PUB|SUB",
            _ => "DENY",
        }
    }
}

/// Apache's remote-address patterns: `*`, exact addresses, `10.1.*`, `10.1.{2,3}.4`,
/// `10.1.1.1-10` (the last part a range), and CIDR `10.1.0.0/16`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpPattern {
    Any,
    Exact(IpAddr),
    /// Four IPv4 parts, each a set of allowed values (None: any).
    Parts([Option<Vec<(u8, u8)>>; 4]),
    Cidr(IpAddr, u8),
}

impl IpPattern {
    pub fn parse(s: &str) -> Result<IpPattern, String> {
        let s = s.trim();
        let bad = || format!("not an address pattern: {s}");
        if s == "*" {
            return Ok(IpPattern::Any);
        }
        if let Some((ip, bits)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| bad())?;
            let bits: u8 = bits.parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if bits > max {
                return Err(bad());
            }
            return Ok(IpPattern::Cidr(ip, bits));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(IpPattern::Exact(ip));
        }
        let split: Vec<&str> = s.split('.').collect();
        if split.is_empty() || split.len() > 4 {
            return Err(bad());
        }
        let mut parts: [Option<Vec<(u8, u8)>>; 4] = [None, None, None, None];
        for (i, p) in split.iter().enumerate() {
            let last = i == split.len() - 1;
            if *p == "*" {
                if !last {
                    return Err(bad());
                }
                continue;
            }
            let set = if let Some(inner) = p.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                inner
                    .split(',')
                    .map(|v| v.trim().parse::<u8>().map(|n| (n, n)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad())?
            } else if let Some((a, b)) = p.split_once('-') {
                let (a, b): (u8, u8) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                vec![(a, b)]
            } else {
                let n: u8 = p.trim().parse().map_err(|_| bad())?;
                vec![(n, n)]
            };
            parts[i] = Some(set);
        }
        // "10.1" alone is not a pattern: short forms must end in `*`.
        if split.len() < 4 && split.last() != Some(&"*") {
            return Err(bad());
        }
        Ok(IpPattern::Parts(parts))
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match self {
            IpPattern::Any => true,
            IpPattern::Exact(e) => *e == ip,
            IpPattern::Parts(parts) => match ip {
                IpAddr::V4(v4) => v4.octets().iter().zip(parts).all(|(o, p)| match p {
                    None => true,
                    Some(set) => set.iter().any(|(a, b)| (*a..=*b).contains(o)),
                }),
                IpAddr::V6(_) => false,
            },
            IpPattern::Cidr(net, bits) => match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
                    u32::from(*n) & mask == u32::from(a) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(a)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*bits)).unwrap_or(0);
                    u128::from(*n) & mask == u128::from(a) & mask
                }
                _ => false,
            },
        }
    }
}

/// One ACL 1.0 account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub access_key: String,
    pub secret_key: String,
    pub white_remote_address: Option<IpPattern>,
    pub admin: bool,
    pub default_topic_perm: Perm,
    pub default_group_perm: Perm,
    pub topic_perms: HashMap<String, Perm>,
    pub group_perms: HashMap<String, Perm>,
}

/// The accounts and the global allow list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclConfig {
    pub global_white: Vec<IpPattern>,
    pub accounts: HashMap<String, Account>,
}

/// What a request needs on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Topic(String),
    Group(String),
}

/// One request to decide on, as a front end extracted it.
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    pub remote: IpAddr,
    pub access_key: Option<&'a str>,
    pub signature: Option<&'a str>,
    /// Every signed field (name, value), the signature's own field excluded or not.
    pub fields: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
    pub admin_only: bool,
    pub resources: Vec<(Resource, Perm)>,
}

/// Why a request was refused; the text names the account and resource, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no AccessKey in the request, and its address is not white-listed")]
    NoCredentials,
    #[error("No acl config for {0}")]
    UnknownAccessKey(String),
    #[error("check signature failed for {0}")]
    BadSignature(String),
    #[error("{0} is not an admin account and may not use this request")]
    NotAdmin(String),
    #[error("No permission for {what} {name}: {account} has {owned}, needs {needed}")]
    Denied {
        account: String,
        what: &'static str,
        name: String,
        owned: &'static str,
        needed: &'static str,
    },
}

const FIELD_SIGNATURE: &str = "Signature";
const FIELD_SECURITY_TOKEN: &str = "SecurityToken";
const FIELD_UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

/// ACL 1.0's signature: Base64(HmacSHA1(secret, the field values sorted by name, then body)).
pub fn sign(secret: &str, fields: &[(&str, &str)], body: &[u8]) -> String {
    use base64::Engine;
    let signed: Vec<(&str, &str)> = fields
        .iter()
        .copied()
        .filter(|(k, _)| *k != FIELD_SIGNATURE)
        .collect();
    match mac_over(secret, &signed, body) {
        Some(mac) => base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        None => String::new(),
    }
}

/// Checks a signature in constant time over the content some field set gives.
fn signature_matches(secret: &str, fields: &[(&str, &str)], body: &[u8], provided: &[u8]) -> bool {
    mac_over(secret, fields, body).is_some_and(|mac| mac.verify_slice(provided).is_ok())
}

/// HmacSHA1 keyed by the secret over the field values sorted by name, then the body.
fn mac_over(secret: &str, fields: &[(&str, &str)], body: &[u8]) -> Option<HmacSha1> {
    let mut sorted: Vec<&(&str, &str)> = fields.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut mac = HmacSha1::new_from_slice(secret.as_bytes()).ok()?;
    for (_, v) in sorted {
        mac.update(v.as_bytes());
    }
    mac.update(body);
    Some(mac)
}

impl AclConfig {
    /// Reads Apache's `plain_acl.yml`. Unknown keys are ignored, as Apache ignores them; a bad
    /// permission or address pattern is an error naming it.
    pub fn from_yaml(text: &str) -> Result<AclConfig, String> {
        use yaml_rust2::{Yaml, YamlLoader};
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("ACL file: {e}"))?;
        let Some(doc) = docs.first() else {
            return Ok(AclConfig::default());
        };
        let text_of = |y: &Yaml| match y {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Integer(i) => Some(i.to_string()),
            Yaml::Real(r) => Some(r.clone()),
            Yaml::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        let mut out = AclConfig::default();
        for w in doc["globalWhiteRemoteAddresses"]
            .as_vec()
            .into_iter()
            .flatten()
        {
            if let Some(s) = text_of(w).filter(|s| !s.trim().is_empty()) {
                out.global_white.push(IpPattern::parse(&s)?);
            }
        }
        for a in doc["accounts"].as_vec().into_iter().flatten() {
            let field = |k: &str| text_of(&a[k]);
            let Some(access_key) = field("accessKey").filter(|k| !k.is_empty()) else {
                return Err("ACL file: an account has no accessKey".into());
            };
            let secret_key = field("secretKey").unwrap_or_default();
            let perm = |k: &str, default: Perm| -> Result<Perm, String> {
                match field(k) {
                    Some(v) => Perm::parse(&v).ok_or_else(|| {
                        format!("ACL file: account {access_key}: {k} {v} is not a permission")
                    }),
                    None => Ok(default),
                }
            };
            let perms = |k: &str| -> Result<HashMap<String, Perm>, String> {
                let mut m = HashMap::new();
                for item in a[k].as_vec().into_iter().flatten() {
                    let Some(s) = text_of(item) else { continue };
                    let Some((name, p)) = s.split_once('=') else {
                        return Err(format!(
                            "ACL file: account {access_key}: {k} entry {s} is not name=PERM"
                        ));
                    };
                    let p = Perm::parse(p).ok_or_else(|| {
                        format!("ACL file: account {access_key}: {k} entry {s} has no permission")
                    })?;
                    m.insert(name.trim().to_string(), p);
                }
                Ok(m)
            };
            let white = match field("whiteRemoteAddress").filter(|s| !s.trim().is_empty()) {
                Some(s) => Some(IpPattern::parse(&s)?),
                None => None,
            };
            let account = Account {
                secret_key,
                white_remote_address: white,
                admin: a["admin"].as_bool().unwrap_or(false),
                default_topic_perm: perm("defaultTopicPerm", Perm::DENY)?,
                default_group_perm: perm("defaultGroupPerm", Perm::DENY)?,
                topic_perms: perms("topicPerms")?,
                group_perms: perms("groupPerms")?,
                access_key: access_key.clone(),
            };
            out.accounts.insert(access_key, account);
        }
        Ok(out)
    }

    /// Apache's order: global allow list; the account must exist; the account's allow list
    /// skips the signature; the signature (with or without SecurityToken and
    /// `_UNIQUE_KEY_QUERY` in the signed content, as clients differ); admin-only requests;
    /// each resource's permission (a retry topic is its group's).
    pub fn check(&self, req: &AccessRequest<'_>) -> Result<(), AuthError> {
        if self.global_white.iter().any(|p| p.matches(req.remote)) {
            return Ok(());
        }
        let Some(ak) = req.access_key.filter(|k| !k.is_empty()) else {
            return Err(AuthError::NoCredentials);
        };
        let Some(account) = self.accounts.get(ak) else {
            return Err(AuthError::UnknownAccessKey(ak.to_string()));
        };
        let white = account
            .white_remote_address
            .as_ref()
            .is_some_and(|p| p.matches(req.remote));
        if !white {
            self.verify(account, req)?;
        }
        if req.admin_only && !account.admin {
            return Err(AuthError::NotAdmin(ak.to_string()));
        }
        if account.admin {
            return Ok(());
        }
        for (resource, needed) in &req.resources {
            let mut needed = *needed;
            let (what, name, owned) = match resource {
                // A retry topic is its group's: the group's consumers write their retries to
                // it, so a send there needs SUB on the group, as Apache decides.
                Resource::Topic(t) => match t.strip_prefix(crate::model::RETRY_PREFIX) {
                    Some(g) => {
                        needed = Perm::SUB;
                        ("group", g, group_perm(account, g))
                    }
                    None => (
                        "topic",
                        t.as_str(),
                        account
                            .topic_perms
                            .get(t)
                            .copied()
                            .unwrap_or(account.default_topic_perm),
                    ),
                },
                Resource::Group(g) => {
                    let g = g.strip_prefix(crate::model::RETRY_PREFIX).unwrap_or(g);
                    ("group", g, group_perm(account, g))
                }
            };
            if !owned.allows(needed) {
                return Err(AuthError::Denied {
                    account: ak.to_string(),
                    what,
                    name: name.to_string(),
                    owned: owned.name(),
                    needed: needed.name(),
                });
            }
        }
        Ok(())
    }

    fn verify(&self, account: &Account, req: &AccessRequest<'_>) -> Result<(), AuthError> {
        use base64::Engine;
        let bad = || AuthError::BadSignature(account.access_key.clone());
        let provided = req
            .signature
            .and_then(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .ok()
            })
            .ok_or_else(bad)?;
        let signed: Vec<(&str, &str)> = req
            .fields
            .iter()
            .copied()
            .filter(|(k, _)| *k != FIELD_SIGNATURE)
            .collect();
        let without = |drop: &[&str]| -> Vec<(&str, &str)> {
            signed
                .iter()
                .copied()
                .filter(|(k, _)| !drop.contains(k))
                .collect()
        };
        let variants = [
            signed.clone(),
            without(&[FIELD_UNIQUE_KEY_QUERY]),
            without(&[FIELD_SECURITY_TOKEN]),
        ];
        let ok = variants
            .iter()
            .any(|f| signature_matches(&account.secret_key, f, req.body, &provided));
        if ok {
            Ok(())
        } else {
            Err(bad())
        }
    }
}

fn group_perm(account: &Account, group: &str) -> Perm {
    account
        .group_perms
        .get(group)
        .copied()
        .unwrap_or(account.default_group_perm)
}

/// The loopback address (tests and local callers).
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The broker's access control: the accounts in force (None: ACL off, every request passes),
/// replaced whole when the file changes. Shared by every front end.
#[derive(Debug, Default)]
pub struct Authenticator {
    config: arc_swap::ArcSwapOption<AclConfig>,
    /// When each address last had a refusal logged: at most one line a minute per address.
    logged: std::sync::Mutex<HashMap<IpAddr, std::time::Instant>>,
}

/// Addresses remembered for the log's rate limit; past it the memory starts afresh.
const LOGGED_ADDRESSES: usize = 4096;
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Authenticator {
    pub fn new(config: Option<AclConfig>) -> Self {
        Authenticator {
            config: arc_swap::ArcSwapOption::from(config.map(std::sync::Arc::new)),
            logged: Default::default(),
        }
    }

    /// Puts new accounts in force (a reloaded file).
    pub fn replace(&self, config: AclConfig) {
        self.config.store(Some(std::sync::Arc::new(config)));
    }

    fn first_in_a_minute(&self, remote: IpAddr) -> bool {
        let Ok(mut logged) = self.logged.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        if logged.len() >= LOGGED_ADDRESSES {
            logged.clear();
        }
        match logged.get(&remote) {
            Some(at) if now.duration_since(*at) < LOG_EVERY => false,
            _ => {
                logged.insert(remote, now);
                true
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.load().is_some()
    }

    /// Decides on one request; always Ok while ACL is off. Refusals are counted.
    pub fn check(&self, req: &AccessRequest<'_>) -> Result<(), AuthError> {
        let Some(config) = self.config.load_full() else {
            return Ok(());
        };
        let r = config.check(req);
        if let Err(e) = &r {
            metrics::counter!("rocktor_auth_failures_total").increment(1);
            if self.first_in_a_minute(req.remote) {
                tracing::warn!(remote = %req.remote, error = %e, "request refused by ACL (logged once a minute per address)");
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.{1,2}
accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.1-10
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      - groupA=DENY
      - groupB=PUB|SUB
  - accessKey: rocketmq2
    secretKey: "12345678"
    admin: true
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn signed<'a>(
        ak: &'a str,
        sig: &'a str,
        fields: &'a [(&'a str, &'a str)],
        resources: Vec<(Resource, Perm)>,
    ) -> AccessRequest<'a> {
        AccessRequest {
            remote: ip("172.16.0.5"),
            access_key: Some(ak),
            signature: Some(sig),
            fields: fields.to_vec(),
            body: b"body",
            admin_only: false,
            resources,
        }
    }

    #[test]
    fn the_apache_file_parses() {
        let c = AclConfig::from_yaml(FILE).unwrap();
        assert_eq!(c.global_white.len(), 2);
        let a = &c.accounts["RocketMQ"];
        assert_eq!(a.secret_key, "12345678", "a number is read as its text");
        assert_eq!(a.topic_perms["topicB"], Perm::PUB_SUB);
        assert_eq!(a.default_group_perm, Perm::SUB);
        assert!(c.accounts["rocketmq2"].admin);
        let bad = FILE.replace("topicC=SUB", "topicC=WRITE");
        assert!(AclConfig::from_yaml(&bad)
            .unwrap_err()
            .contains("topicC=WRITE"));
        assert!(AclConfig::from_yaml("accounts: [{secretKey: x}]").is_err());
    }

    #[test]
    fn address_patterns_match_like_apache() {
        let m = |p: &str, a: &str| IpPattern::parse(p).unwrap().matches(ip(a));
        assert!(m("*", "1.2.3.4"));
        assert!(m("10.10.103.*", "10.10.103.77") && !m("10.10.103.*", "10.10.104.1"));
        assert!(m("10.*", "10.200.1.1"));
        assert!(m("192.168.0.{1,2}", "192.168.0.2") && !m("192.168.0.{1,2}", "192.168.0.3"));
        assert!(m("192.168.1.1-10", "192.168.1.10") && !m("192.168.1.1-10", "192.168.1.11"));
        assert!(m("10.0.0.0/8", "10.9.8.7") && !m("10.0.0.0/8", "11.0.0.1"));
        assert!(m("127.0.0.1", "::ffff:127.0.0.1"), "v4-mapped v6 peers");
        for bad in ["10.1", "a.b.c.d", "1.2.3.4/40", "1.2.3.9-2", "*.1.2.3"] {
            assert!(IpPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_permissions_and_allow_lists() {
        let c = AclConfig::from_yaml(FILE).unwrap();
        let fields = [("AccessKey", "RocketMQ"), ("topic", "topicB"), ("a", "PG")];
        let sig = sign("12345678", &fields, b"body");
        let pub_b = vec![(Resource::Topic("topicB".into()), Perm::PUB)];
        assert_eq!(
            c.check(&signed("RocketMQ", &sig, &fields, pub_b.clone())),
            Ok(())
        );
        // A wrong secret, a tampered field, an unknown key, no key at all.
        let wrong = sign("nope", &fields, b"body");
        assert!(matches!(
            c.check(&signed("RocketMQ", &wrong, &fields, pub_b.clone())),
            Err(AuthError::BadSignature(_))
        ));
        let tampered = [("AccessKey", "RocketMQ"), ("topic", "topicA"), ("a", "PG")];
        assert!(c
            .check(&signed("RocketMQ", &sig, &tampered, vec![]))
            .is_err());
        assert!(matches!(
            c.check(&signed("ghost", &sig, &fields, vec![])),
            Err(AuthError::UnknownAccessKey(_))
        ));
        let mut anon = signed("RocketMQ", &sig, &fields, vec![]);
        anon.access_key = None;
        assert_eq!(c.check(&anon), Err(AuthError::NoCredentials));
        // With a token signed (Java) or left out of the content (Go).
        let with_token = [
            ("AccessKey", "RocketMQ"),
            ("SecurityToken", "T"),
            ("topic", "topicB"),
        ];
        let java = sign("12345678", &with_token, b"body");
        let go = sign(
            "12345678",
            &with_token[..1]
                .iter()
                .chain(&with_token[2..])
                .copied()
                .collect::<Vec<_>>(),
            b"body",
        );
        for s in [&java, &go] {
            assert_eq!(c.check(&signed("RocketMQ", s, &with_token, vec![])), Ok(()));
        }
        // Permissions: listed, default, DENY, retry topics as their group.
        let need = |r: Resource, p: Perm| c.check(&signed("RocketMQ", &sig, &fields, vec![(r, p)]));
        assert!(need(Resource::Topic("topicC".into()), Perm::SUB).is_ok());
        let denied = need(Resource::Topic("topicC".into()), Perm::PUB).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "No permission for topic topicC: RocketMQ has SUB, needs PUB"
        );
        assert!(!denied.to_string().contains("12345678"), "never the secret");
        assert!(need(Resource::Topic("topicA".into()), Perm::SUB).is_err());
        assert!(
            need(Resource::Topic("other".into()), Perm::SUB).is_err(),
            "default DENY"
        );
        assert!(
            need(Resource::Group("any".into()), Perm::SUB).is_ok(),
            "default SUB"
        );
        assert!(need(Resource::Group("groupA".into()), Perm::SUB).is_err());
        assert!(need(Resource::Topic("%RETRY%groupB".into()), Perm::PUB).is_ok());
        assert!(need(Resource::Topic("%RETRY%groupA".into()), Perm::PUB).is_err());
        assert!(
            need(Resource::Topic("%RETRY%any".into()), Perm::PUB).is_ok(),
            "a retry send needs the group's SUB"
        );
        // Admin-only codes; the admin account may do anything.
        let mut admin = signed("RocketMQ", &sig, &fields, vec![]);
        admin.admin_only = true;
        assert!(matches!(c.check(&admin), Err(AuthError::NotAdmin(_))));
        let root_fields = [("AccessKey", "rocketmq2")];
        let root_sig = sign("12345678", &root_fields, b"body");
        let mut root = signed(
            "rocketmq2",
            &root_sig,
            &root_fields,
            vec![(Resource::Topic("x".into()), Perm::PUB)],
        );
        root.admin_only = true;
        assert_eq!(c.check(&root), Ok(()));
        // Allow lists: the global one needs nothing; the account's skips the signature only.
        let mut global = signed("ghost", "garbage", &fields, vec![]);
        global.remote = ip("10.10.103.9");
        assert_eq!(c.check(&global), Ok(()));
        let mut own = signed("RocketMQ", "garbage", &fields, pub_b);
        own.remote = ip("192.168.1.3");
        assert_eq!(c.check(&own), Ok(()));
        own.resources = vec![(Resource::Topic("topicA".into()), Perm::PUB)];
        assert!(matches!(c.check(&own), Err(AuthError::Denied { .. })));
    }
}

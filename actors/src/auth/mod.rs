//! Access control, the domain side: Apache's ACL 1.0 accounts (`plain_acl.yml`, with runtime
//! changes over it: `overlay`), IP allow lists, the `AccessKey`/`Signature` check (Base64 HmacSHA1 over
//! the sorted field values, then the body) and the permission decision, for every front end to
//! call with the credentials its protocol carries (remoting: `src/remoting/handlers/access.rs`;
//! HTTP and gRPC when they land). Pure: no actor, no storage, no wire format.

mod config;
mod overlay;

pub use config::{compile_patterns, Account, AccountSpec, AclConfig, AclSource, IpPattern, Perm};
pub use overlay::{AccountPatch, AclChange, Overlay, OverlayEntry};

use hmac::{KeyInit, Mac};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

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
    /// A protocol that signs one string (HTTP's `MQ AK:Signature`, gRPC's `MQv2-HMAC-SHA1`):
    /// the signature is over this text alone, and `fields`/`body` are not used.
    pub string_to_sign: Option<&'a str>,
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
    let mut signed: Vec<(&str, &str)> = fields
        .iter()
        .copied()
        .filter(|(k, _)| *k != FIELD_SIGNATURE)
        .collect();
    signed.sort_unstable_by_key(|(k, _)| *k);
    match mac_over(secret, &signed, &[], body) {
        Some(mac) => base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        None => String::new(),
    }
}

/// HmacSHA1 keyed by the secret over the values of `sorted` (sorted by name), leaving out the
/// fields named in `skip`, then the body.
fn mac_over(secret: &str, sorted: &[(&str, &str)], skip: &[&str], body: &[u8]) -> Option<HmacSha1> {
    let mut mac = HmacSha1::new_from_slice(secret.as_bytes()).ok()?;
    for (k, v) in sorted {
        if !skip.contains(k) {
            mac.update(v.as_bytes());
        }
    }
    mac.update(body);
    Some(mac)
}

impl AclConfig {
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

    /// One HMAC for a request signed as Java signs; the variants clients differ in (Go leaves
    /// SecurityToken out of the content, old clients _UNIQUE_KEY_QUERY) only when a field they
    /// leave out is there and the first try failed.
    fn verify(&self, account: &Account, req: &AccessRequest<'_>) -> Result<(), AuthError> {
        use base64::Engine;
        let bad = || AuthError::BadSignature(account.access_key.clone());
        let mut provided = [0u8; 32];
        let n = req
            .signature
            .and_then(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode_slice(s.trim(), &mut provided)
                    .ok()
            })
            .ok_or_else(bad)?;
        let provided = &provided[..n];
        if let Some(text) = req.string_to_sign {
            let ok = HmacSha1::new_from_slice(account.secret_key.as_bytes()).is_ok_and(|mut m| {
                m.update(text.as_bytes());
                m.verify_slice(provided).is_ok()
            });
            return if ok { Ok(()) } else { Err(bad()) };
        }
        let mut sorted: Vec<(&str, &str)> = req
            .fields
            .iter()
            .copied()
            .filter(|(k, _)| *k != FIELD_SIGNATURE)
            .collect();
        sorted.sort_unstable_by_key(|(k, _)| *k);
        let matches = |skip: &[&str]| {
            mac_over(&account.secret_key, &sorted, skip, req.body)
                .is_some_and(|mac| mac.verify_slice(provided).is_ok())
        };
        let has = |name: &str| sorted.iter().any(|(k, _)| *k == name);
        let ok = matches(&[])
            || (has(FIELD_UNIQUE_KEY_QUERY) && matches(&[FIELD_UNIQUE_KEY_QUERY]))
            || (has(FIELD_SECURITY_TOKEN) && matches(&[FIELD_SECURITY_TOKEN]));
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

/// The broker's access control: the file's accounts with the runtime overlay over them,
/// compiled into the configuration every request is checked against (None: ACL off, every
/// request passes). Shared by every front end; the admin codes change it through
/// `service::acl`, which stores each change before it is applied here.
#[derive(Debug, Default)]
pub struct Authenticator {
    config: arc_swap::ArcSwapOption<AclConfig>,
    sources: std::sync::Mutex<Sources>,
    /// Serializes runtime changes from planning to applying (each is stored in between).
    changes: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// When each address last had a refusal logged: at most one line a minute per address.
    logged: std::sync::Mutex<HashMap<IpAddr, std::time::Instant>>,
}

#[derive(Debug, Default)]
struct Sources {
    /// None: ACL is off (no file configured).
    file: Option<AclSource>,
    overlay: Overlay,
    version: AclVersion,
}

/// Apache's DataVersion of the ACL configuration: bumped on every reload and change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AclVersion {
    pub counter: u64,
    pub timestamp_ms: u64,
}

/// Why a runtime change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclAdminError {
    #[error("ACL is off on this broker: start it with --acl FILE to manage accounts")]
    Off,
    #[error("{0}")]
    Invalid(String),
}

/// Addresses remembered for the log's rate limit; past it the memory starts afresh.
const LOGGED_ADDRESSES: usize = 4096;
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Authenticator {
    /// `file`: the ACL file's accounts (None: ACL off); `overlay`: the stored runtime changes.
    pub fn new(file: Option<AclSource>, overlay: Overlay) -> Self {
        let auth = Authenticator::default();
        if let Ok(mut s) = auth.sources.lock() {
            s.file = file;
            s.overlay = overlay;
            auth.rebuild(&mut s);
        }
        auth
    }

    /// Puts a reloaded file in force, under the overlay.
    pub fn replace_file(&self, file: AclSource) {
        if let Ok(mut s) = self.sources.lock() {
            s.file = Some(file);
            self.rebuild(&mut s);
        }
    }

    /// Compiles the file with the overlay over it. Both were checked when they came in (the
    /// stored overlay entry by entry at start), so this does not fail; if it did, the file
    /// alone is put in force rather than nothing: never fail open.
    fn rebuild(&self, s: &mut Sources) {
        let Some(file) = &s.file else {
            self.config.store(None);
            return;
        };
        let compiled = s.overlay.merged(file).compile().or_else(|e| {
            tracing::error!(error = %e, "ACL run-time changes not applied; the file's accounts are in force");
            file.compile()
        });
        match compiled {
            Ok(c) => self.config.store(Some(std::sync::Arc::new(c))),
            Err(e) => {
                tracing::error!(error = %e, "ACL accounts not rebuilt; the accounts in force stay")
            }
        }
        s.version = AclVersion {
            counter: s.version.counter + 1,
            timestamp_ms: crate::now_ms().max(0) as u64,
        };
    }

    /// Plans a change from the sources in force (None: ACL off).
    fn plan(
        &self,
        f: impl FnOnce(&AclSource, &Overlay) -> Result<AclChange, String>,
    ) -> Result<AclChange, AclAdminError> {
        let s = self
            .sources
            .lock()
            .map_err(|_| AclAdminError::Invalid("ACL state unavailable".into()))?;
        let file = s.file.as_ref().ok_or(AclAdminError::Off)?;
        f(file, &s.overlay).map_err(AclAdminError::Invalid)
    }

    /// Creates an account or updates the one in force (file or overlay) with the fields given.
    pub fn plan_upsert(&self, patch: AccountPatch) -> Result<AclChange, AclAdminError> {
        self.plan(|file, overlay| {
            let current = overlay
                .merged(file)
                .accounts
                .remove(patch.access_key.trim());
            let ak = patch.access_key.trim().to_string();
            let spec = patch.apply(current.as_ref())?;
            Ok(AclChange::Account(ak, Some(OverlayEntry::Account(spec))))
        })
    }

    pub fn plan_delete(&self, access_key: &str) -> Result<AclChange, AclAdminError> {
        self.plan(|file, overlay| overlay.plan_delete(file, access_key.trim()))
    }

    pub fn plan_global_white(&self, list: Vec<String>) -> Result<AclChange, AclAdminError> {
        self.plan(|_, _| Overlay::plan_global_white(list))
    }

    /// Puts a stored change in force.
    pub fn apply(&self, change: AclChange) {
        if let Ok(mut s) = self.sources.lock() {
            s.overlay.apply(change);
            self.rebuild(&mut s);
        }
    }

    /// Holds runtime changes off while one is planned, stored and applied.
    pub async fn change_lock(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.changes.clone().lock_owned().await
    }

    /// The accounts in force as written (secrets included: redact before answering) and the
    /// configuration's version; None while ACL is off.
    pub fn listing(&self) -> Option<(AclSource, AclVersion)> {
        let s = self.sources.lock().ok()?;
        let file = s.file.as_ref()?;
        Some((s.overlay.merged(file), s.version))
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
        // `load`, not `load_full`: no shared reference count bouncing between the workers.
        let config = self.config.load();
        let Some(config) = config.as_ref() else {
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
            string_to_sign: None,
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

//! ACL 1.0 accounts in two forms: as written ([`AccountSpec`], [`AclSource`]: the text of
//! Apache's `plain_acl.yml` or of an admin request, kept for listing and for storing runtime
//! changes) and compiled ([`Account`], [`AclConfig`]: parsed permissions and address patterns,
//! what each request is checked against).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

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

/// One account as written: Apache's PlainAccessConfig fields, with its spellings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountSpec {
    pub access_key: String,
    pub secret_key: String,
    pub white_remote_address: String,
    pub admin: bool,
    pub default_topic_perm: String,
    pub default_group_perm: String,
    /// `name=PERM` entries.
    pub topic_perms: Vec<String>,
    pub group_perms: Vec<String>,
}

/// Apache's minimum length of an access key and a secret key ("longer than 6").
pub const MIN_KEY_LEN: usize = 7;

impl AccountSpec {
    /// Parses the permissions and the address pattern; an error names the field and value.
    pub fn compile(&self) -> Result<Account, String> {
        let ak = &self.access_key;
        if ak.trim().is_empty() {
            return Err("an account has no accessKey".into());
        }
        let perm = |k: &str, v: &str| -> Result<Perm, String> {
            if v.trim().is_empty() {
                return Ok(Perm::DENY);
            }
            Perm::parse(v).ok_or_else(|| format!("account {ak}: {k} {v} is not a permission"))
        };
        let perms = |k: &str, items: &[String]| -> Result<HashMap<String, Perm>, String> {
            let mut m = HashMap::new();
            for s in items.iter().filter(|s| !s.trim().is_empty()) {
                let Some((name, p)) = s.split_once('=') else {
                    return Err(format!("account {ak}: {k} entry {s} is not name=PERM"));
                };
                let p = Perm::parse(p)
                    .ok_or_else(|| format!("account {ak}: {k} entry {s} has no permission"))?;
                m.insert(name.trim().to_string(), p);
            }
            Ok(m)
        };
        let white = self.white_remote_address.trim();
        Ok(Account {
            access_key: ak.clone(),
            secret_key: self.secret_key.clone(),
            white_remote_address: match white.is_empty() {
                true => None,
                false => Some(IpPattern::parse(white).map_err(|e| format!("account {ak}: {e}"))?),
            },
            admin: self.admin,
            default_topic_perm: perm("defaultTopicPerm", &self.default_topic_perm)?,
            default_group_perm: perm("defaultGroupPerm", &self.default_group_perm)?,
            topic_perms: perms("topicPerms", &self.topic_perms)?,
            group_perms: perms("groupPerms", &self.group_perms)?,
        })
    }

    /// The account without its secret, for listings.
    pub fn redacted(&self) -> AccountSpec {
        AccountSpec {
            secret_key: String::new(),
            ..self.clone()
        }
    }
}

/// The global allow list and the accounts as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclSource {
    pub global_white: Vec<String>,
    pub accounts: BTreeMap<String, AccountSpec>,
}

/// Parses an allow list's patterns, naming a bad one.
pub fn compile_patterns(list: &[String]) -> Result<Vec<IpPattern>, String> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| IpPattern::parse(s))
        .collect()
}

impl AclSource {
    /// Reads Apache's `plain_acl.yml`. Unknown keys are ignored, as Apache ignores them; a bad
    /// permission or address pattern is an error naming it.
    pub fn from_yaml(text: &str) -> Result<AclSource, String> {
        use yaml_rust2::{Yaml, YamlLoader};
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("ACL file: {e}"))?;
        let mut out = AclSource::default();
        let Some(doc) = docs.first() else {
            return Ok(out);
        };
        let text_of = |y: &Yaml| match y {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Integer(i) => Some(i.to_string()),
            Yaml::Real(r) => Some(r.clone()),
            Yaml::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        let list = |y: &Yaml| -> Vec<String> {
            y.as_vec()
                .into_iter()
                .flatten()
                .filter_map(text_of)
                .collect()
        };
        out.global_white = list(&doc["globalWhiteRemoteAddresses"]);
        for a in doc["accounts"].as_vec().into_iter().flatten() {
            let field = |k: &str| text_of(&a[k]).unwrap_or_default();
            let spec = AccountSpec {
                access_key: field("accessKey"),
                secret_key: field("secretKey"),
                white_remote_address: field("whiteRemoteAddress"),
                admin: a["admin"].as_bool().unwrap_or(false),
                default_topic_perm: field("defaultTopicPerm"),
                default_group_perm: field("defaultGroupPerm"),
                topic_perms: list(&a["topicPerms"]),
                group_perms: list(&a["groupPerms"]),
            };
            out.accounts.insert(spec.access_key.clone(), spec);
        }
        out.compile().map_err(|e| format!("ACL file: {e}"))?;
        Ok(out)
    }

    /// Writes Apache's `plain_acl.yml` (what `from_yaml` reads back), secrets included.
    pub fn to_yaml(&self) -> Result<String, String> {
        use yaml_rust2::yaml::{Hash, Yaml};
        let s = |v: &str| Yaml::String(v.to_string());
        let list = |v: &[String]| Yaml::Array(v.iter().map(|x| s(x)).collect());
        let mut accounts = Vec::with_capacity(self.accounts.len());
        for a in self.accounts.values() {
            let mut h = Hash::new();
            h.insert(s("accessKey"), s(&a.access_key));
            h.insert(s("secretKey"), s(&a.secret_key));
            h.insert(s("whiteRemoteAddress"), s(&a.white_remote_address));
            h.insert(s("admin"), Yaml::Boolean(a.admin));
            h.insert(s("defaultTopicPerm"), s(&a.default_topic_perm));
            h.insert(s("defaultGroupPerm"), s(&a.default_group_perm));
            h.insert(s("topicPerms"), list(&a.topic_perms));
            h.insert(s("groupPerms"), list(&a.group_perms));
            accounts.push(Yaml::Hash(h));
        }
        let mut doc = Hash::new();
        doc.insert(s("globalWhiteRemoteAddresses"), list(&self.global_white));
        doc.insert(s("accounts"), Yaml::Array(accounts));
        let mut out = String::new();
        yaml_rust2::YamlEmitter::new(&mut out)
            .dump(&Yaml::Hash(doc))
            .map_err(|e| format!("ACL file: {e}"))?;
        out.push('\n');
        Ok(out)
    }

    pub fn compile(&self) -> Result<AclConfig, String> {
        let mut accounts = HashMap::with_capacity(self.accounts.len());
        for spec in self.accounts.values() {
            accounts.insert(spec.access_key.clone(), spec.compile()?);
        }
        Ok(AclConfig {
            global_white: compile_patterns(&self.global_white)?,
            accounts,
        })
    }
}

impl AclConfig {
    pub fn from_yaml(text: &str) -> Result<AclConfig, String> {
        AclSource::from_yaml(text)?.compile()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_acl_round_trips() {
        let text = "globalWhiteRemoteAddresses:\n  - 10.10.103.*\naccounts:\n  - accessKey: RocketMQ\n    secretKey: 12345678\n    whiteRemoteAddress:\n    admin: false\n    defaultTopicPerm: DENY\n    defaultGroupPerm: SUB\n    topicPerms:\n      - topicA=DENY\n      - topicB=PUB|SUB\n    groupPerms:\n      - groupA=DENY\n  - accessKey: rocketmq2\n    secretKey: 'it''s: secret'\n    admin: true\n";
        let a = AclSource::from_yaml(text).unwrap();
        assert_eq!(a.accounts.len(), 2);
        let back = AclSource::from_yaml(&a.to_yaml().unwrap()).unwrap();
        assert_eq!(a, back);
        assert_eq!(back.accounts["RocketMQ"].secret_key, "12345678");
        assert_eq!(back.accounts["rocketmq2"].secret_key, "it's: secret");
    }
}

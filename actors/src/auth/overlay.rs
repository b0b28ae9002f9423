//! Runtime ACL changes (the admin codes): an overlay over the file, stored in the `meta`
//! column family so that it survives a restart, while the file itself is never written.
//! For an access key both define, the overlay's entry wins; deleting an account the file
//! defines leaves a tombstone, so it stays deleted across file reloads until it is set again.

use super::config::{compile_patterns, AccountSpec, AclSource, MIN_KEY_LEN};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One access key's runtime state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OverlayEntry {
    Account(AccountSpec),
    Deleted,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    pub accounts: BTreeMap<String, OverlayEntry>,
    /// Replaces the file's global allow list once set.
    pub global_white: Option<Vec<String>>,
}

/// One change to the overlay, planned and checked before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclChange {
    /// Sets (Some) or removes (None) an access key's overlay entry.
    Account(String, Option<OverlayEntry>),
    GlobalWhite(Vec<String>),
}

/// An update or creation request: absent fields keep the account's current values, as
/// Apache's updateAccessConfig keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountPatch {
    pub access_key: String,
    pub secret_key: Option<String>,
    pub white_remote_address: Option<String>,
    pub admin: Option<bool>,
    pub default_topic_perm: Option<String>,
    pub default_group_perm: Option<String>,
    pub topic_perms: Option<Vec<String>>,
    pub group_perms: Option<Vec<String>>,
}

impl AccountPatch {
    /// The account after this patch over `current` (None: a new account, which needs a secret).
    /// Apache's minimum key lengths apply to what the patch sets, so accounts from a file
    /// with shorter keys can still be updated.
    pub fn apply(self, current: Option<&AccountSpec>) -> Result<AccountSpec, String> {
        let ak = self.access_key.trim().to_string();
        if current.is_none() && ak.len() < MIN_KEY_LEN {
            return Err(format!(
                "accessKey {ak:?} must have at least {MIN_KEY_LEN} characters"
            ));
        }
        let mut spec = current.cloned().unwrap_or_else(|| AccountSpec {
            access_key: ak.clone(),
            ..AccountSpec::default()
        });
        match self.secret_key {
            Some(sk) if sk.len() < MIN_KEY_LEN => {
                return Err(format!(
                    "account {ak}: secretKey must have at least {MIN_KEY_LEN} characters"
                ))
            }
            Some(sk) => spec.secret_key = sk,
            None if current.is_none() => {
                return Err(format!("account {ak}: a new account needs a secretKey"))
            }
            None => {}
        }
        let set = |field: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut spec.white_remote_address, self.white_remote_address);
        set(&mut spec.default_topic_perm, self.default_topic_perm);
        set(&mut spec.default_group_perm, self.default_group_perm);
        if let Some(admin) = self.admin {
            spec.admin = admin;
        }
        if let Some(p) = self.topic_perms {
            spec.topic_perms = p;
        }
        if let Some(p) = self.group_perms {
            spec.group_perms = p;
        }
        spec.compile()?;
        Ok(spec)
    }
}

impl Overlay {
    /// The accounts in force: the file's, then the overlay's entries over them.
    pub fn merged(&self, file: &AclSource) -> AclSource {
        let mut out = file.clone();
        if let Some(w) = &self.global_white {
            out.global_white = w.clone();
        }
        for (ak, entry) in &self.accounts {
            match entry {
                OverlayEntry::Account(spec) => {
                    out.accounts.insert(ak.clone(), spec.clone());
                }
                OverlayEntry::Deleted => {
                    out.accounts.remove(ak);
                }
            }
        }
        out
    }

    /// The change a deletion makes: the account is out of force from then on. An account only
    /// the overlay has loses its entry; one the file defines gets a tombstone (also over a
    /// run-time version of it: a deleted account's old secret from the file must not come
    /// back). An unknown key is an error.
    pub fn plan_delete(&self, file: &AclSource, access_key: &str) -> Result<AclChange, String> {
        let key = access_key.to_string();
        let in_overlay = matches!(
            self.accounts.get(access_key),
            Some(OverlayEntry::Account(_))
        );
        match (in_overlay, file.accounts.contains_key(access_key)) {
            (_, true) if self.accounts.get(access_key) != Some(&OverlayEntry::Deleted) => {
                Ok(AclChange::Account(key, Some(OverlayEntry::Deleted)))
            }
            (true, false) => Ok(AclChange::Account(key, None)),
            _ => Err(format!("no ACL account {access_key}")),
        }
    }

    pub fn plan_global_white(list: Vec<String>) -> Result<AclChange, String> {
        let list: Vec<String> = list
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        compile_patterns(&list)?;
        Ok(AclChange::GlobalWhite(list))
    }

    pub fn apply(&mut self, change: AclChange) {
        match change {
            AclChange::Account(ak, Some(e)) => {
                self.accounts.insert(ak, e);
            }
            AclChange::Account(ak, None) => {
                self.accounts.remove(&ak);
            }
            AclChange::GlobalWhite(list) => self.global_white = Some(list),
        }
    }

    /// Rebuilds the overlay from its stored entries (`meta` names and values). An entry that
    /// does not decode or no longer compiles is skipped and named in the log (a tombstone that
    /// does not decode is kept as a tombstone: a deleted account must not come back).
    pub fn from_stored<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Overlay {
        let mut out = Overlay::default();
        for (name, value) in entries {
            if name == GLOBAL_WHITE {
                match rmp_serde::from_slice::<Vec<String>>(value)
                    .map_err(|e| e.to_string())
                    .and_then(|list| compile_patterns(&list).map(|_| list))
                {
                    Ok(list) => out.global_white = Some(list),
                    Err(e) => tracing::error!(error = %e, "stored ACL allow list skipped"),
                }
            } else if let Some(ak) = name.strip_prefix(ACCOUNT_PREFIX) {
                let entry = match rmp_serde::from_slice::<OverlayEntry>(value) {
                    Ok(OverlayEntry::Account(spec)) => match spec.compile() {
                        Ok(_) => OverlayEntry::Account(spec),
                        Err(e) => {
                            tracing::error!(account = ak, error = %e, "stored ACL account skipped; it is refused until set again");
                            OverlayEntry::Deleted
                        }
                    },
                    Ok(OverlayEntry::Deleted) => OverlayEntry::Deleted,
                    Err(e) => {
                        tracing::error!(account = ak, error = %e, "stored ACL account unreadable; it is refused until set again");
                        OverlayEntry::Deleted
                    }
                };
                out.accounts.insert(ak.to_string(), entry);
            }
        }
        out
    }
}

const ACCOUNT_PREFIX: &str = "account/";
const GLOBAL_WHITE: &str = "global-white";

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(v).map_err(|e| e.to_string())
}

impl AclChange {
    /// For the log: what changed, never a secret.
    pub fn summary(&self) -> String {
        match self {
            AclChange::Account(ak, Some(OverlayEntry::Account(_))) => format!("account {ak} set"),
            AclChange::Account(ak, Some(OverlayEntry::Deleted)) => {
                format!("file account {ak} deleted")
            }
            AclChange::Account(ak, None) => format!("runtime account {ak} deleted"),
            AclChange::GlobalWhite(list) => format!("global allow list set to {list:?}"),
        }
    }

    /// The `meta` entry name and the value to store (None: delete the entry).
    pub fn stored(&self) -> Result<(String, Option<Vec<u8>>), String> {
        Ok(match self {
            AclChange::Account(ak, Some(e)) => (format!("{ACCOUNT_PREFIX}{ak}"), Some(encode(e)?)),
            AclChange::Account(ak, None) => (format!("{ACCOUNT_PREFIX}{ak}"), None),
            AclChange::GlobalWhite(list) => (GLOBAL_WHITE.to_string(), Some(encode(list)?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ak: &str, sk: &str, topics: &[&str]) -> AccountSpec {
        AccountSpec {
            access_key: ak.into(),
            secret_key: sk.into(),
            topic_perms: topics.iter().map(|s| s.to_string()).collect(),
            ..AccountSpec::default()
        }
    }

    #[test]
    fn overlay_wins_and_deleted_file_accounts_get_tombstones() {
        let mut file = AclSource::default();
        file.accounts
            .insert("fileAK1".into(), spec("fileAK1", "file-secret", &[]));
        let mut o = Overlay::default();
        // Update a file account: the patch starts from the file's values.
        let patched = AccountPatch {
            access_key: "fileAK1".into(),
            topic_perms: Some(vec!["T=PUB".into()]),
            ..AccountPatch::default()
        }
        .apply(o.merged(&file).accounts.get("fileAK1"))
        .unwrap();
        assert_eq!(patched.secret_key, "file-secret");
        o.apply(AclChange::Account(
            "fileAK1".into(),
            Some(OverlayEntry::Account(patched)),
        ));
        assert_eq!(o.merged(&file).accounts["fileAK1"].topic_perms, ["T=PUB"]);
        // Deleting it leaves a tombstone: neither version is in force; a second time is an
        // error; setting it again brings it back.
        let d = o.plan_delete(&file, "fileAK1").unwrap();
        assert_eq!(
            d,
            AclChange::Account("fileAK1".into(), Some(OverlayEntry::Deleted))
        );
        o.apply(d);
        assert!(!o.merged(&file).accounts.contains_key("fileAK1"));
        assert!(o.plan_delete(&file, "fileAK1").is_err());
        assert!(o.plan_delete(&file, "nobody00").is_err());
        // Set again, it is a new account (a secret is needed) over the tombstone.
        let again = AccountPatch {
            access_key: "fileAK1".into(),
            secret_key: Some("new-secret".into()),
            ..AccountPatch::default()
        };
        assert!(AccountPatch {
            secret_key: None,
            ..again.clone()
        }
        .apply(o.merged(&file).accounts.get("fileAK1"))
        .is_err());
        let spec2 = again
            .apply(o.merged(&file).accounts.get("fileAK1"))
            .unwrap();
        o.apply(AclChange::Account(
            "fileAK1".into(),
            Some(OverlayEntry::Account(spec2)),
        ));
        assert_eq!(o.merged(&file).accounts["fileAK1"].secret_key, "new-secret");
        // A run-time only account just goes.
        o.apply(AclChange::Account(
            "runAK01".into(),
            Some(OverlayEntry::Account(spec("runAK01", "run-secret", &[]))),
        ));
        assert_eq!(
            o.plan_delete(&file, "runAK01").unwrap(),
            AclChange::Account("runAK01".into(), None)
        );
    }

    #[test]
    fn patches_are_checked() {
        let new = |ak: &str, sk: Option<&str>| AccountPatch {
            access_key: ak.into(),
            secret_key: sk.map(String::from),
            ..AccountPatch::default()
        };
        assert!(new("short", Some("long-enough")).apply(None).is_err());
        assert!(
            new("longAK1", None).apply(None).is_err(),
            "a new account needs a secret"
        );
        let mut bad = new("longAK1", Some("secret1"));
        bad.default_topic_perm = Some("WRITE".into());
        assert!(bad.apply(None).unwrap_err().contains("WRITE"));
        let mut bad_ip = new("longAK1", Some("secret1"));
        bad_ip.white_remote_address = Some("1.2.3".into());
        assert!(bad_ip.apply(None).is_err());
        assert!(Overlay::plan_global_white(vec!["10.*".into(), "x.y".into()]).is_err());
    }

    #[test]
    fn changes_round_trip_through_storage() {
        let changes = [
            AclChange::Account(
                "akOne1".into(),
                Some(OverlayEntry::Account(spec("akOne1", "secret1", &["A=SUB"]))),
            ),
            AclChange::Account("akTwo2".into(), Some(OverlayEntry::Deleted)),
            AclChange::GlobalWhite(vec!["10.*".into()]),
        ];
        let mut want = Overlay::default();
        let mut stored = Vec::new();
        for c in changes {
            let (name, value) = c.stored().unwrap();
            stored.push((name, value.unwrap()));
            want.apply(c);
        }
        let got = Overlay::from_stored(stored.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        assert_eq!(got, want);
        // Unreadable or no longer valid entries are refused, never dropped into the file's.
        let bad_spec = OverlayEntry::Account(spec("akBad01", "secret1", &["T=WRITE"]));
        stored.push(("account/akJunk1".into(), vec![0xc1]));
        stored.push((
            "account/akBad01".into(),
            rmp_serde::to_vec_named(&bad_spec).unwrap(),
        ));
        let got = Overlay::from_stored(stored.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        assert_eq!(got.accounts["akJunk1"], OverlayEntry::Deleted);
        assert_eq!(got.accounts["akBad01"], OverlayEntry::Deleted);
    }
}

//! Migration from and to Apache RocketMQ. `rocktor import --apache-config DIR` brings an Apache
//! broker's `store/config/` directory — topics, subscription groups, committed offsets — and a
//! `plain_acl.yml` into rocktor; `rocktor export --apache-config DIR` writes rocktor's in the
//! same files. Both drive the broker's domain (the rules every front end follows) in a process
//! of their own, with no listeners; the store allows one process, so they refuse while a broker
//! runs on the same data directory.
//!
//! Messages do not move, only metadata: drain the old broker first. So that a consumer resumes
//! where it stopped, an imported topic's queue begins at the highest offset any group
//! committed there, and new messages continue from it.

pub mod apache;

use crate::remoting::body;
use rocktor_actors::auth::{AccountPatch, AclSource};
use rocktor_actors::model::{self, PERM_INHERIT, PERM_READ, PERM_WRITE};
use rocktor_actors::BrokerContext;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// What an import or export did, line by line, for the operator.
#[derive(Debug, Default)]
pub struct Report {
    pub done: Vec<String>,
    /// (what, why).
    pub skipped: Vec<(String, String)>,
}

impl Report {
    fn done(&mut self, what: String) {
        self.done.push(what);
    }
    fn skip(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.skipped.push((what.into(), why.into()));
    }

    pub fn render(&self, verb: &str) -> String {
        let mut out = String::new();
        for d in &self.done {
            let _ = writeln!(out, "{verb} {d}");
        }
        for (what, why) in &self.skipped {
            let _ = writeln!(out, "skipped {what}: {why}");
        }
        let _ = writeln!(
            out,
            "{} {verb}, {} skipped",
            self.done.len(),
            self.skipped.len()
        );
        out
    }
}

fn read_file(dir: &Path, name: &str) -> Result<Option<String>, String> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", dir.join(name).display())),
    }
}

/// The Apache files of one directory, all parsed before anything changes (and before the
/// store is opened).
pub struct Source {
    dir: std::path::PathBuf,
    /// Where the ACL was read from.
    acl_path: std::path::PathBuf,
    topics: Option<apache::TopicsFile>,
    groups: Option<apache::GroupsFile>,
    offsets: Option<apache::OffsetsFile>,
    acl: Option<AclSource>,
}

impl Source {
    /// Reads `dir`'s files, and the ACL from `acl_file` when given (Apache keeps
    /// `plain_acl.yml` in `conf/`, not beside the store's config), else from `dir`.
    pub fn read(dir: &Path, acl_file: Option<&Path>) -> Result<Source, String> {
        let parsed = |name: &str| -> Result<Option<_>, String> { read_file(dir, name) };
        let acl_text = match acl_file {
            Some(f) => {
                Some(std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?)
            }
            None => parsed(apache::ACL)?,
        };
        let s = Source {
            dir: dir.to_path_buf(),
            acl_path: acl_file.map_or_else(|| dir.join(apache::ACL), Path::to_path_buf),
            topics: parsed(apache::TOPICS)?
                .map(|t| apache::parse(apache::TOPICS, &t))
                .transpose()?,
            groups: parsed(apache::GROUPS)?
                .map(|t| apache::parse(apache::GROUPS, &t))
                .transpose()?,
            offsets: parsed(apache::OFFSETS)?
                .map(|t| apache::parse(apache::OFFSETS, &t))
                .transpose()?,
            acl: acl_text
                .map(|t| AclSource::from_yaml(&t).map_err(|e| format!("{}: {e}", apache::ACL)))
                .transpose()?,
        };
        if s.topics.is_none() && s.groups.is_none() && s.offsets.is_none() && s.acl.is_none() {
            return Err(format!(
                "{} holds none of {}, {}, {}, {} (an Apache broker keeps them in store/config/)",
                dir.display(),
                apache::TOPICS,
                apache::GROUPS,
                apache::OFFSETS,
                apache::ACL
            ));
        }
        Ok(s)
    }
}

/// Why an Apache topic is not brought over, if it is not.
fn topic_skip_reason(name: &str, perm: i32) -> Option<String> {
    if model::is_retry_or_dlq(name) {
        return Some("a group's retry or dead-letter topic; rocktor makes it when needed".into());
    }
    if model::is_system_topic(name) || name == "BenchmarkTest" {
        return Some("a system topic; rocktor has its own".into());
    }
    // Apache makes a topic named after its broker and its cluster (inheritable, perm 7) and
    // their reply topics: they belong to the broker that wrote the file.
    if perm & PERM_INHERIT != 0 || name.ends_with("_REPLY_TOPIC") {
        return Some("the old broker's own topic (its broker, cluster or reply topic)".into());
    }
    model::validate_topic(name).err()
}

/// Apache's `attributes` as the `+key=value` changes the domain takes: those it knows, and
/// (key=value, why) for the others.
fn attribute_changes(attributes: &BTreeMap<String, String>) -> (String, Vec<(String, String)>) {
    let mut known = Vec::new();
    let mut refused = Vec::new();
    for (k, v) in attributes {
        let k = k.trim_start_matches('+');
        let change = format!("+{k}={v}");
        if k.contains([',', '=']) || v.contains([',', '=']) {
            refused.push((format!("{k}={v}"), "holds ',' or '='".to_string()));
        } else if let Err(e) = model::apply_topic_attributes(&BTreeMap::new(), &change) {
            refused.push((format!("{k}={v}"), e));
        } else {
            known.push(change);
        }
    }
    (known.join(","), refused)
}

/// Offsets above this are not a real broker's (and would not fit the wire's i64 later).
const MAX_OFFSET: i64 = rocktor_storage::keys::MAX_QUEUE_BASE as i64;

/// Per topic, per queue: the highest offset any group committed (where the queue begins).
fn start_offsets(offsets: Option<&apache::OffsetsFile>) -> BTreeMap<String, BTreeMap<u32, u64>> {
    let mut out: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
    for (key, queues) in offsets.iter().flat_map(|f| f.offset_table.iter()) {
        let Some((topic, _)) = apache::split_offset_key(key) else {
            continue;
        };
        for (q, off) in queues.iter().filter(|(_, o)| **o <= MAX_OFFSET) {
            if let (Ok(q), Ok(off)) = (q.parse::<u32>(), u64::try_from(*off)) {
                let e = out
                    .entry(topic.to_string())
                    .or_default()
                    .entry(q)
                    .or_default();
                *e = (*e).max(off);
            }
        }
    }
    out
}

/// Brings the Apache files read into `src` into the broker. A topic or group that exists here
/// already is kept as it is; so are its offsets.
pub async fn import(ctx: &BrokerContext, src: Source) -> Result<Report, String> {
    let mut report = Report::default();
    let starts = start_offsets(src.offsets.as_ref());

    let mut new_topics = BTreeSet::new();
    for (name, v) in src.topics.iter().flat_map(|f| f.topic_config_table.iter()) {
        let what = format!("topic {name}");
        let Some(mut spec) = body::parse_topic_config(name, v) else {
            report.skip(what, "not a TopicConfig object");
            continue;
        };
        let old_perm = spec.perm;
        if let Some(why) = topic_skip_reason(name, old_perm) {
            report.skip(what, why);
            continue;
        }
        if ctx.topic(name).is_some() {
            report.skip(what, "exists here; kept as it is");
            continue;
        }
        let queues = spec.read_queues.max(spec.write_queues);
        let mut starts_at = vec![0u64; queues.min(model::MAX_QUEUES) as usize];
        for (q, off) in starts.get(name).into_iter().flatten() {
            if let Some(s) = starts_at.get_mut(*q as usize) {
                *s = *off;
            }
        }
        spec.name = name.clone();
        spec.perm &= PERM_READ | PERM_WRITE;
        // Attributes go in as changes, which the domain checks one by one.
        let attributes = std::mem::take(&mut spec.attributes);
        let first = starts_at.iter().copied().filter(|s| *s > 0).count();
        let (changes, refused) = attribute_changes(&attributes);
        for (attr, why) in refused {
            report.skip(format!("{what} attribute {attr}"), why);
        }
        match ctx.create_topic_at(spec, &changes, starts_at).await {
            Ok(()) => {
                let mut parts = vec![format!("{queues} queues"), format!("perm {old_perm}")];
                if !changes.is_empty() {
                    parts.push(changes);
                }
                if first > 0 {
                    parts.push(format!("{first} queues continue the old offsets"));
                }
                report.done(format!("{what} ({})", parts.join(", ")));
                new_topics.insert(name.clone());
            }
            Err(e) => report.skip(what, e.to_string()),
        }
    }

    let mut new_groups = BTreeSet::new();
    for (name, v) in src
        .groups
        .iter()
        .flat_map(|f| f.subscription_group_table.iter())
    {
        let what = format!("group {name}");
        if model::is_system_group(name) {
            report.skip(what, "a system group; rocktor has its own");
            continue;
        }
        if ctx.group(name).is_some() {
            report.skip(what, "exists here; kept as it is");
            continue;
        }
        // The table's key names the group when the entry does not.
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.entry("groupName").or_insert_with(|| name.as_str().into());
        }
        let Some(mut config) = body::parse_group_config(&v) else {
            report.skip(what, "not a SubscriptionGroupConfig object");
            continue;
        };
        config.name = name.clone();
        config.attributes = body::string_map(v.get("attributes"));
        let line = format!(
            "{what} (retryMaxTimes {}, orderly {}, broadcast {})",
            config.retry_max_times, config.consume_message_orderly, config.consume_broadcast_enable
        );
        match ctx.upsert_group(config).await {
            Ok(()) => {
                report.done(line);
                new_groups.insert(name.clone());
            }
            Err(e) => report.skip(what, e.to_string()),
        }
    }

    for (key, queues) in src.offsets.iter().flat_map(|f| f.offset_table.iter()) {
        let what = format!("offsets of {key}");
        let Some((topic, group)) = apache::split_offset_key(key) else {
            report.skip(what, "not topic@group");
            continue;
        };
        if !new_topics.contains(topic) || !new_groups.contains(group) {
            report.skip(
                what,
                "its topic or group was not imported by this run (skipped, or here already)",
            );
            continue;
        }
        let mut set = Vec::new();
        for (q, off) in queues {
            let Ok(qid) = q.parse::<u32>() else {
                report.skip(format!("{what} queue {q}"), "not a queue id");
                continue;
            };
            if *off < 0 || *off > MAX_OFFSET {
                report.skip(
                    format!("{what} queue {q}"),
                    format!("offset {off} is not one"),
                );
                continue;
            }
            // The queue begins at the highest offset committed on it: a group that was behind
            // starts there too (what it had not read stays on the old broker).
            let begins = starts
                .get(topic)
                .and_then(|s| s.get(&qid))
                .copied()
                .unwrap_or(0);
            let offset = (*off).max(begins as i64);
            match ctx.commit_offset(group, topic, qid, offset).await {
                Ok(()) => {
                    set.push((qid, offset));
                    if offset > *off {
                        report.done(format!(
                            "{what} queue {qid} at {offset}, not {off}: the {} messages it had \
                             not consumed stay on the old broker",
                            offset - *off
                        ));
                    }
                }
                Err(e) => report.skip(format!("{what} queue {q}"), e.to_string()),
            }
        }
        if !set.is_empty() {
            let total: i128 = set.iter().map(|(_, o)| i128::from(*o)).sum();
            report.done(format!(
                "{what} ({} queues, next offsets summing to {total})",
                set.len()
            ));
        }
    }

    match src.acl {
        Some(acl) => import_acl(ctx, &src.acl_path, acl, &mut report).await,
        None => report.skip(
            apache::ACL,
            format!(
                "not in {} (Apache keeps it in conf/: --apache-acl FILE)",
                src.dir.display()
            ),
        ),
    }
    Ok(report)
}

async fn import_acl(ctx: &BrokerContext, path: &Path, acl: AclSource, report: &mut Report) {
    let Some((current, _)) = ctx.auth.listing() else {
        report.skip(
            format!("{} ({} accounts)", apache::ACL, acl.accounts.len()),
            format!(
                "ACL is off on this broker; rocktor reads Apache's file as it is: start it with \
                 --acl {}",
                path.display()
            ),
        );
        return;
    };
    for (ak, a) in &acl.accounts {
        let what = format!("ACL account {ak}");
        if current.accounts.contains_key(ak) {
            report.skip(what, "exists here; kept as it is");
            continue;
        }
        let patch = AccountPatch {
            access_key: ak.clone(),
            secret_key: Some(a.secret_key.clone()),
            white_remote_address: Some(a.white_remote_address.clone()),
            admin: Some(a.admin),
            default_topic_perm: Some(a.default_topic_perm.clone()).filter(|p| !p.is_empty()),
            default_group_perm: Some(a.default_group_perm.clone()).filter(|p| !p.is_empty()),
            topic_perms: Some(a.topic_perms.clone()),
            group_perms: Some(a.group_perms.clone()),
        };
        match ctx.acl_upsert(patch).await {
            Ok(()) => report.done(format!("{what} (admin {})", a.admin)),
            Err(e) => report.skip(what, e.to_string()),
        }
    }
    let mut white = current.global_white.clone();
    let added: Vec<_> = acl
        .global_white
        .iter()
        .filter(|w| !white.contains(w))
        .cloned()
        .collect();
    if !added.is_empty() {
        white.extend(added.iter().cloned());
        match ctx.acl_set_global_white(white).await {
            Ok(()) => report.done(format!("ACL global white addresses {}", added.join(","))),
            Err(e) => report.skip("ACL global white addresses", e.to_string()),
        }
    }
}

/// Writes the broker's user topics, user groups and their committed offsets (and, with ACL
/// on, its accounts) to `dir` in Apache's formats. System topics and groups, retry and
/// dead-letter topics stay out: the broker that reads the files makes its own.
///
/// Messages do not go with the files, so the broker that reads them starts with empty queues:
/// each offset is written relative to where the queue ends here (0 for a group that has read
/// everything), so its consumers read every new message there. `keep_offsets` writes them
/// as they are, for another rocktor, whose import makes its queues continue them.
pub async fn export(ctx: &BrokerContext, dir: &Path, keep_offsets: bool) -> Result<Report, String> {
    let mut report = Report::default();
    let registry = ctx.registry.load_full();
    let mut topics: Vec<_> = registry
        .topics
        .values()
        .map(|t| &t.config)
        .filter(|c| !model::is_system_topic(&c.name))
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for c in &topics {
        report.done(format!("topic {} ({} queues)", c.name, c.queue_count()));
    }
    let mut groups: Vec<_> = registry
        .groups
        .values()
        .map(|g| &g.config)
        .filter(|c| !model::is_system_group(&c.name))
        .collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    let mut offsets = apache::OffsetsFile::default();
    for c in &groups {
        let name = &c.name;
        report.done(format!("group {name}"));
        let committed = ctx
            .committed_offsets(name)
            .await
            .map_err(|e| format!("offsets of {name}: {e}"))?;
        for (topic, q, off) in committed {
            if model::is_system_topic(&topic) || off < 0 {
                continue;
            }
            let end = ctx
                .topic(&topic)
                .and_then(|t| t.stats.get(q as usize).map(|s| s.max() as i64))
                .unwrap_or(off);
            if off < end {
                report.done(format!(
                    "note: {name} has {} messages of {topic} queue {q} not consumed; they stay here",
                    end - off
                ));
            }
            let written = if keep_offsets {
                off
            } else {
                (off - end).max(0)
            };
            offsets
                .offset_table
                .entry(format!("{topic}@{name}"))
                .or_default()
                .insert(q.to_string(), written);
        }
    }
    for key in offsets.offset_table.keys() {
        report.done(format!("offsets of {key}"));
    }
    // The shapes GET_ALL_TOPIC_CONFIG and GET_ALL_SUBSCRIPTIONGROUP_CONFIG answer in.
    let topics = body::topic_config_table(topics.into_iter());
    let groups = body::group_config_table(groups.into_iter());
    // (name, text, Unix mode): the ACL file holds secrets.
    let mut files = vec![
        (apache::TOPICS, apache::to_text(&topics)?, 0o644),
        (apache::GROUPS, apache::to_text(&groups)?, 0o644),
        (
            apache::OFFSETS,
            apache::to_text(&offsets.to_value())?,
            0o644,
        ),
    ];
    match ctx.auth.listing() {
        Some((acl, _)) => {
            report.done(format!("{} ({} accounts)", apache::ACL, acl.accounts.len()));
            files.push((apache::ACL, acl.to_yaml()?, 0o600));
        }
        None => report.skip(apache::ACL, "ACL is off on this broker"),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text, mode) in files {
        write_atomically(&dir.join(name), text.as_bytes(), mode)?;
    }
    Ok(report)
}

/// Writes a file whole or not at all (a temporary file, synced, then renamed over it).
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_brokers_own_topics_stay_behind() {
        for (name, perm) in [
            ("TBW102", 7),
            ("SCHEDULE_TOPIC_XXXX", 6),
            ("rmq_sys_wheel_timer", 6),
            ("RMQ_SYS_TRANS_HALF_TOPIC", 6),
            ("%RETRY%GID_orders", 6),
            ("%DLQ%GID_orders", 6),
            ("broker-a", 7),
            ("DefaultCluster", 7),
            ("broker-a_REPLY_TOPIC", 6),
            ("BenchmarkTest", 6),
            ("OFFSET_MOVED_EVENT", 6),
            ("bad topic name", 6),
        ] {
            assert!(topic_skip_reason(name, perm).is_some(), "{name}");
        }
        for name in ["OrdersTopic", "FifoTopic"] {
            assert_eq!(topic_skip_reason(name, 6), None);
        }
    }

    #[test]
    fn a_queue_begins_at_the_highest_offset_committed_on_it() {
        let f: apache::OffsetsFile = apache::parse(
            apache::OFFSETS,
            r#"{"offsetTable":{"T@A":{0:15,1:3},"T@B":{0:10,1:7,2:-1,3:9223372036854775807},"U@A":{"0":4},"junk":{0:9}}}"#,
        )
        .unwrap();
        let s = start_offsets(Some(&f));
        assert_eq!(s["T"], BTreeMap::from([(0, 15), (1, 7)]));
        assert_eq!(s["U"], BTreeMap::from([(0, 4)]));
        assert_eq!(s.len(), 2);
        let (known, refused) = attribute_changes(&BTreeMap::from([
            ("message.type".into(), "FIFO".into()),
            ("no.such.key".into(), "x".into()),
            ("queue.type".into(), "a,b".into()),
        ]));
        assert_eq!(known, "+message.type=FIFO");
        assert_eq!(refused.len(), 2, "{refused:?}");
    }
}

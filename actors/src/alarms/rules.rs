//! Alarm rules and the state machine each (rule, subject) runs through: over its threshold for
//! `points` consecutive points, it fires; while it stays over, it is told again at most once a
//! period; the first point at or under the threshold clears it. Pure, so it is tested without
//! a clock or a broker.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What a rule watches, one value per subject per point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmMetric {
    /// Messages a group has not consumed yet (its heap), over all its topics; per group.
    Lag,
    /// Messages added to a group's dead-letter queue since the last point; per group.
    DlqGrowth,
    /// Share of the data directory's file system in use, in percent.
    DiskUsedPercent,
    /// Scheduled (delayed) messages and retry back-offs not yet due (RocksDB's estimate).
    DelayedBacklog,
}

impl AlarmMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmMetric::Lag => "lag",
            AlarmMetric::DlqGrowth => "dlq_growth",
            AlarmMetric::DiskUsedPercent => "disk_used_percent",
            AlarmMetric::DelayedBacklog => "delayed_backlog",
        }
    }

    /// Whether the rule has one subject per consumer group.
    pub fn per_group(self) -> bool {
        matches!(self, AlarmMetric::Lag | AlarmMetric::DlqGrowth)
    }
}

fn one() -> u32 {
    1
}

/// One rule, as the config file (`[[alarms]]`) and the REST API write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmRule {
    pub name: String,
    pub metric: AlarmMetric,
    /// Fires when the value is above it.
    pub threshold: f64,
    /// Consecutive points over the threshold before it fires.
    #[serde(default = "one")]
    pub points: u32,
    /// For per-group metrics: the group it watches; empty or `*` for every group.
    #[serde(default)]
    pub group: String,
}

impl AlarmRule {
    fn new(name: &str, metric: AlarmMetric, threshold: f64, points: u32) -> Self {
        AlarmRule {
            name: name.into(),
            metric,
            threshold,
            points,
            group: String::new(),
        }
    }

    /// The rules a broker starts with: TDMQ's kinds, at thresholds that mean trouble.
    pub fn defaults() -> Vec<AlarmRule> {
        vec![
            AlarmRule::new("backlog", AlarmMetric::Lag, 10_000.0, 5),
            AlarmRule::new("dead-letters", AlarmMetric::DlqGrowth, 0.0, 1),
            AlarmRule::new("disk", AlarmMetric::DiskUsedPercent, 85.0, 3),
            AlarmRule::new(
                "delayed-backlog",
                AlarmMetric::DelayedBacklog,
                1_000_000.0,
                5,
            ),
        ]
    }

    /// Whether the rule watches this group (per-group metrics only).
    pub fn watches(&self, group: &str) -> bool {
        self.group.is_empty() || self.group == "*" || self.group == group
    }
}

/// At most this many rules: each is evaluated every point.
pub const MAX_RULES: usize = 100;

/// Checks a rule set before it is stored or applied; the error names the rule.
pub fn validate(rules: &[AlarmRule]) -> Result<(), String> {
    if rules.len() > MAX_RULES {
        return Err(format!(
            "at most {MAX_RULES} alarm rules, not {}",
            rules.len()
        ));
    }
    let mut names = std::collections::HashSet::new();
    for r in rules {
        let n = &r.name;
        if n.is_empty() || n.len() > 64 || !n.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "alarm rule name {n:?}: 1 to 64 printable characters, no spaces"
            ));
        }
        if !names.insert(n.as_str()) {
            return Err(format!("alarm rule {n} is named twice"));
        }
        if !r.threshold.is_finite() || r.threshold < 0.0 {
            return Err(format!("alarm rule {n}: threshold must be a number >= 0"));
        }
        if !(1..=1000).contains(&r.points) {
            return Err(format!("alarm rule {n}: points must be 1..=1000"));
        }
        if !r.group.is_empty() && !r.metric.per_group() {
            return Err(format!(
                "alarm rule {n}: {} has no group to choose",
                r.metric.as_str()
            ));
        }
        if !r.group.is_empty() && r.group != "*" {
            crate::model::validate_group(&r.group).map_err(|e| format!("alarm rule {n}: {e}"))?;
        }
    }
    Ok(())
}

/// What one point changed for a (rule, subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Fired,
    /// Still over, and a period has passed since it was last told.
    Repeated,
    Cleared,
}

#[derive(Debug, Clone)]
pub struct Track {
    /// Consecutive points over the threshold.
    pub over: u32,
    pub firing: bool,
    /// When it fired (ms since the epoch).
    pub since_ms: i64,
    pub told: Option<Instant>,
    pub value: f64,
}

/// The state of every (rule, subject) seen.
#[derive(Debug, Default)]
pub struct Tracks {
    pub by_key: HashMap<(String, String), Track>,
}

impl Tracks {
    /// Takes one point of `value` for `subject` under `rule`.
    pub fn step(
        &mut self,
        rule: &AlarmRule,
        subject: &str,
        value: f64,
        now: Instant,
        now_ms: i64,
        period: Duration,
    ) -> Option<Transition> {
        let t = self
            .by_key
            .entry((rule.name.clone(), subject.to_string()))
            .or_insert(Track {
                over: 0,
                firing: false,
                since_ms: 0,
                told: None,
                value,
            });
        t.value = value;
        if value <= rule.threshold {
            t.over = 0;
            if t.firing {
                t.firing = false;
                t.told = None;
                return Some(Transition::Cleared);
            }
            return None;
        }
        t.over = t.over.saturating_add(1);
        if !t.firing {
            if t.over >= rule.points {
                t.firing = true;
                t.since_ms = now_ms;
                t.told = Some(now);
                return Some(Transition::Fired);
            }
            return None;
        }
        match t.told {
            Some(at) if now.saturating_duration_since(at) < period => None,
            _ => {
                t.told = Some(now);
                Some(Transition::Repeated)
            }
        }
    }

    /// Forgets what no longer has a rule, and subjects at rest that were not in this point
    /// (a deleted group); those still firing get one more point of 0, so they clear.
    pub fn retain_seen(
        &mut self,
        rules: &[AlarmRule],
        seen: &std::collections::HashSet<(String, String)>,
    ) -> Vec<(String, String)> {
        let mut vanished = Vec::new();
        self.by_key.retain(|key, t| {
            if !rules.iter().any(|r| r.name == key.0) {
                return false;
            }
            if seen.contains(key) {
                return true;
            }
            if t.firing {
                vanished.push(key.clone());
                return true;
            }
            false
        });
        vanished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_after_n_points_repeats_once_a_period_and_clears() {
        let rule = AlarmRule {
            group: "*".into(),
            ..AlarmRule::new("lag", AlarmMetric::Lag, 10.0, 3)
        };
        let mut t = Tracks::default();
        let period = Duration::from_secs(60);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut step = |s: u64, v: f64| t.step(&rule, "G", v, at(s), s as i64 * 1000, period);
        assert_eq!(step(0, 11.0), None);
        assert_eq!(step(1, 12.0), None);
        // A point at the threshold breaks the run.
        assert_eq!(step(2, 10.0), None);
        assert_eq!(step(3, 11.0), None);
        assert_eq!(step(4, 11.0), None);
        assert_eq!(step(5, 11.0), Some(Transition::Fired));
        assert_eq!(step(6, 50.0), None, "told already this period");
        assert_eq!(step(64, 50.0), None);
        assert_eq!(step(65, 50.0), Some(Transition::Repeated));
        assert_eq!(step(66, 3.0), Some(Transition::Cleared));
        assert_eq!(step(67, 3.0), None);
        // Firing again needs a full run of points again.
        assert_eq!(step(68, 20.0), None);
        assert_eq!(step(69, 20.0), None);
        assert_eq!(step(70, 20.0), Some(Transition::Fired));
    }

    #[test]
    fn a_vanished_subject_that_fires_is_kept_to_clear_and_at_rest_is_forgotten() {
        let rules = vec![AlarmRule::new("lag", AlarmMetric::Lag, 0.0, 1)];
        let mut t = Tracks::default();
        let now = Instant::now();
        let d = Duration::from_secs(1);
        assert_eq!(
            t.step(&rules[0], "A", 5.0, now, 0, d),
            Some(Transition::Fired)
        );
        assert_eq!(t.step(&rules[0], "B", 0.0, now, 0, d), None);
        let vanished = t.retain_seen(&rules, &Default::default());
        assert_eq!(vanished, vec![("lag".to_string(), "A".to_string())]);
        assert_eq!(t.by_key.len(), 1);
        assert!(t.retain_seen(&[], &Default::default()).is_empty());
        assert!(t.by_key.is_empty());
    }

    #[test]
    fn bad_rules_are_refused_with_their_name() {
        let ok = AlarmRule::defaults();
        assert_eq!(validate(&ok), Ok(()));
        let mut twice = ok.clone();
        twice.push(ok[0].clone());
        assert!(validate(&twice).unwrap_err().contains("twice"));
        for bad in [
            AlarmRule::new("", AlarmMetric::Lag, 1.0, 1),
            AlarmRule::new("x y", AlarmMetric::Lag, 1.0, 1),
            AlarmRule::new("n", AlarmMetric::Lag, f64::NAN, 1),
            AlarmRule::new("n", AlarmMetric::Lag, -1.0, 1),
            AlarmRule::new("n", AlarmMetric::Lag, 1.0, 0),
            AlarmRule {
                group: "G".into(),
                ..AlarmRule::new("n", AlarmMetric::DiskUsedPercent, 1.0, 1)
            },
            AlarmRule {
                group: "bad group".into(),
                ..AlarmRule::new("n", AlarmMetric::Lag, 1.0, 1)
            },
        ] {
            assert!(validate(std::slice::from_ref(&bad)).is_err(), "{bad:?}");
        }
        let parsed: Vec<AlarmRule> = serde_json::from_str(
            r#"[{"name":"b","metric":"lag","threshold":5,"group":"G"},{"name":"d","metric":"disk_used_percent","threshold":90,"points":2}]"#,
        )
        .unwrap();
        assert_eq!(parsed[0].points, 1);
        assert_eq!(parsed[1].metric, AlarmMetric::DiskUsedPercent);
        assert!(
            serde_json::from_str::<AlarmRule>(r#"{"name":"b","metric":"cpu","threshold":1}"#)
                .is_err()
        );
    }
}

//! Alarms, which TDMQ offers and Apache does not: rules over the broker's own figures — a
//! group's heap of unconsumed messages (lag), messages added to its dead-letter queue, disk
//! use, scheduled messages held — sampled one point per `interval`. A rule fires after its
//! `points` consecutive points over the threshold, is told to the webhook again at most once a
//! `period` while it stays over, and clears at the first point at or under it (`rules.rs`).
//!
//! State: the rules in force, each (rule, subject)'s run of points, the last dead-letter totals
//! (growth is per point), the newest events. Messages: `GetAlarms` (REST, dashboard),
//! `SetAlarmRules` (REST), and its own ticks. Durable: rules set through `SetAlarmRules`,
//! stored (META) before they apply and in force from then on, over the config file's; the
//! runs of points start again with the broker.

mod rules;

pub use rules::{validate, AlarmMetric, AlarmRule, MAX_RULES};

use crate::error::{written, BrokerError, BrokerResult};
use crate::model;
use crate::service::BrokerContext;
use actix::prelude::*;
use rocktor_storage::keys::{self, MetaKind};
use rocktor_storage::{cf, AppendBatch};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Events kept for the REST API and the dashboard, newest first.
const EVENTS_KEPT: usize = 200;
/// The META key of rules set at run time.
const STORED_RULES: &str = "rules";

#[derive(Debug, Clone)]
pub struct AlarmSettings {
    /// One point per interval.
    pub interval: Duration,
    /// While a rule stays over its threshold, at most one notification per period.
    pub period: Duration,
    /// Where notifications go, if anywhere.
    pub sink: Option<AlarmSink>,
    /// The config file's rules (the defaults when it names none).
    pub rules: Vec<AlarmRule>,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            interval: Duration::from_secs(60),
            period: Duration::from_secs(3600),
            sink: None,
            rules: AlarmRule::defaults(),
        }
    }
}

/// A bounded queue of notifications that a delivery task drains (the binary's webhook client),
/// and how listings name where it delivers.
#[derive(Debug, Clone)]
pub struct AlarmSink {
    pub name: String,
    pub queue: mpsc::Sender<AlarmEvent>,
}

/// A rule firing, repeating or clearing for one subject: what the webhook receives (JSON)
/// and the event log shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmEvent {
    pub rule: String,
    pub metric: &'static str,
    /// The consumer group, `disk` or `scheduled`.
    pub subject: String,
    /// `firing` or `resolved`.
    pub state: &'static str,
    /// A reminder of an alarm still firing, a period after the last notification.
    pub repeated: bool,
    pub value: f64,
    pub threshold: f64,
    pub points: u32,
    /// When it fired (ms since the epoch).
    pub since: i64,
    pub at: i64,
    pub broker: String,
    pub cluster: String,
    /// Whether it was queued for the webhook (false: none configured, or its queue was full).
    pub notified: bool,
}

/// The last point of one (rule, subject).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmPoint {
    pub rule: String,
    pub metric: &'static str,
    pub subject: String,
    pub value: f64,
    pub threshold: f64,
    /// Consecutive points over the threshold.
    pub over: u32,
    pub firing: bool,
    pub since: i64,
}

/// Everything the REST API and the dashboard show.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmsView {
    pub interval_ms: u64,
    pub period_ms: u64,
    /// The webhook's scheme, host and port (its path may hold a token).
    pub webhook: Option<String>,
    /// Where the rules in force come from: `config` or `api`.
    pub rules_from: &'static str,
    pub rules: Vec<AlarmRule>,
    pub points: Vec<AlarmPoint>,
    pub events: Vec<AlarmEvent>,
}

/// The figures of one point.
#[derive(Debug, Default)]
struct Sample {
    lag: HashMap<String, u64>,
    dlq_totals: HashMap<String, u64>,
    disk_percent: f64,
    delayed: Option<u64>,
    /// Groups whose figures could not be read this point: their alarms stay as they are.
    unread: HashSet<String>,
}

/// How long one group may take to answer a point's question.
const READ_WAIT: Duration = Duration::from_secs(5);

pub struct Alarms {
    ctx: BrokerContext,
    settings: AlarmSettings,
    /// Rules set through the API (stored), or None for the config file's.
    api_rules: Option<Vec<AlarmRule>>,
    tracks: rules::Tracks,
    dlq_totals: HashMap<String, u64>,
    /// Whether `dlq_totals` holds a first point.
    dlq_primed: bool,
    events: VecDeque<AlarmEvent>,

    sampling: bool,
}

impl Alarms {
    pub fn new(
        ctx: BrokerContext,
        settings: AlarmSettings,
        api_rules: Option<Vec<AlarmRule>>,
    ) -> Self {
        Alarms {
            ctx,
            settings,
            api_rules,
            tracks: rules::Tracks::default(),
            dlq_totals: HashMap::new(),
            dlq_primed: false,
            events: VecDeque::new(),
            sampling: false,
        }
    }

    /// Rules stored through the API, read at start (None when there are none, or they no
    /// longer parse: the config file's apply, and the log says why).
    pub fn stored_rules(store: &rocktor_storage::Store) -> Option<Vec<AlarmRule>> {
        let raw = match store.get_meta(&keys::meta_key(MetaKind::AlarmRules, STORED_RULES)) {
            Ok(v) => v?,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored alarm rules; the config file's apply");
                return None;
            }
        };
        match serde_json::from_slice::<Vec<AlarmRule>>(&raw)
            .map_err(|e| e.to_string())
            .and_then(|r| validate(&r).map(|()| r))
        {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "stored alarm rules are unusable; the config file's apply");
                None
            }
        }
    }

    fn rules(&self) -> &[AlarmRule] {
        self.api_rules.as_deref().unwrap_or(&self.settings.rules)
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.sampling {
            return; // the last point is still being taken
        }
        self.sampling = true;
        let rules = self.rules().to_vec();
        sample(self.ctx.clone(), rules)
            .into_actor(self)
            .map(|s, act, _| {
                act.sampling = false;
                act.evaluate(s);
            })
            .spawn(ctx);
    }

    fn evaluate(&mut self, s: Sample) {
        let (now, now_ms) = (Instant::now(), crate::now_ms());
        let period = self.settings.period;
        let rules = self.rules().to_vec();
        let mut seen = HashSet::new();
        for rule in &rules {
            let subjects: Vec<(String, f64)> = match rule.metric {
                AlarmMetric::Lag => s
                    .lag
                    .iter()
                    .filter(|(g, _)| rule.watches(g))
                    .map(|(g, n)| (g.clone(), *n as f64))
                    .collect(),
                AlarmMetric::DlqGrowth => s
                    .dlq_totals
                    .iter()
                    .filter(|(g, _)| rule.watches(g))
                    .map(|(g, total)| {
                        // At the first point the totals so far are the baseline (a restart is
                        // not a burst); a group that appears later starts from 0.
                        let first = if self.dlq_primed { 0 } else { *total };
                        let before = self.dlq_totals.get(g).copied().unwrap_or(first);
                        (g.clone(), total.saturating_sub(before) as f64)
                    })
                    .collect(),
                AlarmMetric::DiskUsedPercent => vec![("disk".into(), s.disk_percent)],
                AlarmMetric::DelayedBacklog => match s.delayed {
                    Some(n) => vec![("scheduled".into(), n as f64)],
                    None => {
                        seen.insert((rule.name.clone(), "scheduled".to_string()));
                        Vec::new()
                    }
                },
            };
            if rule.metric.per_group() {
                // Not read this point is not gone: those alarms stay as they are.
                seen.extend(s.unread.iter().map(|g| (rule.name.clone(), g.clone())));
            }
            for (subject, value) in subjects {
                seen.insert((rule.name.clone(), subject.clone()));
                if let Some(t) = self.tracks.step(rule, &subject, value, now, now_ms, period) {
                    self.record(rule, &subject, value, t);
                }
            }
        }
        // A deleted group's alarm clears rather than fires for ever.
        for (name, subject) in self.tracks.retain_seen(&rules, &seen) {
            if let Some(rule) = rules.iter().find(|r| r.name == name) {
                if let Some(t) = self.tracks.step(rule, &subject, 0.0, now, now_ms, period) {
                    self.record(rule, &subject, 0.0, t);
                }
            }
        }
        self.dlq_totals = s.dlq_totals;
        self.dlq_primed = true;
        let firing = self.tracks.by_key.values().filter(|t| t.firing).count();
        metrics::gauge!("rocktor_alarms_firing").set(firing as f64);
    }

    fn record(&mut self, rule: &AlarmRule, subject: &str, value: f64, t: rules::Transition) {
        let since = self
            .tracks
            .by_key
            .get(&(rule.name.clone(), subject.to_string()))
            .map_or(0, |t| t.since_ms);
        let mut event = AlarmEvent {
            rule: rule.name.clone(),
            metric: rule.metric.as_str(),
            subject: subject.to_string(),
            state: match t {
                rules::Transition::Cleared => "resolved",
                _ => "firing",
            },
            repeated: t == rules::Transition::Repeated,
            value,
            threshold: rule.threshold,
            points: rule.points,
            since,
            at: crate::now_ms(),
            broker: self.ctx.settings.broker_name.clone(),
            cluster: self.ctx.settings.cluster_name.clone(),
            notified: false,
        };
        if let Some(sink) = &self.settings.sink {
            // What the receiver gets says notified: false; the log here records the queueing.
            if sink.queue.try_send(event.clone()).is_ok() {
                event.notified = true;
            } else {
                metrics::counter!("rocktor_alarm_notifications_total", "result" => "dropped")
                    .increment(1);
                tracing::warn!(rule = %event.rule, "alarm notification queue full; dropped");
            }
        }
        tracing::warn!(rule = %event.rule, subject = %event.subject, state = event.state, value, threshold = rule.threshold, "alarm");
        if self.events.len() >= EVENTS_KEPT {
            self.events.pop_back();
        }
        self.events.push_front(event);
    }

    fn view(&self) -> AlarmsView {
        let mut points: Vec<AlarmPoint> = self
            .tracks
            .by_key
            .iter()
            .filter_map(|((name, subject), t)| {
                let rule = self.rules().iter().find(|r| &r.name == name)?;
                Some(AlarmPoint {
                    rule: name.clone(),
                    metric: rule.metric.as_str(),
                    subject: subject.clone(),
                    value: t.value,
                    threshold: rule.threshold,
                    over: t.over,
                    firing: t.firing,
                    since: if t.firing { t.since_ms } else { 0 },
                })
            })
            .collect();
        points
            .sort_by(|a, b| (b.firing, &a.rule, &a.subject).cmp(&(a.firing, &b.rule, &b.subject)));
        AlarmsView {
            interval_ms: self.settings.interval.as_millis() as u64,
            period_ms: self.settings.period.as_millis() as u64,
            webhook: self.settings.sink.as_ref().map(|s| s.name.clone()),
            rules_from: if self.api_rules.is_some() {
                "api"
            } else {
                "config"
            },
            rules: self.rules().to_vec(),
            points,
            events: self.events.iter().cloned().collect(),
        }
    }
}

/// Takes one point: only the figures some rule needs.
async fn sample(ctx: BrokerContext, rules: Vec<AlarmRule>) -> Sample {
    let needs = |m: AlarmMetric| rules.iter().any(|r| r.metric == m);
    let mut s = Sample::default();
    let groups: Vec<_> = ctx.registry.load().groups.values().cloned().collect();
    for g in groups {
        let name = &g.config.name;
        if model::is_system_group(name) {
            continue;
        }
        if needs(AlarmMetric::Lag) {
            match tokio::time::timeout(READ_WAIT, BrokerContext::offsets_of(&g)).await {
                Ok(Ok(offsets)) => {
                    let lag = ctx
                        .consume_rows(&g, &offsets, None)
                        .iter()
                        .map(|r| r.lag())
                        .sum();
                    s.lag.insert(name.clone(), lag);
                }
                _ => {
                    s.unread.insert(name.clone());
                }
            }
        }
        if needs(AlarmMetric::DlqGrowth) {
            let total = ctx
                .topic(&model::dlq_topic(name))
                .map_or(0, |t| t.stats.iter().map(|q| q.max()).sum());
            s.dlq_totals.insert(name.clone(), total);
        }
    }
    s.disk_percent = ctx.disk.used_ratio() * 100.0;
    if needs(AlarmMetric::DelayedBacklog) {
        s.delayed = crate::scheduler::pending_estimate(ctx.store.clone()).await;
    }
    s
}

impl Actor for Alarms {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        ctx.run_interval(self.settings.interval, |act, ctx| act.tick(ctx));
    }
}

/// The rules, their last points and the newest events.
pub struct GetAlarms;

impl Message for GetAlarms {
    type Result = AlarmsView;
}

impl Handler<GetAlarms> for Alarms {
    type Result = MessageResult<GetAlarms>;

    fn handle(&mut self, _: GetAlarms, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.view())
    }
}

/// Replaces the rules (stored first), or with None goes back to the config file's.
pub struct SetAlarmRules(pub Option<Vec<AlarmRule>>);

impl Message for SetAlarmRules {
    type Result = BrokerResult<()>;
}

impl Handler<SetAlarmRules> for Alarms {
    type Result = AtomicResponse<Self, BrokerResult<()>>;

    fn handle(&mut self, msg: SetAlarmRules, _: &mut Context<Self>) -> Self::Result {
        let key = keys::meta_key(MetaKind::AlarmRules, STORED_RULES);
        let mut batch = AppendBatch::default();
        let checked = match &msg.0 {
            Some(rules) => validate(rules)
                .map_err(BrokerError::InvalidParameter)
                .and_then(|()| {
                    serde_json::to_vec(rules).map_err(|e| BrokerError::Storage(e.to_string()))
                })
                .map(|v| batch.puts.push((cf::META, key, v))),
            None => {
                batch.deletes.push((cf::META, key));
                Ok(())
            }
        };
        if let Err(e) = checked {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        let stored = self.ctx.writer.submit(batch);
        AtomicResponse::new(Box::pin(
            async move { written(stored.await) }
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    let old = act.rules().to_vec();
                    act.api_rules = msg.0;
                    let new = act.rules().to_vec();
                    // A rule removed or changed starts again; one that was firing is told cleared,
                    // so a receiver's incident does not stay open.
                    let gone: Vec<AlarmRule> =
                        old.into_iter().filter(|r| !new.contains(r)).collect();
                    let firing: Vec<(String, String, f64)> = act
                        .tracks
                        .by_key
                        .iter()
                        .filter(|((name, _), t)| t.firing && gone.iter().any(|r| &r.name == name))
                        .map(|((name, subject), t)| (name.clone(), subject.clone(), t.value))
                        .collect();
                    for (name, subject, value) in firing {
                        if let Some(rule) = gone.iter().find(|r| r.name == name) {
                            act.record(rule, &subject, value, rules::Transition::Cleared);
                        }
                    }
                    act.tracks
                        .by_key
                        .retain(|(name, _), _| !gone.iter().any(|r| &r.name == name));
                    let rules = new;
                    tracing::info!(
                        rules = rules.len(),
                        from = if act.api_rules.is_some() {
                            "api"
                        } else {
                            "config"
                        },
                        "alarm rules set"
                    );
                    Ok::<(), BrokerError>(())
                }),
        ))
    }
}

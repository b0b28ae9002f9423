//! `/api/v1/alarms`: the alarm rules in force, each watched subject's last point, the newest
//! events; and the rules replaced (stored, in force at once) or given back to the config file.

use super::{ok, Admin, Body, RestResult};
use actix_web::HttpResponse;
use rocktor_actors::alarms::{AlarmMetric, AlarmRule, GetAlarms, SetAlarmRules};
use serde::Deserialize;
use utoipa::ToSchema;

/// One rule. `metric`: lag (a group's messages not consumed yet), dlq_growth (added to its
/// dead-letter queue since the last point), disk_used_percent, delayed_backlog (scheduled
/// messages not yet due).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    name: String,
    #[schema(value_type = String, example = "lag")]
    metric: AlarmMetric,
    /// Fires when the value is above it.
    threshold: f64,
    /// Consecutive points over the threshold before it fires (default 1).
    points: Option<u32>,
    /// lag and dlq_growth only: one group (default every group).
    group: Option<String>,
}

#[utoipa::path(operation_id = "alarms_get", get, path = "/api/v1/alarms", tag = "alarms",
    responses((status = 200, description = "intervalMs, periodMs, webhook (scheme, host, port), rulesFrom (config or api), rules, points (the last of each rule and subject, firing first) and events (newest first)")))]
pub async fn get(Admin(b): Admin) -> RestResult {
    let view = b
        .alarms
        .send(GetAlarms)
        .await
        .map_err(rocktor_actors::BrokerError::from)?;
    ok(view)
}

#[utoipa::path(operation_id = "alarms_set_rules", put, path = "/api/v1/alarms/rules", tag = "alarms",
    request_body = Vec<RuleBody>,
    responses((status = 200, description = "Stored and in force"), (status = 400, body = super::ErrorBody)))]
pub async fn set_rules(Admin(b): Admin, Body(rules): Body<Vec<RuleBody>>) -> RestResult {
    let rules: Vec<AlarmRule> = rules
        .into_iter()
        .map(|r| AlarmRule {
            name: r.name,
            metric: r.metric,
            threshold: r.threshold,
            points: r.points.unwrap_or(1),
            group: r.group.unwrap_or_default(),
        })
        .collect();
    let n = rules.len();
    b.alarms
        .send(SetAlarmRules(Some(rules)))
        .await
        .map_err(rocktor_actors::BrokerError::from)??;
    ok(serde_json::json!({ "rules": n, "rulesFrom": "api" }))
}

#[utoipa::path(operation_id = "alarms_reset_rules", delete, path = "/api/v1/alarms/rules", tag = "alarms",
    responses((status = 204, description = "The config file's rules are in force again")))]
pub async fn reset_rules(Admin(b): Admin) -> RestResult {
    b.alarms
        .send(SetAlarmRules(None))
        .await
        .map_err(rocktor_actors::BrokerError::from)??;
    Ok(HttpResponse::NoContent().finish())
}

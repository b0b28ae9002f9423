//! JSON bodies in the shapes RocketMQ clients and tools parse (digest §2.6, §5). Standard JSON
//! everywhere except the stats tables, which Java tools read in fastjson's object-key map form.

use super::command::push_json_str;
use rocktor_actors::admin::{ConsumeRow, QueueOffsets};
use rocktor_actors::broker::TopicSpec;
use rocktor_actors::consumer_group::{ConsumerInfo, GroupConnections, Subscription};
use rocktor_actors::model::MessageModel;
use rocktor_actors::model::{GroupConfig, TopicConfig};
use rocktor_actors::routes::{ClusterInfo, RouteData};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub fn route_data(r: &RouteData) -> Value {
    let queue_datas: Vec<Value> = r
        .queue_datas
        .iter()
        .map(|q| {
            json!({"brokerName": q.broker_name, "perm": q.perm, "readQueueNums": q.read_queues,
                   "topicSysFlag": q.topic_sys_flag, "writeQueueNums": q.write_queues})
        })
        .collect();
    let broker_datas: Vec<Value> = r.broker_datas.iter().map(broker_data).collect();
    let mut v =
        json!({"brokerDatas": broker_datas, "filterServerTable": {}, "queueDatas": queue_datas});
    if let Some(o) = &r.order_topic_conf {
        v["orderTopicConf"] = json!(o);
    }
    v
}

fn broker_data(b: &rocktor_actors::routes::BrokerData) -> Value {
    let addrs: Map<String, Value> = b
        .addrs
        .iter()
        .map(|(id, a)| (id.to_string(), json!(a)))
        .collect();
    json!({"brokerAddrs": addrs, "brokerName": b.broker_name, "cluster": b.cluster, "enableActingMaster": false})
}

pub fn cluster_info(c: &ClusterInfo) -> Value {
    let brokers: Map<String, Value> = c
        .brokers
        .iter()
        .map(|b| (b.broker_name.clone(), broker_data(b)))
        .collect();
    json!({"brokerAddrTable": brokers, "clusterAddrTable": c.clusters})
}

pub fn topic_config(t: &TopicConfig) -> Value {
    json!({"topicName": t.name, "readQueueNums": t.read_queues, "writeQueueNums": t.write_queues, "perm": t.perm,
           "topicFilterType": "SINGLE_TAG", "topicSysFlag": t.topic_sys_flag, "order": t.order,
           "attributes": t.attributes})
}

pub fn data_version(counter: u64) -> Value {
    json!({"stateVersion": 0, "timestamp": rocktor_actors::now_ms(), "counter": counter})
}

/// TopicConfigSerializeWrapper: what GET_ALL_TOPIC_CONFIG answers and Apache's `topics.json`
/// holds.
pub fn topic_config_table<'a>(topics: impl Iterator<Item = &'a TopicConfig>) -> Value {
    let table: Map<String, Value> = topics.map(|t| (t.name.clone(), topic_config(t))).collect();
    let n = table.len() as u64;
    json!({"topicConfigTable": table, "dataVersion": data_version(n)})
}

/// SubscriptionGroupWrapper: what GET_ALL_SUBSCRIPTIONGROUP_CONFIG answers and Apache's
/// `subscriptionGroup.json` holds.
pub fn group_config_table<'a>(groups: impl Iterator<Item = &'a GroupConfig>) -> Value {
    let table: Map<String, Value> = groups.map(|g| (g.name.clone(), group_config(g))).collect();
    let n = table.len() as u64;
    json!({"subscriptionGroupTable": table, "dataVersion": data_version(n)})
}

/// Reads a TopicConfig leniently (named `name` when it says no `topicName`); absent fields
/// take Apache's defaults: 16 read and write queues, perm 6.
pub fn parse_topic_config(name: &str, v: &Value) -> Option<TopicSpec> {
    if !v.is_object() {
        return None;
    }
    let i = |k: &str, d: i64| v.get(k).and_then(as_i64).unwrap_or(d);
    let queues = |k: &str| i(k, 16).clamp(0, u32::MAX as i64) as u32;
    let attributes = string_map(v.get("attributes"));
    Some(TopicSpec {
        name: v
            .get("topicName")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_string(),
        read_queues: queues("readQueueNums"),
        write_queues: queues("writeQueueNums"),
        perm: i("perm", 6).clamp(0, i32::MAX as i64) as i32,
        topic_sys_flag: i("topicSysFlag", 0).clamp(i32::MIN as i64, i32::MAX as i64) as i32,
        order: v.get("order").and_then(as_bool).unwrap_or(false),
        attributes,
    })
}

pub fn group_config(g: &GroupConfig) -> Value {
    json!({"groupName": g.name, "consumeEnable": g.consume_enable, "consumeFromMinEnable": g.consume_from_min_enable,
           "consumeBroadcastEnable": g.consume_broadcast_enable, "consumeMessageOrderly": g.consume_message_orderly,
           "retryQueueNums": g.retry_queue_nums, "retryMaxTimes": g.retry_max_times, "brokerId": g.broker_id,
           "whichBrokerWhenConsumeSlowly": g.which_broker_when_consume_slowly,
           "notifyConsumerIdsChangedEnable": g.notify_consumer_ids_changed_enable, "groupSysFlag": 0,
           "consumeTimeoutMinute": 15, "attributes": g.attributes})
}

/// Reads a SubscriptionGroupConfig body leniently; absent fields take Apache's defaults.
pub fn parse_group_config(v: &Value) -> Option<GroupConfig> {
    let name = v.get("groupName")?.as_str()?;
    // Absent fields keep the domain's defaults (GroupConfig::new, the one place they live).
    let mut g = GroupConfig::new(name);
    let b = |k: &str, d: bool| v.get(k).and_then(as_bool).unwrap_or(d);
    let i = |k: &str, d: i64| v.get(k).and_then(as_i64).unwrap_or(d);
    g.consume_enable = b("consumeEnable", g.consume_enable);
    g.consume_from_min_enable = b("consumeFromMinEnable", g.consume_from_min_enable);
    g.consume_broadcast_enable = b("consumeBroadcastEnable", g.consume_broadcast_enable);
    g.consume_message_orderly = b("consumeMessageOrderly", g.consume_message_orderly);
    // Clamped, not cast: a huge number must reach the domain's range check, not wrap.
    g.retry_queue_nums =
        i("retryQueueNums", g.retry_queue_nums as i64).clamp(0, u32::MAX as i64) as u32;
    g.retry_max_times =
        i("retryMaxTimes", g.retry_max_times as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    g.broker_id = i("brokerId", g.broker_id);
    g.which_broker_when_consume_slowly = i(
        "whichBrokerWhenConsumeSlowly",
        g.which_broker_when_consume_slowly,
    );
    g.notify_consumer_ids_changed_enable = b(
        "notifyConsumerIdsChangedEnable",
        g.notify_consumer_ids_changed_enable,
    );
    Some(g)
}

/// A JSON object's string values (`attributes`); anything else is left out.
pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s.eq_ignore_ascii_case("true") || s == "1"),
        Value::Number(n) => Some(n.as_i64() == Some(1)),
        _ => None,
    }
}

fn enum_name(v: Option<&Value>, names: &[&str], default: &str) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|i| names.get(i as usize))
            .map(|s| s.to_string())
            .unwrap_or_else(|| default.to_string()),
        _ => default.to_string(),
    }
}

const CONSUME_TYPES: [&str; 3] = ["CONSUME_ACTIVELY", "CONSUME_PASSIVELY", "CONSUME_POP"];
const MESSAGE_MODELS: [&str; 2] = ["BROADCASTING", "CLUSTERING"];
const CONSUME_FROM: [&str; 6] = [
    "CONSUME_FROM_LAST_OFFSET",
    "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
    "CONSUME_FROM_MIN_OFFSET",
    "CONSUME_FROM_MAX_OFFSET",
    "CONSUME_FROM_FIRST_OFFSET",
    "CONSUME_FROM_TIMESTAMP",
];

/// A parsed LockBatchRequestBody / UnlockBatchRequestBody.
#[derive(Debug, PartialEq, Eq)]
pub struct LockBody {
    pub group: String,
    pub client_id: String,
    /// (topic, broker name, queue id)
    pub queues: Vec<(String, String, u32)>,
}

/// Parses a lock or unlock body: `{"consumerGroup", "clientId", "mqSet": [{"topic",
/// "brokerName", "queueId"}]}`, with numbers as numbers or strings. Anything else is an error
/// the handler answers with a code, never a panic.
pub fn parse_lock_body(body: &[u8], max_queues: usize) -> Result<LockBody, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("lock body is not JSON: {e}"))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let group = text("consumerGroup").ok_or("the lock body has no consumerGroup")?;
    let client_id = text("clientId").ok_or("the lock body has no clientId")?;
    let set = match v.get("mqSet") {
        Some(Value::Array(a)) => a.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err("the lock body's mqSet is not a list".into()),
    };
    if set.len() > max_queues {
        return Err(format!(
            "the lock body names {} queues, more than {max_queues}",
            set.len()
        ));
    }
    let mut queues = Vec::with_capacity(set.len());
    for mq in set {
        let topic = mq
            .get("topic")
            .and_then(Value::as_str)
            .ok_or("a queue of the lock body has no topic")?;
        let broker = mq
            .get("brokerName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let queue_id = mq
            .get("queueId")
            .and_then(as_i64)
            .filter(|q| (0..=u32::MAX as i64).contains(q))
            .ok_or("a queue of the lock body has no valid queueId")?;
        queues.push((topic.to_string(), broker.to_string(), queue_id as u32));
    }
    Ok(LockBody {
        group,
        client_id,
        queues,
    })
}

/// LockBatchResponseBody: the granted queues.
pub fn lock_response(broker: &str, granted: &[(String, u32)]) -> Value {
    let set: Vec<Value> = granted
        .iter()
        .map(|(t, q)| json!({"topic": t, "brokerName": broker, "queueId": q}))
        .collect();
    json!({ "lockOKMQSet": set })
}

/// A parsed HEART_BEAT body: client id, producer groups, and (group, consumer) pairs.
pub struct HeartbeatBody {
    pub client_id: String,
    pub producer_groups: Vec<String>,
    pub consumers: Vec<(String, ConsumerInfo)>,
}

/// Parses HeartbeatData in every dialect the clients send: enum names or ordinals, numbers as
/// strings, absent optional fields.
pub fn parse_heartbeat(body: &[u8], language: &str, version: i32) -> Result<HeartbeatBody, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("heartbeat body is not JSON: {e}"))?;
    let client_id = v
        .get("clientID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let producer_groups = v
        .get("producerDataSet")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get("groupName")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut consumers = Vec::new();
    for c in v
        .get("consumerDataSet")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(group) = c.get("groupName").and_then(Value::as_str) else {
            continue;
        };
        let mut subscriptions = Vec::new();
        for s in c
            .get("subscriptionDataSet")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(topic) = s.get("topic").and_then(Value::as_str) else {
                continue;
            };
            let tags: Vec<String> = s
                .get("tagsSet")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let codes: Vec<i32> = s
                .get("codeSet")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| as_i64(t).map(|x| x as i32))
                        .collect()
                })
                .unwrap_or_default();
            subscriptions.push(Subscription {
                topic: topic.to_string(),
                expression: s
                    .get("subString")
                    .and_then(Value::as_str)
                    .unwrap_or("*")
                    .to_string(),
                expression_type: s
                    .get("expressionType")
                    .and_then(Value::as_str)
                    .unwrap_or("TAG")
                    .to_string(),
                tags,
                codes,
                version: s.get("subVersion").and_then(as_i64).unwrap_or(0),
            });
        }
        consumers.push((
            group.to_string(),
            ConsumerInfo {
                client_id: client_id.clone(),
                consume_type: enum_name(c.get("consumeType"), &CONSUME_TYPES, "CONSUME_PASSIVELY"),
                message_model: MessageModel::from_name(&enum_name(
                    c.get("messageModel"),
                    &MESSAGE_MODELS,
                    "CLUSTERING",
                )),
                consume_from_where: enum_name(
                    c.get("consumeFromWhere"),
                    &CONSUME_FROM,
                    "CONSUME_FROM_LAST_OFFSET",
                ),
                subscriptions,
                language: language.to_string(),
                version,
            },
        ));
    }
    Ok(HeartbeatBody {
        client_id,
        producer_groups,
        consumers,
    })
}

pub fn subscription_data(s: &Subscription) -> Value {
    json!({"classFilterMode": false, "topic": s.topic, "subString": s.expression, "tagsSet": s.tags,
           "codeSet": s.codes, "subVersion": s.version, "expressionType": s.expression_type})
}

pub fn consumer_connection(c: &GroupConnections) -> Value {
    let conns: Vec<Value> = c
        .connections
        .iter()
        .map(|x| json!({"clientId": x.client_id, "clientAddr": x.client_addr.to_string(), "language": x.language, "version": x.version}))
        .collect();
    let subs: Map<String, Value> = c
        .subscriptions
        .iter()
        .map(|s| (s.topic.clone(), subscription_data(s)))
        .collect();
    let mut v = json!({"connectionSet": conns, "subscriptionTable": subs});
    if !c.inconsistencies.is_empty() {
        // Not in Apache's ConsumerConnection; Java tools ignore unknown fields.
        v["subscriptionConsistent"] = json!(false);
        v["subscriptionInconsistencies"] = json!(c.inconsistencies);
    }
    if let Some(t) = &c.consume_type {
        v["consumeType"] = json!(t);
    }
    if let Some(m) = c.message_model {
        v["messageModel"] = json!(m.as_str());
    }
    if let Some(w) = &c.consume_from_where {
        v["consumeFromWhere"] = json!(w);
    }
    v
}

/// A MessageQueue as a fastjson object key: `{"brokerName":"b","queueId":0,"topic":"T"}`.
fn mq_key(out: &mut String, broker: &str, queue_id: u32, topic: &str) {
    out.push_str("{\"brokerName\":");
    push_json_str(out, broker);
    out.push_str(&format!(",\"queueId\":{queue_id},\"topic\":"));
    push_json_str(out, topic);
    out.push('}');
}

/// TopicStatsTable in fastjson's object-key map form.
pub fn topic_stats_table(broker: &str, topic: &str, queues: &[QueueOffsets]) -> String {
    let mut s = String::from("{\"offsetTable\":{");
    for (i, q) in queues.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        mq_key(&mut s, broker, q.queue_id, topic);
        s.push_str(&format!(
            ":{{\"lastUpdateTimestamp\":{},\"maxOffset\":{},\"minOffset\":{}}}",
            q.last_store_time, q.max, q.min
        ));
    }
    s.push_str("},\"topicPutTps\":0.0}");
    s
}

/// ConsumeStats in fastjson's object-key map form.
pub fn consume_stats(broker: &str, rows: &[ConsumeRow]) -> String {
    let mut s = String::from("{\"consumeTps\":0.0,\"offsetTable\":{");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        mq_key(&mut s, broker, r.queue_id, &r.topic);
        s.push_str(&format!(
            ":{{\"brokerOffset\":{},\"consumerOffset\":{},\"lastTimestamp\":{},\"pullOffset\":{}}}",
            r.broker_offset, r.consumer_offset, r.last_timestamp, r.consumer_offset
        ));
    }
    s.push_str("}}");
    s
}

/// ResetOffsetBody `{"offsetTable":{MessageQueue:offset}}` in fastjson's object-key form.
pub fn reset_offset_body(broker: &str, topic: &str, offsets: &[(u32, i64)]) -> String {
    let mut s = String::from("{\"offsetTable\":{");
    for (i, (q, off)) in offsets.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        mq_key(&mut s, broker, *q, topic);
        s.push_str(&format!(":{off}"));
    }
    s.push_str("}}");
    s
}

pub fn kv_table(t: &BTreeMap<String, String>) -> Value {
    json!({ "table": t })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_or_group_that_leaves_fields_out_takes_apaches_defaults() {
        let t = parse_topic_config("T", &json!({"topicName": "T"})).unwrap();
        assert_eq!((t.read_queues, t.write_queues, t.perm), (16, 16, 6));
        let t = parse_topic_config(
            "K",
            &json!({"readQueueNums": "4", "attributes": {"message.type": "FIFO"}}),
        )
        .unwrap();
        assert_eq!((t.name.as_str(), t.read_queues), ("K", 4));
        assert_eq!(t.attributes["message.type"], "FIFO");
        assert!(parse_topic_config("T", &json!([1])).is_none());
        let g = parse_group_config(&json!({"groupName": "G"})).unwrap();
        assert_eq!(g.retry_max_times, 16);
    }

    #[test]
    fn lock_bodies() {
        let b = br#"{"consumerGroup":"G","clientId":"c1","onlyThisBroker":false,
            "mqSet":[{"topic":"T","brokerName":"b","queueId":1},{"topic":"T","brokerName":"b","queueId":"2"}]}"#;
        let p = parse_lock_body(b, 10).unwrap();
        assert_eq!(p.group, "G");
        assert_eq!(p.client_id, "c1");
        assert_eq!(
            p.queues,
            vec![("T".into(), "b".into(), 1), ("T".into(), "b".into(), 2)]
        );
        for bad in [
            &b"not json"[..],
            br#"{"clientId":"c"}"#,
            br#"{"consumerGroup":"G","clientId":"c","mqSet":7}"#,
            br#"{"consumerGroup":"G","clientId":"c","mqSet":[{"topic":"T","queueId":-1}]}"#,
            br#"{"consumerGroup":"G","clientId":"c","mqSet":[{"queueId":1}]}"#,
            br#"[1,2]"#,
        ] {
            assert!(
                parse_lock_body(bad, 10).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            r#"{{"consumerGroup":"G","clientId":"c","mqSet":[{}]}}"#,
            [r#"{"topic":"T","queueId":1}"#; 11].join(",")
        );
        assert!(parse_lock_body(many.as_bytes(), 10).is_err());
        let r = lock_response("b", &[("T".into(), 3)]);
        assert_eq!(r["lockOKMQSet"][0]["queueId"], 3);
    }

    #[test]
    fn heartbeat_dialects() {
        let cpp = br#"{"clientID":"c1","consumerDataSet":[{"groupName":"G","consumeType":1,"messageModel":1,"consumeFromWhere":0,
            "subscriptionDataSet":[{"topic":"T","subString":"*","subVersion":"1700000000000"}]}],"producerDataSet":[]}"#;
        let hb = parse_heartbeat(cpp, "CPP", 63).unwrap();
        assert_eq!(hb.client_id, "c1");
        let (g, c) = &hb.consumers[0];
        assert_eq!(g, "G");
        assert_eq!(c.consume_type, "CONSUME_PASSIVELY");
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.consume_from_where, "CONSUME_FROM_LAST_OFFSET");
        assert_eq!(c.subscriptions[0].version, 1_700_000_000_000);
        assert_eq!(c.subscriptions[0].expression_type, "TAG");
        let java = br#"{"clientID":"c2","producerDataSet":[{"groupName":"P"}],"consumerDataSet":[{"groupName":"G","consumeType":"CONSUME_ACTIVELY","messageModel":"BROADCASTING","consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","subscriptionDataSet":[{"topic":"T","subString":"a || b","tagsSet":["a","b"],"codeSet":[97,98],"subVersion":5,"expressionType":"TAG"}]}]}"#;
        let hb = parse_heartbeat(java, "JAVA", 479).unwrap();
        assert_eq!(hb.producer_groups, vec!["P"]);
        assert_eq!(hb.consumers[0].1.message_model, MessageModel::Broadcasting);
        assert_eq!(hb.consumers[0].1.subscriptions[0].codes, vec![97, 98]);
        assert!(parse_heartbeat(b"not json", "JAVA", 0).is_err());
    }

    #[test]
    fn stats_use_object_keys() {
        let q = QueueOffsets {
            queue_id: 0,
            min: 0,
            max: 5,
            last_store_time: 1,
        };
        let s = topic_stats_table("b", "T", &[q]);
        assert_eq!(
            s,
            "{\"offsetTable\":{{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"T\"}:{\"lastUpdateTimestamp\":1,\"maxOffset\":5,\"minOffset\":0}},\"topicPutTps\":0.0}"
        );
    }
}

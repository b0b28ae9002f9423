//! Apache RocketMQ's message-trace encoding (`TraceDataEncoder`): what trace-enabled clients
//! send to `RMQ_SYS_TRACE_TOPIC`. A trace message's body is records ended by `\u{2}`, each of
//! fields split by `\u{1}`, the first naming the type. Pure: no actor, no storage.
//!
//! - Pub: time, region, group, topic, msgId, tags, keys, storeHost, bodyLength, costTime,
//!   msgType, [offsetMsgId,] success[, clientHost]
//! - SubBefore: time, region, group, requestId, msgId, retryTimes, keys
//! - SubAfter: requestId, msgId, costTime, success, keys[, contextCode[, time[, group]]]
//! - EndTransaction: time, region, group, topic, msgId, tags, keys, storeHost, msgType,
//!   transactionId, transactionState, fromTransactionCheck
//! - Recall: time, region, group, topic, msgId, success

use serde::Serialize;

pub const FIELD_SEPARATOR: char = '\u{1}';
pub const RECORD_SEPARATOR: char = '\u{2}';
/// The default trace topic.
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PubTrace {
    pub time_ms: i64,
    pub region: String,
    pub group: String,
    pub topic: String,
    pub msg_id: String,
    pub tags: String,
    pub keys: String,
    pub store_host: String,
    pub body_length: i64,
    pub cost_ms: i64,
    /// 0 normal, 1 transaction half, 2 transaction commit, 3 delay, 4 order.
    pub msg_type: i32,
    pub offset_msg_id: String,
    pub success: bool,
    pub client_host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubBeforeTrace {
    pub time_ms: i64,
    pub region: String,
    pub group: String,
    pub request_id: String,
    pub msg_id: String,
    pub retry_times: i32,
    pub keys: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubAfterTrace {
    pub request_id: String,
    pub msg_id: String,
    pub cost_ms: i64,
    pub success: bool,
    pub keys: String,
    /// 0 success, 1 timeout, 2 exception, 3 null returned, 4 failed.
    pub context_code: Option<i32>,
    pub time_ms: Option<i64>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndTransactionTrace {
    pub time_ms: i64,
    pub region: String,
    pub group: String,
    pub topic: String,
    pub msg_id: String,
    pub tags: String,
    pub keys: String,
    pub store_host: String,
    pub msg_type: i32,
    pub transaction_id: String,
    /// COMMIT_MESSAGE, ROLLBACK_MESSAGE or UNKNOW.
    pub transaction_state: String,
    pub from_check: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecallTrace {
    pub time_ms: i64,
    pub region: String,
    pub group: String,
    pub topic: String,
    pub msg_id: String,
    pub success: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum TraceRecord {
    Pub(PubTrace),
    SubBefore(SubBeforeTrace),
    SubAfter(SubAfterTrace),
    EndTransaction(EndTransactionTrace),
    Recall(RecallTrace),
}

#[cfg(test)]
impl TraceRecord {
    /// The id of the message the record is about (its UNIQ_KEY).
    pub fn msg_id(&self) -> &str {
        match self {
            TraceRecord::Pub(t) => &t.msg_id,
            TraceRecord::SubBefore(t) => &t.msg_id,
            TraceRecord::SubAfter(t) => &t.msg_id,
            TraceRecord::EndTransaction(t) => &t.msg_id,
            TraceRecord::Recall(t) => &t.msg_id,
        }
    }
}

/// The records of a trace message's body about `msg_id`, at most `limit`: a record's id is
/// looked at before anything of it is built, so a large body about other messages costs a
/// scan, not memory. Records that do not parse are skipped (a trace is a client's report: one
/// bad record must not hide the others).
pub fn decode_for(body: &str, msg_id: &str, limit: usize) -> Vec<TraceRecord> {
    let mut out = Vec::new();
    for r in body.split(RECORD_SEPARATOR) {
        if out.len() >= limit {
            break;
        }
        let r = r.trim_start_matches(['\n', '\r']);
        let mut fields = r.split(FIELD_SEPARATOR);
        let id_at = match fields.next() {
            Some("SubAfter") => 1,
            Some("Pub" | "SubBefore" | "EndTransaction" | "Recall") => 4,
            _ => continue,
        };
        if fields.nth(id_at) != Some(msg_id) {
            continue;
        }
        if let Some(t) = decode_record(r) {
            out.push(t);
        }
    }
    out
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.trim().parse().ok()
}

fn flag(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("true")
}

fn decode_record(r: &str) -> Option<TraceRecord> {
    let f: Vec<&str> = r.split(FIELD_SEPARATOR).collect();
    let s = |i: usize| f.get(i).map(|v| v.to_string()).unwrap_or_default();
    match *f.first()? {
        "Pub" if f.len() >= 13 => {
            // 13 fields: no offsetMsgId; 14: with it; 15 and more: a client host too.
            let (offset_msg_id, success) = if f.len() == 13 {
                (String::new(), flag(f[12]))
            } else {
                (s(12), flag(f[13]))
            };
            Some(TraceRecord::Pub(PubTrace {
                time_ms: num(f[1])?,
                region: s(2),
                group: s(3),
                topic: s(4),
                msg_id: s(5),
                tags: s(6),
                keys: s(7),
                store_host: s(8),
                body_length: num(f[9]).unwrap_or(0),
                cost_ms: num(f[10]).unwrap_or(0),
                msg_type: num(f[11]).unwrap_or(0),
                offset_msg_id,
                success,
                client_host: f.get(14).filter(|h| !h.is_empty()).map(|h| h.to_string()),
            }))
        }
        "SubBefore" if f.len() >= 7 => Some(TraceRecord::SubBefore(SubBeforeTrace {
            time_ms: num(f[1])?,
            region: s(2),
            group: s(3),
            request_id: s(4),
            msg_id: s(5),
            retry_times: num(f[6]).unwrap_or(0),
            keys: s(7),
        })),
        "SubAfter" if f.len() >= 5 => Some(TraceRecord::SubAfter(SubAfterTrace {
            request_id: s(1),
            msg_id: s(2),
            cost_ms: num(f[3]).unwrap_or(0),
            success: flag(f[4]),
            keys: s(5),
            context_code: f.get(6).and_then(|v| num(v)),
            time_ms: f.get(7).and_then(|v| num(v)),
            group: f.get(8).filter(|g| !g.is_empty()).map(|g| g.to_string()),
        })),
        "EndTransaction" if f.len() >= 13 => {
            Some(TraceRecord::EndTransaction(EndTransactionTrace {
                time_ms: num(f[1])?,
                region: s(2),
                group: s(3),
                topic: s(4),
                msg_id: s(5),
                tags: s(6),
                keys: s(7),
                store_host: s(8),
                msg_type: num(f[9]).unwrap_or(0),
                transaction_id: s(10),
                transaction_state: s(11),
                from_check: flag(f[12]),
            }))
        }
        "Recall" if f.len() >= 7 => Some(TraceRecord::Recall(RecallTrace {
            time_ms: num(f[1])?,
            region: s(2),
            group: s(3),
            topic: s(4),
            msg_id: s(5),
            success: flag(f[6]),
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fields: &[&str]) -> String {
        let mut s = fields.join("\u{1}");
        s.push('\u{2}');
        s
    }

    #[test]
    fn decodes_apache_records_of_every_type() {
        let body = [
            rec(&[
                "Pub",
                "1700000000000",
                "DefaultRegion",
                "PG",
                "T",
                "ID1",
                "TagA",
                "k1 k2",
                "10.0.0.1:10911",
                "5",
                "3",
                "0",
                "OFF1",
                "true",
                "10.0.0.9",
            ]),
            rec(&[
                "SubBefore",
                "1700000000100",
                "DefaultRegion",
                "CG",
                "R1",
                "ID1",
                "0",
                "k1",
            ]),
            rec(&[
                "SubAfter",
                "R1",
                "ID1",
                "7",
                "false",
                "k1",
                "4",
                "1700000000107",
                "CG",
            ]),
            rec(&[
                "EndTransaction",
                "1700000000200",
                "DefaultRegion",
                "PG",
                "T",
                "ID1",
                "",
                "",
                "10.0.0.1:10911",
                "2",
                "TX1",
                "ROLLBACK_MESSAGE",
                "true",
            ]),
            rec(&[
                "Recall",
                "1700000000300",
                "DefaultRegion",
                "PG",
                "T",
                "ID1",
                "true",
            ]),
        ]
        .concat();
        let r = decode_for(&body, "ID1", usize::MAX);
        assert_eq!(r.len(), 5);
        let TraceRecord::Pub(p) = &r[0] else { panic!() };
        assert_eq!((p.group.as_str(), p.cost_ms, p.success), ("PG", 3, true));
        assert_eq!(p.offset_msg_id, "OFF1");
        assert_eq!(p.client_host.as_deref(), Some("10.0.0.9"));
        let TraceRecord::SubAfter(a) = &r[2] else {
            panic!()
        };
        assert_eq!(
            (a.success, a.context_code, a.group.as_deref()),
            (false, Some(4), Some("CG"))
        );
        let TraceRecord::EndTransaction(e) = &r[3] else {
            panic!()
        };
        assert_eq!(
            (e.transaction_state.as_str(), e.from_check),
            ("ROLLBACK_MESSAGE", true)
        );
        assert!(r.iter().all(|t| t.msg_id() == "ID1"));
        let other = body.replace("ID1", "ID2");
        let both = format!("{other}{body}");
        assert_eq!(decode_for(&both, "ID1", 100), r, "only ID1's records");
        assert_eq!(decode_for(&both, "ID1", 2).len(), 2, "at most the limit");
        assert!(decode_for(&both, "ID3", 100).is_empty());
    }

    #[test]
    fn older_shapes_and_garbage() {
        // A 13-field Pub (no offsetMsgId) and a 7-field cloud SubAfter; junk in between.
        let body = [
            rec(&[
                "Pub", "1", "R", "PG", "T", "ID", "", "", "h", "1", "2", "0", "false",
            ]),
            "junk\u{1}x\u{2}".to_string(),
            rec(&[
                "Pub",
                "not-a-time",
                "R",
                "PG",
                "T",
                "ID",
                "",
                "",
                "h",
                "1",
                "2",
                "0",
                "o",
                "true",
            ]),
            rec(&["SubAfter", "R1", "ID", "7", "true", "", "0"]),
            "\u{2}\u{2}".to_string(),
        ]
        .concat();
        let r = decode_for(&body, "ID", usize::MAX);
        assert_eq!(r.len(), 2);
        let TraceRecord::Pub(p) = &r[0] else { panic!() };
        assert!(!p.success && p.offset_msg_id.is_empty() && p.client_host.is_none());
        let TraceRecord::SubAfter(a) = &r[1] else {
            panic!()
        };
        assert_eq!((a.context_code, a.time_ms), (Some(0), None));
    }
}

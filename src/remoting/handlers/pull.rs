//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361) with long polling — digest §2.5.

use super::HandlerResult;
use crate::remoting::codes::response as rc;
use crate::remoting::command::RemotingCommand;
use crate::remoting::connection::Connection;
use crate::remoting::ext::Ext;
use rocktor_actors::service::PullRequest;
use rocktor_actors::topic_queue::PullStatus;
use rocktor_actors::BrokerContext;
use std::time::Duration;

const FLAG_COMMIT_OFFSET: i64 = 0x1;
const FLAG_SUSPEND: i64 = 0x2;
const FLAG_SUBSCRIPTION: i64 = 0x4;
/// Longest hold we grant, whatever the client asks.
const MAX_HOLD: Duration = Duration::from_secs(60);

pub async fn pull(b: &BrokerContext, conn: &Connection, req: &RemotingCommand) -> HandlerResult {
    let e = Ext::of(req);
    let sys_flag = e.opt_i64("sysFlag")?.unwrap_or(0);
    let hold = (sys_flag & FLAG_SUSPEND != 0).then(|| {
        let ms = e
            .opt_i64("suspendTimeoutMillis")
            .ok()
            .flatten()
            .unwrap_or(15_000)
            .max(0) as u64;
        Duration::from_millis(ms).min(MAX_HOLD)
    });
    let commit_offset = if sys_flag & FLAG_COMMIT_OFFSET != 0 {
        e.opt_i64("commitOffset")?.filter(|o| *o >= 0)
    } else {
        None
    };
    let subscription = (sys_flag & FLAG_SUBSCRIPTION != 0).then(|| {
        (
            e.opt_str("subscription").unwrap_or("*").to_string(),
            e.opt_str("expressionType").unwrap_or("TAG").to_string(),
        )
    });
    let preq = PullRequest {
        group: e.str("consumerGroup")?.to_string(),
        topic: e.str("topic")?.to_string(),
        queue_id: e.i64("queueId")?.max(0) as u32,
        offset: e.i64("queueOffset")?.max(0) as u64,
        max_msgs: e.opt_i64("maxMsgNums")?.unwrap_or(32).max(1) as usize,
        max_bytes: e
            .opt_i64("maxMsgBytes")?
            .filter(|b| *b > 0)
            .unwrap_or(8 << 20) as usize,
        subscription,
        sub_version: e.opt_i64("subVersion")?.unwrap_or(0),
        commit_offset,
        hold,
        connection_holds: Some(conn.holds.clone()),
        caller_gone: Some(conn.gone_flag()),
        caller_budget: Some(conn.read_budget.clone()),
    };
    let out = b.pull(preq).await?;
    let code = match out.status {
        PullStatus::Found => 0,
        PullStatus::NoNewMessage => rc::PULL_NOT_FOUND,
        PullStatus::NoMatchedMessage => rc::PULL_RETRY_IMMEDIATELY,
        PullStatus::OffsetMoved => rc::PULL_OFFSET_MOVED,
    };
    let mut resp = RemotingCommand::response_to(req, code)
        .with_ext("suggestWhichBrokerId", 0)
        .with_ext("nextBeginOffset", out.next_offset)
        .with_ext("minOffset", out.min_offset)
        .with_ext("maxOffset", out.max_offset);
    resp.body_chunks = out.records;
    resp.keep = crate::remoting::command::Keep(
        out.budget
            .map(|b| std::sync::Arc::new(b) as std::sync::Arc<dyn std::any::Any + Send + Sync>),
    );
    Ok(Some(resp))
}

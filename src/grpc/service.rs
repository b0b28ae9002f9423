//! `MessagingService`: each RPC decodes its request, calls the domain, encodes the answer.
//! Business errors travel in `Status` as Apache's proxy answers them (digest §6.3); only
//! Telemetry uses gRPC status codes. No rule of the domain is repeated here.

use super::convert::{self, error_status, ok, resource_name, status, Shown};
use super::pb::{self, messaging_service_server::MessagingService, Code};
use super::session::{self, GrpcChannel, Owner, Role, Session, Sessions};
use super::{authorize, CallMeta, Denied};
use futures_util::stream;
use rocktor_actors::auth::{Perm, Resource};
use rocktor_actors::model::{self, TopicMessageType, PERM_READ, PERM_WRITE};
use rocktor_actors::pop::AckTarget;
use rocktor_actors::service::{ConsumerProtocol, ReceiveRequest, SendRequest};
use rocktor_actors::{BrokerContext, BrokerError};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Streaming};

/// Invisible durations a receive may ask for (Apache's proxy takes 10 s at least; shorter
/// ones cost nothing here, so from 1 s).
const MIN_INVISIBLE_MS: i64 = 1_000;
const MAX_INVISIBLE_MS: i64 = 12 * 3600 * 1000;
/// A receive's long poll: the request's, clamped as Apache's proxy clamps it.
const MIN_POLL: Duration = Duration::from_secs(5);
const MAX_POLL: Duration = Duration::from_secs(20);
/// What a receive leaves of the call's deadline for its answer to travel.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// Topics a producer, and subscriptions a consumer, may declare in its settings.
const MAX_DECLARED_TOPICS: usize = 1024;
/// Messages in one SendMessage, and entries in one AckMessage, at most.
const MAX_SEND_ENTRIES: usize = 1024;
const MAX_ACK_ENTRIES: usize = 1024;
/// The consumer settings the server hands out (digest §6.3).
const RECEIVE_BATCH: i32 = 32;
const LONG_POLLING_MS: i64 = 20_000;
/// Apache's customized retry backoff for consumers: 1 s … 2 h.
const CONSUMER_BACKOFF_SECS: [i64; 16] = [
    1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800,
];

/// What the gRPC front end needs from the config.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    pub max_message_size: usize,
    /// The address clients are told to call (QueryRoute).
    pub advertised: std::net::SocketAddr,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

#[derive(Clone)]
pub struct Messaging {
    ctx: BrokerContext,
    settings: Arc<GrpcSettings>,
    sessions: Arc<Sessions>,
}

fn denied(d: Denied) -> pb::Status {
    match d {
        Denied::Unauthenticated(m) => status(Code::Unauthorized, m),
        Denied::Forbidden(m) => status(Code::Forbidden, m),
    }
}

/// Refused credentials on Telemetry, which answers with gRPC codes rather than a `Status`.
fn denied_stream(d: Denied) -> tonic::Status {
    match d {
        Denied::Unauthenticated(m) => tonic::Status::unauthenticated(m),
        Denied::Forbidden(m) => tonic::Status::permission_denied(m),
    }
}

/// What a consumer's call needs: SUB on the topic and on the group.
fn consumer_resources(topic: &str, group: &str) -> Vec<(Resource, Perm)> {
    vec![
        (Resource::Topic(topic.to_string()), Perm::SUB),
        (Resource::Group(group.to_string()), Perm::SUB),
    ]
}

/// The common status of per-entry outcomes, MULTIPLE_RESULTS when they differ.
fn overall<'a>(entries: impl IntoIterator<Item = &'a Option<pb::Status>>) -> pb::Status {
    let mut codes = entries.into_iter().flatten();
    let Some(first) = codes.next() else {
        return ok();
    };
    if codes.all(|s| s.code == first.code) {
        first.clone()
    } else {
        status(Code::MultipleResults, "the entries have different results")
    }
}

/// The call's deadline (`grpc-timeout`), if it sent one.
fn grpc_timeout<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl Messaging {
    pub fn new(ctx: BrokerContext, settings: GrpcSettings) -> Messaging {
        Messaging {
            ctx,
            settings: Arc::new(settings),
            sessions: Arc::new(Sessions::default()),
        }
    }

    pub fn metrics(&self) -> Arc<rocktor_actors::metrics::BrokerMetrics> {
        self.ctx.metrics.clone()
    }

    /// The largest request accepted: a batch of messages of the largest size and then some.
    pub fn max_request_bytes(&self) -> usize {
        self.settings
            .max_message_size
            .saturating_mul(2)
            .saturating_add(1 << 20)
    }

    fn endpoints(&self) -> pb::Endpoints {
        let a = self.settings.advertised;
        pb::Endpoints {
            scheme: if a.is_ipv4() {
                pb::AddressScheme::IPv4
            } else {
                pb::AddressScheme::IPv6
            } as i32,
            addresses: vec![pb::Address {
                host: a.ip().to_string(),
                port: i32::from(a.port()),
            }],
        }
    }

    fn queue(
        &self,
        topic: &str,
        namespace: &str,
        id: i32,
        permission: pb::Permission,
        kind: TopicMessageType,
    ) -> pb::MessageQueue {
        let accept = match kind {
            TopicMessageType::Mixed => vec![
                pb::MessageType::Normal as i32,
                pb::MessageType::Fifo as i32,
                pb::MessageType::Delay as i32,
                pb::MessageType::Transaction as i32,
            ],
            k => vec![convert::message_type(k) as i32],
        };
        pb::MessageQueue {
            topic: Some(convert::resource_of(topic, namespace)),
            id,
            permission: permission as i32,
            broker: Some(pb::Broker {
                name: self.ctx.settings.broker_name.clone(),
                id: 0,
                endpoints: Some(self.endpoints()),
            }),
            accept_message_types: accept,
        }
    }

    /// The client id every call must carry, and the caller's credentials for `resources`.
    fn admit(&self, meta: &CallMeta, resources: Vec<(Resource, Perm)>) -> Result<(), pb::Status> {
        if meta.client_id.is_empty() {
            return Err(status(
                Code::ClientIdRequired,
                "the x-mq-client-id header is missing",
            ));
        }
        authorize(&self.ctx, meta, resources).map_err(denied)
    }

    /// A consumer group, auto-created on first use as Apache does by default.
    async fn group(
        &self,
        name: &str,
    ) -> Result<Arc<rocktor_actors::broker::GroupHandle>, pb::Status> {
        if name.is_empty() {
            return Err(status(
                Code::IllegalConsumerGroup,
                "the request names no group",
            ));
        }
        // The domain creates it when `auto_create_group` allows, else CONSUMER_GROUP_NOT_FOUND.
        self.ctx.ensure_group(name).await.map_err(|e| match e {
            BrokerError::InvalidParameter(m) => status(Code::IllegalConsumerGroup, m),
            e => error_status(&e),
        })
    }

    fn topic(&self, name: &str) -> Result<Arc<rocktor_actors::broker::TopicHandle>, pb::Status> {
        if name.is_empty() {
            return Err(status(Code::IllegalTopic, "the request names no topic"));
        }
        self.ctx.existing_topic(name).map_err(|e| error_status(&e))
    }

    async fn send_one(&self, meta: &CallMeta, m: pb::Message) -> pb::SendResultEntry {
        let failed = |s: pb::Status| pb::SendResultEntry {
            status: Some(s),
            ..Default::default()
        };
        let out = match convert::outgoing(
            m,
            &meta.namespace,
            self.settings.max_message_size,
            meta.remote,
        ) {
            Ok(o) => o,
            Err(s) => return failed(s),
        };
        if let Err(s) = authorize(
            &self.ctx,
            meta,
            vec![(Resource::Topic(out.topic.clone()), Perm::PUB)],
        ) {
            return failed(denied(s));
        }
        let t = match self.topic(&out.topic) {
            Ok(t) => t,
            Err(s) => return failed(s),
        };
        if let Err(e) = model::check_message_type(&t.config, out.kind) {
            return failed(error_status(&e));
        }
        let transactional = out.kind == TopicMessageType::Transaction;
        let connection_id = self.sessions.connection_of(&meta.client_id);
        let sent = self
            .ctx
            .send(SendRequest {
                producer_group: out.topic.clone(),
                topic: out.topic.clone(),
                default_topic: None,
                default_topic_queues: self.ctx.settings.default_topic_queues,
                // The broker picks: a message group's queue by its hash, as for every
                // sharding key, otherwise round-robin.
                queue_id: -1,
                messages: vec![out.message],
                max_reconsume_times: None,
                batch: false,
                connection_id,
                polls_checks: false,
            })
            .await;
        match sent {
            Ok(r) => pb::SendResultEntry {
                status: Some(ok()),
                message_id: r.uniq_keys.first().cloned().unwrap_or(out.message_id),
                transaction_id: match (transactional, r.seqs.first()) {
                    (true, Some(seq)) => self.ctx.handle_key.encode_half(&out.topic, *seq),
                    _ => String::new(),
                },
                offset: r.first_offset.min(i64::MAX as u64) as i64,
                recall_handle: r.recall_handle.unwrap_or_default(),
            },
            Err(e) => failed(error_status(&e)),
        }
    }

    /// The settings a client declared, registered, and answered merged with the server's.
    async fn on_settings(
        &self,
        meta: &CallMeta,
        channel: &Arc<GrpcChannel>,
        s: pb::Settings,
    ) -> Result<pb::TelemetryCommand, tonic::Status> {
        let language =
            pb::Language::try_from(s.user_agent.as_ref().map(|u| u.language).unwrap_or(0))
                .ok()
                .filter(|l| *l != pb::Language::Unspecified)
                .map(|l| l.as_str_name().to_string())
                .unwrap_or_else(|| meta.language.clone());
        let mut reply = s.clone();
        let role = match &s.pub_sub {
            Some(pb::settings::PubSub::Publishing(p)) if p.topics.len() > MAX_DECLARED_TOPICS => {
                return Err(tonic::Status::invalid_argument(format!(
                    "a producer declares at most {MAX_DECLARED_TOPICS} topics"
                )))
            }
            Some(pb::settings::PubSub::Subscription(sub))
                if sub.subscriptions.len() > MAX_DECLARED_TOPICS =>
            {
                return Err(tonic::Status::invalid_argument(format!(
                    "a consumer declares at most {MAX_DECLARED_TOPICS} subscriptions"
                )))
            }
            Some(pb::settings::PubSub::Publishing(p)) => {
                let topics: Vec<String> = p
                    .topics
                    .iter()
                    .map(|t| resource_name(Some(t), &meta.namespace))
                    .filter(|t| !t.is_empty())
                    .collect();
                let resources = topics
                    .iter()
                    .map(|t| (Resource::Topic(t.clone()), Perm::PUB))
                    .collect();
                authorize(&self.ctx, meta, resources).map_err(denied_stream)?;
                reply.backoff_policy = Some(pb::RetryPolicy {
                    max_attempts: 3,
                    strategy: Some(pb::retry_policy::Strategy::ExponentialBackoff(
                        pb::ExponentialBackoff {
                            initial: Some(convert::duration(10)),
                            max: Some(convert::duration(1000)),
                            multiplier: 2.0,
                        },
                    )),
                });
                reply.pub_sub = Some(pb::settings::PubSub::Publishing(pb::Publishing {
                    topics: p.topics.clone(),
                    max_body_size: self.settings.max_message_size.min(i32::MAX as usize) as i32,
                    validate_message_type: true,
                }));
                Role::Producer { topics }
            }
            Some(pb::settings::PubSub::Subscription(sub)) => {
                let group = resource_name(sub.group.as_ref(), &meta.namespace);
                let mut resources = vec![(Resource::Group(group.clone()), Perm::SUB)];
                let subscriptions: Vec<_> = sub
                    .subscriptions
                    .iter()
                    .map(|e| {
                        let topic = resource_name(e.topic.as_ref(), &meta.namespace);
                        resources.push((Resource::Topic(topic.clone()), Perm::SUB));
                        session::subscription(topic, e.expression.as_ref())
                    })
                    .collect();
                authorize(&self.ctx, meta, resources).map_err(denied_stream)?;
                let g = self
                    .group(&group)
                    .await
                    .map_err(|s| tonic::Status::invalid_argument(s.message))?;
                let client_type = s
                    .client_type
                    .and_then(|t| pb::ClientType::try_from(t).ok())
                    .unwrap_or(pb::ClientType::PushConsumer);
                let mut merged = sub.clone();
                merged.fifo = Some(g.config.consume_message_orderly);
                merged.receive_batch_size = Some(RECEIVE_BATCH);
                merged.long_polling_timeout = Some(convert::duration(LONG_POLLING_MS));
                reply.pub_sub = Some(pb::settings::PubSub::Subscription(merged));
                let attempts = g.config.retry_max_times.max(0).saturating_add(1);
                reply.backoff_policy = Some(pb::RetryPolicy {
                    max_attempts: attempts,
                    strategy: Some(pb::retry_policy::Strategy::CustomizedBackoff(
                        pb::CustomizedBackoff {
                            next: CONSUMER_BACKOFF_SECS
                                .iter()
                                .chain([3600, 7200].iter())
                                .map(|s| convert::duration(s * 1000))
                                .collect(),
                        },
                    )),
                });
                Role::Consumer {
                    group,
                    client_type,
                    subscriptions,
                }
            }
            None => {
                return Err(tonic::Status::invalid_argument(
                    "the settings declare neither publishing nor subscription",
                ))
            }
        };
        reply.metric = Some(pb::Metric {
            on: false,
            endpoints: None,
        });
        let session = Session {
            channel: channel.clone(),
            role,
            language,
        };
        let hb = session::heartbeat(&meta.client_id, &session);
        if !self.sessions.put(&meta.client_id, session) {
            return Err(tonic::Status::resource_exhausted("too many gRPC clients"));
        }
        // A registration the broker could not take now (a full mailbox) is said in the
        // answer; the client's next heartbeat registers it.
        let registered = match self.ctx.heartbeat(hb).await {
            Ok(_) => ok(),
            Err(e) => error_status(&e),
        };
        Ok(pb::TelemetryCommand {
            status: Some(registered),
            command: Some(pb::telemetry_command::Command::Settings(reply)),
        })
    }

    /// A client left (its Telemetry stream ended, or it said so): it leaves its groups.
    fn client_gone(&self, client_id: &str, by: Owner) {
        let Some(s) = self.sessions.remove(client_id, by) else {
            return;
        };
        let groups = match s.role {
            Role::Producer { topics } => {
                for t in &topics {
                    self.ctx.unregister(client_id, None, Some(t));
                }
                Vec::new()
            }
            Role::Consumer { group, .. } => {
                self.ctx.unregister(client_id, Some(&group), None);
                vec![group]
            }
        };
        self.ctx.connection_closed(s.channel.connection_id, groups);
    }
}

fn one<T: Send + 'static>(items: Vec<T>) -> BoxStream<T> {
    Box::pin(stream::iter(items.into_iter().map(Ok)))
}

#[tonic::async_trait]
impl MessagingService for Messaging {
    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;
    type PullMessageStream = BoxStream<pb::PullMessageResponse>;
    type TelemetryStream = BoxStream<pb::TelemetryCommand>;

    async fn query_route(
        &self,
        req: Request<pb::QueryRouteRequest>,
    ) -> Result<Response<pb::QueryRouteResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let answer = |s: pb::Status, queues| {
            Ok(Response::new(pb::QueryRouteResponse {
                status: Some(s),
                message_queues: queues,
            }))
        };
        if let Err(s) = self.admit(&meta, Vec::new()) {
            return answer(s, Vec::new());
        }
        let name = resource_name(r.topic.as_ref(), &meta.namespace);
        let t = match self.topic(&name) {
            Ok(t) => t,
            Err(s) => return answer(s, Vec::new()),
        };
        let c = &t.config;
        let kind = TopicMessageType::of_topic(c);
        // Queue ids are the physical ones: queue i reads if i < readQueueNums, writes if
        // i < writeQueueNums, within the topic's permission.
        let queues = (0..c.read_queues.max(c.write_queues))
            .map(|i| {
                let read = i < c.read_queues && c.perm & PERM_READ != 0;
                let write = i < c.write_queues && c.perm & PERM_WRITE != 0;
                let p = match (read, write) {
                    (true, true) => pb::Permission::ReadWrite,
                    (true, false) => pb::Permission::Read,
                    (false, true) => pb::Permission::Write,
                    (false, false) => pb::Permission::None,
                };
                self.queue(&name, &meta.namespace, i as i32, p, kind)
            })
            .collect();
        answer(ok(), queues)
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let s = match self.admit(&meta, Vec::new()) {
            Err(s) => s,
            Ok(()) => match self.sessions.heartbeat_of(&meta.client_id) {
                None => status(
                    Code::UnrecognizedClientType,
                    "no settings of this client: open Telemetry and send them first",
                ),
                Some(hb) => match self.ctx.heartbeat(hb).await {
                    Ok(_) => ok(),
                    Err(e) => error_status(&e),
                },
            },
        };
        Ok(Response::new(pb::HeartbeatResponse { status: Some(s) }))
    }

    async fn send_message(
        &self,
        req: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let refuse = |s: pb::Status| {
            Ok(Response::new(pb::SendMessageResponse {
                status: Some(s),
                entries: Vec::new(),
            }))
        };
        if let Err(s) = self.admit(&meta, Vec::new()) {
            return refuse(s);
        }
        if r.messages.is_empty() {
            return refuse(status(Code::BadRequest, "the request holds no message"));
        }
        if r.messages.len() > MAX_SEND_ENTRIES {
            return refuse(status(
                Code::BadRequest,
                format!("the request holds more than {MAX_SEND_ENTRIES} messages"),
            ));
        }
        let mut entries = Vec::with_capacity(r.messages.len());
        for m in r.messages {
            entries.push(self.send_one(&meta, m).await);
        }
        let top = overall(entries.iter().map(|e| &e.status));
        Ok(Response::new(pb::SendMessageResponse {
            status: Some(top),
            entries,
        }))
    }

    async fn query_assignment(
        &self,
        req: Request<pb::QueryAssignmentRequest>,
    ) -> Result<Response<pb::QueryAssignmentResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let answer = |s: pb::Status, a| {
            Ok(Response::new(pb::QueryAssignmentResponse {
                status: Some(s),
                assignments: a,
            }))
        };
        let topic = resource_name(r.topic.as_ref(), &meta.namespace);
        let group = resource_name(r.group.as_ref(), &meta.namespace);
        let resources = consumer_resources(&topic, &group);
        if let Err(s) = self.admit(&meta, resources) {
            return answer(s, Vec::new());
        }
        let t = match self.topic(&topic) {
            Ok(t) => t,
            Err(s) => return answer(s, Vec::new()),
        };
        let g = match self.group(&group).await {
            Ok(g) => g,
            Err(s) => return answer(s, Vec::new()),
        };
        let c = &t.config;
        if c.perm & PERM_READ == 0 || c.read_queues == 0 {
            return answer(
                status(
                    Code::Forbidden,
                    format!("the topic {topic} has no readable queue"),
                ),
                Vec::new(),
            );
        }
        let kind = TopicMessageType::of_topic(c);
        // A FIFO group receives queue by queue (in order); any other group from any queue.
        let ids: Vec<i32> = if g.config.consume_message_orderly {
            (0..c.read_queues as i32).collect()
        } else {
            vec![-1]
        };
        let assignments = ids
            .into_iter()
            .map(|id| pb::Assignment {
                message_queue: Some(self.queue(
                    &topic,
                    &meta.namespace,
                    id,
                    pb::Permission::ReadWrite,
                    kind,
                )),
            })
            .collect();
        answer(ok(), assignments)
    }

    async fn receive_message(
        &self,
        req: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let deadline = grpc_timeout(&req);
        let r = req.into_inner();
        let fail = |s: pb::Status| -> Result<Response<Self::ReceiveMessageStream>, tonic::Status> {
            Ok(Response::new(one(vec![pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Status(s)),
            }])))
        };
        let group = resource_name(r.group.as_ref(), &meta.namespace);
        let mq = r.message_queue.unwrap_or_default();
        let topic = resource_name(mq.topic.as_ref(), &meta.namespace);
        let resources = consumer_resources(&topic, &group);
        if let Err(s) = self.admit(&meta, resources) {
            return fail(s);
        }
        let simple = matches!(
            self.sessions.role(&meta.client_id),
            Some(Role::Consumer {
                client_type: pb::ClientType::SimpleConsumer,
                ..
            })
        );
        let invisible_ms = match r.invisible_duration.as_ref().map(convert::millis) {
            Some(ms) => ms,
            None if simple => {
                return fail(status(
                    Code::IllegalInvisibleTime,
                    "a simple consumer's receive needs an invisible duration",
                ))
            }
            None => 30_000,
        };
        if !(MIN_INVISIBLE_MS..=MAX_INVISIBLE_MS).contains(&invisible_ms) {
            return fail(status(
                Code::IllegalInvisibleTime,
                format!(
                    "the invisible time {invisible_ms} ms is out of range [{MIN_INVISIBLE_MS}, {MAX_INVISIBLE_MS}]"
                ),
            ));
        }
        let t = match self.topic(&topic) {
            Ok(t) => t,
            Err(s) => return fail(s),
        };
        let g = match self.group(&group).await {
            Ok(g) => g,
            Err(s) => return fail(s),
        };
        let mut wait = r
            .long_polling_timeout
            .as_ref()
            .map(|d| Duration::from_millis(convert::millis(d).max(0) as u64))
            .unwrap_or(MAX_POLL)
            .clamp(MIN_POLL, MAX_POLL);
        if let Some(d) = deadline {
            let left = d.saturating_sub(DEADLINE_MARGIN);
            if left.is_zero() {
                return fail(status(
                    Code::IllegalPollingTime,
                    "the call's deadline leaves no time to poll",
                ));
            }
            wait = wait.min(left);
        }
        if let Err(e) = self
            .ctx
            .claim_consumer_protocol(&group, ConsumerProtocol::Tcp)
        {
            return fail(error_status(&e));
        }
        let (expression, expression_type) = session::filter_of(r.filter_expression.as_ref());
        let got = self
            .ctx
            .receive(ReceiveRequest {
                group,
                topic: topic.clone(),
                max: r.batch_size.clamp(1, RECEIVE_BATCH) as usize,
                invisible_ms,
                expression,
                expression_type,
                wait,
                order: g.config.consume_message_orderly,
                max_attempts: None,
                // Apache's proxy pops the whole broker (queue -1) whatever queue the client
                // names: simple consumers name the route's queues round-robin, and an ordered
                // pop holds each queue by itself.
                queue: None,
                start_at_end: false,
            })
            .await;
        let deliveries = match got {
            Ok(d) => d,
            Err(e) => return fail(error_status(&e)),
        };
        let topic_type = Some(TopicMessageType::of_topic(&t.config));
        let mut out = Vec::with_capacity(deliveries.len() + 2);
        out.push(pb::ReceiveMessageResponse {
            content: Some(pb::receive_message_response::Content::Status(
                if deliveries.is_empty() {
                    status(Code::MessageNotFound, "no new message")
                } else {
                    ok()
                },
            )),
        });
        for d in deliveries {
            let Ok((rec, _)) = rocktor_storage::record::decode(&d.record) else {
                continue;
            };
            let m = convert::incoming(
                rec,
                d.seq,
                &meta.namespace,
                Shown {
                    receipt_handle: Some(&d.handle),
                    delivery_attempt: Some(d.attempt),
                    invisible_ms: Some(invisible_ms),
                    topic_type,
                },
            );
            out.push(pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Message(m)),
            });
        }
        out.push(pb::ReceiveMessageResponse {
            content: Some(pb::receive_message_response::Content::DeliveryTimestamp(
                convert::timestamp(rocktor_actors::now_ms()),
            )),
        });
        Ok(Response::new(one(out)))
    }

    async fn ack_message(
        &self,
        req: Request<pb::AckMessageRequest>,
    ) -> Result<Response<pb::AckMessageResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let refuse = |s: pb::Status| {
            Ok(Response::new(pb::AckMessageResponse {
                status: Some(s),
                entries: Vec::new(),
            }))
        };
        let group = resource_name(r.group.as_ref(), &meta.namespace);
        let topic = resource_name(r.topic.as_ref(), &meta.namespace);
        let resources = consumer_resources(&topic, &group);
        if let Err(s) = self.admit(&meta, resources) {
            return refuse(s);
        }
        if r.entries.is_empty() || r.entries.len() > MAX_ACK_ENTRIES {
            return refuse(status(
                Code::BadRequest,
                format!("an ack holds 1 to {MAX_ACK_ENTRIES} entries"),
            ));
        }
        let targets = r
            .entries
            .iter()
            .map(|e| AckTarget::Handle(e.receipt_handle.clone()))
            .collect();
        let outcomes = match self.ctx.ack(&group, &topic, targets).await {
            Ok(o) => o,
            Err(e) => return refuse(error_status(&e)),
        };
        let entries: Vec<pb::AckMessageResultEntry> = r
            .entries
            .into_iter()
            .zip(outcomes)
            .map(|(e, o)| pb::AckMessageResultEntry {
                message_id: e.message_id,
                receipt_handle: e.receipt_handle,
                status: Some(match o {
                    Ok(()) => ok(),
                    Err(h) => status(Code::InvalidReceiptHandle, h.to_string()),
                }),
            })
            .collect();
        let top = overall(entries.iter().map(|e| &e.status));
        Ok(Response::new(pb::AckMessageResponse {
            status: Some(top),
            entries,
        }))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        req: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<pb::ForwardMessageToDeadLetterQueueResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let group = resource_name(r.group.as_ref(), &meta.namespace);
        let topic = resource_name(r.topic.as_ref(), &meta.namespace);
        let resources = consumer_resources(&topic, &group);
        let s = match self.admit(&meta, resources) {
            Err(s) => s,
            Ok(()) => match self
                .ctx
                .forward_to_dlq(&group, &topic, AckTarget::Handle(r.receipt_handle))
                .await
            {
                Ok(Ok(())) => ok(),
                Ok(Err(h)) => status(Code::InvalidReceiptHandle, h.to_string()),
                Err(e) => error_status(&e),
            },
        };
        Ok(Response::new(pb::ForwardMessageToDeadLetterQueueResponse {
            status: Some(s),
        }))
    }

    async fn pull_message(
        &self,
        _req: Request<pb::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "PullMessage is not served; 5.x pull consumers use remoting or ReceiveMessage",
        ))
    }

    async fn update_offset(
        &self,
        req: Request<pb::UpdateOffsetRequest>,
    ) -> Result<Response<pb::UpdateOffsetResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let group = resource_name(r.group.as_ref(), &meta.namespace);
        let mq = r.message_queue.unwrap_or_default();
        let topic = resource_name(mq.topic.as_ref(), &meta.namespace);
        let resources = consumer_resources(&topic, &group);
        let s = match self.admit(&meta, resources) {
            Err(s) => s,
            Ok(()) if mq.id < 0 || r.offset < 0 => status(
                Code::IllegalOffset,
                "a queue id and an offset ≥ 0 are needed",
            ),
            Ok(()) => match self.topic(&topic) {
                Err(s) => s,
                Ok(_) => match self.group(&group).await {
                    Err(s) => s,
                    Ok(_) => match self
                        .ctx
                        .commit_offset(&group, &topic, mq.id as u32, r.offset)
                        .await
                    {
                        Ok(()) => ok(),
                        Err(e) => error_status(&e),
                    },
                },
            },
        };
        Ok(Response::new(pb::UpdateOffsetResponse { status: Some(s) }))
    }

    async fn get_offset(
        &self,
        req: Request<pb::GetOffsetRequest>,
    ) -> Result<Response<pb::GetOffsetResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let group = resource_name(r.group.as_ref(), &meta.namespace);
        let mq = r.message_queue.unwrap_or_default();
        let topic = resource_name(mq.topic.as_ref(), &meta.namespace);
        let resources = consumer_resources(&topic, &group);
        let (s, offset) = match self.admit(&meta, resources) {
            Err(s) => (s, 0),
            Ok(()) if mq.id < 0 => (status(Code::BadRequest, "a queue id ≥ 0 is needed"), 0),
            Ok(()) => match self
                .ctx
                .query_offset(&group, &topic, mq.id as u32, false)
                .await
            {
                Ok(Some(o)) => (ok(), o),
                Ok(None) => (status(Code::OffsetNotFound, "no committed offset"), 0),
                Err(e) => (error_status(&e), 0),
            },
        };
        Ok(Response::new(pb::GetOffsetResponse {
            status: Some(s),
            offset,
        }))
    }

    async fn query_offset(
        &self,
        req: Request<pb::QueryOffsetRequest>,
    ) -> Result<Response<pb::QueryOffsetResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let mq = r.message_queue.unwrap_or_default();
        let topic = resource_name(mq.topic.as_ref(), &meta.namespace);
        let answer = |s, offset| {
            Ok(Response::new(pb::QueryOffsetResponse {
                status: Some(s),
                offset,
            }))
        };
        if let Err(s) = self.admit(&meta, vec![(Resource::Topic(topic.clone()), Perm::SUB)]) {
            return answer(s, 0);
        }
        if mq.id < 0 {
            return answer(status(Code::BadRequest, "a queue id ≥ 0 is needed"), 0);
        }
        let stats = match self.ctx.queue_stats(&topic, mq.id as u32) {
            Ok(s) => s,
            Err(e) => return answer(error_status(&e), 0),
        };
        let offset = match pb::QueryOffsetPolicy::try_from(r.query_offset_policy) {
            Ok(pb::QueryOffsetPolicy::Beginning) => stats.min(),
            Ok(pb::QueryOffsetPolicy::End) => stats.max(),
            Ok(pb::QueryOffsetPolicy::Timestamp) => {
                let ts = r.timestamp.as_ref().map(convert::timestamp_ms).unwrap_or(0);
                match self
                    .ctx
                    .search_offset(&topic, mq.id as u32, ts, false)
                    .await
                {
                    Ok(o) => o,
                    Err(e) => return answer(error_status(&e), 0),
                }
            }
            Err(_) => return answer(status(Code::BadRequest, "unknown query offset policy"), 0),
        };
        answer(ok(), offset.min(i64::MAX as u64) as i64)
    }

    async fn end_transaction(
        &self,
        req: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let topic = resource_name(r.topic.as_ref(), &meta.namespace);
        let s = match self.admit(&meta, vec![(Resource::Topic(topic.clone()), Perm::PUB)]) {
            Err(s) => s,
            Ok(()) if r.transaction_id.trim().is_empty() => {
                status(Code::InvalidTransactionId, "the transaction id is blank")
            }
            Ok(()) => {
                let commit = match pb::TransactionResolution::try_from(r.resolution) {
                    Ok(pb::TransactionResolution::Commit) => Some(true),
                    Ok(pb::TransactionResolution::Rollback) => Some(false),
                    _ => None,
                };
                match (
                    commit,
                    self.ctx.handle_key.decode_half(&topic, &r.transaction_id),
                ) {
                    (None, _) => status(
                        Code::BadRequest,
                        "the resolution is neither COMMIT nor ROLLBACK",
                    ),
                    (_, Err(_)) => status(
                        Code::InvalidTransactionId,
                        format!(
                            "the transaction id {} is not one of this topic's",
                            r.transaction_id
                        ),
                    ),
                    (Some(commit), Ok(seq)) => {
                        match self
                            .ctx
                            .end_transaction(&topic, seq, seq, Some(commit))
                            .await
                        {
                            Ok(()) => ok(),
                            Err(e) => error_status(&e),
                        }
                    }
                }
            }
        };
        Ok(Response::new(pb::EndTransactionResponse {
            status: Some(s),
        }))
    }

    async fn telemetry(
        &self,
        req: Request<Streaming<pb::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, tonic::Status> {
        let meta = CallMeta::of(&req);
        if meta.client_id.is_empty() {
            return Err(tonic::Status::invalid_argument(
                "the x-mq-client-id header is missing",
            ));
        }
        authorize(&self.ctx, &meta, Vec::new()).map_err(denied_stream)?;
        let (tx, rx) = tokio::sync::mpsc::channel(session::TELEMETRY_QUEUE);
        let channel = Arc::new(GrpcChannel::new(
            meta.remote,
            meta.namespace.clone(),
            tx.clone(),
            self.ctx.clone(),
        ));
        let mut inbound = req.into_inner();
        let svc = self.clone();
        tokio::spawn(async move {
            use tokio_stream::StreamExt as _;
            let mut joined: Vec<String> = Vec::new();
            while let Some(cmd) = inbound.next().await {
                let Ok(cmd) = cmd else { break };
                // Answers to commands this server never sends are left unread.
                if let Some(pb::telemetry_command::Command::Settings(s)) = cmd.command {
                    if let Some(pb::settings::PubSub::Subscription(sub)) = &s.pub_sub {
                        let g = resource_name(sub.group.as_ref(), &meta.namespace);
                        if !g.is_empty() && !joined.contains(&g) && joined.len() < 16 {
                            joined.push(g);
                        }
                    }
                    let answer = svc.on_settings(&meta, &channel, s).await;
                    let failed = answer.is_err();
                    if tx.send(answer).await.is_err() || failed {
                        break;
                    }
                }
            }
            svc.client_gone(&meta.client_id, Owner::Stream(channel.connection_id));
            // Whatever session this stream made last, the groups it joined forget its
            // channel now rather than at member expiry.
            svc.ctx.connection_closed(channel.connection_id, joined);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn notify_client_termination(
        &self,
        req: Request<pb::NotifyClientTerminationRequest>,
    ) -> Result<Response<pb::NotifyClientTerminationResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let s = match self.admit(&meta, Vec::new()) {
            Err(s) => s,
            Ok(()) => {
                self.client_gone(&meta.client_id, Owner::Host(meta.remote.ip()));
                ok()
            }
        };
        Ok(Response::new(pb::NotifyClientTerminationResponse {
            status: Some(s),
        }))
    }

    async fn change_invisible_duration(
        &self,
        req: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<pb::ChangeInvisibleDurationResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let answer = |s, handle| {
            Ok(Response::new(pb::ChangeInvisibleDurationResponse {
                status: Some(s),
                receipt_handle: handle,
            }))
        };
        let group = resource_name(r.group.as_ref(), &meta.namespace);
        let topic = resource_name(r.topic.as_ref(), &meta.namespace);
        let resources = consumer_resources(&topic, &group);
        if let Err(s) = self.admit(&meta, resources) {
            return answer(s, String::new());
        }
        let ms = match r.invisible_duration.as_ref().map(convert::millis) {
            Some(ms) if (0..=MAX_INVISIBLE_MS).contains(&ms) => ms,
            _ => {
                return answer(
                    status(
                        Code::IllegalInvisibleTime,
                        format!("the invisible duration must be within [0, {MAX_INVISIBLE_MS}] ms"),
                    ),
                    String::new(),
                )
            }
        };
        match self
            .ctx
            .change_invisible(&group, &topic, AckTarget::Handle(r.receipt_handle), ms)
            .await
        {
            Ok(Ok((handle, _))) => answer(ok(), handle),
            Ok(Err(h)) => answer(
                status(Code::InvalidReceiptHandle, h.to_string()),
                String::new(),
            ),
            Err(e) => answer(error_status(&e), String::new()),
        }
    }

    async fn recall_message(
        &self,
        req: Request<pb::RecallMessageRequest>,
    ) -> Result<Response<pb::RecallMessageResponse>, tonic::Status> {
        let meta = CallMeta::of(&req);
        let r = req.into_inner();
        let topic = resource_name(r.topic.as_ref(), &meta.namespace);
        let (s, id) = match self.admit(&meta, vec![(Resource::Topic(topic.clone()), Perm::PUB)]) {
            Err(s) => (s, String::new()),
            Ok(()) => match self.ctx.recall(&topic, &r.recall_handle).await {
                Ok(id) => (ok(), id),
                Err(e) => (error_status(&e), String::new()),
            },
        };
        Ok(Response::new(pb::RecallMessageResponse {
            status: Some(s),
            message_id: id,
        }))
    }
}

/// The RPC label of a request path: one of the service's methods, anything else `unknown`
/// (so made-up paths cannot spend the metrics' series budget).
pub fn method_label(path: &str) -> &'static str {
    const METHODS: [&str; 16] = [
        "QueryRoute",
        "Heartbeat",
        "SendMessage",
        "QueryAssignment",
        "ReceiveMessage",
        "AckMessage",
        "ForwardMessageToDeadLetterQueue",
        "PullMessage",
        "UpdateOffset",
        "GetOffset",
        "QueryOffset",
        "EndTransaction",
        "Telemetry",
        "NotifyClientTermination",
        "ChangeInvisibleDuration",
        "RecallMessage",
    ];
    let name = path
        .strip_prefix("/apache.rocketmq.v2.MessagingService/")
        .unwrap_or("");
    METHODS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_fold_into_one_status() {
        let (a, b) = (ok(), status(Code::InvalidReceiptHandle, "x"));
        let (a, b) = (Some(a), Some(b));
        assert_eq!(overall([&a, &a]).code, Code::Ok as i32);
        assert_eq!(overall([&a, &b]).code, Code::MultipleResults as i32);
    }

    #[test]
    fn grpc_timeouts_parse() {
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("grpc-timeout", "2500m".parse().unwrap());
        assert_eq!(grpc_timeout(&r), Some(Duration::from_millis(2500)));
    }
}

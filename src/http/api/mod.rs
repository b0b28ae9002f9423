//! The admin REST API under `/api/v1/` (JSON): broker, topics, groups and their consumers and
//! lag, messages (by id, key, time; body, trace, delivery), dead letters, ACL accounts — with
//! its OpenAPI 3 document at `/api/v1/openapi.json`, generated from the handlers' annotations.
//! The dashboard at `/` reads it. Every route calls the `BrokerContext` flows the remoting
//! admin codes call.
//!
//! With ACL on, every route needs an admin account of the shared authenticator, signed as the
//! HTTP messaging API signs (`Authorization: MQ AK:Signature`, with `Date` or a signed
//! `x-mq-date`), so no secret travels; a body must then be bound to the signature by a signed
//! `x-mq-content-sha256` (hex). Failures are `{"code": .., "message": ..}` with a 4xx for bad
//! input.

mod accounts;
mod alarms;
mod broker;
mod groups;
mod messages;
mod topics;

use super::access::{authenticate, ApiError};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use rocktor_actors::{BrokerContext, BrokerError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::OpenApi;

/// The largest JSON body a route takes.
const MAX_BODY: usize = 1 << 20;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rocktor admin REST API",
        description = "Topics, groups, consumers, messages, dead letters and ACL accounts of a rocktor broker. With ACL on, requests are signed by an admin account (`Authorization: MQ AK:Signature` over the HTTP API's string to sign; `x-mq-date` may stand in for `Date`; a body needs a signed `x-mq-content-sha256`)."
    ),
    paths(
        broker::info, broker::overview, broker::retention,
        topics::list, topics::create, topics::get, topics::update, topics::delete,
        groups::list, groups::create, groups::get, groups::update, groups::delete,
        groups::consumers, groups::lag, groups::reset_offset,
        groups::dead_letters, groups::resend_dead_letters,
        messages::search, messages::by_id, messages::body, messages::delivery, messages::trace,
        accounts::list, accounts::upsert, accounts::delete,
        alarms::get, alarms::set_rules, alarms::reset_rules,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "broker"), (name = "topics"), (name = "groups"), (name = "messages"),
        (name = "acl"), (name = "alarms")
    )
)]
struct ApiDoc;

/// Registers the REST routes (they need a broker in the app data).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/openapi.json", web::get().to(openapi_json))
            .route("/broker", web::get().to(broker::info))
            .route("/overview", web::get().to(broker::overview))
            .route("/retention", web::get().to(broker::retention))
            .route("/topics", web::get().to(topics::list))
            .route("/topics", web::post().to(topics::create))
            .route("/topics/{topic}", web::get().to(topics::get))
            .route("/topics/{topic}", web::put().to(topics::update))
            .route("/topics/{topic}", web::delete().to(topics::delete))
            .route("/topics/{topic}/messages", web::get().to(messages::search))
            .route(
                "/topics/{topic}/messages/{msg_id}",
                web::get().to(messages::by_id),
            )
            .route(
                "/topics/{topic}/messages/{msg_id}/body",
                web::get().to(messages::body),
            )
            .route(
                "/topics/{topic}/messages/{msg_id}/delivery",
                web::get().to(messages::delivery),
            )
            .route("/messages/{msg_id}/trace", web::get().to(messages::trace))
            .route("/groups", web::get().to(groups::list))
            .route("/groups", web::post().to(groups::create))
            .route("/groups/{group}", web::get().to(groups::get))
            .route("/groups/{group}", web::put().to(groups::update))
            .route("/groups/{group}", web::delete().to(groups::delete))
            .route(
                "/groups/{group}/consumers",
                web::get().to(groups::consumers),
            )
            .route("/groups/{group}/lag", web::get().to(groups::lag))
            .route(
                "/groups/{group}/reset-offset",
                web::post().to(groups::reset_offset),
            )
            .route("/groups/{group}/dlq", web::get().to(groups::dead_letters))
            .route(
                "/groups/{group}/dlq/resend",
                web::post().to(groups::resend_dead_letters),
            )
            .route("/alarms", web::get().to(alarms::get))
            .route("/alarms/rules", web::put().to(alarms::set_rules))
            .route("/alarms/rules", web::delete().to(alarms::reset_rules))
            .route("/acl/accounts", web::get().to(accounts::list))
            .route("/acl/accounts", web::post().to(accounts::upsert))
            .route(
                "/acl/accounts/{access_key}",
                web::delete().to(accounts::delete),
            )
            .app_data(web::PathConfig::default().error_handler(|e, _| bad_input(e.to_string())))
            .app_data(web::QueryConfig::default().error_handler(|e, _| bad_input(e.to_string())))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(RestError(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NoSuchRoute",
                    "No such route or method under /api/v1 (see /api/v1/openapi.json).",
                )))
            })),
    );
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "broker",
    responses((status = 200, description = "The OpenAPI 3 document")))]
async fn openapi_json(_: Admin) -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The OpenAPI document, for tests and `rocktor openapi`.
pub fn openapi_document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// A failure as every route answers it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: TopicNotExist, InvalidArgument, AccessDenied, …
    code: String,
    message: String,
}

/// A REST failure: the shared `ApiError`, written as JSON.
#[derive(Debug)]
pub struct RestError(pub ApiError);

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}

impl ResponseError for RestError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.0.status).json(ErrorBody {
            code: self.0.code.to_string(),
            message: self.0.message.clone(),
        })
    }
}

impl From<BrokerError> for RestError {
    fn from(e: BrokerError) -> Self {
        let status = match &e {
            BrokerError::SystemBusy | BrokerError::LimitExceeded(_) => {
                Some(StatusCode::TOO_MANY_REQUESTS)
            }
            BrokerError::WriteUnavailable(_) | BrokerError::ShuttingDown => {
                Some(StatusCode::SERVICE_UNAVAILABLE)
            }
            _ => None,
        };
        let mut e = ApiError::from(e);
        // The messaging API's name for a missing group is its "consumer"; here it is a group.
        if e.code == "ConsumerNotExist" {
            e.code = "GroupNotExist";
        }
        if let Some(s) = status {
            e.status = s;
        }
        RestError(e)
    }
}

impl From<ApiError> for RestError {
    /// The messaging API's statuses are the SDKs'; a REST client expects 401 for missing or
    /// stale credentials.
    fn from(mut e: ApiError) -> Self {
        if matches!(e.code, "MissingAuthorizationHeader" | "TimeExpired") {
            e.status = StatusCode::UNAUTHORIZED;
        }
        RestError(e)
    }
}

/// Refuses what a browser sends on another site's behalf: a page elsewhere must not drive
/// the API with the user's network position (a global allow list, or no ACL at all).
fn same_origin(req: &HttpRequest) -> Result<(), RestError> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let cross = header("sec-fetch-site").is_some_and(|s| s == "cross-site" || s == "same-site");
    // A browser names the page's origin on writes; it must be this host's (a sandboxed
    // page's "null" never is).
    let foreign_origin = header("origin").is_some_and(|o| {
        o.split_once("://")
            .is_none_or(|(_, rest)| Some(rest) != header("host"))
    });
    if cross || foreign_origin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "CrossOriginRefused",
            "the REST API answers requests from its own pages and from non-browser clients only",
        )
        .into());
    }
    Ok(())
}

fn bad_input(message: impl Into<String>) -> actix_web::Error {
    RestError(ApiError::invalid(message)).into()
}

pub type RestResult = Result<HttpResponse, RestError>;

/// The broker, for an admin: extracting it checks the request's credentials when ACL is on.
pub struct Admin(pub BrokerContext);

fn broker_of(req: &HttpRequest) -> Result<BrokerContext, RestError> {
    req.app_data::<web::Data<BrokerContext>>()
        .map(|b| b.get_ref().clone())
        .ok_or_else(|| {
            RestError(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NoBroker",
                "this HTTP server has no broker",
            ))
        })
}

impl FromRequest for Admin {
    type Error = RestError;
    type Future = std::future::Ready<Result<Admin, RestError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(broker_of(req).and_then(|b| {
            same_origin(req)?;
            authenticate(&b, req, Vec::new(), true)?;
            Ok(Admin(b))
        }))
    }
}

/// A JSON body of at most `MAX_BODY` bytes. With ACL on and credentials given, the body must
/// match the signed `x-mq-content-sha256`, so a signature cannot carry another body.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = RestError;
    type Future = LocalBoxFuture<'static, Result<Body<T>, RestError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bound = broker_of(req).is_ok_and(|b| b.auth.enabled())
            && req.headers().contains_key("authorization");
        let wanted = req
            .headers()
            .get("x-mq-content-sha256")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_ascii_lowercase());
        let json = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let mut payload = payload.take();
        Box::pin(async move {
            // Only JSON: a browser cannot send it cross-site without a CORS preflight, which
            // this API never grants.
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    "the body must be Content-Type: application/json",
                )
                .into());
            }
            let mut buf = Vec::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::invalid(format!("cannot read the body: {e}")))?;
                if buf.len() + chunk.len() > MAX_BODY {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "BodyTooLarge",
                        format!("the body is over {MAX_BODY} bytes"),
                    )
                    .into());
                }
                buf.extend_from_slice(&chunk);
            }
            if bound {
                let digest = ring::digest::digest(&ring::digest::SHA256, &buf);
                let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                if wanted.as_deref() != Some(hex.as_str()) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "ContentDigestMismatch",
                        "a signed request's body needs a signed x-mq-content-sha256 that matches it",
                    )
                    .into());
                }
            }
            serde_json::from_slice(&buf).map(Body).map_err(|e| {
                ApiError::invalid(format!("the body is not the JSON wanted: {e}")).into()
            })
        })
    }
}

fn ok(value: impl Serialize) -> RestResult {
    Ok(HttpResponse::Ok().json(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_route_it_serves() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/api/v1/topics",
            "/api/v1/topics/{topic}",
            "/api/v1/groups/{group}/lag",
            "/api/v1/acl/accounts/{access_key}",
            "/api/v1/topics/{topic}/messages/{msg_id}/body",
        ] {
            assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
        }
    }
}

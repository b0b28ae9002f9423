//! What the HTTP front end's two APIs share: the failure they answer with (a stable code, a
//! status, a message; the messaging API writes it as XML, the REST API as JSON) and the
//! request check of ACL on, through the shared authenticator with the HTTP signature scheme.

use super::signature::{self, CredentialError};
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use rocktor_actors::auth::{AccessRequest, AuthError, Perm, Resource, LOCALHOST};
use rocktor_actors::{BrokerContext, BrokerError};

/// One failure, as the seeds' error table names it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    pub fn no_message() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "MessageNotExist",
            "Message not exist.",
        )
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let msg = e.to_string();
        let (status, code) = match e {
            BrokerError::TopicNotExist(_) => (StatusCode::NOT_FOUND, "TopicNotExist"),
            BrokerError::GroupNotExist(_) => (StatusCode::NOT_FOUND, "ConsumerNotExist"),
            BrokerError::NotFound(_) => (StatusCode::NOT_FOUND, "MessageNotExist"),
            BrokerError::InvalidParameter(_)
            | BrokerError::MessageIllegal(_)
            | BrokerError::IllegalDeliveryTime(_)
            | BrokerError::MessageTypeMismatch(_)
            | BrokerError::TransactionMismatch(_)
            | BrokerError::IllegalOperation(_)
            | BrokerError::NotSupported(_)
            | BrokerError::SubscriptionParseFailed(_)
            | BrokerError::SubscriptionNotExist(_)
            | BrokerError::SubscriptionNotLatest(_) => (StatusCode::BAD_REQUEST, "InvalidArgument"),
            BrokerError::NoPermission(_) => (StatusCode::FORBIDDEN, "AccessDenied"),
            BrokerError::SystemBusy | BrokerError::LimitExceeded(_) => {
                (StatusCode::BAD_REQUEST, "QpsLimitExceeded")
            }
            BrokerError::WriteUnavailable(_)
            | BrokerError::ShuttingDown
            | BrokerError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        ApiError::new(status, code, msg)
    }
}

/// With ACL on: the request's signature, Date and permissions, through the shared
/// authenticator. A white-listed address passes without credentials, as on remoting.
/// `admin_only`: the account must be an admin one (the REST API and the dashboard).
pub fn authenticate(
    b: &BrokerContext,
    req: &HttpRequest,
    resources: Vec<(Resource, Perm)>,
    admin_only: bool,
) -> Result<(), ApiError> {
    if !b.auth.enabled() {
        return Ok(());
    }
    let remote = req.peer_addr().map(|a| a.ip()).unwrap_or(LOCALHOST);
    let headers = req.headers();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let credentials = match authorization {
        None => None,
        Some(v) => Some(signature::parse_authorization(v).map_err(credential_error)?),
    };
    let string_to_sign;
    let access = match credentials {
        None => AccessRequest {
            remote,
            access_key: None,
            signature: None,
            fields: Vec::new(),
            body: &[],
            string_to_sign: None,
            admin_only,
            resources,
        },
        Some((ak, sig)) => {
            // Browsers may not set Date; a signed `x-mq-date` (in the string to sign with the
            // other x-mq-* headers) stands in for it.
            let date = headers
                .get("date")
                .or_else(|| headers.get("x-mq-date"))
                .and_then(|v| v.to_str().ok());
            signature::check_date(date, std::time::SystemTime::now()).map_err(credential_error)?;
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or_else(|| req.uri().path());
            string_to_sign = signature::string_to_sign(req.method().as_str(), headers, target);
            AccessRequest {
                remote,
                access_key: Some(ak),
                signature: Some(sig),
                fields: Vec::new(),
                body: &[],
                string_to_sign: Some(&string_to_sign),
                admin_only,
                resources,
            }
        }
    };
    b.auth.check(&access).map_err(|e| match e {
        AuthError::NoCredentials => ApiError::new(
            StatusCode::BAD_REQUEST,
            "MissingAuthorizationHeader",
            "The Authorization header is missing.",
        ),
        AuthError::UnknownAccessKey(_) => ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The AccessKey Id you provided is not exist.",
        ),
        AuthError::BadSignature(_) => ApiError::new(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ),
        e @ (AuthError::NotAdmin(_) | AuthError::Denied { .. }) => {
            ApiError::new(StatusCode::FORBIDDEN, "AccessDenied", e.to_string())
        }
    })
}

fn credential_error(e: CredentialError) -> ApiError {
    let bad = StatusCode::BAD_REQUEST;
    match e {
        CredentialError::InvalidAuthorization => ApiError::new(
            bad,
            "InvalidAuthorizationHeader",
            "The Authorization header is not 'MQ AccessKeyId:Signature'.",
        ),
        CredentialError::MissingDate => {
            ApiError::new(bad, "MissingDateHeader", "The Date header is missing.")
        }
        CredentialError::InvalidDate => ApiError::new(
            bad,
            "InvalidDateHeader",
            "The Date header is not an RFC 1123 date.",
        ),
        CredentialError::TimeExpired => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "TimeExpired",
            "The Date header is more than 15 minutes off the server's time.",
        ),
    }
}

//! The one place that maps domain errors (and header errors) to remoting response codes.

use super::codes::response as rc;
use super::command::RemotingCommand;
use super::ext::FieldError;
use rocktor_actors::BrokerError;

pub fn code_of(e: &BrokerError) -> i32 {
    match e {
        BrokerError::TopicNotExist(_) => rc::TOPIC_NOT_EXIST,
        BrokerError::MessageIllegal(_) | BrokerError::IllegalDeliveryTime(_) => rc::MESSAGE_ILLEGAL,
        BrokerError::InvalidParameter(_) => rc::INVALID_PARAMETER,
        BrokerError::NoPermission(_) => rc::NO_PERMISSION,
        BrokerError::SystemBusy | BrokerError::LimitExceeded(_) => rc::SYSTEM_BUSY,
        BrokerError::GroupNotExist(_) => rc::SUBSCRIPTION_GROUP_NOT_EXIST,
        BrokerError::SubscriptionNotExist(_) => rc::SUBSCRIPTION_NOT_EXIST,
        BrokerError::SubscriptionNotLatest(_) => rc::SUBSCRIPTION_NOT_LATEST,
        BrokerError::SubscriptionParseFailed(_) => rc::SUBSCRIPTION_PARSE_FAILED,
        BrokerError::Storage(_) => rc::SYSTEM_ERROR,
        BrokerError::WriteUnavailable(_) => rc::SERVICE_NOT_AVAILABLE,
        BrokerError::ShuttingDown => rc::SERVICE_NOT_AVAILABLE,
        BrokerError::NotFound(_) => rc::QUERY_NOT_FOUND,
        BrokerError::NotSupported(_) | BrokerError::TransactionMismatch(_) => rc::SYSTEM_ERROR,
        BrokerError::MessageTypeMismatch(_) => rc::MESSAGE_ILLEGAL,
        BrokerError::IllegalOperation(_) => rc::ILLEGAL_OPERATION,
    }
}

pub fn from_broker(req: &RemotingCommand, e: &BrokerError) -> RemotingCommand {
    RemotingCommand::response_to(req, code_of(e)).with_remark(e.to_string())
}

pub fn from_field(req: &RemotingCommand, e: &FieldError) -> RemotingCommand {
    RemotingCommand::response_to(req, rc::SYSTEM_ERROR).with_remark(e.to_string())
}

pub fn not_supported(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, rc::REQUEST_CODE_NOT_SUPPORTED)
        .with_remark(format!(" request type {} not supported", req.code))
}

/// Handler result: either a response or nothing (oneway).
pub type Reply = Option<RemotingCommand>;

/// Errors a handler can hit; `?` converts both kinds.
#[derive(Debug)]
pub enum HandlerError {
    Field(FieldError),
    Broker(BrokerError),
    BadBody(String),
}

impl From<FieldError> for HandlerError {
    fn from(e: FieldError) -> Self {
        HandlerError::Field(e)
    }
}

impl From<BrokerError> for HandlerError {
    fn from(e: BrokerError) -> Self {
        HandlerError::Broker(e)
    }
}

impl HandlerError {
    pub fn into_response(self, req: &RemotingCommand) -> RemotingCommand {
        match self {
            HandlerError::Field(e) => from_field(req, &e),
            HandlerError::Broker(e) => from_broker(req, &e),
            HandlerError::BadBody(msg) => RemotingCommand::response_to(req, rc::SYSTEM_ERROR)
                .with_remark(format!("malformed request body: {msg}")),
        }
    }
}

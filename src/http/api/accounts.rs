//! `/api/v1/acl/accounts`: the ACL 1.0 accounts in force (secrets left out), create or
//! update one, delete one — the changes the ACL admin codes make, stored before they apply.

use super::{ok, Admin, ApiError, Body, RestError, RestResult};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use rocktor_actors::auth::{AccountPatch, AclAdminError};
use rocktor_actors::service::acl::AclChangeError;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

fn change_error(e: AclChangeError) -> RestError {
    match e {
        AclChangeError::Refused(AclAdminError::Off) => RestError(ApiError::new(
            StatusCode::CONFLICT,
            "AclOff",
            AclAdminError::Off.to_string(),
        )),
        AclChangeError::Refused(AclAdminError::Invalid(m)) => RestError(ApiError::invalid(m)),
        AclChangeError::Storage(e) => e.into(),
    }
}

/// The global allow list and the accounts, secrets left out.
#[utoipa::path(operation_id = "accounts_list", get, path = "/api/v1/acl/accounts", tag = "acl",
    responses((status = 200, description = "globalWhiteAddrs and accounts"),
        (status = 409, body = super::ErrorBody)))]
pub async fn list(Admin(b): Admin) -> RestResult {
    let Some((source, version)) = b.auth.listing() else {
        return Err(change_error(AclChangeError::Refused(AclAdminError::Off)));
    };
    let accounts: Vec<_> = source.accounts.values().map(|a| a.redacted()).collect();
    ok(json!({
        "globalWhiteAddrs": source.global_white,
        "accounts": accounts,
        "version": {"timestamp": version.timestamp_ms, "counter": version.counter},
    }))
}

/// An account to create, or the fields of one to change.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountBody {
    access_key: String,
    /// Required for a new account.
    secret_key: Option<String>,
    white_remote_address: Option<String>,
    admin: Option<bool>,
    /// DENY, PUB, SUB or PUB|SUB.
    default_topic_perm: Option<String>,
    default_group_perm: Option<String>,
    /// `name=PERM` entries.
    topic_perms: Option<Vec<String>>,
    group_perms: Option<Vec<String>>,
}

/// Creates or updates an account (stored, then in force).
#[utoipa::path(operation_id = "accounts_upsert", post, path = "/api/v1/acl/accounts", tag = "acl", request_body = AccountBody,
    responses((status = 200, description = "Stored and in force"),
        (status = 400, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn upsert(Admin(b): Admin, Body(a): Body<AccountBody>) -> RestResult {
    let access_key = a.access_key.clone();
    let patch = AccountPatch {
        access_key: a.access_key,
        secret_key: a.secret_key.filter(|s| !s.is_empty()),
        white_remote_address: a.white_remote_address,
        admin: a.admin,
        default_topic_perm: a.default_topic_perm.filter(|s| !s.is_empty()),
        default_group_perm: a.default_group_perm.filter(|s| !s.is_empty()),
        topic_perms: a.topic_perms,
        group_perms: a.group_perms,
    };
    b.acl_upsert(patch).await.map_err(change_error)?;
    ok(json!({"accessKey": access_key}))
}

/// Deletes an account.
#[utoipa::path(operation_id = "accounts_delete", delete, path = "/api/v1/acl/accounts/{access_key}", tag = "acl",
    params(("access_key" = String, Path)),
    responses((status = 204), (status = 400, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn delete(Admin(b): Admin, access_key: web::Path<String>) -> RestResult {
    b.acl_delete(&access_key).await.map_err(change_error)?;
    Ok(HttpResponse::NoContent().finish())
}

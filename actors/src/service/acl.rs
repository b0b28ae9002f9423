//! Runtime ACL changes (the ACL 1.0 admin codes, later the REST API): each change is planned
//! against the accounts in force, stored in `meta` (so it survives a restart) and only then
//! put in force. One change at a time.

use super::BrokerContext;
use crate::auth::{AccountPatch, AclAdminError, AclChange, Authenticator};
use crate::error::{written, BrokerError};
use rocktor_storage::keys::{self, MetaKind};
use rocktor_storage::{cf, AppendBatch};

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AclChangeError {
    #[error(transparent)]
    Refused(#[from] AclAdminError),
    #[error("the ACL change was not stored: {0}")]
    Storage(#[from] BrokerError),
}

impl BrokerContext {
    pub async fn acl_upsert(&self, patch: AccountPatch) -> Result<(), AclChangeError> {
        self.acl_change(move |auth| auth.plan_upsert(patch)).await
    }

    pub async fn acl_delete(&self, access_key: &str) -> Result<(), AclChangeError> {
        let ak = access_key.to_string();
        self.acl_change(move |auth| auth.plan_delete(&ak)).await
    }

    pub async fn acl_set_global_white(&self, list: Vec<String>) -> Result<(), AclChangeError> {
        self.acl_change(move |auth| auth.plan_global_white(list))
            .await
    }

    /// Plans, stores, then applies one change, in a task of its own: a caller that goes away
    /// (its connection closed) cannot leave a stored change unapplied.
    async fn acl_change(
        &self,
        plan: impl FnOnce(&Authenticator) -> Result<AclChange, AclAdminError> + Send + 'static,
    ) -> Result<(), AclChangeError> {
        let ctx = self.clone();
        let task = tokio::spawn(async move {
            let _one = ctx.auth.change_lock().await;
            let change = plan(&ctx.auth)?;
            ctx.acl_commit(change).await
        });
        task.await
            .map_err(|e| BrokerError::Storage(format!("ACL change task failed: {e}")))?
    }

    async fn acl_commit(&self, change: AclChange) -> Result<(), AclChangeError> {
        let (name, value) = change.stored().map_err(AclAdminError::Invalid)?;
        let key = keys::meta_key(MetaKind::Acl, &name);
        let mut batch = AppendBatch::default();
        match value {
            Some(v) => batch.puts.push((cf::META, key, v)),
            None => batch.deletes.push((cf::META, key)),
        }
        written(self.writer.submit(batch).await)?;
        tracing::info!(change = %change.summary(), "ACL changed at run time");
        self.auth.apply(change);
        Ok(())
    }
}

//! The ACL file (`--acl FILE`, Apache's plain_acl.yml): read at start, and read again when it
//! changes (checked every few seconds), without a restart. A file that no longer parses keeps
//! the accounts in force and says why in the log.

use rocktor_actors::auth::{AclSource, Authenticator};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the file's modification time is looked at.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

pub fn load(path: &Path) -> Result<AclSource, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    AclSource::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the file into `auth` whenever its modification time changes. File-system calls
/// block, so each look runs on the blocking pool.
pub fn watch(path: PathBuf, auth: Arc<Authenticator>) {
    actix::spawn(async move {
        let p = path.clone();
        let mut seen = tokio::task::spawn_blocking(move || modified(&p))
            .await
            .ok()
            .flatten();
        loop {
            tokio::time::sleep(RELOAD_CHECK).await;
            let p = path.clone();
            let look = tokio::task::spawn_blocking(move || {
                let now = modified(&p);
                (now != seen).then(|| (now, load(&p)))
            })
            .await;
            let Ok(Some((now, loaded))) = look else {
                continue;
            };
            seen = now;
            match loaded {
                Ok(config) => {
                    tracing::info!(accounts = config.accounts.len(), file = %path.display(), "ACL file reloaded");
                    auth.replace_file(config);
                }
                Err(e) => {
                    tracing::error!(error = %e, "ACL file not reloaded; the accounts in force stay")
                }
            }
        }
    });
}

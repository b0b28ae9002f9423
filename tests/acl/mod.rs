//! ACL 1.0 on the broker port (issue #11, first part): Apache's plain_acl.yml accounts, signed
//! requests (Base64 HmacSHA1), topic and group permissions, admin-only codes, allow lists, and
//! a reload of the file while the broker runs.

use crate::support::*;
use rocktor::client::RemotingClient;
use rocktor::remoting::command::RemotingCommand;
use std::time::Duration;

const ACL: &str = r#"
globalWhiteRemoteAddresses: []
accounts:
  - accessKey: AdminAK
    secretKey: admin-secret
    admin: true
  - accessKey: PubAK
    secretKey: pub-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms: [ "AclT=PUB" ]
  - accessKey: SubAK
    secretKey: sub-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms: [ "AclT=SUB" ]
    groupPerms: [ "AclG=SUB" ]
"#;

fn signed(mut cmd: RemotingCommand, ak: &str, sk: &str) -> RemotingCommand {
    rocktor::client::sign_request(&mut cmd, ak, sk);
    cmd
}

async fn code(c: &RemotingClient, cmd: RemotingCommand) -> (i32, String) {
    let r = c.request(cmd, TIMEOUT).await.unwrap();
    (r.code, r.remark.unwrap_or_default())
}

#[actix_rt::test]
async fn signatures_permissions_admin_codes_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain_acl.yml");
    std::fs::write(&file, ACL).unwrap();
    let b = BrokerProc::start_with("async", &[("ROCKTOR_ACL", file.to_str().unwrap())], None);
    let c = connect(b.broker).await;
    let create = || rocktor::client::create_topic_request("AclT", 1);
    // Admin-only: refused for a producer account, done by the admin.
    let (rc, remark) = code(&c, signed(create(), "PubAK", "pub-secret")).await;
    assert_eq!(rc, 16, "{remark}");
    assert!(
        remark.contains("PubAK") && !remark.contains("pub-secret"),
        "{remark}"
    );
    assert_eq!(
        code(&c, signed(create(), "AdminAK", "admin-secret"))
            .await
            .0,
        0
    );
    let send = || send_v2("AclT", 0, b"hello", "");
    assert_eq!(code(&c, signed(send(), "PubAK", "pub-secret")).await.0, 0);
    // Unsigned, a wrong secret, an unknown key: NO_PERMISSION, nothing stored.
    assert_eq!(code(&c, send()).await.0, 16);
    let (rc, remark) = code(&c, signed(send(), "PubAK", "wrong")).await;
    assert_eq!(rc, 16);
    assert!(remark.contains("signature"), "{remark}");
    assert_eq!(code(&c, signed(send(), "Ghost", "x")).await.0, 16);
    // The consumer account may pull but not send.
    let (rc, remark) = code(&c, signed(send(), "SubAK", "sub-secret")).await;
    assert_eq!(rc, 16);
    assert_eq!(
        remark,
        "No permission for topic AclT: SubAK has SUB, needs PUB"
    );
    let pull = || pull_req("AclG", "AclT", 0, 0, 32, None, Some("*"));
    let (rc, _) = code(&c, signed(pull(), "SubAK", "sub-secret")).await;
    assert_eq!(rc, 0, "the consumer account reads the message");
    let (rc, _) = code(&c, signed(pull(), "PubAK", "pub-secret")).await;
    assert_eq!(rc, 16, "the producer account may not read");
    // Reload: the consumer account gets PUB while the broker runs.
    std::fs::write(&file, ACL.replace("\"AclT=SUB\"", "\"AclT=PUB|SUB\"")).unwrap();
    let mut sent = false;
    for _ in 0..40 {
        if code(&c, signed(send(), "SubAK", "sub-secret")).await.0 == 0 {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(sent, "the reloaded file is in force: {}", b.log());
    // A file that no longer parses keeps the accounts in force.
    std::fs::write(&file, "accounts: [{secretKey: x}]").unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(code(&c, signed(send(), "SubAK", "sub-secret")).await.0, 0);
    assert!(b.log().contains("ACL file not reloaded"), "said why");
}

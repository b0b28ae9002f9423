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

fn plain_req(code: i32, fields: &[(&str, &str)]) -> RemotingCommand {
    let ext: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
    rocktor::client::request(code, &ext)
}

fn admin_req(code: i32, fields: &[(&str, &str)]) -> RemotingCommand {
    signed(plain_req(code, fields), "AdminAK", "admin-secret")
}

/// Retries `f` until it answers `want` (the file is looked at every few seconds).
async fn eventually(want: i32, mut f: impl AsyncFnMut() -> i32) -> bool {
    for _ in 0..40 {
        if f().await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// The ACL 1.0 admin codes in Java's header form: runtime accounts and changes to file
/// accounts live in the overlay, survive a restart and win over the file; a deleted account
/// stays deleted.
#[actix_rt::test]
async fn runtime_accounts_survive_a_restart_and_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain_acl.yml");
    std::fs::write(&file, ACL).unwrap();
    let mut b = BrokerProc::start_with("sync", &[("ROCKTOR_ACL", file.to_str().unwrap())], None);
    let mut c = connect(b.broker).await;
    let create = rocktor::client::create_topic_request("AclT", 1);
    assert_eq!(
        code(&c, signed(create, "AdminAK", "admin-secret")).await.0,
        0
    );
    let send = || send_v2("AclT", 0, b"hello", "");
    let run = [
        ("accessKey", "RunAK01"),
        ("secretKey", "run-secret-1"),
        ("topicPerms", "AclT=PUB"),
    ];
    // A non-admin account may not manage accounts; the admin may.
    let by_pub = signed(plain_req(50, &run), "PubAK", "pub-secret");
    let (rc, remark) = code(&c, by_pub).await;
    assert_eq!(rc, 16, "{remark}");
    assert_eq!(
        code(&c, signed(send(), "RunAK01", "run-secret-1")).await.0,
        16
    );
    assert_eq!(code(&c, admin_req(50, &run)).await, (0, String::new()));
    assert_eq!(
        code(&c, signed(send(), "RunAK01", "run-secret-1")).await.0,
        0
    );
    // Bad input is refused, naming what is wrong.
    let bad = [
        ("accessKey", "RunAK02"),
        ("secretKey", "run-secret-2"),
        ("topicPerms", "AclT=WRITE"),
    ];
    let (rc, remark) = code(&c, admin_req(50, &bad)).await;
    assert!(rc != 0 && remark.contains("AclT=WRITE"), "{rc} {remark}");
    let (rc, remark) = code(&c, admin_req(50, &[("accessKey", "NoSecret1")])).await;
    assert!(rc != 0 && remark.contains("secretKey"), "{rc} {remark}");
    // An update of a file account keeps the fields it does not name (the secret).
    let sub_pub = [("accessKey", "SubAK"), ("topicPerms", "AclT=PUB|SUB")];
    assert_eq!(code(&c, admin_req(50, &sub_pub)).await.0, 0);
    assert_eq!(code(&c, signed(send(), "SubAK", "sub-secret")).await.0, 0);
    // The listing (54) has every account in force and no secret; the version (52) counts.
    let list = c.request(admin_req(54, &[]), TIMEOUT).await.unwrap();
    let text = String::from_utf8_lossy(&list.body).to_string();
    assert!(
        text.contains("RunAK01") && text.contains("AdminAK"),
        "{text}"
    );
    assert!(
        !text.contains("run-secret-1") && !text.contains("admin-secret"),
        "{text}"
    );
    let v = c.request(admin_req(52, &[]), TIMEOUT).await.unwrap();
    let info: serde_json::Value = serde_json::from_slice(&v.body).unwrap();
    assert!(
        info["aclConfigDataVersion"]["counter"].as_u64().unwrap() >= 3,
        "{info}"
    );
    assert!(v.ext.get("version").is_some_and(|s| s.contains("counter")));

    // A restart keeps the runtime changes.
    drop(c);
    b.terminate();
    b.restart();
    c = connect(b.broker).await;
    assert_eq!(
        code(&c, signed(send(), "RunAK01", "run-secret-1")).await.0,
        0
    );
    assert_eq!(code(&c, signed(send(), "SubAK", "sub-secret")).await.0, 0);
    // A new file: its new account is in force, the overlay still wins for SubAK.
    let edited = ACL.replace(
        "  - accessKey: SubAK",
        "  - accessKey: FileAK1\n    secretKey: file-secret\n    topicPerms: [ \"AclT=PUB\" ]\n  - accessKey: SubAK",
    );
    std::fs::write(&file, edited).unwrap();
    assert!(
        eventually(0, async || code(
            &c,
            signed(send(), "FileAK1", "file-secret")
        )
        .await
        .0)
        .await,
        "the edited file is in force: {}",
        b.log()
    );
    assert_eq!(code(&c, signed(send(), "SubAK", "sub-secret")).await.0, 0);
    // Deleting SubAK (the file's and the run-time one) puts it out of force, for good: no
    // version of its secret comes back; a second deletion is an error.
    assert_eq!(
        code(&c, admin_req(51, &[("accessKey", "SubAK")])).await.0,
        0
    );
    let pull = || pull_req("AclG", "AclT", 0, 0, 32, None, Some("*"));
    let (rc, remark) = code(&c, signed(pull(), "SubAK", "sub-secret")).await;
    assert_eq!(rc, 16);
    assert!(remark.contains("No acl config for SubAK"), "{remark}");
    assert!(code(&c, admin_req(51, &[("accessKey", "SubAK")])).await.0 != 0);
    // Set again at run time it is a new account, so Apache's key length rule applies.
    let again = [
        ("accessKey", "SubAK"),
        ("secretKey", "sub-secret-2"),
        ("groupPerms", "AclG=SUB"),
        ("topicPerms", "AclT=SUB"),
    ];
    let (rc, remark) = code(&c, admin_req(50, &again)).await;
    assert!(rc != 0 && remark.contains("at least 7"), "{rc} {remark}");
    assert_eq!(
        code(&c, admin_req(51, &[("accessKey", "RunAK01")])).await.0,
        0
    );
    assert_eq!(
        code(&c, signed(send(), "RunAK01", "run-secret-1")).await.0,
        16
    );
    // The global allow list (53): an unsigned request from a listed address passes.
    assert_eq!(code(&c, send()).await.0, 16);
    assert_eq!(
        code(
            &c,
            admin_req(53, &[("globalWhiteAddrs", "10.1.*,127.0.0.1")])
        )
        .await
        .0,
        0
    );
    assert_eq!(code(&c, send()).await.0, 0);
    assert!(
        code(&c, admin_req(53, &[("globalWhiteAddrs", "1.2.3")]))
            .await
            .0
            != 0
    );
    assert!(
        code(&c, admin_req(53, &[])).await.0 != 0,
        "the field is required"
    );
    assert_eq!(
        code(&c, admin_req(53, &[("globalWhiteAddrs", "")])).await.0,
        0
    );
    assert_eq!(code(&c, send()).await.0, 16);
}

/// A real admin client (rocketmq-client-rust's DefaultMQAdminExt, the PlainAccessConfig body
/// form) creates an account for a namespace's topic and group; namespaced producers and
/// consumers use it; outside the namespace the account has nothing.
#[actix_rt::test]
async fn a_real_admin_client_grants_namespaced_resources() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain_acl.yml");
    std::fs::write(&file, ACL).unwrap();
    let b = BrokerProc::start_with("async", &[("ROCKTOR_ACL", file.to_str().unwrap())], None);
    let ns = b.namesrv.to_string();
    let br = b.broker.to_string();
    let admin = [
        "acl",
        "--namesrv",
        &ns,
        "--broker",
        &br,
        "--ak",
        "AdminAK",
        "--sk",
        "admin-secret",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        admin.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_rs(&args)
    };
    run(with(&[
        "--op",
        "upsert",
        "--access-key",
        "NsUser1",
        "--secret-key",
        "ns-secret-1",
        "--topic-perms",
        "ns1%NsT=PUB|SUB",
        "--group-perms",
        "ns1%NsG=SUB",
        "--default-topic-perm",
        "DENY",
        "--default-group-perm",
        "DENY",
    ]));
    let user = ["--ak", "NsUser1", "--sk", "ns-secret-1"];
    let rs = |extra: &[&str]| -> std::process::Output {
        std::process::Command::new(rs_client())
            .args(extra.iter().chain(&user))
            .output()
            .unwrap()
    };
    let produce = |namespace: &str| {
        let mut a = vec![
            "produce",
            "--namesrv",
            &ns,
            "--topic",
            "NsT",
            "--count",
            "5",
            "--keys",
            "1",
        ];
        if !namespace.is_empty() {
            a.extend(["--namespace", namespace]);
        }
        rs(&a)
    };
    let out = produce("ns1");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    parse_rs(&stdout, &["produce ns1"]);
    let out = rs(&[
        "consume",
        "--namesrv",
        &ns,
        "--topic",
        "NsT",
        "--group",
        "NsG",
        "--namespace",
        "ns1",
        "--expect",
        "5",
        "--timeout",
        "40",
        "--linger",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let got = parse_rs(&stdout, &["consume ns1"]);
    assert_eq!(
        got.iter().filter(|r| r["event"] == "recv").count(),
        5,
        "{stdout}"
    );
    assert!(
        got.iter()
            .any(|r| r["topic"] == "ns1%NsT" || r["topic"] == "NsT"),
        "{stdout}"
    );
    // The broker holds the namespaced topic.
    let c = connect(b.broker).await;
    let stats = c
        .request(
            signed(
                rocktor::client::request(202, &[("topic", "ns1%NsT".to_string())]),
                "AdminAK",
                "admin-secret",
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(stats.code, 0, "{:?}", stats.remark);
    // Outside the namespace, and after the account is deleted, nothing is allowed.
    let ended_ok = |out: &std::process::Output| {
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        stdout.lines().last().unwrap_or_default().starts_with("OK")
    };
    assert!(!ended_ok(&produce("")), "a send outside ns1 passed");
    run(with(&["--op", "version"]));
    run(with(&["--op", "delete", "--access-key", "NsUser1"]));
    assert!(!ended_ok(&produce("ns1")), "a deleted account still sends");
}

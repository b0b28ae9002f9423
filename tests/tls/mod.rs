//! TLS on the remoting ports (rustls): TLS and plain clients on one port (Apache's permissive
//! mode), TLS only when enforcing; rocktor's own client and rocketmq-client-rust over TLS, with
//! a self-signed certificate generated here.

use crate::support::*;
use rocktor::client::RemotingClient;
use std::path::PathBuf;
use std::sync::Arc;

struct Pair {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn self_signed() -> Pair {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("broker.crt");
    let key = dir.path().join("broker.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    Pair {
        _dir: dir,
        cert,
        key,
        der: ck.cert.der().clone(),
    }
}

fn client_config(trusted: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(p) = trusted {
        roots.add(p.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn start(pair: &Pair, mode: &str) -> BrokerProc {
    BrokerProc::start_with(
        "async",
        &[
            ("ROCKTOR_TLS_CERT", pair.cert.to_str().unwrap()),
            ("ROCKTOR_TLS_KEY", pair.key.to_str().unwrap()),
            ("ROCKTOR_TLS_MODE", mode),
        ],
        None,
    )
}

async fn tls_client(addr: std::net::SocketAddr, pair: &Pair) -> RemotingClient {
    RemotingClient::connect_tls(addr, client_config(Some(pair)), "localhost")
        .await
        .unwrap()
        .0
}

#[actix_rt::test]
async fn tls_and_plain_clients_share_a_port() {
    let pair = self_signed();
    let b = start(&pair, "permissive");
    let tls = tls_client(b.broker, &pair).await;
    create_topic(&tls, "TlsT", 2).await;
    let sent = tls
        .request(send_v2("TlsT", 0, b"over tls", ""), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    // A plain client on the same port reads what the TLS client wrote.
    let plain = connect(b.broker).await;
    let got = pull_all(&plain, "TlsG", "TlsT", 0).await;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"over tls");
    // The name server port speaks TLS too.
    let ns = tls_client(b.namesrv, &pair).await;
    let route = ns
        .request(
            rocktor::client::request(105, &[("topic", "TlsT".to_string())]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(route.code, 0, "{:?}", route.remark);
    // A client that does not trust the certificate does not get in.
    assert!(
        RemotingClient::connect_tls(b.broker, client_config(None), "localhost")
            .await
            .is_err()
    );
    // rocketmq-client-rust over TLS, checking the certificate: produce and consume.
    let ns_addr = b.namesrv.to_string();
    let ca = pair.cert.to_str().unwrap();
    let sent = run_rs(&[
        "produce",
        "--namesrv",
        &ns_addr,
        "--topic",
        "TlsRs",
        "--count",
        "4",
        "--keys",
        "2",
        "--tls-ca",
        ca,
    ]);
    assert_eq!(sent.iter().filter(|r| r["event"] == "sent").count(), 4);
    let got = run_rs(&[
        "consume",
        "--namesrv",
        &ns_addr,
        "--topic",
        "TlsRs",
        "--group",
        "TlsRsG",
        "--expect",
        "4",
        "--timeout",
        "40",
        "--linger",
        "1",
        "--tls-ca",
        ca,
    ]);
    assert_eq!(got.iter().filter(|r| r["event"] == "recv").count(), 4);
}

#[actix_rt::test]
async fn enforcing_mode_closes_plain_connections() {
    let pair = self_signed();
    let b = start(&pair, "enforcing");
    let plain = connect(b.broker).await;
    let r = plain
        .request(rocktor::client::create_topic_request("EnfT", 1), TIMEOUT)
        .await;
    assert!(r.is_err(), "a plain request was answered: {r:?}");
    let tls = tls_client(b.broker, &pair).await;
    create_topic(&tls, "EnfT", 1).await;
}

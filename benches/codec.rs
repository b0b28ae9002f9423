//! Micro-benchmarks of the pure codecs on the hot path: frame encode/decode (JSON and binary
//! headers) and the MessageExt record encoder. Measures only; never asserts timings.
//!
//!     cargo bench --bench codec

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rocktor::remoting::command::{check_frame, decode_frame, RemotingCommand, SerializeType};
use rocktor_storage::record;

mod common;

fn send_request(binary: bool) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(310, 1).with_body(vec![b'x'; 1024]);
    for (k, v) in [
        ("a", "PG"), ("b", "BenchTopic"), ("c", "TBW102"), ("d", "4"), ("e", "3"), ("f", "0"),
        ("g", "1700000000000"), ("h", "0"), ("i", "TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}7F0000010001000000000000000000AB\u{2}WAIT\u{1}true\u{2}"),
        ("j", "0"), ("k", "false"), ("m", "false"),
    ] {
        cmd.ext.insert(k, v);
    }
    if binary {
        cmd.serialize_type = SerializeType::RocketMq;
    }
    cmd
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    for (name, binary) in [("json", false), ("binary", true)] {
        let cmd = send_request(binary);
        let mut encoded = BytesMut::new();
        cmd.encode(&mut encoded);
        let encoded = encoded.freeze();
        g.bench_function(format!("decode_send_{name}"), |b| {
            b.iter_batched(
                || encoded.clone(),
                |f| {
                    let n = check_frame(&f).ok().flatten().unwrap_or(0);
                    decode_frame(f.slice(..n))
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("encode_send_{name}"), |b| {
            let mut out = BytesMut::with_capacity(4096);
            b.iter(|| {
                out.clear();
                cmd.encode(&mut out);
            })
        });
    }
    g.finish();
}

fn records(c: &mut Criterion) {
    let body = vec![b'x'; 1024];
    let parts = common::record_parts(3, 123456, &body, common::PROPS);
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Bytes(record::encoded_len(&parts) as u64));
    g.bench_function("encode_1k", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            record::encode(&parts, &mut out);
        })
    });
    let mut enc = BytesMut::new();
    record::encode(&parts, &mut enc);
    let enc = enc.freeze();
    g.bench_function("decode_1k", |b| b.iter(|| record::decode(&enc)));
    g.finish();
}

/// ACL 1.0: verifying a signed 1 KiB SEND_MESSAGE_V2 as the broker port does (fields as the
/// request carries them, HmacSHA1 over values and body, the topic's permission).
fn acl(c: &mut Criterion) {
    use rocktor_actors::auth::{AccessRequest, AclConfig, Perm, Resource, LOCALHOST};
    let config = AclConfig::from_yaml(
        "accounts:\n  - accessKey: PubAK\n    secretKey: pub-secret\n    topicPerms: [ \"BenchTopic=PUB\" ]\n",
    )
    .expect("ACL");
    let mut cmd = send_request(false);
    rocktor::client::sign_request(&mut cmd, "PubAK", "pub-secret");
    let mut g = c.benchmark_group("acl");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_send_1k", |b| {
        b.iter(|| {
            let req = AccessRequest {
                remote: LOCALHOST,
                access_key: cmd.ext.get("AccessKey"),
                signature: cmd.ext.get("Signature"),
                fields: cmd.ext.iter().collect(),
                body: &cmd.body,
                string_to_sign: None,
                admin_only: false,
                resources: vec![(Resource::Topic("BenchTopic".into()), Perm::PUB)],
            };
            config.check(&req)
        })
    });
    // The HmacSHA1 alone, over the same content: what the rest of the check costs beside it.
    let fields: Vec<(&str, &str)> = cmd.ext.iter().collect();
    g.bench_function("sign_send_1k", |b| {
        b.iter(|| rocktor_actors::auth::sign("pub-secret", &fields, &cmd.body))
    });
    g.finish();
}

criterion_group!(benches, frames, records, acl);
criterion_main!(benches);

//! Micro-benchmarks of the pure codecs on the hot path: frame encode/decode (JSON and binary
//! headers) and the MessageExt record encoder. Measures only; never asserts timings.
//!
//!     cargo bench --bench codec

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rocktor::remoting::command::{check_frame, decode_frame, RemotingCommand, SerializeType};
use rocktor_storage::record::{self, RecordParts};

fn send_request(binary: bool) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(310, 1).with_body(vec![b'x'; 1024]);
    for (k, v) in [
        ("a", "PG"), ("b", "BenchTopic"), ("c", "TBW102"), ("d", "4"), ("e", "3"), ("f", "0"),
        ("g", "1700000000000"), ("h", "0"), ("i", "TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}7F0000010001000000000000000000AB\u{2}WAIT\u{1}true\u{2}"),
        ("j", "0"), ("k", "false"), ("m", "false"),
    ] {
        cmd.ext.insert(k.into(), v.into());
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
    let props = "TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}7F0000010001000000000000000000AB\u{2}";
    let parts = RecordParts {
        queue_id: 3,
        flag: 0,
        queue_offset: 123456,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "127.0.0.1:40000".parse().expect("literal"),
        store_timestamp: 1_700_000_000_001,
        store_host: "127.0.0.1:10911".parse().expect("literal"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: &body,
        topic: "BenchTopic",
        properties: props,
    };
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

criterion_group!(benches, frames, records);
criterion_main!(benches);

//! Micro-benchmarks of the storage append path (the group-commit writer into RocksDB, async and
//! sync flush) and of the SQL92 evaluator. Measures only; never asserts timings.
//!
//!     cargo bench --bench storage

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rocktor_actors::sql;
use rocktor_storage::record;

mod common;
use rocktor_storage::{AppendBatch, AppendRecord, CqEntry, FlushMode, Store};

fn record(offset: u64, body: &[u8]) -> AppendRecord {
    let parts = common::record_parts((offset % 8) as i32, offset as i64, body, common::PROPS);
    let mut buf = BytesMut::with_capacity(record::encoded_len(&parts));
    record::encode(&parts, &mut buf);
    AppendRecord {
        record: buf,
        cq: Some(CqEntry {
            topic_id: 1,
            queue_id: (offset % 8) as u32,
            queue_offset: offset / 8,
            tag_hash: 1,
            store_time: 1,
        }),
        timer: None,
        txn: None,
        index_keys: vec![rocktor_storage::keys::index_prefix(
            1,
            &format!("key-{offset}"),
        )],
    }
}

fn append(c: &mut Criterion) {
    let body = vec![b'x'; 1024];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for (name, mode) in [("async", FlushMode::Async), ("sync", FlushMode::Sync)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), mode).expect("open store");
        let writer = store.start_writer(0).expect("writer");
        let mut g = c.benchmark_group(format!("append_{name}"));
        for batch in [1usize, 32] {
            g.throughput(Throughput::Elements(batch as u64));
            let mut next = 0u64;
            g.bench_function(format!("batch_of_{batch}_1k"), |b| {
                b.iter_batched(
                    || {
                        let recs = (0..batch).map(|i| record(next + i as u64, &body)).collect();
                        next += batch as u64;
                        AppendBatch {
                            records: recs,
                            ..Default::default()
                        }
                    },
                    |batch| rt.block_on(writer.submit(batch)),
                    BatchSize::SmallInput,
                )
            });
        }
        g.finish();
    }
}

fn sql92(c: &mut Criterion) {
    let expr =
        sql::parse("a > 5 AND b = 'x' OR (c IN ('red', 'blue') AND d IS NOT NULL)").expect("valid");
    let props: Vec<(String, String)> = [
        ("a", "7"),
        ("b", "x"),
        ("c", "red"),
        ("TAGS", "TagA"),
        ("UNIQ_KEY", "ABC"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut g = c.benchmark_group("sql92");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        b.iter(|| sql::parse("a > 5 AND b = 'x' OR (c IN ('red', 'blue') AND d IS NOT NULL)"))
    });
    g.bench_function("evaluate", |b| b.iter(|| expr.matches(&props)));
    let mut rec = BytesMut::new();
    record::encode(
        &common::record_parts(
            0,
            0,
            &[0u8; 1024],
            "a\u{1}7\u{2}b\u{1}x\u{2}c\u{1}red\u{2}TAGS\u{1}TagA\u{2}",
        ),
        &mut rec,
    );
    let rec: Bytes = rec.freeze();
    let filter = rocktor_actors::filter::Filter::from_subscription("a > 5 AND b = 'x'", "SQL92")
        .expect("valid");
    g.bench_function("filter_stored_record", |b| {
        b.iter(|| filter.accepts_record(&rec))
    });
    g.finish();
}

criterion_group!(benches, append, sql92);
criterion_main!(benches);

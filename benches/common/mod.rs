//! Shared set-up of the benchmarks: a stored record like a producer's 1 KiB message.

use rocktor_storage::record::RecordParts;

/// Parts of a record in queue `queue_id` at `queue_offset`, with the given body and properties.
pub fn record_parts<'a>(
    queue_id: i32,
    queue_offset: i64,
    body: &'a [u8],
    properties: &'a str,
) -> RecordParts<'a> {
    RecordParts {
        queue_id,
        flag: 0,
        queue_offset,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
        store_timestamp: 1_700_000_000_001,
        store_host: std::net::SocketAddr::from(([127, 0, 0, 1], 10911)),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        topic: "BenchTopic",
        properties,
    }
}

/// Properties of a tagged message with a client message id.
pub const PROPS: &str = "TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}7F0000010001000000000000000000AB\u{2}";

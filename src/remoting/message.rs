//! Message encodings around a send: the batch body (digest §3.3), offset message ids (§3.4),
//! and Java's `String.hashCode` for tag codes (§4.5).

use bytes::{Buf, Bytes};
use std::net::{IpAddr, SocketAddr};

/// One message unpacked from a SEND_BATCH_MESSAGE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub flag: i32,
    pub body: Bytes,
    pub properties: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed batch body: {0}")]
pub struct BatchError(pub &'static str);

/// Splits a batch body into its inner messages; any inconsistency is an error, not a panic.
pub fn decode_batch(mut body: Bytes) -> Result<Vec<BatchItem>, BatchError> {
    let mut out = Vec::new();
    while body.has_remaining() {
        if body.remaining() < 20 {
            return Err(BatchError("truncated inner message header"));
        }
        let total = body.get_i32();
        if total < 22 || (total as usize - 4) > body.remaining() {
            return Err(BatchError("inner message size out of range"));
        }
        let mut inner = body.split_to(total as usize - 4);
        let _magic = inner.get_i32();
        let _crc = inner.get_i32();
        let flag = inner.get_i32();
        let body_len = inner.get_i32();
        if body_len < 0 || body_len as usize > inner.remaining() {
            return Err(BatchError("inner body length out of range"));
        }
        let msg_body = inner.split_to(body_len as usize);
        if inner.remaining() < 2 {
            return Err(BatchError("missing properties length"));
        }
        let plen = inner.get_i16();
        if plen < 0 || plen as usize > inner.remaining() {
            return Err(BatchError("properties length out of range"));
        }
        let props = inner.split_to(plen as usize);
        out.push(BatchItem {
            flag,
            body: msg_body,
            properties: String::from_utf8_lossy(&props).into_owned(),
        });
    }
    Ok(out)
}

/// Encodes a batch body (the client side; used by tests and the load generator).
pub fn encode_batch(items: &[BatchItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for it in items {
        let total = 4 + 4 + 4 + 4 + 4 + it.body.len() + 2 + it.properties.len();
        out.extend_from_slice(&(total as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&it.flag.to_be_bytes());
        out.extend_from_slice(&(it.body.len() as i32).to_be_bytes());
        out.extend_from_slice(&it.body);
        out.extend_from_slice(&(it.properties.len() as i16).to_be_bytes());
        out.extend_from_slice(it.properties.as_bytes());
    }
    out
}

/// The offset message id: store address and commit-log offset as uppercase hex.
pub fn offset_msg_id(store: SocketAddr, seq: u64) -> String {
    let mut bytes = Vec::with_capacity(28);
    match store.ip() {
        IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
    }
    bytes.extend_from_slice(&(store.port() as i32).to_be_bytes());
    bytes.extend_from_slice(&seq.to_be_bytes());
    hex_upper(&bytes)
}

/// Decodes an offset message id back to (address, commit-log offset).
pub fn decode_offset_msg_id(id: &str) -> Option<(SocketAddr, u64)> {
    let bytes = hex_decode(id)?;
    let (ip, rest): (IpAddr, &[u8]) = match bytes.len() {
        16 => (
            IpAddr::from(<[u8; 4]>::try_from(&bytes[..4]).ok()?),
            &bytes[4..],
        ),
        28 => (
            IpAddr::from(<[u8; 16]>::try_from(&bytes[..16]).ok()?),
            &bytes[16..],
        ),
        _ => return None,
    };
    let port = i32::from_be_bytes(rest[..4].try_into().ok()?);
    let seq = u64::from_be_bytes(rest[4..12].try_into().ok()?);
    Some((SocketAddr::new(ip, port as u16), seq))
}

pub fn hex_upper(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let items = vec![
            BatchItem {
                flag: 1,
                body: Bytes::from_static(b"a"),
                properties: "K\u{1}V\u{2}".into(),
            },
            BatchItem {
                flag: 0,
                body: Bytes::from_static(b""),
                properties: String::new(),
            },
        ];
        let enc = encode_batch(&items);
        assert_eq!(decode_batch(Bytes::from(enc.clone())).unwrap(), items);
        let first_len = encode_batch(&items[..1]).len();
        for n in 1..enc.len() {
            let r = decode_batch(Bytes::from(enc[..n].to_vec()));
            if n == first_len {
                assert_eq!(
                    r.unwrap(),
                    items[..1].to_vec(),
                    "a cut between messages is a shorter batch"
                );
            } else {
                assert!(r.is_err(), "cut at {n} must be an error");
            }
        }
    }

    #[test]
    fn msg_id_round_trip() {
        let a: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let id = offset_msg_id(a, 0x1234);
        assert_eq!(id, "7F00000100002A9F0000000000001234");
        assert_eq!(decode_offset_msg_id(&id), Some((a, 0x1234)));
        assert_eq!(decode_offset_msg_id("zz"), None);
    }
}

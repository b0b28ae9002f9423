//! The stored message record, kept in RocketMQ's wire `MessageExt` layout so that a pull
//! response is the stored bytes laid end to end (protocol digest §3.1).

use bytes::{BufMut, Bytes, BytesMut};
use std::net::{IpAddr, SocketAddr};

pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
pub const MAGIC_V2: i32 = 0xDAA3_20ABu32 as i32;

/// Byte position of PHYSICALOFFSET, patched by the writer once it assigns the sequence.
pub const PHYSICAL_OFFSET_POS: usize = 28;
/// Byte position of QUEUEOFFSET.
pub const QUEUE_OFFSET_POS: usize = 20;

pub const FLAG_BORNHOST_V6: i32 = 0x10;
pub const FLAG_STOREHOST_V6: i32 = 0x20;

/// What a record is made of, borrowed from the caller.
#[derive(Debug, Clone)]
pub struct RecordParts<'a> {
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    pub topic: &'a str,
    pub properties: &'a str,
}

fn host_len(addr: &SocketAddr) -> usize {
    match addr.ip() {
        IpAddr::V4(_) => 8,
        IpAddr::V6(_) => 20,
    }
}

fn put_host(buf: &mut BytesMut, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => buf.put_slice(&ip.octets()),
        IpAddr::V6(ip) => buf.put_slice(&ip.octets()),
    }
    buf.put_i32(addr.port() as i32);
}

/// The size a record of these parts takes.
pub fn encoded_len(p: &RecordParts<'_>) -> usize {
    let topic_len_bytes = if p.topic.len() > 127 { 2 } else { 1 };
    4 + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(&p.born_host)
        + 8
        + host_len(&p.store_host)
        + 4
        + 8
        + 4
        + p.body.len()
        + topic_len_bytes
        + p.topic.len()
        + 2
        + p.properties.len()
}

/// Appends the record to `buf`. The caller has checked topic ≤ 255 bytes and properties
/// ≤ 32767 bytes (send validation), so the length fields cannot overflow.
pub fn encode(p: &RecordParts<'_>, buf: &mut BytesMut) {
    let total = encoded_len(p);
    buf.reserve(total);
    let mut sys_flag = p.sys_flag & !(FLAG_BORNHOST_V6 | FLAG_STOREHOST_V6);
    if p.born_host.is_ipv6() {
        sys_flag |= FLAG_BORNHOST_V6;
    }
    if p.store_host.is_ipv6() {
        sys_flag |= FLAG_STOREHOST_V6;
    }
    let v2 = p.topic.len() > 127;
    buf.put_i32(total as i32);
    buf.put_i32(if v2 { MAGIC_V2 } else { MAGIC_V1 });
    buf.put_i32((crc32fast::hash(p.body) & 0x7FFF_FFFF) as i32);
    buf.put_i32(p.queue_id);
    buf.put_i32(p.flag);
    buf.put_i64(p.queue_offset);
    buf.put_i64(0); // physical offset: patched by the writer
    buf.put_i32(sys_flag);
    buf.put_i64(p.born_timestamp);
    put_host(buf, &p.born_host);
    buf.put_i64(p.store_timestamp);
    put_host(buf, &p.store_host);
    buf.put_i32(p.reconsume_times);
    buf.put_i64(p.prepared_transaction_offset);
    buf.put_i32(p.body.len() as i32);
    buf.put_slice(p.body);
    if v2 {
        buf.put_i16(p.topic.len() as i16);
    } else {
        buf.put_u8(p.topic.len() as u8);
    }
    buf.put_slice(p.topic.as_bytes());
    buf.put_i16(p.properties.len() as i16);
    buf.put_slice(p.properties.as_bytes());
}

/// Writes the global sequence into an encoded record.
pub fn patch_physical_offset(record: &mut [u8], seq: u64) {
    if record.len() >= PHYSICAL_OFFSET_POS + 8 {
        record[PHYSICAL_OFFSET_POS..PHYSICAL_OFFSET_POS + 8].copy_from_slice(&seq.to_be_bytes());
    }
}

/// Byte position of SYSFLAG (it says how long the two host fields are).
const SYS_FLAG_POS: usize = 36;
/// Byte position of the born host (after SYSFLAG and BORNTIMESTAMP).
const BORN_HOST_POS: usize = 48;

/// Raises RECONSUMETIMES of an encoded record by `extra` (a redelivery counts its attempts on
/// top of the count the record came with). A record too short to hold the field is left as it is.
pub fn add_reconsume_times(record: &mut [u8], extra: i32) {
    let Some(flag) = record
        .get(SYS_FLAG_POS..SYS_FLAG_POS + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_be_bytes)
    else {
        return;
    };
    let host = |v6: bool| if v6 { 20 } else { 8 };
    let pos = BORN_HOST_POS
        + host(flag & FLAG_BORNHOST_V6 != 0)
        + 8
        + host(flag & FLAG_STOREHOST_V6 != 0);
    if let Some(field) = record.get_mut(pos..pos + 4) {
        let mut current = [0u8; 4];
        current.copy_from_slice(field);
        let times = i32::from_be_bytes(current).max(0).saturating_add(extra);
        field.copy_from_slice(&times.to_be_bytes());
    }
}

/// The queue offset and global sequence of an encoded record, read in place.
pub fn positions(record: &[u8]) -> Option<(u64, u64)> {
    let at = |pos: usize| -> Option<u64> {
        let b: [u8; 8] = record.get(pos..pos + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(b))
    };
    Some((at(QUEUE_OFFSET_POS)?, at(PHYSICAL_OFFSET_POS)?))
}

/// A decoded view of a stored record. Borrowing fields would tie it to the buffer; the
/// fields a broker needs are copied out, the body stays a cheap `Bytes` slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub topic: String,
    pub properties: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed record: {0}")]
pub struct RecordError(pub &'static str);

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(RecordError("length overflow"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(RecordError("truncated"))?;
        self.pos = end;
        Ok(s)
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().map_err(|_| RecordError("i16"))?,
        ))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| RecordError("i32"))?,
        ))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| RecordError("i64"))?,
        ))
    }
    fn host(&mut self, v6: bool) -> Result<SocketAddr, RecordError> {
        let ip: IpAddr = if v6 {
            let o: [u8; 16] = self.take(16)?.try_into().map_err(|_| RecordError("ipv6"))?;
            IpAddr::from(o)
        } else {
            let o: [u8; 4] = self.take(4)?.try_into().map_err(|_| RecordError("ipv4"))?;
            IpAddr::from(o)
        };
        let port = self.i32()?;
        Ok(SocketAddr::new(ip, port as u16))
    }
}

/// Decodes one record from the front of `buf`; returns it and its length.
pub fn decode(buf: &Bytes) -> Result<(Record, usize), RecordError> {
    let mut c = Cursor { buf, pos: 0 };
    let total = c.i32()?;
    if total < 4 || total as usize > buf.len() {
        return Err(RecordError("bad total size"));
    }
    let magic = c.i32()?;
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err(RecordError("bad magic code"));
    }
    let _crc = c.i32()?;
    let queue_id = c.i32()?;
    let flag = c.i32()?;
    let queue_offset = c.i64()?;
    let physical_offset = c.i64()?;
    let sys_flag = c.i32()?;
    let born_timestamp = c.i64()?;
    let born_host = c.host(sys_flag & FLAG_BORNHOST_V6 != 0)?;
    let store_timestamp = c.i64()?;
    let store_host = c.host(sys_flag & FLAG_STOREHOST_V6 != 0)?;
    let reconsume_times = c.i32()?;
    let prepared_transaction_offset = c.i64()?;
    let body_len = c.i32()?;
    if body_len < 0 {
        return Err(RecordError("negative body length"));
    }
    let body_start = c.pos;
    c.take(body_len as usize)?;
    let body = buf.slice(body_start..body_start + body_len as usize);
    let topic_len = if magic == MAGIC_V2 {
        c.i16()? as u16 as usize
    } else {
        c.take(1)?[0] as usize
    };
    let topic = String::from_utf8_lossy(c.take(topic_len)?).into_owned();
    let props_len = c.i16()?;
    if props_len < 0 {
        return Err(RecordError("negative properties length"));
    }
    let properties = String::from_utf8_lossy(c.take(props_len as usize)?).into_owned();
    if c.pos != total as usize {
        return Err(RecordError("total size does not match fields"));
    }
    Ok((
        Record {
            queue_id,
            flag,
            queue_offset,
            physical_offset,
            sys_flag,
            born_timestamp,
            born_host,
            store_timestamp,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            body,
            topic,
            properties,
        },
        total as usize,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(topic: &'a str, body: &'a [u8]) -> RecordParts<'a> {
        RecordParts {
            queue_id: 3,
            flag: 7,
            queue_offset: 42,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "10.0.0.5:5555".parse().unwrap(),
            store_timestamp: 1_700_000_000_123,
            store_host: "[::1]:10911".parse().unwrap(),
            reconsume_times: 2,
            prepared_transaction_offset: 0,
            body,
            topic,
            properties: "TAGS\u{1}a\u{2}",
        }
    }

    #[test]
    fn reconsume_times_patch_finds_the_field_for_every_host_kind() {
        let hosts = ["[::1]:10911", "127.0.0.1:10911"];
        for (born_host, store_host) in hosts.iter().flat_map(|b| hosts.iter().map(move |s| (b, s)))
        {
            let mut p = parts("T", b"body");
            p.born_host = born_host.parse().unwrap();
            p.store_host = store_host.parse().unwrap();
            let mut buf = BytesMut::new();
            encode(&p, &mut buf);
            add_reconsume_times(&mut buf, 5);
            let (r, _) = decode(&buf.freeze()).unwrap();
            assert_eq!(r.reconsume_times, 7, "{born_host} / {store_host}");
            assert_eq!(&r.body[..], b"body");
            assert_eq!(r.born_host, p.born_host);
        }
        let mut short = vec![0u8; 40];
        add_reconsume_times(&mut short, 5); // too short: untouched, no panic
        assert!(short.iter().all(|b| *b == 0));
    }

    #[test]
    fn round_trips_v1_and_v2() {
        for topic in ["T".to_string(), "x".repeat(200)] {
            let p = parts(&topic, b"hello");
            let mut buf = BytesMut::new();
            encode(&p, &mut buf);
            assert_eq!(buf.len(), encoded_len(&p));
            patch_physical_offset(&mut buf, 99);
            let (r, n) = decode(&buf.freeze()).unwrap();
            assert_eq!(n, encoded_len(&p));
            assert_eq!(r.physical_offset, 99);
            assert_eq!(r.topic, topic);
            assert_eq!(&r.body[..], b"hello");
            assert_eq!(r.store_host, p.store_host);
            assert_eq!(r.born_host, p.born_host);
            assert_eq!(r.sys_flag, FLAG_STOREHOST_V6);
            assert_eq!(r.properties, "TAGS\u{1}a\u{2}");
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let p = parts("T", b"hello");
        let mut buf = BytesMut::new();
        encode(&p, &mut buf);
        let full = buf.freeze();
        for n in 0..full.len() {
            assert!(decode(&full.slice(..n)).is_err());
        }
    }
}

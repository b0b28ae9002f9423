//! The remoting command: frame layout (digest §1.1), JSON and binary ("ROCKETMQ") headers
//! (§1.2, §1.3). Pure: no I/O, no actors, so it can be fuzzed and benchmarked alone.
//!
//! Decoding is two steps, as in mini-redis: `check_frame` looks only at lengths and says how
//! many bytes the next frame takes; `decode_frame` then parses exactly that frame.

use super::ext_fields::ExtFields;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use compact_str::CompactString;

/// Largest frame we accept (Apache's `frameMaxLength` default).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Largest header we accept; real headers are a few hundred bytes.
pub const MAX_HEADER: usize = 64 * 1024;

pub const FLAG_RESPONSE: i32 = 1;
pub const FLAG_ONEWAY: i32 = 2;

/// The version ordinal we answer with (V5_3_3).
pub const OUR_VERSION: i32 = 479;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    #[default]
    Json,
    RocketMq,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: String,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext: ExtFields,
    pub body: Bytes,
    /// A body given as chunks (a pull's stored records), written after `body` straight into
    /// the frame: one copy from the tail cache to the socket buffer, not three.
    pub body_chunks: Vec<Bytes>,
    pub serialize_type: SerializeType,
    /// Held until the command is encoded and dropped (a pull's share of the read budget).
    pub keep: Keep,
}

/// Something a command keeps alive until it is dropped; never part of the wire form.
#[derive(Clone, Default)]
pub struct Keep(pub Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl std::fmt::Debug for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Keep(held)"
        } else {
            "Keep"
        })
    }
}

impl PartialEq for Keep {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Keep {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("header of {0} bytes exceeds the {MAX_HEADER}-byte limit")]
    HeaderTooLarge(usize),
    #[error("header length {header} does not fit a frame of {total} bytes")]
    BadHeaderLength { header: usize, total: usize },
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    #[error("malformed header: {0}")]
    BadHeader(String),
}

/// Step one: if `buf` holds a whole frame, its total size (length prefix included).
pub fn check_frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if total > MAX_FRAME {
        return Err(FrameError::TooLarge(total));
    }
    if total < 4 {
        return Err(FrameError::BadHeaderLength { header: 0, total });
    }
    if buf.len() < 8 {
        return Ok(None);
    }
    let word = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let header = (word & 0x00FF_FFFF) as usize;
    if header > MAX_HEADER {
        return Err(FrameError::HeaderTooLarge(header));
    }
    if header > total - 4 {
        return Err(FrameError::BadHeaderLength { header, total });
    }
    if buf.len() < 4 + total {
        return Ok(None);
    }
    Ok(Some(4 + total))
}

/// Step two: parses a whole frame (as measured by `check_frame`).
pub fn decode_frame(mut frame: Bytes) -> Result<RemotingCommand, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::BadHeaderLength {
            header: 0,
            total: frame.len(),
        });
    }
    let total = frame.get_u32() as usize;
    let word = frame.get_u32();
    let ser = (word >> 24) as u8;
    let header_len = (word & 0x00FF_FFFF) as usize;
    if total != frame.len() + 4 || header_len > frame.len() {
        return Err(FrameError::BadHeaderLength {
            header: header_len,
            total,
        });
    }
    let header = frame.split_to(header_len);
    let mut cmd = match ser {
        0 => decode_json_header(&header)?,
        1 => decode_binary_header(header)?,
        other => return Err(FrameError::UnknownSerializeType(other)),
    };
    cmd.body = frame;
    Ok(cmd)
}

fn lenient_i32(v: Option<CompactString>) -> Option<i32> {
    let s = v?;
    let t = s.trim();
    t.parse::<i32>()
        .ok()
        .or_else(|| t.parse::<f64>().ok().map(|f| f as i32))
}

const LANGUAGES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

fn language_name(code: u8) -> String {
    LANGUAGES
        .get(code as usize)
        .copied()
        .unwrap_or("OTHER")
        .to_string()
}

fn language_code(name: &str) -> u8 {
    LANGUAGES.iter().position(|l| *l == name).unwrap_or(0) as u8
}

fn decode_json_header(h: &[u8]) -> Result<RemotingCommand, FrameError> {
    let j = super::json_header::parse(h).map_err(FrameError::BadHeader)?;
    let code = lenient_i32(j.code).ok_or_else(|| FrameError::BadHeader("missing code".into()))?;
    let language = match j.language {
        Some(l) => match l.parse::<u8>() {
            Ok(n) => language_name(n),
            Err(_) => l.into_string(),
        },
        None => "JAVA".to_string(),
    };
    Ok(RemotingCommand {
        code,
        language,
        version: lenient_i32(j.version).unwrap_or(0),
        opaque: lenient_i32(j.opaque).unwrap_or(0),
        flag: lenient_i32(j.flag).unwrap_or(0),
        remark: j.remark.map(CompactString::into_string),
        ext: j.ext,
        body: Bytes::new(),
        body_chunks: Vec::new(),
        keep: Keep::default(),
        serialize_type: SerializeType::Json,
    })
}

fn need(h: &Bytes, n: usize, what: &str) -> Result<(), FrameError> {
    if h.remaining() < n {
        Err(FrameError::BadHeader(format!(
            "binary header truncated in {what}"
        )))
    } else {
        Ok(())
    }
}

fn decode_binary_header(mut h: Bytes) -> Result<RemotingCommand, FrameError> {
    need(&h, 21, "fixed part")?;
    let code = h.get_i16() as i32;
    let language = language_name(h.get_u8());
    let version = h.get_i16() as i32;
    let opaque = h.get_i32();
    let flag = h.get_i32();
    let remark_len = h.get_i32();
    let remark = if remark_len > 0 {
        need(&h, remark_len as usize, "remark")?;
        Some(String::from_utf8_lossy(&h.split_to(remark_len as usize)).into_owned())
    } else {
        None
    };
    need(&h, 4, "ext length")?;
    let ext_len = h.get_i32();
    if ext_len < 0 || ext_len as usize > h.remaining() {
        return Err(FrameError::BadHeader("ext length out of range".into()));
    }
    let mut m = h.split_to(ext_len as usize);
    let mut ext = ExtFields::new();
    while m.has_remaining() {
        need(&m, 2, "ext key length")?;
        let kl = m.get_i16();
        if kl < 0 {
            return Err(FrameError::BadHeader("negative ext key length".into()));
        }
        need(&m, kl as usize, "ext key")?;
        let k = String::from_utf8_lossy(&m.split_to(kl as usize)).into_owned();
        need(&m, 4, "ext value length")?;
        let vl = m.get_i32();
        if vl < 0 {
            return Err(FrameError::BadHeader("negative ext value length".into()));
        }
        need(&m, vl as usize, "ext value")?;
        let v = String::from_utf8_lossy(&m.split_to(vl as usize)).into_owned();
        ext.push_decoded(k, v);
    }
    ext.finish_decoding();
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext,
        body: Bytes::new(),
        body_chunks: Vec::new(),
        keep: Keep::default(),
        serialize_type: SerializeType::RocketMq,
    })
}

impl RemotingCommand {
    pub fn request(code: i32, opaque: i32) -> Self {
        RemotingCommand {
            code,
            language: "JAVA".into(),
            version: OUR_VERSION,
            opaque,
            ..Default::default()
        }
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// A response to this request with the given code; serialized like the request.
    pub fn response_to(req: &RemotingCommand, code: i32) -> Self {
        RemotingCommand {
            code,
            language: "JAVA".into(),
            version: OUR_VERSION,
            opaque: req.opaque,
            flag: FLAG_RESPONSE,
            serialize_type: req.serialize_type,
            ..Default::default()
        }
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_ext(mut self, k: &str, v: impl std::fmt::Display) -> Self {
        use compact_str::ToCompactString;
        self.ext.insert(k, v.to_compact_string());
        self
    }

    /// Encodes the whole frame into `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        if self.body_chunks.is_empty() {
            self.encode_with_body(out, &[&self.body]);
        } else {
            let mut chunks: Vec<&[u8]> = Vec::with_capacity(1 + self.body_chunks.len());
            chunks.push(&self.body);
            chunks.extend(self.body_chunks.iter().map(|c| &c[..]));
            self.encode_with_body(out, &chunks);
        }
    }

    /// Bytes of the body, chunks included.
    pub fn body_len(&self) -> usize {
        self.body.len() + self.body_chunks.iter().map(|c| c.len()).sum::<usize>()
    }

    /// Encodes the frame with the body given as chunks (stored records laid end to end).
    pub fn encode_with_body(&self, out: &mut BytesMut, body: &[&[u8]]) {
        let body_len: usize = body.iter().map(|b| b.len()).sum();
        let start = out.len();
        out.put_u32(0); // total, patched below
        out.put_u32(0); // header word, patched below
        let header_start = out.len();
        match self.serialize_type {
            SerializeType::Json => self.write_json_header(out),
            SerializeType::RocketMq => self.write_binary_header(out),
        }
        let header_len = out.len() - header_start;
        for chunk in body {
            out.put_slice(chunk);
        }
        let total = (4 + header_len + body_len) as u32;
        let ser: u32 = match self.serialize_type {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        };
        out[start..start + 4].copy_from_slice(&total.to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(&((ser << 24) | header_len as u32).to_be_bytes());
    }

    /// Written straight into the frame buffer, keys sorted as fastjson writes them (perf: the
    /// formatted-`String` version was 6% of the connection threads' time on the send path).
    fn write_json_header(&self, out: &mut BytesMut) {
        out.put_slice(b"{\"code\":");
        put_int(out, self.code as i64);
        out.put_slice(b",\"extFields\":{");
        let mut fields: Vec<(&str, &str)> = self.ext.iter().collect();
        if !fields.is_sorted() {
            fields.sort_unstable();
        }
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            put_json_str(out, k);
            out.put_u8(b':');
            put_json_str(out, v);
        }
        out.put_slice(b"},\"flag\":");
        put_int(out, self.flag as i64);
        out.put_slice(b",\"language\":");
        put_json_str(out, &self.language);
        out.put_slice(b",\"opaque\":");
        put_int(out, self.opaque as i64);
        if let Some(r) = &self.remark {
            out.put_slice(b",\"remark\":");
            put_json_str(out, r);
        }
        out.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
        put_int(out, self.version as i64);
        out.put_u8(b'}');
    }

    fn write_binary_header(&self, out: &mut BytesMut) {
        out.put_i16(self.code as i16);
        out.put_u8(language_code(&self.language));
        out.put_i16(self.version as i16);
        out.put_i32(self.opaque);
        out.put_i32(self.flag);
        match &self.remark {
            Some(r) => {
                out.put_i32(r.len() as i32);
                out.put_slice(r.as_bytes());
            }
            None => out.put_i32(0),
        }
        let ext_len: usize = self
            .ext
            .iter()
            .map(|(k, v)| 2 + k.len() + 4 + v.len())
            .sum();
        out.put_i32(ext_len as i32);
        for (k, v) in self.ext.iter() {
            out.put_i16(k.len() as i16);
            out.put_slice(k.as_bytes());
            out.put_i32(v.len() as i32);
            out.put_slice(v.as_bytes());
        }
    }
}

/// Appends `v` as a JSON string literal, copying runs that need no escape in one go.
/// Appends `v` in decimal.
fn put_int(out: &mut BytesMut, v: i64) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[i..]);
}

/// Appends `v` as a JSON string literal: unescaped runs copied whole.
fn put_json_str(out: &mut BytesMut, v: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_u8(b'"');
    let bytes = v.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.put_slice(&bytes[run_start..i]);
        if esc.is_empty() {
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.put_slice(esc);
        }
        run_start = i + 1;
    }
    out.put_slice(&bytes[run_start..]);
    out.put_u8(b'"');
}

pub fn push_json_str(s: &mut String, v: &str) {
    s.push('"');
    let mut run_start = 0;
    for (i, b) in v.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        s.push_str(&v[run_start..i]);
        match esc {
            Some(e) => s.push_str(e),
            None => {
                use std::fmt::Write;
                let _ = write!(s, "\\u{:04x}", b);
            }
        }
        run_start = i + 1;
    }
    s.push_str(&v[run_start..]);
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(cmd: &RemotingCommand) -> Bytes {
        let mut b = BytesMut::new();
        cmd.encode(&mut b);
        b.freeze()
    }

    #[test]
    fn json_round_trip() {
        let mut cmd = RemotingCommand::request(10, 42).with_body(&b"body"[..]);
        cmd.ext.insert("topic", "T\"x\u{1}");
        cmd.remark = Some("hi".into());
        let f = frame_of(&cmd);
        assert_eq!(check_frame(&f).unwrap(), Some(f.len()));
        assert_eq!(decode_frame(f).unwrap(), cmd);
    }

    #[test]
    fn binary_round_trip() {
        let mut cmd = RemotingCommand::request(11, 7);
        cmd.serialize_type = SerializeType::RocketMq;
        cmd.ext.insert("queueId", "3");
        cmd.language = "GO".into();
        let f = frame_of(&cmd);
        assert_eq!(decode_frame(f).unwrap(), cmd);
    }

    #[test]
    fn lenient_json_dialects() {
        for h in [
            r#"{"code":34,"language":"CPP","version":63,"opaque":1,"flag":0,"remark":"","extFields":{"queueId":0,"batch":"1","k":false}}"#,
            r#"{"code":"34","language":"NODE_JS","opaque":1,"flag":0,"extFields":null}"#,
            r#"{"code":34,"language":12,"remark":null,"serializeTypeCurrentRPC":"JSON","opaque":1}"#,
        ] {
            let mut b = BytesMut::new();
            b.put_u32((4 + h.len()) as u32);
            b.put_u32(h.len() as u32);
            b.put_slice(h.as_bytes());
            let cmd = decode_frame(b.freeze()).unwrap();
            assert_eq!(cmd.code, 34);
        }
    }

    #[test]
    fn limits_are_enforced() {
        let mut b = BytesMut::new();
        b.put_u32((MAX_FRAME + 1) as u32);
        assert!(matches!(check_frame(&b), Err(FrameError::TooLarge(_))));
        let mut b = BytesMut::new();
        b.put_u32(10);
        b.put_u32(100);
        assert!(check_frame(&b).is_err());
        let mut b = BytesMut::new();
        b.put_u32(2);
        assert!(check_frame(&b).is_err());
    }
}

/// Property tests: arbitrary bytes never panic the decoders (digest §1 limits hold).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        while let Ok(Some(n)) = check_frame(&buf) {
            let frame = buf.split_to(n).freeze();
            let _ = decode_frame(frame);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(&bytes);
        }

        #[test]
        fn framed_arbitrary_headers_never_panic(
            ser in 0u8..3,
            header in proptest::collection::vec(any::<u8>(), 0..300),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut b = BytesMut::new();
            b.put_u32((4 + header.len() + body.len()) as u32);
            b.put_u32(((ser as u32) << 24) | header.len() as u32);
            b.put_slice(&header);
            b.put_slice(&body);
            decode_all(&b);
        }

        #[test]
        fn mutated_valid_frames_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            binary in any::<bool>(),
        ) {
            let mut cmd = RemotingCommand::request(10, 5).with_body(&b"payload"[..]);
            cmd.ext.insert("topic", "T");
            cmd.remark = Some("r".into());
            if binary { cmd.serialize_type = SerializeType::RocketMq; }
            let mut b = BytesMut::new();
            cmd.encode(&mut b);
            for (pos, val) in flips {
                let i = pos % b.len();
                b[i] = val;
            }
            decode_all(&b);
        }

        #[test]
        fn batch_and_record_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = crate::remoting::message::decode_batch(Bytes::from(bytes.clone()));
            let _ = rocktor_storage::record::decode(&Bytes::from(bytes));
        }

        /// Whatever a command holds, its JSON and binary frames decode back to it.
        #[test]
        fn any_command_round_trips(
            code in any::<i16>(), opaque in any::<i32>(), flag in 0i32..4, version in any::<i16>(),
            // An empty remark is absent in the binary header (length 0), as in Java.
            remark in proptest::option::of(".{1,20}"),
            ext in proptest::collection::btree_map(".{1,12}", ".{0,40}", 0..12),
            binary in any::<bool>(),
        ) {
            let mut cmd = RemotingCommand::request(code as i32, opaque);
            cmd.flag = flag;
            cmd.version = version as i32;
            cmd.remark = remark;
            for (k, v) in &ext {
                cmd.ext.insert(k.as_str(), v.as_str());
            }
            if binary {
                cmd.serialize_type = SerializeType::RocketMq;
            }
            let mut buf = BytesMut::new();
            cmd.encode(&mut buf);
            let decoded = decode_frame(buf.freeze());
            prop_assert_eq!(decoded, Ok(cmd));
        }
    }
}

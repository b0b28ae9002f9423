//! The XML of the HTTP messaging API: reading the two request documents (a `Message` to
//! publish, `ReceiptHandles` to ack) as the SDKs write them — entities (Python's minidom) or
//! CDATA (Node) — and writing answers. Pure.

use quick_xml::events::Event;
use quick_xml::Reader;
use std::fmt::Write;

/// The namespace of answers, as the docs show it.
pub const NS: &str = "http://mq.aliyuncs.com/doc/v1";

/// A request document: its root element's local name and its children's text, in order.
/// Deeper elements are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Doc {
    pub root: String,
    pub children: Vec<(String, String)>,
}

impl Doc {
    /// The first child of that name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a request body; the error says what is wrong, for a MalformedXML answer.
pub fn parse(body: &[u8]) -> Result<Doc, String> {
    let mut reader = Reader::from_reader(body);
    let mut doc = Doc::default();
    let mut depth = 0usize;
    let mut text = String::new();
    let mut child: Option<String> = None;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                depth += 1;
                match depth {
                    1 => doc.root = name,
                    2 => {
                        child = Some(name);
                        text.clear();
                    }
                    _ => {}
                }
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match depth {
                    0 => doc.root = name,
                    1 => doc.children.push((name, String::new())),
                    _ => {}
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    if let Some(name) = child.take() {
                        doc.children.push((name, std::mem::take(&mut text)));
                    }
                }
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "an end tag without a start".to_string())?;
            }
            Event::Text(t) if depth == 2 => {
                let s = t.unescape().map_err(|e| format!("bad text: {e}"))?;
                text.push_str(&s);
            }
            Event::CData(c) if depth == 2 => {
                let raw = c.into_inner();
                let s = std::str::from_utf8(&raw).map_err(|_| "CDATA is not UTF-8".to_string())?;
                text.push_str(s);
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if depth != 0 {
        return Err("the document ends inside an element".into());
    }
    if doc.root.is_empty() {
        return Err("no root element".into());
    }
    Ok(doc)
}

/// Appends `s` as XML text: the five entities, `\r` as a character reference (parsers would
/// turn a raw one into `\n`), and characters XML 1.0 cannot carry as U+FFFD.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Builds an answer document element by element.
pub struct Writer {
    out: String,
}

impl Writer {
    /// A document whose root is `root` (in the API's namespace).
    pub fn new(root: &str) -> Writer {
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"{NS}\">"
        );
        Writer { out }
    }

    pub fn open(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// `<name>text</name>`; nothing for empty text (the SDKs take an empty element for a
    /// missing one anyway).
    pub fn field(&mut self, name: &str, text: &str) -> &mut Self {
        if text.is_empty() {
            return self;
        }
        let _ = write!(self.out, "<{name}>");
        escape_into(&mut self.out, text);
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// `<name>text</name>`, written even when empty.
    pub fn field_always(&mut self, name: &str, text: &str) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        escape_into(&mut self.out, text);
        let _ = write!(self.out, "</{name}>");
        self
    }

    pub fn finish(mut self, root: &str) -> String {
        let _ = write!(self.out, "</{root}>");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_python_entities_and_node_cdata_alike() {
        let py = br#"<?xml version="1.0" encoding="utf-8"?><Message xmlns="http://mq.aliyuncs.com/doc/v1/"><MessageBody>a &lt;b&gt; &amp; &quot;c&quot; &#233;</MessageBody><Properties>KEYS:k1|a:b|</Properties><MessageTag>TagA</MessageTag></Message>"#;
        let d = parse(py).unwrap();
        assert_eq!(d.root, "Message");
        assert_eq!(d.get("MessageBody"), Some("a <b> & \"c\" \u{e9}"));
        assert_eq!(d.get("Properties"), Some("KEYS:k1|a:b|"));
        let node = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Message xmlns=\"http://mq.aliyuncs.com/doc/v1/\"><MessageBody><![CDATA[x<y>&z 中文]]></MessageBody><MessageTag><![CDATA[T]]></MessageTag></Message>";
        let d = parse(node.as_bytes()).unwrap();
        assert_eq!(d.get("MessageBody"), Some("x<y>&z 中文"));
        assert_eq!(d.get("MessageTag"), Some("T"));
    }

    #[test]
    fn reads_handle_lists_and_empty_roots() {
        let d = parse(b"<ReceiptHandles xmlns=\"x\"><ReceiptHandle>h1</ReceiptHandle><ReceiptHandle><![CDATA[h2]]></ReceiptHandle></ReceiptHandles>").unwrap();
        let hs: Vec<_> = d.children.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(hs, ["h1", "h2"]);
        let d = parse(b"<ReceiptHandles xmlns=\"x\"/>").unwrap();
        assert_eq!(d.root, "ReceiptHandles");
        assert!(d.children.is_empty());
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"<Message>",
            b"<Message><MessageBody>x</Message>",
            b"</Message>",
            b"<Message><MessageBody>&bogus;</MessageBody></Message>",
            b"\xff\xfe<a>",
            b"just text",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn answers_escape_what_xml_cannot_carry_raw() {
        let mut w = Writer::new("Message");
        w.field("MessageBody", "<&>\"'\r\n\u{1}").field("Empty", "");
        let s = w.finish("Message");
        assert!(s.contains("<MessageBody>&lt;&amp;&gt;&quot;&apos;&#13;\n\u{FFFD}</MessageBody>"));
        assert!(!s.contains("Empty"));
        let back = parse(s.as_bytes()).unwrap();
        assert_eq!(back.get("MessageBody"), Some("<&>\"'\r\n\u{FFFD}"));
    }
}

//! The message properties string: `name \u0001 value \u0002` repeated (RocketMQ
//! `MessageDecoder.messageProperties2String`). Stored inside records as it arrived.

pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// Parses a properties string with Apache's rules: split on `\u0002`, key before the first
/// `\u0001`, entries with an empty key or value skipped. Later duplicates win.
pub fn parse(s: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for seg in s.split(PROPERTY_SEPARATOR) {
        if seg.len() < 3 {
            continue;
        }
        if let Some((k, v)) = seg.split_once(NAME_VALUE_SEPARATOR) {
            if k.is_empty() || v.is_empty() {
                continue;
            }
            if let Some(slot) = out.iter_mut().find(|(ek, _)| ek == k) {
                slot.1 = v.to_string();
            } else {
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// Looks one property up without building a map (the send path needs only a few keys).
pub fn get<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let [v] = lookup(s, [key]);
    v
}

/// Looks several properties up in one pass (the send path reads about eight; one scan each
/// showed up in perf). Later duplicates win; empty values read as absent.
pub fn lookup<'a, const N: usize>(s: &'a str, keys: [&str; N]) -> [Option<&'a str>; N] {
    let mut found = [None; N];
    for seg in s.split(PROPERTY_SEPARATOR) {
        if let Some((k, v)) = seg.split_once(NAME_VALUE_SEPARATOR) {
            if v.is_empty() {
                continue;
            }
            if let Some(i) = keys.iter().position(|key| *key == k) {
                found[i] = Some(v);
            }
        }
    }
    found
}

pub fn encode(props: &[(String, String)]) -> String {
    let mut s = String::new();
    for (k, v) in props {
        push(&mut s, k, v);
    }
    s
}

/// Appends one `k\u0001v\u0002` pair.
pub fn push(s: &mut String, key: &str, value: &str) {
    s.push_str(key);
    s.push(NAME_VALUE_SEPARATOR);
    s.push_str(value);
    s.push(PROPERTY_SEPARATOR);
}

/// Returns the properties with `key` set to `value` (replacing any earlier value).
pub fn with(s: &str, key: &str, value: &str) -> String {
    let mut props = parse(s);
    match props.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => props.push((key.to_string(), value.to_string())),
    }
    encode(&props)
}

/// Returns the properties without the given keys.
pub fn without(s: &str, keys: &[&str]) -> String {
    let props: Vec<_> = parse(s)
        .into_iter()
        .filter(|(k, _)| !keys.contains(&k.as_str()))
        .collect();
    encode(&props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apache_rules() {
        let s = "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}\u{1}x\u{2}EMPTY\u{1}\u{2}a\u{1}1\u{2}";
        let p = parse(s);
        assert_eq!(
            p,
            vec![
                ("TAGS".into(), "TagA".into()),
                ("KEYS".into(), "k1 k2".into()),
                ("a".into(), "1".into())
            ]
        );
        assert_eq!(get(s, "KEYS"), Some("k1 k2"));
        assert_eq!(get(s, "EMPTY"), None);
        assert_eq!(get(s, "nope"), None);
    }

    #[test]
    fn with_and_without() {
        let s = encode(&[("A".into(), "1".into()), ("B".into(), "2".into())]);
        let s2 = with(&s, "A", "9");
        assert_eq!(get(&s2, "A"), Some("9"));
        let s3 = without(&s2, &["A"]);
        assert_eq!(get(&s3, "A"), None);
        assert_eq!(get(&s3, "B"), Some("2"));
    }
}

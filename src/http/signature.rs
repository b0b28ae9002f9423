//! The HTTP API's request signature (`Authorization: MQ AK:Signature`), as both SDKs compute it
//! (protocol/HTTP-API.md §1): the parts of the string to sign, taken verbatim from the request.
//! The check itself is the shared authenticator's. Pure.

use actix_web::http::header::HeaderMap;
use std::time::{Duration, SystemTime};

/// The Date skew the API allows.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a request's credentials could not even be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    InvalidAuthorization,
    MissingDate,
    InvalidDate,
    /// The Date is more than 15 minutes off the broker's clock.
    TimeExpired,
}

/// The access key and the signature of `Authorization: MQ AK:Signature`.
pub fn parse_authorization(value: &str) -> Result<(&str, &str), CredentialError> {
    let rest = value
        .trim()
        .strip_prefix("MQ ")
        .ok_or(CredentialError::InvalidAuthorization)?;
    let (ak, sig) = rest
        .trim_start()
        .split_once(':')
        .ok_or(CredentialError::InvalidAuthorization)?;
    if ak.is_empty() || sig.is_empty() {
        return Err(CredentialError::InvalidAuthorization);
    }
    Ok((ak, sig))
}

/// Checks the Date header against `now`.
pub fn check_date(value: Option<&str>, now: SystemTime) -> Result<(), CredentialError> {
    let value = value.ok_or(CredentialError::MissingDate)?;
    let at = httpdate::parse_http_date(value.trim()).map_err(|_| CredentialError::InvalidDate)?;
    let skew = match now.duration_since(at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_SKEW {
        return Err(CredentialError::TimeExpired);
    }
    Ok(())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// METHOD, Content-MD5, Content-Type, Date (each as sent, or empty), the `x-mq-*` headers
/// sorted by lower-cased name, then the request target as sent.
pub fn string_to_sign(method: &str, headers: &HeaderMap, target: &str) -> String {
    let mut mq: Vec<(String, &str)> = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().to_ascii_lowercase();
            let value = value.to_str().ok()?;
            name.starts_with("x-mq-").then_some((name, value))
        })
        .collect();
    mq.sort();
    let mut s = String::with_capacity(128 + target.len());
    for part in [
        method,
        header(headers, "content-md5"),
        header(headers, "content-type"),
        header(headers, "date"),
    ] {
        s.push_str(part);
        s.push('\n');
    }
    for (name, value) in mq {
        s.push_str(&name);
        s.push(':');
        s.push_str(value);
        s.push('\n');
    }
    s.push_str(target);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn the_string_to_sign_is_what_both_sdks_sign() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "text/xml;charset=utf-8"),
            ("content-md5", "ZDU3"),
            ("date", "Sun, 22 Nov 2026 03:10:04 GMT"),
            ("x-mq-version", "2015-06-06"),
            ("X-MQ-Other", "b"),
            ("host", "ignored"),
        ] {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        let s = string_to_sign("GET", &h, "/topics/T/messages?consumer=G&tag=A%7C%7CB");
        assert_eq!(
            s,
            "GET\nZDU3\ntext/xml;charset=utf-8\nSun, 22 Nov 2026 03:10:04 GMT\nx-mq-other:b\nx-mq-version:2015-06-06\n/topics/T/messages?consumer=G&tag=A%7C%7CB"
        );
        let s = string_to_sign("POST", &HeaderMap::new(), "/t");
        assert_eq!(s, "POST\n\n\n\n/t");
    }

    #[test]
    fn authorization_headers_parse_or_are_refused() {
        assert_eq!(parse_authorization("MQ ak:c2ln"), Ok(("ak", "c2ln")));
        for bad in [
            "",
            "MQ",
            "MQ ak",
            "MQ :sig",
            "MQ ak:",
            "Basic abc",
            "mq ak:sig",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_must_be_present_parse_and_be_near() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 03:10:04 GMT").unwrap();
        assert_eq!(
            check_date(Some("Sun, 22 Nov 2026 03:10:04 GMT"), now),
            Ok(())
        );
        assert_eq!(
            check_date(Some("Sun, 22 Nov 2026 03:20:04 GMT"), now),
            Ok(())
        );
        assert_eq!(
            check_date(Some("Sun, 22 Nov 2026 03:30:05 GMT"), now),
            Err(CredentialError::TimeExpired)
        );
        assert_eq!(
            check_date(Some("Sun, 22 Nov 2026 02:50:03 GMT"), now),
            Err(CredentialError::TimeExpired)
        );
        assert_eq!(check_date(None, now), Err(CredentialError::MissingDate));
        assert_eq!(
            check_date(Some("yesterday"), now),
            Err(CredentialError::InvalidDate)
        );
    }
}

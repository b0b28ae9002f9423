//! Typed reads of a request's extFields (the "custom header", digest §1.4), lenient the way the
//! clients need: numbers may arrive as JSON numbers or strings, booleans as `true`, `"true"`,
//! `"1"`, or anything else meaning false.

use super::command::RemotingCommand;

/// A missing or malformed required field; becomes an error response, never a panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("the custom field <{0}> is null")]
    Missing(&'static str),
    #[error("the custom field <{0}> is not a valid number: {1:?}")]
    NotNumber(&'static str, String),
}

/// The name an error reports: the long one of a field's aliases (SEND_MESSAGE_V2 uses one-letter
/// names, whichever order a handler looks them up in).
fn label(names: &[&'static str]) -> &'static str {
    names.iter().copied().max_by_key(|n| n.len()).unwrap_or("")
}

pub struct Ext<'a> {
    cmd: &'a RemotingCommand,
}

impl<'a> Ext<'a> {
    pub fn of(cmd: &'a RemotingCommand) -> Self {
        Ext { cmd }
    }

    /// The first of `names` present (SEND_MESSAGE_V2 uses one-letter aliases).
    fn raw(&self, names: &[&'static str]) -> Option<&'a str> {
        names.iter().find_map(|n| self.cmd.ext.get(n))
    }

    pub fn opt_str(&self, name: &'static str) -> Option<&'a str> {
        self.raw(&[name])
    }

    pub fn str(&self, name: &'static str) -> Result<&'a str, FieldError> {
        self.raw(&[name]).ok_or(FieldError::Missing(name))
    }

    pub fn str_any(&self, names: &[&'static str]) -> Result<&'a str, FieldError> {
        self.raw(names).ok_or(FieldError::Missing(label(names)))
    }

    pub fn opt_i64_any(&self, names: &[&'static str]) -> Result<Option<i64>, FieldError> {
        match self.raw(names) {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => s
                .trim()
                .parse::<i64>()
                .or_else(|_| s.trim().parse::<f64>().map(|f| f as i64))
                .map(Some)
                .map_err(|_| FieldError::NotNumber(label(names), s.to_string())),
        }
    }

    pub fn i64_any(&self, names: &[&'static str]) -> Result<i64, FieldError> {
        self.opt_i64_any(names)?
            .ok_or(FieldError::Missing(label(names)))
    }

    pub fn i64(&self, name: &'static str) -> Result<i64, FieldError> {
        self.i64_any(&[name])
    }

    pub fn opt_i64(&self, name: &'static str) -> Result<Option<i64>, FieldError> {
        self.opt_i64_any(&[name])
    }

    pub fn i32(&self, name: &'static str) -> Result<i32, FieldError> {
        Ok(self.i64(name)? as i32)
    }

    /// Java's `Boolean.parseBoolean`, widened to accept the C++ clients' `"1"`.
    pub fn bool_any(&self, names: &[&'static str]) -> Option<bool> {
        self.raw(names)
            .map(|s| s.eq_ignore_ascii_case("true") || s.trim() == "1")
    }

    pub fn bool(&self, name: &'static str) -> Option<bool> {
        self.bool_any(&[name])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_values() {
        let mut cmd = RemotingCommand::request(10, 1);
        for (k, v) in [
            ("a", "1"),
            ("b", "x"),
            ("c", "true"),
            ("d", " 7 "),
            ("e", "1.0"),
        ] {
            cmd.ext.insert(k, v);
        }
        let e = Ext::of(&cmd);
        assert_eq!(e.bool("a"), Some(true));
        assert_eq!(e.bool("b"), Some(false));
        assert_eq!(e.bool("c"), Some(true));
        assert_eq!(e.i64("d"), Ok(7));
        assert_eq!(e.i64("e"), Ok(1));
        assert!(matches!(e.i64("b"), Err(FieldError::NotNumber(..))));
        assert_eq!(e.i64("zz"), Err(FieldError::Missing("zz")));
        assert_eq!(e.str_any(&["producerGroup", "a"]), Ok("1"));
    }
}

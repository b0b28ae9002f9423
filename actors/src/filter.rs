//! Message filters a pull applies on the broker side. Tags match by hash code against the
//! consume-queue entry (digest §4.5); the client re-checks the exact string.

use crate::model::java_hash;
use crate::sql;
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Filter {
    #[default]
    All,
    Tags(HashSet<i32>),
    /// SQL92 over the message properties (user properties and system keys such as TAGS).
    Sql(Arc<sql::Expr>),
}

impl Filter {
    /// A filter from a subscription's expression and type (`TAG`, empty, or `SQL92`); the
    /// error text points at what is wrong.
    pub fn from_subscription(expression: &str, expression_type: &str) -> Result<Filter, String> {
        let t = expression_type.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("TAG") {
            Ok(Filter::from_tag_expression(expression))
        } else if t.eq_ignore_ascii_case("SQL92") {
            sql::parse(expression)
                .map(|e| Filter::Sql(Arc::new(e)))
                .map_err(|e| format!("{e} in {expression:?}"))
        } else {
            Err(format!(
                "unknown expression type {t:?}: expected TAG or SQL92"
            ))
        }
    }

    /// Whether the stored record must be looked at (SQL); tag filters need only the cq entry.
    pub fn needs_record(&self) -> bool {
        matches!(self, Filter::Sql(_))
    }

    /// The record-level check: the SQL expression against the record's properties.
    pub fn accepts_record(&self, record: &Bytes) -> bool {
        match self {
            Filter::Sql(e) => match rocktor_storage::record::decode(record) {
                Ok((r, _)) => e.matches(&rocktor_storage::properties::parse(&r.properties)),
                Err(_) => false,
            },
            _ => true,
        }
    }

    /// Parses a TAG subscription expression: `*` or empty is everything, else `a || b`.
    pub fn from_tag_expression(expr: &str) -> Filter {
        let expr = expr.trim();
        if expr.is_empty() || expr == "*" {
            return Filter::All;
        }
        let codes: HashSet<i32> = expr
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(java_hash)
            .collect();
        if codes.is_empty() {
            Filter::All
        } else {
            Filter::Tags(codes)
        }
    }

    /// Whether a consume-queue entry with this tag code can match.
    pub fn accepts_tag_hash(&self, tag_hash: i64) -> bool {
        match self {
            Filter::All => true,
            Filter::Tags(codes) => codes.contains(&(tag_hash as i32)),
            Filter::Sql(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions() {
        assert_eq!(Filter::from_tag_expression(" * "), Filter::All);
        assert_eq!(Filter::from_tag_expression(""), Filter::All);
        let f = Filter::from_tag_expression("TagA || TagC");
        assert!(f.accepts_tag_hash(java_hash("TagA") as i64));
        assert!(f.accepts_tag_hash(java_hash("TagC") as i64));
        assert!(!f.accepts_tag_hash(java_hash("TagB") as i64));
        assert!(!f.accepts_tag_hash(0));
    }

    #[test]
    fn subscriptions() {
        assert_eq!(Filter::from_subscription("*", ""), Ok(Filter::All));
        assert!(matches!(
            Filter::from_subscription("a > 1", "SQL92"),
            Ok(Filter::Sql(_))
        ));
        let err = Filter::from_subscription("a >", "SQL92").unwrap_err();
        assert!(err.contains("column 4"), "{err}");
        assert!(Filter::from_subscription("x", "XPATH").is_err());
    }
}

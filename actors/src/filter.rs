//! Message filters a pull applies on the broker side. Tags match by hash code against the
//! consume-queue entry (digest §4.5); the client re-checks the exact string.

use crate::model::java_hash;
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Filter {
    #[default]
    All,
    Tags(HashSet<i32>),
}

impl Filter {
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
}

//! SQL92 message filters (digest §4.6): our own lexer, recursive-descent parser and
//! three-valued evaluator over a message's properties. The grammar follows RocketMQ's
//! `SelectorParser.jj`:
//!
//! ```text
//! or      := and (OR and)*
//! and     := eq (AND eq)*
//! eq      := cmp ( ('=' | '<>') cmp | IS [NOT] NULL )*
//! cmp     := unary ( ('>'|'>='|'<'|'<=') unary
//!                  | [NOT] BETWEEN unary AND unary
//!                  | [NOT] IN '(' string (',' string)* ')'
//!                  | [NOT] (CONTAINS|STARTSWITH|ENDSWITH) string )*
//! unary   := '+' unary | '-' unary | NOT unary | primary
//! primary := literal | identifier | '(' or ')'
//! ```
//!
//! Keywords are case-insensitive; `--` and `/* */` are comments. A result that is not TRUE
//! (false, unknown/null, or not a boolean) means no match.
//!
//! Limits, because an expression comes from any client: at most `MAX_EXPRESSION_LEN` bytes,
//! and no tree deeper than `MAX_DEPTH` (parentheses and prefix operators nest the parser;
//! chained comparisons deepen the tree). AND and OR chains are one n-ary node, so long
//! chains stay shallow. With the depth bounded, parsing, `eval` and `Drop` recurse at most
//! `MAX_DEPTH` levels: no stack overflow on any input.

use std::fmt;

/// The longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 16 * 1024;
/// The deepest expression tree (and parser nesting) accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Var(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    /// All operands, in order (a chain `a AND b AND c` is one node).
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    In(Box<Expr>, Vec<String>, bool),
    Str(StrOp, Box<Expr>, String, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// A syntax error with the 1-based column it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SQL92 syntax error at column {}: {}",
            self.column, self.message
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Kw(&'static str),
    Str(String),
    Long(i64),
    Double(f64),
    Op(&'static str),
    End,
}

const KEYWORDS: [&str; 13] = [
    "AND",
    "OR",
    "NOT",
    "IS",
    "NULL",
    "BETWEEN",
    "IN",
    "CONTAINS",
    "STARTSWITH",
    "ENDSWITH",
    "TRUE",
    "FALSE",
    "ESCAPE",
];

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, SqlError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |i: usize, m: String| SqlError {
        column: i + 1,
        message: m,
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= chars.len() {
                    return Err(err(start, "unterminated comment".into()));
                }
                if chars[i] == '*' && chars[i + 1] == '/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
        } else if c == '\'' {
            let start = i;
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(start, "unterminated string literal".into())),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), start));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                // exponent sign
                if (chars[i] == 'e' || chars[i] == 'E')
                    && matches!(chars.get(i + 1), Some('+') | Some('-'))
                {
                    i += 1;
                }
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let t = text.trim_end_matches(['l', 'L']);
            let tok = if let Ok(v) = t.parse::<i64>() {
                Tok::Long(v)
            } else if let Ok(v) = text.trim_end_matches(['d', 'D', 'f', 'F']).parse::<f64>() {
                Tok::Double(v)
            } else {
                return Err(err(start, format!("malformed number {text:?}")));
            };
            out.push((tok, start));
        } else if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '_'
                    || chars[i] == '$'
                    || chars[i] == '.')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let upper = word.to_ascii_uppercase();
            match KEYWORDS.iter().find(|k| **k == upper) {
                Some(k) => out.push((Tok::Kw(k), start)),
                None => out.push((Tok::Ident(word), start)),
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                ">=" => Some(">="),
                "<=" => Some("<="),
                "<>" => Some("<>"),
                "!=" => Some("<>"),
                _ => None,
            };
            if let Some(op) = op {
                out.push((Tok::Op(op), i));
                i += 2;
                continue;
            }
            let op = match c {
                '=' => "=",
                '>' => ">",
                '<' => "<",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                '+' => "+",
                '-' => "-",
                other => return Err(err(i, format!("unexpected character {other:?}"))),
            };
            out.push((Tok::Op(op), i));
            i += 1;
        }
    }
    out.push((Tok::End, chars.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Current nesting of parentheses and prefix operators.
    nest: usize,
}

/// A parsed sub-expression and the depth of its tree (a leaf is 1).
type Parsed = Result<(Expr, usize), SqlError>;

/// The error for nesting past `MAX_DEPTH` at the 0-based column `col`.
fn too_deep(col: usize) -> SqlError {
    SqlError {
        column: col + 1,
        message: format!("the expression nests deeper than {MAX_DEPTH} levels"),
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier {s}"),
        Tok::Kw(k) => format!("keyword {k}"),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Long(v) => format!("number {v}"),
        Tok::Double(v) => format!("number {v}"),
        Tok::Op(o) => format!("\"{o}\""),
        Tok::End => "the end of the expression".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }
    fn peek2(&self) -> &Tok {
        &self.toks[(self.pos + 1).min(self.toks.len() - 1)].0
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn error(&self, expected: &str) -> SqlError {
        let (t, col) = &self.toks[self.pos.min(self.toks.len() - 1)];
        SqlError {
            column: col + 1,
            message: format!("expected {expected}, found {}", describe(t)),
        }
    }
    fn eat_kw(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Tok::Kw(x) if *x == k) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_op(&mut self, o: &str) -> bool {
        if matches!(self.peek(), Tok::Op(x) if *x == o) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_op(&mut self, o: &str) -> Result<(), SqlError> {
        if self.eat_op(o) {
            Ok(())
        } else {
            Err(self.error(&format!("\"{o}\"")))
        }
    }
    fn string(&mut self) -> Result<String, SqlError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.error("a string literal")),
        }
    }

    /// The 0-based column of the current token.
    fn col(&self) -> usize {
        self.toks[self.pos.min(self.toks.len() - 1)].1
    }

    /// A node of this depth whose operator is at `col`, unless it is too deep.
    fn node(&self, e: Expr, depth: usize, col: usize) -> Parsed {
        if depth > MAX_DEPTH {
            return Err(too_deep(col));
        }
        Ok((e, depth))
    }

    /// Runs a nested parse (parentheses, prefix operators) one level deeper; `col` is where
    /// the parenthesis or operator is.
    fn nested(&mut self, col: usize, f: impl FnOnce(&mut Self) -> Parsed) -> Parsed {
        if self.nest >= MAX_DEPTH {
            return Err(too_deep(col));
        }
        self.nest += 1;
        let r = f(self);
        self.nest -= 1;
        r
    }

    fn or(&mut self) -> Parsed {
        let (first, mut depth) = self.and()?;
        if !matches!(self.peek(), Tok::Kw("OR")) {
            return Ok((first, depth));
        }
        let mut items = vec![first];
        loop {
            let col = self.col();
            if !self.eat_kw("OR") {
                break;
            }
            let (e, d) = self.and()?;
            depth = depth.max(d);
            if depth >= MAX_DEPTH {
                return Err(too_deep(col));
            }
            items.push(e);
        }
        Ok((Expr::Or(items), depth + 1))
    }

    fn and(&mut self) -> Parsed {
        let (first, mut depth) = self.eq()?;
        if !matches!(self.peek(), Tok::Kw("AND")) {
            return Ok((first, depth));
        }
        let mut items = vec![first];
        loop {
            let col = self.col();
            if !self.eat_kw("AND") {
                break;
            }
            let (e, d) = self.eq()?;
            depth = depth.max(d);
            if depth >= MAX_DEPTH {
                return Err(too_deep(col));
            }
            items.push(e);
        }
        Ok((Expr::And(items), depth + 1))
    }

    fn eq(&mut self) -> Parsed {
        let (mut e, mut depth) = self.cmp()?;
        loop {
            let col = self.col();
            let op = if self.eat_op("=") {
                CmpOp::Eq
            } else if self.eat_op("<>") {
                CmpOp::Ne
            } else if self.eat_kw("IS") {
                let negated = self.eat_kw("NOT");
                if !self.eat_kw("NULL") {
                    return Err(self.error("NULL"));
                }
                (e, depth) = self.node(Expr::IsNull(Box::new(e), negated), depth + 1, col)?;
                continue;
            } else {
                return Ok((e, depth));
            };
            let (rhs, d) = self.cmp()?;
            let d = depth.max(d) + 1;
            (e, depth) = self.node(Expr::Cmp(op, Box::new(e), Box::new(rhs)), d, col)?;
        }
    }

    fn cmp(&mut self) -> Parsed {
        let (mut e, mut depth) = self.unary()?;
        loop {
            let col = self.col();
            let op = match self.peek() {
                Tok::Op(">") => Some(CmpOp::Gt),
                Tok::Op(">=") => Some(CmpOp::Ge),
                Tok::Op("<") => Some(CmpOp::Lt),
                Tok::Op("<=") => Some(CmpOp::Le),
                _ => None,
            };
            if let Some(op) = op {
                self.pos += 1;
                let (rhs, d) = self.unary()?;
                let d = depth.max(d) + 1;
                (e, depth) = self.node(Expr::Cmp(op, Box::new(e), Box::new(rhs)), d, col)?;
                continue;
            }
            let negated = matches!(self.peek(), Tok::Kw("NOT"))
                && matches!(
                    self.peek2(),
                    Tok::Kw("BETWEEN" | "IN" | "CONTAINS" | "STARTSWITH" | "ENDSWITH")
                );
            if negated {
                self.pos += 1;
            }
            match self.peek() {
                Tok::Kw("BETWEEN") => {
                    self.pos += 1;
                    let (lo, dl) = self.unary()?;
                    if !self.eat_kw("AND") {
                        return Err(self.error("AND"));
                    }
                    let (hi, dh) = self.unary()?;
                    let d = depth.max(dl).max(dh) + 1;
                    (e, depth) = self.node(
                        Expr::Between(Box::new(e), Box::new(lo), Box::new(hi), negated),
                        d,
                        col,
                    )?;
                }
                Tok::Kw("IN") => {
                    self.pos += 1;
                    self.expect_op("(")?;
                    let mut items = vec![self.string()?];
                    while self.eat_op(",") {
                        items.push(self.string()?);
                    }
                    self.expect_op(")")?;
                    (e, depth) =
                        self.node(Expr::In(Box::new(e), items, negated), depth + 1, col)?;
                }
                Tok::Kw(k @ ("CONTAINS" | "STARTSWITH" | "ENDSWITH")) => {
                    let op = match *k {
                        "CONTAINS" => StrOp::Contains,
                        "STARTSWITH" => StrOp::StartsWith,
                        _ => StrOp::EndsWith,
                    };
                    self.pos += 1;
                    let pat = self.string()?;
                    (e, depth) =
                        self.node(Expr::Str(op, Box::new(e), pat, negated), depth + 1, col)?;
                }
                _ => return Ok((e, depth)),
            }
        }
    }

    fn unary(&mut self) -> Parsed {
        let col = self.col();
        if self.eat_op("+") {
            return self.nested(col, |p| p.unary());
        }
        if self.eat_op("-") {
            let (e, d) = self.nested(col, |p| p.unary())?;
            return self.node(Expr::Neg(Box::new(e)), d + 1, col);
        }
        if self.eat_kw("NOT") {
            let (e, d) = self.nested(col, |p| p.unary())?;
            return self.node(Expr::Not(Box::new(e)), d + 1, col);
        }
        self.primary()
    }

    fn primary(&mut self) -> Parsed {
        let leaf = |e: Expr| Ok((e, 1));
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                leaf(Expr::Lit(Value::Str(s)))
            }
            Tok::Long(v) => {
                self.next();
                leaf(Expr::Lit(Value::Long(v)))
            }
            Tok::Double(v) => {
                self.next();
                leaf(Expr::Lit(Value::Double(v)))
            }
            Tok::Kw("TRUE") => {
                self.next();
                leaf(Expr::Lit(Value::Bool(true)))
            }
            Tok::Kw("FALSE") => {
                self.next();
                leaf(Expr::Lit(Value::Bool(false)))
            }
            Tok::Kw("NULL") => {
                self.next();
                leaf(Expr::Lit(Value::Null))
            }
            Tok::Ident(name) => {
                self.next();
                leaf(Expr::Var(name))
            }
            Tok::Op("(") => {
                let col = self.col();
                self.next();
                let e = self.nested(col, |p| p.or())?;
                self.expect_op(")")?;
                Ok(e)
            }
            _ => Err(self.error("a value, a property name or \"(\"")),
        }
    }
}

/// Parses an expression; the error says where and what was expected.
pub fn parse(src: &str) -> Result<Expr, SqlError> {
    if src.len() > MAX_EXPRESSION_LEN {
        // The column (in characters, as everywhere) of the first character past the limit.
        let column = src
            .char_indices()
            .take_while(|(at, c)| at + c.len_utf8() <= MAX_EXPRESSION_LEN)
            .count()
            + 1;
        return Err(SqlError {
            column,
            message: format!(
                "the expression is {} bytes long; at most {MAX_EXPRESSION_LEN} are allowed",
                src.len()
            ),
        });
    }
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        nest: 0,
    };
    if matches!(p.peek(), Tok::End) {
        return Err(p.error("an expression"));
    }
    let (e, _) = p.or()?;
    if !matches!(p.peek(), Tok::End) {
        return Err(p.error("an operator or the end of the expression"));
    }
    Ok(e)
}

/// A numeric view of a value: numbers as they are, strings parsed as RocketMQ's string
/// properties are (user properties are strings on the wire).
fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Long(l) => Some(*l as f64),
        Value::Double(d) => Some(*d),
        Value::Str(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn compare(op: CmpOp, a: &Value, b: &Value) -> Option<bool> {
    use std::cmp::Ordering::*;
    if matches!(a, Value::Null) || matches!(b, Value::Null) {
        return None;
    }
    let ord = match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => {
            return match op {
                CmpOp::Eq => Some(x == y),
                CmpOp::Ne => Some(x != y),
                _ => None,
            }
        }
        (Value::Str(x), Value::Str(y)) => match op {
            CmpOp::Eq => return Some(x == y),
            CmpOp::Ne => return Some(x != y),
            _ => match (num(a), num(b)) {
                (Some(p), Some(q)) => p.partial_cmp(&q)?,
                _ => x.cmp(y),
            },
        },
        _ => num(a)?.partial_cmp(&num(b)?)?,
    };
    Some(match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
    })
}

fn truth(v: Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(b),
        _ => None,
    }
}

fn opt_bool(b: Option<bool>) -> Value {
    b.map(Value::Bool).unwrap_or(Value::Null)
}

impl Expr {
    /// Evaluates against a property lookup.
    pub fn eval<'a>(&self, get: &dyn Fn(&str) -> Option<&'a str>) -> Value {
        match self {
            Expr::Lit(v) => v.clone(),
            Expr::Var(name) => get(name)
                .map(|s| Value::Str(s.to_string()))
                .unwrap_or(Value::Null),
            Expr::Neg(e) => match e.eval(get) {
                Value::Long(l) => Value::Long(l.wrapping_neg()),
                v => num(&v).map(|d| Value::Double(-d)).unwrap_or(Value::Null),
            },
            Expr::Not(e) => opt_bool(truth(e.eval(get)).map(|b| !b)),
            // Three-valued: FALSE decides an AND, TRUE an OR; otherwise any unknown operand
            // makes the result unknown.
            Expr::And(items) => {
                let mut unknown = false;
                for e in items {
                    match truth(e.eval(get)) {
                        Some(false) => return Value::Bool(false),
                        Some(true) => {}
                        None => unknown = true,
                    }
                }
                if unknown {
                    Value::Null
                } else {
                    Value::Bool(true)
                }
            }
            Expr::Or(items) => {
                let mut unknown = false;
                for e in items {
                    match truth(e.eval(get)) {
                        Some(true) => return Value::Bool(true),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                if unknown {
                    Value::Null
                } else {
                    Value::Bool(false)
                }
            }
            Expr::Cmp(op, a, b) => opt_bool(compare(*op, &a.eval(get), &b.eval(get))),
            Expr::IsNull(e, negated) => Value::Bool(matches!(e.eval(get), Value::Null) != *negated),
            Expr::Between(e, lo, hi, negated) => {
                let v = e.eval(get);
                let r = match (
                    compare(CmpOp::Ge, &v, &lo.eval(get)),
                    compare(CmpOp::Le, &v, &hi.eval(get)),
                ) {
                    (Some(a), Some(b)) => Some(a && b),
                    _ => None,
                };
                opt_bool(r.map(|b| b != *negated))
            }
            Expr::In(e, items, negated) => match e.eval(get) {
                Value::Str(s) => Value::Bool(items.contains(&s) != *negated),
                _ => Value::Null,
            },
            Expr::Str(op, e, pat, negated) => match e.eval(get) {
                Value::Str(s) => {
                    let hit = match op {
                        StrOp::Contains => s.contains(pat.as_str()),
                        StrOp::StartsWith => s.starts_with(pat.as_str()),
                        StrOp::EndsWith => s.ends_with(pat.as_str()),
                    };
                    Value::Bool(hit != *negated)
                }
                _ => Value::Null,
            },
        }
    }

    /// Whether a message with these properties matches: only TRUE does.
    pub fn matches(&self, props: &[(String, String)]) -> bool {
        let get = |k: &str| {
            props
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.as_str())
        };
        matches!(self.eval(&get), Value::Bool(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// An expression, the properties it sees, and whether it must match.
    type Case = (&'static str, &'static [(&'static str, &'static str)], bool);

    const TABLE: &[Case] = &[
        ("a > 5 AND b = 'x'", &[("a", "7"), ("b", "x")], true),
        ("a > 5 AND b = 'x'", &[("a", "5"), ("b", "x")], false),
        ("a > 5 AND b = 'x'", &[("a", "9"), ("b", "y")], false),
        ("a > 5 AND b = 'x'", &[("b", "x")], false),
        ("a >= 5", &[("a", "5")], true),
        ("a < 5.5", &[("a", "5")], true),
        ("a <= -1", &[("a", "-1")], true),
        ("a = 10L", &[("a", "10")], true),
        ("a <> 3", &[("a", "4")], true),
        ("a != 3", &[("a", "3")], false),
        ("a = 1.5e2", &[("a", "150")], true),
        ("-a = -3", &[("a", "3")], true),
        ("a BETWEEN 1 AND 3", &[("a", "2")], true),
        ("a BETWEEN 1 AND 3", &[("a", "4")], false),
        ("a NOT BETWEEN 1 AND 3", &[("a", "4")], true),
        ("a NOT BETWEEN 1 AND 3", &[], false),
        ("c IN ('red', 'blue')", &[("c", "red")], true),
        ("c IN ('red', 'blue')", &[("c", "green")], false),
        ("c NOT IN ('red')", &[("c", "green")], true),
        ("c NOT IN ('red')", &[], false),
        ("c IS NULL", &[], true),
        ("c IS NOT NULL", &[("c", "x")], true),
        ("c IS NULL", &[("c", "x")], false),
        ("s CONTAINS 'ell'", &[("s", "hello")], true),
        ("s NOT CONTAINS 'ell'", &[("s", "hello")], false),
        ("s STARTSWITH 'he'", &[("s", "hello")], true),
        ("s ENDSWITH 'lo'", &[("s", "hello")], true),
        ("s NOT ENDSWITH 'lo'", &[("s", "help")], true),
        ("s = 'it''s'", &[("s", "it's")], true),
        ("TAGS = 'TagA' OR TAGS = 'TagB'", &[("TAGS", "TagB")], true),
        ("NOT (a = 1)", &[("a", "2")], true),
        ("NOT a = 1", &[], false),
        ("a = 1 OR b = 2", &[("b", "2")], true),
        ("a = 1 AND b = 2 OR c = 3", &[("c", "3")], true),
        ("a = 1 AND (b = 2 OR c = 3)", &[("c", "3")], false),
        ("TRUE", &[], true),
        ("FALSE OR TRUE", &[], true),
        ("a", &[("a", "true")], false),
        ("flag = TRUE", &[("flag", "true")], false),
        ("x = 'a' -- trailing comment", &[("x", "a")], true),
        ("/* lead */ x = 'a'", &[("x", "a")], true),
        ("and_b = 1", &[("and_b", "1")], true),
        ("$x = 1 and Y_2 = 'q'", &[("$x", "1"), ("Y_2", "q")], true),
        ("s > 'abc'", &[("s", "abd")], true),
    ];

    #[test]
    fn expression_table() {
        for (expr, p, want) in TABLE {
            let e = parse(expr).unwrap_or_else(|err| panic!("{expr}: {err}"));
            assert_eq!(e.matches(&props(p)), *want, "{expr} with {p:?}");
        }
    }

    #[test]
    fn errors_point_at_the_problem() {
        for (expr, column) in [
            ("a >", 4),
            ("a = 'x", 5),
            ("a IN (1, 2)", 7),
            ("(a = 1", 7),
            ("a = 1 b", 7),
            ("a # 1", 3),
            ("", 1),
            ("a BETWEEN 1 OR 2", 13),
            ("a IS 1", 6),
            ("/* x", 1),
        ] {
            let err = parse(expr).expect_err(expr);
            assert_eq!(err.column, column, "{expr}: {err}");
        }
        assert!(parse("a >")
            .unwrap_err()
            .to_string()
            .contains("expected a value"));
    }

    #[test]
    fn hostile_nesting_is_refused_without_overflowing_the_stack() {
        let long = "(".repeat(60_000) + "a = 1" + &")".repeat(60_000);
        assert!(parse(&long).unwrap_err().message.contains("16384"));
        for deep in [
            "(".repeat(100) + "a = 1" + &")".repeat(100),
            "NOT ".repeat(100) + "a = 1",
            "- ".repeat(100) + "1 = 1",
            "+ ".repeat(100) + "1 = 1",
            "a".to_string() + &" = a".repeat(200),
            "a".to_string() + &" IS NULL".repeat(200),
            "a".to_string() + &" > 1".repeat(200),
        ] {
            let err = parse(&deep).unwrap_err();
            assert!(err.message.contains("deeper"), "{err}");
        }
        assert!(parse(&("(".repeat(60) + "a = 1" + &")".repeat(60))).is_ok());
        assert!(parse(&("NOT ".repeat(60) + "a = 1")).is_ok());
    }

    #[test]
    fn limit_errors_point_where_the_limit_is_crossed() {
        let err = parse(&"é".repeat(10_000)).unwrap_err();
        assert_eq!(err.column, MAX_EXPRESSION_LEN / 2 + 1, "{err}");
        assert!(err.message.contains("20000 bytes"), "{err}");
        for (expr, column) in [
            // the 65th parenthesis / prefix operator
            ("(".repeat(100) + "a = 1" + &")".repeat(100), 65),
            ("NOT ".repeat(100) + "a = 1", 4 * 64 + 1),
            ("- ".repeat(100) + "1 = 1", 2 * 64 + 1),
            // the 64th "=" makes a tree 65 deep
            ("a".to_string() + &" = a".repeat(200), 4 * 64 - 1),
            ("a".to_string() + &" NOT IN ('x')".repeat(100), 3 + 13 * 63),
            // an AND over an operand already 64 deep
            ("a = 1 AND ".to_string() + &"NOT ".repeat(63) + "a", 7),
            ("NOT ".repeat(63) + "a OR a = 1", 4 * 63 + 3),
        ] {
            let err = parse(&expr).expect_err(&expr);
            assert_eq!(err.column, column, "{err}");
            assert!(err.message.contains("deeper than 64"), "{err}");
        }
    }

    #[test]
    fn long_and_or_chains_are_one_shallow_node() {
        let chain = "a = 1 AND ".repeat(1_500) + "a = 1";
        assert!(chain.len() < MAX_EXPRESSION_LEN);
        let e = parse(&chain).unwrap();
        match &e {
            Expr::And(items) => assert_eq!(items.len(), 1_501),
            other => panic!("{other:?}"),
        }
        assert!(e.matches(&props(&[("a", "1")])));
        assert!(!e.matches(&props(&[("a", "2")])));
        let ors = "a = 1 OR ".repeat(1_500) + "b = 2";
        assert!(parse(&ors).unwrap().matches(&props(&[("b", "2")])));
        // Three-valued logic over n operands.
        assert!(!parse("a = 1 AND b = 2 AND c = 3")
            .unwrap()
            .matches(&props(&[("a", "1"), ("b", "2")])));
        assert!(parse("x = 1 OR y IS NULL OR z = 3").unwrap().matches(&[]));
        assert!(!parse("NOT (x = 1 OR y = 2)").unwrap().matches(&[]));
        assert!(parse("NOT (x = 1 AND y = 2)")
            .unwrap()
            .matches(&props(&[("x", "0")])));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        for s in [
            "((((",
            "''''",
            "1e",
            ".5",
            "a NOT",
            "NOT NOT NOT",
            "a IN (",
            "\u{0}",
            "é = 'é'",
            "5L5",
        ] {
            let _ = parse(s);
        }
    }
}

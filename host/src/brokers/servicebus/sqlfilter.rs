//! Service Bus subscription SQL filters, evaluated as the broker does: the part of Microsoft's
//! "Subscription Rule SQL Filter Syntax" grammar that rules are written in here — `NOT`, `AND`,
//! `OR`, parentheses, the comparisons `= <> != > >= < <=`, `IS [NOT] NULL`, `[NOT] IN (…)`,
//! `[NOT] LIKE` (with `ESCAPE`), `EXISTS (…)`, string, number, boolean and `NULL` constants,
//! `sys.` and `user.` properties (user by default; names case-insensitive; `[delimited]` and
//! `"quoted"` identifiers). Arithmetic and functions (`newid()`, `property()`) are refused when
//! the filter is parsed, so a rule this host cannot evaluate is never silently treated as
//! "match everything".
//!
//! Unknown values follow the documented three-valued logic: a property that does not exist is
//! *unknown*; a comparison, `IN` or `LIKE` with an unknown operand is unknown; `AND`/`OR` use
//! the documented truth tables; a message is delivered only when the filter is *true*. A
//! system property whose value is null (a message without a Label) counts as unknown in
//! comparisons too, as SQL-92 treats NULL, and `IS NULL` is true for it — so
//! `sys.Label IS NULL OR sys.Label NOT IN (…)` is needed to take unlabelled messages, as
//! `infra/servicebus-subscriptions.json` writes it. Decision 0016 cites the sources.

use serde_json::{Map, Value};
use std::fmt;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter(Pred);

/// Why a filter text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SQL filter: {}", self.0)
    }
}

impl std::error::Error for FilterError {}

/// The message fields a filter reads.
#[derive(Debug, Clone, Copy)]
pub struct FilterInput<'a> {
    /// Subject (Label).
    pub label: Option<&'a str>,
    /// MessageId.
    pub message_id: &'a str,
    /// CorrelationId.
    pub correlation_id: Option<&'a str>,
    /// SessionId.
    pub session_id: Option<&'a str>,
    /// ContentType.
    pub content_type: Option<&'a str>,
    /// Application (user) properties.
    pub user: &'a Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
enum Pred {
    Not(Box<Pred>),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Compare(Expr, CmpOp, Expr),
    IsNull(Property, bool),
    In(Expr, Vec<Expr>, bool),
    Like(Expr, String, Option<char>, bool),
    Exists(Property),
    Const(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Const(Lit),
    Prop(Property),
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Property {
    Sys(SysProp),
    User(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SysProp {
    Label,
    MessageId,
    CorrelationId,
    SessionId,
    ContentType,
    /// Properties a message here never carries (To, ReplyTo, …): always null.
    Absent,
}

/// Three-valued truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn of(b: bool) -> Self {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
    fn not(self) -> Self {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
    fn and(self, o: Self) -> Self {
        match (self, o) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }
    }
    fn or(self, o: Self) -> Self {
        match (self, o) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }
    }
}

impl SqlFilter {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let tokens = lex(text)?;
        let mut p = Parser { tokens, at: 0 };
        let pred = p.or()?;
        match p.peek() {
            None => Ok(Self(pred)),
            Some(t) => Err(FilterError(format!("unexpected {t} after the expression"))),
        }
    }

    /// The filter Bicep writes for a subscription that lists its subjects
    /// (`sys.Label IN ('A', 'B')`, infra/main.bicep).
    pub fn subjects_in(subjects: &[String]) -> String {
        let quoted: Vec<String> = subjects
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "''")))
            .collect();
        format!("sys.Label IN ({})", quoted.join(", "))
    }

    /// True when the broker would deliver a message with these fields to the subscription.
    pub fn matches(&self, m: &FilterInput<'_>) -> bool {
        eval(&self.0, m) == Truth::True
    }
}

/// A value at evaluation time: `None` is unknown (missing, or null).
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Text(String),
    Num(f64),
    Bool(bool),
}

fn lookup(p: &Property, m: &FilterInput<'_>) -> Option<Val> {
    let text = |s: Option<&str>| s.map(|s| Val::Text(s.to_string()));
    match p {
        Property::Sys(SysProp::Label) => text(m.label),
        Property::Sys(SysProp::MessageId) => text(Some(m.message_id)),
        Property::Sys(SysProp::CorrelationId) => text(m.correlation_id),
        Property::Sys(SysProp::SessionId) => text(m.session_id),
        Property::Sys(SysProp::ContentType) => text(m.content_type),
        Property::Sys(SysProp::Absent) => None,
        Property::User(name) => {
            let v = m
                .user
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)?;
            match v {
                Value::String(s) => Some(Val::Text(s.clone())),
                Value::Number(n) => n.as_f64().map(Val::Num),
                Value::Bool(b) => Some(Val::Bool(*b)),
                _ => None,
            }
        }
    }
}

fn value(e: &Expr, m: &FilterInput<'_>) -> Option<Val> {
    match e {
        Expr::Prop(p) => lookup(p, m),
        Expr::Const(Lit::Text(s)) => Some(Val::Text(s.clone())),
        Expr::Const(Lit::Int(i)) => Some(Val::Num(*i as f64)),
        Expr::Const(Lit::Float(f)) => Some(Val::Num(*f)),
        Expr::Const(Lit::Bool(b)) => Some(Val::Bool(*b)),
        Expr::Const(Lit::Null) => None,
    }
}

/// Compares two known values; values of different types are never equal (and never ordered).
fn compare(a: &Val, op: CmpOp, b: &Val) -> Truth {
    let ord = match (a, b) {
        (Val::Text(x), Val::Text(y)) => x.as_str().partial_cmp(y.as_str()),
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
        (Val::Bool(x), Val::Bool(y)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => x.partial_cmp(y),
        _ => None,
    };
    let Some(ord) = ord else {
        return Truth::of(op == CmpOp::Ne);
    };
    use std::cmp::Ordering::*;
    Truth::of(match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
    })
}

fn eval(p: &Pred, m: &FilterInput<'_>) -> Truth {
    match p {
        Pred::Const(b) => Truth::of(*b),
        Pred::Not(x) => eval(x, m).not(),
        Pred::And(a, b) => eval(a, m).and(eval(b, m)),
        Pred::Or(a, b) => eval(a, m).or(eval(b, m)),
        Pred::Compare(a, op, b) => match (value(a, m), value(b, m)) {
            (Some(x), Some(y)) => compare(&x, *op, &y),
            _ => Truth::Unknown,
        },
        Pred::IsNull(prop, negated) => {
            let null = lookup(prop, m).is_none();
            Truth::of(null != *negated)
        }
        Pred::In(left, list, negated) => {
            let Some(x) = value(left, m) else {
                return Truth::Unknown;
            };
            let found = list
                .iter()
                .filter_map(|e| value(e, m))
                .any(|y| compare(&x, CmpOp::Eq, &y) == Truth::True);
            Truth::of(found != *negated)
        }
        Pred::Like(left, pattern, escape, negated) => match value(left, m) {
            Some(Val::Text(s)) => Truth::of(like(&s, pattern, *escape) != *negated),
            Some(_) => Truth::False,
            None => Truth::Unknown,
        },
        Pred::Exists(prop) => Truth::of(match prop {
            Property::User(name) => m.user.keys().any(|k| k.eq_ignore_ascii_case(name)),
            Property::Sys(_) => true,
        }),
    }
}

/// SQL LIKE: `%` any run, `_` one character, `escape` makes the next character literal.
fn like(text: &str, pattern: &str, escape: Option<char>) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Ch(char),
    }
    let mut pat = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pat.push(match c {
            c if Some(c) == escape => P::Ch(chars.next().unwrap_or(c)),
            '%' => P::Any,
            '_' => P::One,
            c => P::Ch(c),
        });
    }
    let s: Vec<char> = text.chars().collect();
    // Classic wildcard matching with one backtrack point.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(j) {
            Some(P::Any) => {
                star = Some((j, i));
                j += 1;
            }
            Some(P::One) => {
                i += 1;
                j += 1;
            }
            Some(P::Ch(c)) if c.to_lowercase().eq(s[i].to_lowercase()) => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((sj, si)) => {
                    j = sj + 1;
                    i = si + 1;
                    star = Some((sj, si + 1));
                }
                None => return false,
            },
        }
    }
    pat[j..].iter().all(|p| *p == P::Any)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Ident(String),
    Text(String),
    Number(String),
    Sym(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) | Tok::Ident(w) => write!(f, "{w:?}"),
            Tok::Text(t) => write!(f, "'{t}'"),
            Tok::Number(n) => write!(f, "{n}"),
            Tok::Sym(s) => write!(f, "{s:?}"),
        }
    }
}

fn lex(text: &str) -> Result<Vec<Tok>, FilterError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    // A quoted run with its quote doubled inside (`'it''s'`, `[a]]b]`, `"x""y"`).
    let quoted = |i: &mut usize, close: char| -> Result<String, FilterError> {
        let mut s = String::new();
        *i += 1;
        loop {
            match chars.get(*i) {
                None => return Err(FilterError(format!("unclosed {close}"))),
                Some(&c) if c == close && chars.get(*i + 1) == Some(&close) => {
                    s.push(c);
                    *i += 2;
                }
                Some(&c) if c == close => {
                    *i += 1;
                    return Ok(s);
                }
                Some(&c) => {
                    s.push(c);
                    *i += 1;
                }
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            out.push(Tok::Text(quoted(&mut i, '\'')?));
        } else if c == '[' {
            out.push(Tok::Ident(quoted(&mut i, ']')?));
        } else if c == '"' {
            out.push(Tok::Ident(quoted(&mut i, '"')?));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            out.push(Tok::Number(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = ["<>", "!=", ">=", "<="]
                .into_iter()
                .find(|s| *s == two)
                .or_else(|| {
                    ["=", ">", "<", "(", ")", ",", "."]
                        .into_iter()
                        .find(|s| s.starts_with(c))
                });
            match sym {
                Some(s) => {
                    i += s.len();
                    out.push(Tok::Sym(s));
                }
                None if "+-*/%@".contains(c) => {
                    return Err(FilterError(format!(
                        "{c:?}: arithmetic and parameters are not supported by the local host"
                    )))
                }
                None => return Err(FilterError(format!("unexpected character {c:?}"))),
            }
        }
    }
    Ok(out)
}

const RESERVED: &[&str] = &[
    "AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ESCAPE", "EXISTS", "TRUE", "FALSE",
];

struct Parser {
    tokens: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, s: &'static str) -> bool {
        if self.peek() == Some(&Tok::Sym(s)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &'static str) -> Result<(), FilterError> {
        if self.sym(s) {
            Ok(())
        } else {
            Err(FilterError(match self.peek() {
                Some(t) => format!("expected {s:?}, found {t}"),
                None => format!("expected {s:?} at the end"),
            }))
        }
    }

    fn or(&mut self) -> Result<Pred, FilterError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            left = Pred::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Pred, FilterError> {
        let mut left = self.not()?;
        while self.keyword("AND") {
            left = Pred::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Pred, FilterError> {
        if self.keyword("NOT") {
            return Ok(Pred::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Pred, FilterError> {
        if self.keyword("EXISTS") {
            self.expect("(")?;
            let p = self.property()?;
            self.expect(")")?;
            return Ok(Pred::Exists(p));
        }
        if self.sym("(") {
            let p = self.or()?;
            self.expect(")")?;
            return Ok(p);
        }
        let left = self.expr()?;
        if self.keyword("IS") {
            let negated = self.keyword("NOT");
            if !self.keyword("NULL") {
                return Err(FilterError("IS [NOT] must be followed by NULL".into()));
            }
            let Expr::Prop(p) = left else {
                return Err(FilterError("IS [NOT] NULL applies to a property".into()));
            };
            return Ok(Pred::IsNull(p, negated));
        }
        let negated = self.keyword("NOT");
        if self.keyword("IN") {
            self.expect("(")?;
            let mut list = vec![self.expr()?];
            while self.sym(",") {
                list.push(self.expr()?);
            }
            self.expect(")")?;
            return Ok(Pred::In(left, list, negated));
        }
        if self.keyword("LIKE") {
            let Some(Tok::Text(pattern)) = self.next() else {
                return Err(FilterError("LIKE takes a string pattern".into()));
            };
            let escape = if self.keyword("ESCAPE") {
                match self.next() {
                    Some(Tok::Text(e)) if e.chars().count() == 1 => e.chars().next(),
                    _ => return Err(FilterError("ESCAPE takes a one-character string".into())),
                }
            } else {
                None
            };
            return Ok(Pred::Like(left, pattern, escape, negated));
        }
        if negated {
            return Err(FilterError(
                "NOT must be followed by IN or LIKE here".into(),
            ));
        }
        let op = match self.next() {
            Some(Tok::Sym("=")) => CmpOp::Eq,
            Some(Tok::Sym("<>")) | Some(Tok::Sym("!=")) => CmpOp::Ne,
            Some(Tok::Sym(">")) => CmpOp::Gt,
            Some(Tok::Sym(">=")) => CmpOp::Ge,
            Some(Tok::Sym("<")) => CmpOp::Lt,
            Some(Tok::Sym("<=")) => CmpOp::Le,
            Some(t) => return Err(FilterError(format!("expected a comparison, found {t}"))),
            None => {
                // A bare boolean constant is a predicate (`TRUE`, `1=1` style rules).
                if let Expr::Const(Lit::Bool(b)) = left {
                    return Ok(Pred::Const(b));
                }
                return Err(FilterError("expected a comparison at the end".into()));
            }
        };
        let right = self.expr()?;
        Ok(Pred::Compare(left, op, right))
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        match self.peek().cloned() {
            Some(Tok::Text(t)) => {
                self.at += 1;
                Ok(Expr::Const(Lit::Text(t)))
            }
            Some(Tok::Number(n)) => {
                self.at += 1;
                let lit = if n.contains(['.', 'e', 'E']) {
                    Lit::Float(
                        n.parse()
                            .map_err(|_| FilterError(format!("bad number {n}")))?,
                    )
                } else {
                    Lit::Int(
                        n.parse()
                            .map_err(|_| FilterError(format!("bad integer {n}")))?,
                    )
                };
                Ok(Expr::Const(lit))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("TRUE") => {
                self.at += 1;
                Ok(Expr::Const(Lit::Bool(true)))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("FALSE") => {
                self.at += 1;
                Ok(Expr::Const(Lit::Bool(false)))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NULL") => {
                self.at += 1;
                Ok(Expr::Const(Lit::Null))
            }
            _ => Ok(Expr::Prop(self.property()?)),
        }
    }

    fn property(&mut self) -> Result<Property, FilterError> {
        let first = self.name()?;
        let (scope, name) = if self.sym(".") {
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        if self.sym("(") {
            return Err(FilterError(format!(
                "{name}(): functions are not supported by the local host"
            )));
        }
        match scope.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("user") => Ok(Property::User(name)),
            Some("sys") => Ok(Property::Sys(match name.to_ascii_lowercase().as_str() {
                "label" | "subject" => SysProp::Label,
                "messageid" => SysProp::MessageId,
                "correlationid" => SysProp::CorrelationId,
                "sessionid" => SysProp::SessionId,
                "contenttype" => SysProp::ContentType,
                "to" | "replyto" | "replytosessionid" => SysProp::Absent,
                _ => {
                    return Err(FilterError(format!(
                        "sys.{name} is not a system property this host knows"
                    )))
                }
            })),
            Some(other) => Err(FilterError(format!(
                "{other}.{name}: the scope is sys or user"
            ))),
        }
    }

    fn name(&mut self) -> Result<String, FilterError> {
        match self.next() {
            Some(Tok::Ident(n)) => Ok(n),
            Some(Tok::Word(w)) if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&w)) => Ok(w),
            Some(t) => Err(FilterError(format!("expected a property name, found {t}"))),
            None => Err(FilterError("expected a property name at the end".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input<'a>(label: Option<&'a str>, user: &'a Map<String, Value>) -> FilterInput<'a> {
        FilterInput {
            label,
            message_id: "m1",
            correlation_id: None,
            session_id: None,
            content_type: None,
            user,
        }
    }

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn check(filter: &str, label: Option<&str>, user: Value) -> bool {
        let user = props(user);
        SqlFilter::parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(&input(label, &user))
    }

    /// The examples in Microsoft's "Subscription Rule SQL Filter Syntax" page.
    #[test]
    fn the_documented_examples() {
        assert!(check(
            "sys.Label LIKE '%bus%'",
            Some("Service bus"),
            json!({})
        ));
        assert!(!check("sys.Label LIKE '%bus%'", Some("queue"), json!({})));
        let or = "sys.Label LIKE '%bus%' OR user.tag IN ('queue', 'topic', 'subscription')";
        assert!(check(or, Some("x"), json!({"tag": "topic"})));
        assert!(!check(or, Some("x"), json!({"tag": "relay"})));
        // No `tag` at all: unknown OR false is unknown, and only true delivers.
        assert!(!check(or, Some("x"), json!({})));
        let stores = "StoreId IN('Store1', 'Store2', 'Store3')";
        assert!(check(stores, None, json!({"StoreId": "Store2"})));
        assert!(!check(stores, None, json!({"StoreId": "Store4"})));
        // sys.To is never set on messages here: it is null, so only StoreId decides.
        let to = "sys.To IN ('Store5','Store6','Store7') OR StoreId = 'Store8'";
        assert!(check(to, None, json!({"StoreId": "Store8"})));
        assert!(!check(to, None, json!({"StoreId": "Store5"})));
        let not_in = "sys.To NOT IN ('Store1','Store2','Store3','Store4','Store5','Store6','Store7','Store8') OR StoreId NOT IN ('Store1','Store2','Store3','Store4','Store5','Store6','Store7','Store8')";
        assert!(check(not_in, None, json!({"StoreId": "Store9"})));
        assert!(!check(not_in, None, json!({"StoreId": "Store3"})));
        assert!(check(
            "property LIKE 'ABC\\%' ESCAPE '\\'",
            None,
            json!({"property": "ABC%"})
        ));
        assert!(!check(
            "property LIKE 'ABC\\%' ESCAPE '\\'",
            None,
            json!({"property": "ABCD"})
        ));
        // Delimited and quoted identifiers.
        assert!(check(
            "[HR-EmployeeID] = 7 AND \"Contoso & Northwind\" = 'yes'",
            None,
            json!({"HR-EmployeeID": 7, "Contoso & Northwind": "yes"})
        ));
    }

    #[test]
    fn unknown_follows_the_documented_truth_tables() {
        // AND: U AND F = F; U AND T = U. OR: U OR T = T; U OR F = U.
        let none = json!({});
        assert!(!check("missing = 1 AND 1 = 1", None, none.clone()));
        assert!(check("NOT (missing = 1 AND 1 = 2)", None, none.clone()));
        assert!(check("missing = 1 OR 1 = 1", None, none.clone()));
        assert!(!check("missing = 1 OR 1 = 2", None, none.clone()));
        assert!(!check("NOT (missing = 1 OR 1 = 2)", None, none.clone()));
        assert!(!check("NOT missing = 1", None, none.clone()));
        assert!(check("missing IS NULL", None, none.clone()));
        assert!(!check("EXISTS(missing)", None, none.clone()));
        assert!(check("EXISTS(Present)", None, json!({"present": 1})));
        assert!(!check("missing NOT IN ('a')", None, none));
    }

    #[test]
    fn the_unrouted_subscription_takes_only_unrouted_subjects() {
        let unrouted = "sys.Label IS NULL OR sys.Label NOT IN ('ProvisionGpuCluster', 'RunFineTune', 'ExportModel', 'CancelJob')";
        for routed in [
            "ProvisionGpuCluster",
            "RunFineTune",
            "ExportModel",
            "CancelJob",
        ] {
            assert!(!check(unrouted, Some(routed), json!({})), "{routed}");
        }
        assert!(check(unrouted, Some("Unknown"), json!({})));
        assert!(check(unrouted, None, json!({})));
        // Without the IS NULL branch an unlabelled message matches neither way.
        assert!(!check("sys.Label NOT IN ('RunFineTune')", None, json!({})));
        // sys.Subject names the same property; keywords and names are case-insensitive.
        assert!(check(
            "SYS.subject in ('RunFineTune')",
            Some("RunFineTune"),
            json!({})
        ));
        let bicep = SqlFilter::subjects_in(&["RunFineTune".into(), "O'Brien".into()]);
        assert_eq!(bicep, "sys.Label IN ('RunFineTune', 'O''Brien')");
        assert!(check(&bicep, Some("O'Brien"), json!({})));
        assert!(!check(&bicep, Some("ExportModel"), json!({})));
    }

    #[test]
    fn comparisons_numbers_and_types() {
        let p = json!({"n": 10, "s": "b", "flag": true});
        assert!(check(
            "n > 9.5 AND n <= 10 AND n <> 11 AND n != 12",
            None,
            p.clone()
        ));
        assert!(check("s >= 'a' AND s < 'c'", None, p.clone()));
        assert!(check("flag = TRUE", None, p.clone()));
        assert!(!check("s = 10", None, p.clone()));
        assert!(check("n = 1.0E1", None, p));
        assert!(check("TRUE", None, json!({})));
        assert!(check(
            "sys.MessageId = 'm1' AND sys.CorrelationId IS NULL",
            None,
            json!({})
        ));
    }

    #[test]
    fn what_the_host_cannot_evaluate_is_refused() {
        for bad in [
            "a + 1 = 2",
            "newid() = 'x'",
            "source = @p",
            "sys.Nope = 1",
            "a =",
            "(a = 1",
            "a = 'open",
            "a IS 1",
            "a NOT = 1",
            "bogus.a = 1",
        ] {
            assert!(SqlFilter::parse(bad).is_err(), "{bad}");
        }
    }
}

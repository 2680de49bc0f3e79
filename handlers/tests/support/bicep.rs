//! A parser and evaluator for the subset of Bicep that `infra/` uses: `targetScope`, `param`,
//! `var`, `resource` (with `existing`, `if (…)` and `[for … in …: …]`), `output`, `using`,
//! decorators, object and array literals, interpolated strings, calls, member access, indexes,
//! operators, the ternary and lambdas. No Bicep compiler can be installed on the development
//! machine (its npm and PyPI wrappers download the binary at run time), so the template tests
//! read the files with this instead. It keeps the line of every object key, so a check names
//! `file:line`. Anything outside the subset is a parse error naming its line, never skipped.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(Vec<Part>),
    Num(i64),
    Punct(&'static str),
    Newline,
}

/// A piece of a string literal: text, or an interpolated `${expr}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Expr(Expr),
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Str(Vec<Part>),
    Num(i64),
    Bool(bool),
    Null,
    Ident(String),
    Object(Vec<Entry>),
    Array(Vec<Expr>),
    /// `[for item in iter: body]` or `[for (item, i) in iter: body]`.
    For {
        item: String,
        index: Option<String>,
        iter: Box<Expr>,
        body: Box<Expr>,
    },
    /// `if (cond) body` (a resource body).
    If(Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Ternary(Box<Expr>, Box<Expr>, Box<Expr>),
    Lambda(Vec<String>, Box<Expr>),
}

/// One `key: value` of an object literal, with the line of its key. An interpolated key
/// (`'${identity.id}': {}`) has `dynamic` set and its template as `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub dynamic: bool,
    pub line: usize,
    pub value: Expr,
}

/// A top-level declaration.
#[derive(Debug, Clone)]
pub enum Decl {
    Param {
        name: String,
        default: Option<Expr>,
    },
    Var {
        name: String,
        value: Expr,
    },
    Resource(Resource),
    Output,
    TargetScope,
    /// `using 'path'` of a .bicepparam file.
    Using(String),
    /// `param name = value` of a .bicepparam file (no type).
    ParamValue {
        name: String,
        value: Expr,
    },
}

/// A `resource` declaration.
#[derive(Debug, Clone)]
pub struct Resource {
    pub symbol: String,
    /// `Microsoft.Storage/storageAccounts`.
    pub rtype: String,
    pub api_version: String,
    pub existing: bool,
    /// The line of the declaration.
    pub line: usize,
    /// The body: an object, or `If`/`For` around one.
    pub body: Expr,
}

impl Resource {
    /// The object literal under any `if`/`for`.
    pub fn object(&self) -> &[Entry] {
        fn inner(e: &Expr) -> &[Entry] {
            match e {
                Expr::Object(entries) => entries,
                Expr::If(_, b) => inner(b),
                Expr::For { body, .. } => inner(body),
                _ => &[],
            }
        }
        inner(&self.body)
    }
}

/// A parsed Bicep or .bicepparam file.
#[derive(Debug, Clone)]
pub struct File {
    pub path: PathBuf,
    pub decls: Vec<Decl>,
}

struct Lexed {
    toks: Vec<(Tok, usize)>,
}

const PUNCTS: &[&str] = &[
    "=>", "==", "!=", "<=", ">=", "&&", "||", "??", "{", "}", "[", "]", "(", ")", ":", ",", ".",
    "?", "=", "!", "<", ">", "+", "-", "*", "/", "%", "@",
];

fn lex(text: &str) -> Result<Lexed, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            toks.push((Tok::Newline, line));
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == '\'' {
            let start_line = line;
            let (parts, next) =
                lex_string(&chars, i + 1).map_err(|e| format!("line {start_line}: {e}"))?;
            toks.push((Tok::Str(parts), start_line));
            i = next;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            toks.push((
                Tok::Num(s.parse().map_err(|e| format!("line {line}: {e}"))?),
                line,
            ));
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            toks.push((Tok::Ident(chars[start..i].iter().collect()), line));
        } else {
            let rest: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let p = PUNCTS
                .iter()
                .find(|p| rest.starts_with(**p))
                .ok_or_else(|| format!("line {line}: unexpected character {c:?}"))?;
            toks.push((Tok::Punct(p), line));
            i += p.len();
        }
    }
    toks.push((Tok::Newline, line));
    Ok(Lexed { toks })
}

/// Reads a string body after its opening quote: its parts and the index after the closing
/// quote.
fn lex_string(chars: &[char], mut i: usize) -> Result<(Vec<Part>, usize), String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    loop {
        let c = *chars.get(i).ok_or("unterminated string")?;
        match c {
            '\'' => {
                if !text.is_empty() {
                    parts.push(Part::Text(text));
                }
                return Ok((parts, i + 1));
            }
            '\\' => {
                let e = *chars.get(i + 1).ok_or("unterminated escape")?;
                text.push(match e {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    other => other,
                });
                i += 2;
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                // Find the matching brace, skipping nested strings.
                let mut depth = 0;
                let mut j = i + 1;
                let mut in_str = false;
                while j < chars.len() {
                    let d = chars[j];
                    if in_str {
                        if d == '\\' {
                            j += 1;
                        } else if d == '\'' {
                            in_str = false;
                        }
                    } else if d == '\'' {
                        in_str = true;
                    } else if d == '{' {
                        depth += 1;
                    } else if d == '}' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    j += 1;
                }
                let inner: String = chars[i + 2..j].iter().collect();
                let lexed = lex(&inner)?;
                let mut p = Parser {
                    toks: lexed.toks,
                    pos: 0,
                };
                let e = p.expr()?;
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Expr(e));
                i = j + 1;
            }
            '\n' => return Err("newline in a string".into()),
            other => {
                text.push(other);
                i += 1;
            }
        }
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }
    fn line(&self) -> usize {
        self.toks[self.pos.min(self.toks.len() - 1)].1
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }
    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }
    fn eat(&mut self, p: &str) -> bool {
        if self.is(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, p: &str) -> Result<(), String> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(format!(
                "line {}: expected {p:?}, found {:?}",
                self.line(),
                self.peek()
            ))
        }
    }
    fn skip_newlines(&mut self) {
        while matches!(self.peek(), Tok::Newline) && self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.next() {
            Tok::Ident(s) => Ok(s),
            other => Err(format!(
                "line {}: expected a name, found {other:?}",
                self.line()
            )),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        let line = self.line();
        match self.next() {
            Tok::Str(parts) => {
                literal(&parts).ok_or_else(|| format!("line {line}: expected a plain string"))
            }
            other => Err(format!("line {line}: expected a string, found {other:?}")),
        }
    }

    fn file(&mut self) -> Result<Vec<Decl>, String> {
        let mut decls = Vec::new();
        loop {
            self.skip_newlines();
            if self.pos >= self.toks.len() - 1 {
                return Ok(decls);
            }
            while self.eat("@") {
                self.expr()?; // a decorator
                self.skip_newlines();
            }
            let line = self.line();
            let word = self.ident()?;
            let decl = match word.as_str() {
                "targetScope" => {
                    self.expect("=")?;
                    self.expr()?;
                    Decl::TargetScope
                }
                "using" => Decl::Using(self.string()?),
                "param" => {
                    let name = self.ident()?;
                    if self.eat("=") {
                        Decl::ParamValue {
                            name,
                            value: self.expr()?,
                        }
                    } else {
                        self.ident()?; // its type
                        let default = if self.eat("=") {
                            Some(self.expr()?)
                        } else {
                            None
                        };
                        Decl::Param { name, default }
                    }
                }
                "var" => {
                    let name = self.ident()?;
                    self.expect("=")?;
                    Decl::Var {
                        name,
                        value: self.expr()?,
                    }
                }
                "output" => {
                    self.ident()?;
                    self.ident()?;
                    self.expect("=")?;
                    self.expr()?;
                    Decl::Output
                }
                "resource" => {
                    let symbol = self.ident()?;
                    let full = self.string()?;
                    let (rtype, api_version) = full
                        .split_once('@')
                        .ok_or_else(|| format!("line {line}: resource type without @apiVersion"))?;
                    let existing = if self.is_word("existing") {
                        self.pos += 1;
                        true
                    } else {
                        false
                    };
                    self.expect("=")?;
                    let body = self.resource_body()?;
                    Decl::Resource(Resource {
                        symbol,
                        rtype: rtype.to_string(),
                        api_version: api_version.to_string(),
                        existing,
                        line,
                        body,
                    })
                }
                other => {
                    return Err(format!(
                        "line {line}: {other:?} is outside the Bicep subset this parser reads"
                    ))
                }
            };
            decls.push(decl);
            if !matches!(self.peek(), Tok::Newline) {
                return Err(format!(
                    "line {}: expected the end of the line, found {:?}",
                    self.line(),
                    self.peek()
                ));
            }
        }
    }

    fn resource_body(&mut self) -> Result<Expr, String> {
        if self.is_word("if") {
            self.pos += 1;
            self.expect("(")?;
            let cond = self.expr()?;
            self.expect(")")?;
            let body = self.primary()?;
            return Ok(Expr::If(Box::new(cond), Box::new(body)));
        }
        self.primary()
    }

    fn expr(&mut self) -> Result<Expr, String> {
        // A lambda: `x => …` or `(a, b) => …`.
        if let Tok::Ident(name) = self.peek().clone() {
            if matches!(self.toks.get(self.pos + 1), Some((Tok::Punct("=>"), _))) {
                self.pos += 2;
                return Ok(Expr::Lambda(vec![name], Box::new(self.expr()?)));
            }
        }
        let cond = self.binary(0)?;
        if self.eat("?") {
            self.skip_newlines();
            let a = self.expr()?;
            self.skip_newlines();
            self.expect(":")?;
            self.skip_newlines();
            let b = self.expr()?;
            return Ok(Expr::Ternary(Box::new(cond), Box::new(a), Box::new(b)));
        }
        Ok(cond)
    }

    fn binary(&mut self, level: usize) -> Result<Expr, String> {
        const LEVELS: &[&[&str]] = &[
            &["??"],
            &["||"],
            &["&&"],
            &["==", "!="],
            &["<", "<=", ">", ">="],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        loop {
            let op = LEVELS[level].iter().find(|op| self.is(op)).copied();
            match op {
                Some(op) => {
                    self.pos += 1;
                    let right = self.binary(level + 1)?;
                    left = Expr::Binary(op, Box::new(left), Box::new(right));
                }
                None => return Ok(left),
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Unary("!", Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return Ok(Expr::Unary("-", Box::new(self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat(".") {
                e = Expr::Member(Box::new(e), self.ident()?);
            } else if self.eat("[") {
                let i = self.expr()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(i));
            } else if self.is("(") {
                // A call on a member (`az.resourceGroup()`, `x.y()`) reads as a call by name.
                let name = match &e {
                    Expr::Ident(n) => n.clone(),
                    Expr::Member(_, n) => n.clone(),
                    _ => return Err(format!("line {}: call on an expression", self.line())),
                };
                self.pos += 1;
                let args = self.list(")")?;
                e = Expr::Call(name, args);
            } else {
                return Ok(e);
            }
        }
    }

    /// Comma- or newline-separated expressions up to `close`.
    fn list(&mut self, close: &str) -> Result<Vec<Expr>, String> {
        let mut items = Vec::new();
        loop {
            self.skip_newlines();
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.expr()?);
            self.skip_newlines();
            self.eat(",");
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let line = self.line();
        match self.next() {
            Tok::Str(parts) => Ok(Expr::Str(parts)),
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::Ident(w) if w == "true" => Ok(Expr::Bool(true)),
            Tok::Ident(w) if w == "false" => Ok(Expr::Bool(false)),
            Tok::Ident(w) if w == "null" => Ok(Expr::Null),
            Tok::Ident(w) => Ok(Expr::Ident(w)),
            Tok::Punct("(") => {
                // `(a, b) => …` or a parenthesised expression.
                let save = self.pos;
                let mut names = Vec::new();
                while let Tok::Ident(n) = self.peek().clone() {
                    self.pos += 1;
                    names.push(n);
                    if !self.eat(",") {
                        break;
                    }
                }
                if !names.is_empty() && self.eat(")") && self.eat("=>") {
                    return Ok(Expr::Lambda(names, Box::new(self.expr()?)));
                }
                self.pos = save;
                self.skip_newlines();
                let e = self.expr()?;
                self.skip_newlines();
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("{") => {
                let mut entries = Vec::new();
                loop {
                    self.skip_newlines();
                    if self.eat("}") {
                        return Ok(Expr::Object(entries));
                    }
                    let line = self.line();
                    let (key, dynamic) = match self.next() {
                        Tok::Ident(k) => (k, false),
                        Tok::Str(parts) => match literal(&parts) {
                            Some(k) => (k, false),
                            None => (format!("{parts:?}"), true),
                        },
                        other => {
                            return Err(format!("line {line}: expected a key, found {other:?}"))
                        }
                    };
                    self.expect(":")?;
                    self.skip_newlines();
                    let value = self.expr()?;
                    entries.push(Entry {
                        key,
                        dynamic,
                        line,
                        value,
                    });
                    if !self.eat(",") && !matches!(self.peek(), Tok::Newline) && !self.is("}") {
                        return Err(format!(
                            "line {}: expected ',' or a new line after {:?}",
                            self.line(),
                            entries.last().map(|e| &e.key)
                        ));
                    }
                }
            }
            Tok::Punct("[") => {
                self.skip_newlines();
                if self.is_word("for") {
                    self.pos += 1;
                    let (item, index) = if self.eat("(") {
                        let a = self.ident()?;
                        self.expect(",")?;
                        let b = self.ident()?;
                        self.expect(")")?;
                        (a, Some(b))
                    } else {
                        (self.ident()?, None)
                    };
                    if !self.is_word("in") {
                        return Err(format!("line {}: expected 'in'", self.line()));
                    }
                    self.pos += 1;
                    let iter = self.expr()?;
                    self.expect(":")?;
                    self.skip_newlines();
                    let body = self.resource_body()?;
                    self.skip_newlines();
                    self.expect("]")?;
                    return Ok(Expr::For {
                        item,
                        index,
                        iter: Box::new(iter),
                        body: Box::new(body),
                    });
                }
                Ok(Expr::Array(self.list("]")?))
            }
            other => Err(format!("line {line}: unexpected {other:?}")),
        }
    }
}

/// The text of a string literal without interpolation.
pub fn literal(parts: &[Part]) -> Option<String> {
    let mut s = String::new();
    for p in parts {
        match p {
            Part::Text(t) => s.push_str(t),
            Part::Expr(_) => return None,
        }
    }
    Some(s)
}

/// Parses Bicep or .bicepparam text; errors name the line.
pub fn parse(path: &Path, text: &str) -> Result<File, String> {
    let lexed = lex(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut p = Parser {
        toks: lexed.toks,
        pos: 0,
    };
    let decls = p.file().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(File {
        path: path.to_path_buf(),
        decls,
    })
}

/// Reads and parses a file.
pub fn load(path: &Path) -> File {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(path, &text).unwrap_or_else(|e| panic!("{e}"))
}

impl File {
    /// Every resource declaration.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.decls.iter().filter_map(|d| match d {
            Decl::Resource(r) => Some(r),
            _ => None,
        })
    }

    /// The `using` path of a .bicepparam file.
    pub fn using(&self) -> Option<&str> {
        self.decls.iter().find_map(|d| match d {
            Decl::Using(p) => Some(p.as_str()),
            _ => None,
        })
    }
}

// ------------------------------------------------------------------ evaluation

/// A value, as far as it can be known without a deployment: what depends on Azure (a
/// `uniqueString`, a resource's id) stays symbolic, as the canonical text of the expression, so
/// two files that compute a name the same way compare equal.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Num(i64),
    Bool(bool),
    Null,
    Array(Vec<Val>),
    Object(BTreeMap<String, Val>),
    Symbolic(String),
    Lambda(Vec<String>, Expr),
    /// A resource symbol, by its full name.
    Resource(String),
}

impl Val {
    /// The value as it reads inside an interpolated string.
    pub fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(n) => n.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Null => "null".into(),
            Val::Symbolic(s) => format!("{{{s}}}"),
            Val::Resource(name) => format!("{{resource {name}}}"),
            other => format!("{{{other:?}}}"),
        }
    }
}

/// Evaluates expressions of one file: its params (symbolic, or a given value), vars and
/// resources (their `name`s and symbolic ids).
pub struct Scope<'a> {
    file: &'a File,
    params: BTreeMap<String, Val>,
    locals: Vec<(String, Val)>,
}

impl<'a> Scope<'a> {
    /// A scope where the params take the values of a .bicepparam file, then their defaults.
    pub fn with_param_file(file: &'a File, param_file: &File) -> Self {
        let mut scope = Self::new(file, BTreeMap::new());
        let mut params = BTreeMap::new();
        for d in &param_file.decls {
            if let Decl::ParamValue { name, value } = d {
                params.insert(name.clone(), scope.eval(value));
            }
        }
        for d in &file.decls {
            if let Decl::Param {
                name,
                default: Some(value),
            } = d
            {
                if !params.contains_key(name) {
                    let v = scope.eval(value);
                    params.insert(name.clone(), v);
                }
            }
        }
        scope.params = params;
        scope
    }

    /// The value of the var `name`.
    pub fn var(&mut self, name: &str) -> Val {
        self.lookup(name)
    }

    /// A scope where every param is symbolic (`{param:prefix}`) unless given in `params`.
    pub fn new(file: &'a File, params: BTreeMap<String, Val>) -> Self {
        Self {
            file,
            params,
            locals: Vec::new(),
        }
    }

    fn lookup(&mut self, name: &str) -> Val {
        if let Some((_, v)) = self.locals.iter().rev().find(|(n, _)| n == name) {
            return v.clone();
        }
        if let Some(v) = self.params.get(name) {
            return v.clone();
        }
        for d in &self.file.decls {
            match d {
                Decl::Param { name: n, .. } if n == name => {
                    return Val::Symbolic(format!("param:{name}"));
                }
                Decl::Var { name: n, value } if n == name => {
                    let value = value.clone();
                    return self.eval(&value);
                }
                Decl::Resource(r) if r.symbol == name => {
                    return match instances_of(self.file, name) {
                        Ok(all) if all.len() == 1 && !matches!(r.body, Expr::For { .. }) => {
                            Val::Resource(all[0].name.clone())
                        }
                        _ => Val::Symbolic(format!("resource:{name}")),
                    };
                }
                _ => {}
            }
        }
        Val::Symbolic(name.to_string())
    }

    /// Evaluates `e`.
    pub fn eval(&mut self, e: &Expr) -> Val {
        match e {
            Expr::Str(parts) => {
                let mut s = String::new();
                for p in parts {
                    match p {
                        Part::Text(t) => s.push_str(t),
                        Part::Expr(x) => s.push_str(&self.eval(x).text()),
                    }
                }
                Val::Str(s)
            }
            Expr::Num(n) => Val::Num(*n),
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Null => Val::Null,
            Expr::Ident(n) => self.lookup(n),
            Expr::Object(entries) => Val::Object(
                entries
                    .iter()
                    .map(|en| (en.key.clone(), self.eval(&en.value)))
                    .collect(),
            ),
            Expr::Array(items) => Val::Array(items.iter().map(|i| self.eval(i)).collect()),
            Expr::Lambda(params, body) => Val::Lambda(params.clone(), (**body).clone()),
            Expr::Member(target, field) => match self.eval(target) {
                Val::Object(map) => map.get(field).cloned().unwrap_or(Val::Null),
                Val::Resource(name) if field == "name" => Val::Str(name),
                other => Val::Symbolic(format!("{}.{field}", other.text())),
            },
            Expr::Index(target, index) => match (self.eval(target), self.eval(index)) {
                (Val::Array(items), Val::Num(i)) => {
                    items.get(i as usize).cloned().unwrap_or(Val::Null)
                }
                (Val::Object(map), Val::Str(k)) => map.get(&k).cloned().unwrap_or(Val::Null),
                (t, i) => Val::Symbolic(format!("{}[{}]", t.text(), i.text())),
            },
            Expr::Unary("!", x) => match self.eval(x) {
                Val::Bool(b) => Val::Bool(!b),
                other => Val::Symbolic(format!("!{}", other.text())),
            },
            Expr::Unary(op, x) => Val::Symbolic(format!("{op}{}", self.eval(x).text())),
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.eval(a), self.eval(b));
                let known = !matches!(a, Val::Symbolic(_)) && !matches!(b, Val::Symbolic(_));
                match *op {
                    "==" if known => Val::Bool(a == b),
                    "!=" if known => Val::Bool(a != b),
                    "&&" => match (&a, &b) {
                        (Val::Bool(x), Val::Bool(y)) => Val::Bool(*x && *y),
                        _ => Val::Symbolic(format!("{} && {}", a.text(), b.text())),
                    },
                    "||" => match (&a, &b) {
                        (Val::Bool(x), Val::Bool(y)) => Val::Bool(*x || *y),
                        _ => Val::Symbolic(format!("{} || {}", a.text(), b.text())),
                    },
                    _ => Val::Symbolic(format!("{} {op} {}", a.text(), b.text())),
                }
            }
            Expr::Ternary(c, a, b) => match self.eval(c) {
                Val::Bool(true) => self.eval(a),
                Val::Bool(false) => self.eval(b),
                other => Val::Symbolic(format!(
                    "{} ? {} : {}",
                    other.text(),
                    self.eval(a).text(),
                    self.eval(b).text()
                )),
            },
            Expr::Call(name, args) => self.call(name, args),
            Expr::For {
                item,
                index,
                iter,
                body,
            } => match self.eval(iter) {
                Val::Array(items) => Val::Array(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, it)| {
                            let mut b = vec![(item.clone(), it)];
                            if let Some(ix) = index {
                                b.push((ix.clone(), Val::Num(i as i64)));
                            }
                            self.eval_with(&b, body)
                        })
                        .collect(),
                ),
                other => Val::Symbolic(format!("for over {}", other.text())),
            },
            Expr::If(..) => Val::Symbolic("if".into()),
        }
    }

    fn apply(&mut self, f: &Val, args: Vec<Val>) -> Val {
        match f {
            Val::Lambda(params, body) => {
                let mark = self.locals.len();
                for (p, a) in params.iter().zip(args) {
                    self.locals.push((p.clone(), a));
                }
                let v = self.eval(body);
                self.locals.truncate(mark);
                v
            }
            other => Val::Symbolic(format!("apply {}", other.text())),
        }
    }

    fn call(&mut self, name: &str, args: &[Expr]) -> Val {
        let vals: Vec<Val> = args.iter().map(|a| self.eval(a)).collect();
        match (name, vals.as_slice()) {
            ("loadJsonContent", [Val::Str(rel)]) => {
                let path = self.file.path.parent().unwrap().join(rel);
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!(
                        "{}: loadJsonContent('{rel}'): {e}",
                        self.file.path.display()
                    )
                });
                from_json(&serde_json::from_str(&text).unwrap())
            }
            ("filter", [Val::Array(items), f]) => {
                let f = f.clone();
                let mut out = Vec::new();
                for it in items.clone() {
                    match self.apply(&f, vec![it.clone()]) {
                        Val::Bool(true) => out.push(it),
                        Val::Bool(false) => {}
                        other => return Val::Symbolic(format!("filter: {}", other.text())),
                    }
                }
                Val::Array(out)
            }
            ("map", [Val::Array(items), f]) => {
                let f = f.clone();
                Val::Array(
                    items
                        .clone()
                        .into_iter()
                        .map(|it| self.apply(&f, vec![it]))
                        .collect(),
                )
            }
            ("contains", [Val::Array(items), x]) if !matches!(x, Val::Symbolic(_)) => {
                Val::Bool(items.contains(x))
            }
            ("contains", [Val::Object(map), Val::Str(k)]) => Val::Bool(map.contains_key(k)),
            ("contains", [Val::Str(s), Val::Str(x)]) => Val::Bool(s.contains(x.as_str())),
            ("empty", [Val::Str(s)]) => Val::Bool(s.is_empty()),
            ("empty", [Val::Array(a)]) => Val::Bool(a.is_empty()),
            ("first", [Val::Array(a)]) => a.first().cloned().unwrap_or(Val::Null),
            ("length", [Val::Array(a)]) => Val::Num(a.len() as i64),
            ("concat", items) if items.iter().all(|i| matches!(i, Val::Array(_))) => Val::Array(
                items
                    .iter()
                    .flat_map(|i| match i {
                        Val::Array(a) => a.clone(),
                        _ => Vec::new(),
                    })
                    .collect(),
            ),
            ("indexOf", [Val::Array(a), x]) => {
                Val::Num(a.iter().position(|i| i == x).map_or(-1, |p| p as i64))
            }
            _ => Val::Symbolic(format!(
                "{name}({})",
                vals.iter().map(Val::text).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Evaluates `e` with `name` bound to `value`.
    pub fn eval_with(&mut self, bindings: &[(String, Val)], e: &Expr) -> Val {
        let mark = self.locals.len();
        self.locals.extend(bindings.iter().cloned());
        let v = self.eval(e);
        self.locals.truncate(mark);
        v
    }
}

/// A JSON value as a [`Val`].
pub fn from_json(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(n.as_i64().unwrap_or_default()),
        Value::String(s) => Val::Str(s.clone()),
        Value::Array(a) => Val::Array(a.iter().map(from_json).collect()),
        Value::Object(o) => Val::Object(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

/// One deployed instance of a resource declaration: its full name (`parent/child` for child
/// resources), and the condition it is deployed under (`None`: always).
#[derive(Debug, Clone)]
pub struct Instance {
    pub symbol: String,
    pub rtype: String,
    pub existing: bool,
    pub name: String,
    pub condition: Option<String>,
    pub line: usize,
    /// The loop item it was made for, if the resource loops.
    pub item: Option<Val>,
}

/// Every instance the file's resources deploy, each loop unrolled over its evaluated items.
/// A loop over something that cannot be evaluated here is an error.
pub fn instances(file: &File) -> Result<Vec<Instance>, String> {
    instances_where(file, |_| true)
}

/// The instances of the resource `symbol`.
fn instances_of(file: &File, symbol: &str) -> Result<Vec<Instance>, String> {
    instances_where(file, |r| r.symbol == symbol)
}

/// One run of a resource body: the loop bindings, the loop item, the body, its condition.
type Run = (Vec<(String, Val)>, Option<Val>, Expr, Option<String>);

fn instances_where(file: &File, pick: impl Fn(&Resource) -> bool) -> Result<Vec<Instance>, String> {
    let mut out = Vec::new();
    for r in file.resources().filter(|r| pick(r)) {
        let mut scope = Scope::new(file, BTreeMap::new());
        let (cond, inner) = match &r.body {
            Expr::If(c, b) => (Some(scope.eval(c).text()), (**b).clone()),
            other => (None, other.clone()),
        };
        let runs: Vec<Run> = match &inner {
            Expr::For {
                item,
                index,
                iter,
                body,
            } => {
                let items = match scope.eval(iter) {
                    Val::Array(items) => items,
                    other => {
                        return Err(format!(
                            "{}:{}: the loop of {} runs over {}, which cannot be evaluated here",
                            file.path.display(),
                            r.line,
                            r.symbol,
                            other.text()
                        ))
                    }
                };
                let (cond2, body) = match &**body {
                    Expr::If(c, b) => (Some(c.clone()), (**b).clone()),
                    other => (None, other.clone()),
                };
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, it)| {
                        let mut b = vec![(item.clone(), it.clone())];
                        if let Some(ix) = index {
                            b.push((ix.clone(), Val::Num(i as i64)));
                        }
                        let c = cond2.as_ref().map(|c| scope.eval_with(&b, c).text());
                        (b, Some(it), body.clone(), c.or_else(|| cond.clone()))
                    })
                    .collect()
            }
            body => vec![(Vec::new(), None, body.clone(), cond.clone())],
        };
        for (bindings, item, body, condition) in runs {
            let Expr::Object(entries) = &body else {
                return Err(format!(
                    "{}:{}: resource body is not an object",
                    file.path.display(),
                    r.line
                ));
            };
            let get = |k: &str| entries.iter().find(|e| e.key == k).map(|e| e.value.clone());
            let mut name = match get("name") {
                Some(n) => scope.eval_with(&bindings, &n).text(),
                None => {
                    return Err(format!(
                        "{}:{}: {} has no name",
                        file.path.display(),
                        r.line,
                        r.symbol
                    ))
                }
            };
            if let Some(parent) = get("parent") {
                let parent_name = parent_name(file, &mut scope, &bindings, &parent)?;
                name = format!("{parent_name}/{name}");
            }
            out.push(Instance {
                symbol: r.symbol.clone(),
                rtype: r.rtype.clone(),
                existing: r.existing,
                name,
                condition,
                line: r.line,
                item,
            });
        }
    }
    Ok(out)
}

/// The full name of the resource a `parent:` refers to (`sym` or `sym[i]`).
fn parent_name(
    file: &File,
    scope: &mut Scope,
    bindings: &[(String, Val)],
    parent: &Expr,
) -> Result<String, String> {
    let (symbol, index) = match parent {
        Expr::Ident(s) => (s.clone(), None),
        Expr::Index(t, i) => match &**t {
            Expr::Ident(s) => (s.clone(), Some(scope.eval_with(bindings, i))),
            _ => return Err("parent: unsupported expression".into()),
        },
        _ => return Err("parent: unsupported expression".into()),
    };
    let all = instances_of(file, &symbol)?;
    let pick = match index {
        None => all.first(),
        Some(Val::Num(i)) => all.get(i as usize),
        Some(other) => {
            return Err(format!(
                "parent {symbol}[{}] cannot be evaluated",
                other.text()
            ))
        }
    };
    pick.map(|i| i.name.clone())
        .ok_or_else(|| format!("parent {symbol} not found"))
}

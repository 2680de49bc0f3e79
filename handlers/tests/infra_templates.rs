//! The templates in `infra/` checked offline against Azure's own tables, and the deployment
//! guide walked literally (issue 21). No Bicep compiler runs here, so:
//! - every role id in `infra/` must be a built-in role in `infra/reference/built-in-roles.tsv`
//!   (copied from Microsoft's published table; `infra/reference/refresh.py roles` refreshes it),
//!   under the name the template gives it;
//! - every resource's `type@apiVersion` and every property path it writes must exist, writable,
//!   in `infra/reference/bicep-types.json` (the generated types of Azure/bicep-types-az for exactly
//!   the types we declare; `refresh.py types` refreshes it), and literal values must be allowed;
//! - the commands of docs/deploying.md, run in order on a model of the working tree, must name
//!   files that exist, bicepparam files whose `using` is the template deployed, and stage 2 may
//!   only subscribe functions and topics that the package and stage 1 created.
//!
//! Each failure names the file, the line and the expected value.

#[path = "support/bicep.rs"]
#[allow(dead_code)]
mod bicep;

use bicep::{Entry, Expr, Instance, Val};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn fail_if(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ------------------------------------------------------------------ role ids

/// GUIDs in `infra/` that are not role definitions, and what they are.
const NOT_ROLES: &[(&str, &str)] = &[(
    "98785600-1bb7-4fb9-b9fa-19afe2c8a360",
    "the application id of Azure Security Insights (runs playbooks for automation rules)",
)];

/// The built-in roles table: id → name.
fn built_in_roles() -> BTreeMap<String, String> {
    read("infra/reference/built-in-roles.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let id = cols.next().unwrap().to_string();
            let name = cols.next().expect("id<TAB>name<TAB>section").to_string();
            (id, name)
        })
        .collect()
}

/// A role name as a template key spells it: letters and digits, lower case.
fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether the template's key (`storageTableDataContributor`, `SentinelAutomationContributor`)
/// names the role `name` (`Storage Table Data Contributor`, `Microsoft Sentinel Automation
/// Contributor`): equal once squashed, allowing the vendor word to be left out.
fn key_names(key: &str, name: &str) -> bool {
    let (k, n) = (squash(key), squash(name));
    k == n
        || ["microsoft", "azure"]
            .iter()
            .any(|p| n.strip_prefix(p) == Some(k.as_str()))
}

fn guids(line: &str) -> Vec<(usize, &str)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let shape = [8, 4, 4, 4, 12];
    let mut i = 0;
    while i + 36 <= b.len() {
        let cand = &b[i..i + 36];
        let ok = cand.iter().all(|c| *c == b'-' || c.is_ascii_hexdigit())
            && cand.split(|c| *c == b'-').map(<[u8]>::len).eq(shape)
            && (i == 0 || !b[i - 1].is_ascii_hexdigit())
            && (i + 36 == b.len() || !b[i + 36].is_ascii_hexdigit());
        if ok {
            out.push((i, &line[i..i + 36]));
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

/// The key a GUID is given on its line: `name: 'guid'` (Bicep) or `"Name": "guid"` (JSON).
fn key_before(line: &str, at: usize) -> Option<String> {
    let before = line[..at]
        .trim_end()
        .trim_end_matches(['\'', '"'])
        .trim_end();
    let before = before
        .strip_suffix(':')?
        .trim_end()
        .trim_end_matches(['\'', '"']);
    let key: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!key.is_empty()).then_some(key)
}

/// Problems with the role ids in `text` (the file `rel`).
fn role_problems(rel: &str, text: &str, roles: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (at, guid) in guids(line) {
            let guid = guid.to_ascii_lowercase();
            if NOT_ROLES.iter().any(|(g, _)| *g == guid) {
                continue;
            }
            let key = key_before(line, at);
            let by_key = key
                .as_deref()
                .and_then(|k| roles.iter().find(|(_, name)| key_names(k, name)));
            match (roles.get(&guid), by_key) {
                (Some(name), _) if key.as_deref().is_none_or(|k| key_names(k, name)) => {}
                (Some(name), _) => problems.push(format!(
                    "{rel}:{}: {guid} is the built-in role '{name}', but the line calls it {:?}",
                    n + 1,
                    key.unwrap_or_default()
                )),
                (None, Some((id, name))) => problems.push(format!(
                    "{rel}:{}: {guid} is no built-in role; '{name}' is {id}",
                    n + 1
                )),
                (None, None) => problems.push(format!(
                    "{rel}:{}: {guid} is no built-in role in infra/reference/built-in-roles.tsv (and not in NOT_ROLES)",
                    n + 1
                )),
            }
        }
    }
    problems
}

fn infra_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "reference") {
                    walk(&p, out);
                }
            } else if p
                .extension()
                .is_some_and(|x| x == "bicep" || x == "bicepparam" || x == "json")
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("infra"), &mut out);
    out.sort();
    out.iter()
        .map(|p| p.strip_prefix(repo()).unwrap().display().to_string())
        .collect()
}

#[test]
fn every_role_id_in_infra_is_the_built_in_role_it_is_named_after() {
    let roles = built_in_roles();
    let mut problems = Vec::new();
    let mut seen = 0;
    for rel in infra_files() {
        let text = read(&rel);
        seen += guids(&text).len();
        problems.extend(role_problems(&rel, &text, &roles));
    }
    assert!(seen >= 17, "found only {seen} GUIDs in infra/");
    fail_if(problems);
}

#[test]
fn the_role_check_names_a_wrong_id_and_the_right_one() {
    let roles = built_in_roles();
    let text = "var roles = {\n  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-2319b160aa3a'\n  keyVaultSecretsUser: '3913510d-42f4-4e42-8a64-420c390055eb'\n  StorageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'\n}\n";
    let p = role_problems("x.bicep", text, &roles);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(
        p[0],
        "x.bicep:2: 0a9a7e1f-b9d0-4cc4-a60d-2319b160aa3a is no built-in role; 'Storage Table Data Contributor' is 0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
    );
    assert!(
        p[1].starts_with("x.bicep:3: 3913510d-42f4-4e42-8a64-420c390055eb is the built-in role 'Monitoring Metrics Publisher'"),
        "{}",
        p[1]
    );
}

// ------------------------------------------------------------------ resource shapes

const FLAG_REQUIRED: u64 = 1;
const FLAG_READ_ONLY: u64 = 2;
const FLAG_WRITE_ONLY: u64 = 4;

/// One resource type's definitions (`#/0` is the resource type).
struct Types<'a> {
    key: String,
    types: &'a [Value],
}

impl Types<'_> {
    fn at(&self, r: &Value) -> &Value {
        let s = r["$ref"].as_str().expect("a $ref");
        &self.types[s.trim_start_matches("#/").parse::<usize>().unwrap()]
    }
}

/// Properties a resource declaration may carry that are Bicep's, not the type's.
const BICEP_KEYWORDS: &[&str] = &["parent", "scope", "dependsOn"];

struct Checker<'a> {
    rel: String,
    types: Types<'a>,
    problems: &'a mut Vec<String>,
}

impl Checker<'_> {
    fn problem(&mut self, line: usize, path: &str, what: String) {
        self.problems.push(format!(
            "{}:{line}: {} {path}: {what}",
            self.rel, self.types.key
        ));
    }

    /// Checks an object literal against an object-like type.
    fn object(&mut self, entries: &[Entry], ty: &Value, path: &str, top: bool) {
        let (props, extra, name) = match ty["$type"].as_str() {
            Some("ObjectType") => (
                ty["properties"].as_object().cloned().unwrap_or_default(),
                ty.get("additionalProperties").cloned(),
                ty["name"].as_str().unwrap_or("?").to_string(),
            ),
            Some("DiscriminatedObjectType") => {
                let disc = ty["discriminator"].as_str().unwrap();
                let mut props = ty["baseProperties"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                let chosen = entries.iter().find(|e| e.key == disc);
                let elements = ty["elements"].as_object().unwrap();
                match chosen.map(|e| &e.value) {
                    Some(Expr::Str(parts)) if bicep::literal(parts).is_some() => {
                        let v = bicep::literal(parts).unwrap();
                        match elements.get(&v) {
                            Some(r) => {
                                let el = self.types.at(r).clone();
                                props.extend(
                                    el["properties"].as_object().cloned().unwrap_or_default(),
                                );
                            }
                            None => {
                                let line = chosen.unwrap().line;
                                self.problem(
                                    line,
                                    &format!("{path}.{disc}"),
                                    format!(
                                        "{v:?} is not one of {:?}",
                                        elements.keys().collect::<Vec<_>>()
                                    ),
                                );
                                return;
                            }
                        }
                    }
                    Some(_) => return, // chosen at deployment: only the shared part is known
                    None => {
                        let line = entries.first().map_or(0, |e| e.line);
                        self.problem(line, path, format!("missing the discriminator {disc:?}"));
                        return;
                    }
                }
                (props, None, ty["name"].as_str().unwrap_or("?").to_string())
            }
            _ => return,
        };
        for e in entries {
            let p = format!("{path}.{}", e.key);
            if top && BICEP_KEYWORDS.contains(&e.key.as_str()) {
                continue;
            }
            if e.dynamic {
                match &extra {
                    Some(t) => {
                        let t = self.types.at(t).clone();
                        self.value(&e.value, &t, &p, e.line);
                    }
                    None => self.problem(e.line, &p, format!("{name} takes no computed keys")),
                }
                continue;
            }
            match props.get(&e.key) {
                Some(prop) => {
                    let flags = prop["flags"].as_u64().unwrap_or(0);
                    if flags & FLAG_READ_ONLY != 0 && flags & FLAG_WRITE_ONLY == 0 {
                        self.problem(e.line, &p, "is read-only".into());
                    }
                    let t = self.types.at(&prop["type"]).clone();
                    self.value(&e.value, &t, &p, e.line);
                }
                None => match &extra {
                    Some(t) => {
                        let t = self.types.at(t).clone();
                        self.value(&e.value, &t, &p, e.line);
                    }
                    None => {
                        let mut known: Vec<&String> = props
                            .iter()
                            .filter(|(_, v)| v["flags"].as_u64().unwrap_or(0) & FLAG_READ_ONLY == 0)
                            .map(|(k, _)| k)
                            .collect();
                        known.sort();
                        self.problem(
                            e.line,
                            &p,
                            format!("{name} has no property {:?}; it has {known:?}", e.key),
                        );
                    }
                },
            }
        }
        for (k, prop) in &props {
            let flags = prop["flags"].as_u64().unwrap_or(0);
            if flags & FLAG_REQUIRED != 0
                && flags & FLAG_READ_ONLY == 0
                && !entries.iter().any(|e| &e.key == k)
            {
                let line = entries.first().map_or(0, |e| e.line);
                self.problem(line, path, format!("{name} requires {k:?}"));
            }
        }
    }

    /// Checks a value expression against a type; only literals are checked, computed values
    /// are Azure's to judge.
    fn value(&mut self, v: &Expr, ty: &Value, path: &str, line: usize) {
        match (v, ty["$type"].as_str()) {
            (_, Some("AnyType")) => {}
            // Either branch may be deployed: both must fit (null leaves the property out).
            (Expr::Ternary(_, a, b), _) => {
                self.value(a, ty, path, line);
                self.value(b, ty, path, line);
            }
            (Expr::Null, _) => {}
            (Expr::Object(entries), Some("ObjectType" | "DiscriminatedObjectType")) => {
                self.object(entries, ty, path, false)
            }
            (Expr::Object(entries), Some("UnionType")) => {
                // An object where a union of object shapes is expected: the first that fits.
                let objs: Vec<Value> = ty["elements"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| self.types.at(r).clone())
                    .filter(|t| {
                        matches!(
                            t["$type"].as_str(),
                            Some("ObjectType" | "DiscriminatedObjectType")
                        )
                    })
                    .collect();
                if let Some(t) = objs.first() {
                    self.object(entries, t, path, false);
                } else {
                    self.problem(line, path, "an object where none is allowed".into());
                }
            }
            (Expr::Array(items), Some("ArrayType")) => {
                let t = self.types.at(&ty["itemType"]).clone();
                for (i, it) in items.iter().enumerate() {
                    self.value(it, &t, &format!("{path}[{i}]"), line);
                }
            }
            (Expr::For { body, .. }, Some("ArrayType")) => {
                let t = self.types.at(&ty["itemType"]).clone();
                self.value(body, &t, &format!("{path}[]"), line);
            }
            (Expr::Str(parts), _) if bicep::literal(parts).is_some() => {
                let s = bicep::literal(parts).unwrap();
                let allowed = self.allowed_strings(ty);
                if let Some(allowed) = allowed {
                    if !allowed.contains(&s) {
                        self.problem(line, path, format!("{s:?} is not one of {allowed:?}"));
                    }
                } else if !self.takes(ty, "StringType") {
                    self.problem(
                        line,
                        path,
                        format!("a string where {} is expected", kind(ty)),
                    );
                }
            }
            (Expr::Num(n), _) => {
                if !self.takes(ty, "IntegerType") {
                    self.problem(
                        line,
                        path,
                        format!("a number where {} is expected", kind(ty)),
                    );
                } else if ty["$type"] == "IntegerType" {
                    let (lo, hi) = (ty["minValue"].as_i64(), ty["maxValue"].as_i64());
                    if lo.is_some_and(|lo| *n < lo) || hi.is_some_and(|hi| *n > hi) {
                        self.problem(line, path, format!("{n} is outside {lo:?}..={hi:?}"));
                    }
                }
            }
            (Expr::Bool(_), _) if !self.takes(ty, "BooleanType") => self.problem(
                line,
                path,
                format!("a boolean where {} is expected", kind(ty)),
            ),
            (Expr::Array(_), t) if t != Some("ArrayType") && !self.takes(ty, "ArrayType") => self
                .problem(
                    line,
                    path,
                    format!("an array where {} is expected", kind(ty)),
                ),
            _ => {}
        }
    }

    /// The string literals a type allows, if it allows only literals.
    fn allowed_strings(&self, ty: &Value) -> Option<Vec<String>> {
        match ty["$type"].as_str() {
            Some("StringLiteralType") => Some(vec![ty["value"].as_str()?.to_string()]),
            Some("UnionType") => {
                let mut out = Vec::new();
                for r in ty["elements"].as_array()? {
                    let t = self.types.at(r);
                    match t["$type"].as_str() {
                        Some("StringLiteralType") => out.push(t["value"].as_str()?.to_string()),
                        _ => return None,
                    }
                }
                Some(out)
            }
            _ => None,
        }
    }

    /// Whether `ty` is, or is a union holding, a type of kind `want` (or any).
    fn takes(&self, ty: &Value, want: &str) -> bool {
        match ty["$type"].as_str() {
            Some(t) if t == want || t == "AnyType" => true,
            Some("UnionType") => ty["elements"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| self.takes(self.types.at(r), want)),
            _ => false,
        }
    }
}

fn kind(ty: &Value) -> String {
    match ty["$type"].as_str() {
        Some("ObjectType") => format!("object {}", ty["name"].as_str().unwrap_or("?")),
        Some(t) => t.to_string(),
        None => "?".into(),
    }
}

fn bicep_types() -> Value {
    serde_json::from_str(&read("infra/reference/bicep-types.json")).unwrap()
}

/// Problems with the resources of one Bicep file.
fn shape_problems(rel: &str, file: &bicep::File, defs: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for r in file.resources() {
        let key = format!("{}@{}", r.rtype, r.api_version);
        let Some(entry) = defs["resources"].get(&key) else {
            let known: Vec<&String> = defs["resources"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with(&format!("{}@", r.rtype)))
                .collect();
            problems.push(format!(
                "{rel}:{}: {key} is not in infra/reference/bicep-types.json (known versions: {known:?}; run infra/reference/refresh.py types)",
                r.line
            ));
            continue;
        };
        let types = entry["types"].as_array().unwrap();
        let mut c = Checker {
            rel: rel.to_string(),
            types: Types {
                key: key.clone(),
                types,
            },
            problems: &mut problems,
        };
        let body = c.types.at(&types[0]["body"]).clone();
        if r.existing {
            for e in r.object() {
                if !["name", "scope", "parent"].contains(&e.key.as_str()) {
                    c.problem(
                        e.line,
                        "",
                        format!(
                            "an existing resource takes only name, scope and parent, not {:?}",
                            e.key
                        ),
                    );
                }
            }
        } else {
            c.object(r.object(), &body, "", true);
        }
    }
    problems
}

#[test]
fn every_resource_type_version_and_property_path_exists_in_bicep_types_az() {
    let defs = bicep_types();
    let mut problems = Vec::new();
    let mut resources = 0;
    for rel in ["infra/main.bicep", "infra/subscriptions.bicep"] {
        let file = bicep::load(&repo().join(rel));
        resources += file.resources().count();
        problems.extend(shape_problems(rel, &file, &defs));
    }
    assert!(resources >= 40, "parsed only {resources} resources");
    fail_if(problems);
}

#[test]
fn the_shape_check_names_unknown_read_only_and_disallowed_values() {
    let defs = bicep_types();
    let text = "resource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n  location: 'here'\n  sku: { name: 'Standard_LRS' }\n  kind: 'StorageV2'\n  properties: {\n    allowSharedKeyAcess: false\n    primaryEndpoints: {}\n    accessTier: 'Warm'\n  }\n}\nresource q 'Microsoft.Storage/storageAccounts/queueServices/queues@2099-01-01' = {\n  name: 'q'\n}\n";
    let file = bicep::parse(Path::new("x.bicep"), text).unwrap();
    let p = shape_problems("x.bicep", &file, &defs);
    assert_eq!(p.len(), 4, "{p:#?}");
    assert!(p[0].starts_with("x.bicep:7: Microsoft.Storage/storageAccounts@2023-05-01 .properties.allowSharedKeyAcess: StorageAccountPropertiesCreateParametersOrStorageAccountProperties has no property"), "{}", p[0]);
    assert_eq!(p[1], "x.bicep:8: Microsoft.Storage/storageAccounts@2023-05-01 .properties.primaryEndpoints: is read-only");
    assert_eq!(p[2], "x.bicep:9: Microsoft.Storage/storageAccounts@2023-05-01 .properties.accessTier: \"Warm\" is not one of [\"Hot\", \"Cool\", \"Premium\", \"Cold\"]");
    assert!(p[3].starts_with("x.bicep:12: Microsoft.Storage/storageAccounts/queueServices/queues@2099-01-01 is not in"), "{}", p[3]);
}

// ------------------------------------------------------------------ docs/deploying.md, literally

/// The shell commands of one `## ` section of docs/deploying.md, continuation lines joined,
/// comments dropped.
fn commands(doc: &str, heading_starts: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_section = false;
    let mut in_code = false;
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in doc.lines().enumerate() {
        if line.starts_with("## ") {
            in_section = line.starts_with(heading_starts);
        }
        if !in_section {
            continue;
        }
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let code = match line.find(" #") {
            Some(i) => &line[..i],
            None => line,
        }
        .trim();
        if code.is_empty() || code.starts_with('#') {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((n + 1, String::new()));
        match code.strip_suffix('\\') {
            Some(part) => {
                text.push_str(part.trim());
                text.push(' ');
                pending = Some((start, text));
            }
            None => {
                text.push_str(code);
                out.push((start, text));
            }
        }
    }
    out
}

/// The value after `flag` in a command's words.
fn flag_values<'a>(words: &'a [&'a str], flag: &str) -> Vec<&'a str> {
    words
        .windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1])
        .collect()
}

/// Normalises `a/./b/../c` lexically (no file system).
fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What one `az deployment group create` deploys.
struct Deployment {
    doc_line: usize,
    template: String,
    file: bicep::File,
}

/// Walks the stage sections of `doc` on a model of the repository (`files`: path → text),
/// returning the problems and the deployments in order.
fn walk_docs(
    doc: &str,
    files: &mut BTreeMap<String, String>,
) -> (Vec<String>, Vec<(String, Deployment)>) {
    let mut problems = Vec::new();
    let mut deployments = Vec::new();
    for (stage, heading) in [("stage 1", "## 1."), ("stage 2", "## 3.")] {
        let cmds = commands(doc, heading);
        if cmds.is_empty() {
            problems.push(format!("docs/deploying.md: no commands under {heading:?}"));
        }
        for (line, cmd) in cmds {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let at = format!("docs/deploying.md:{line}");
            match words.as_slice() {
                ["cp", src, dst] => match files.get(*src).cloned() {
                    Some(text) => {
                        files.insert(normal(Path::new(dst)).display().to_string(), text);
                    }
                    None => problems.push(format!("{at}: `cp` copies {src}, which does not exist")),
                },
                ["az", "deployment", "group", "create", ..] => {
                    let templates = flag_values(&words, "-f");
                    let [template] = templates.as_slice() else {
                        problems.push(format!("{at}: expected one -f TEMPLATE in `{cmd}`"));
                        continue;
                    };
                    let template = normal(Path::new(template)).display().to_string();
                    let Some(text) = files.get(&template) else {
                        problems.push(format!("{at}: -f {template} does not exist"));
                        continue;
                    };
                    for p in flag_values(&words, "-p") {
                        if p.contains('=') {
                            continue; // an inline `name=value`
                        }
                        let p = normal(Path::new(p)).display().to_string();
                        let Some(param_text) = files.get(&p) else {
                            problems.push(format!("{at}: -p {p} does not exist"));
                            continue;
                        };
                        let params = match bicep::parse(Path::new(&p), param_text) {
                            Ok(f) => f,
                            Err(e) => {
                                problems.push(format!("{at}: {e}"));
                                continue;
                            }
                        };
                        match params.using() {
                            Some(using) => {
                                let dir = Path::new(&p).parent().unwrap_or(Path::new(""));
                                let target = normal(&dir.join(using)).display().to_string();
                                if target != template {
                                    problems.push(format!(
                                        "{at}: {p} says `using '{using}'`, which from {} is {target}, not the template {template}; expected `using '{}'`",
                                        if dir.as_os_str().is_empty() { "the repository root".to_string() } else { dir.display().to_string() },
                                        relative(dir, Path::new(&template))
                                    ));
                                }
                            }
                            None => problems.push(format!("{at}: {p} has no `using` line")),
                        }
                    }
                    let file = match bicep::parse(&repo().join(&template), text) {
                        Ok(f) => f,
                        Err(e) => {
                            problems.push(format!("{at}: {e}"));
                            continue;
                        }
                    };
                    deployments.push((
                        stage.to_string(),
                        Deployment {
                            doc_line: line,
                            template,
                            file,
                        },
                    ));
                }
                _ => {}
            }
        }
    }
    (problems, deployments)
}

/// `target` written relative to `dir` (both relative to the repository root).
fn relative(dir: &Path, target: &Path) -> String {
    let d: Vec<_> = dir.components().collect();
    let t: Vec<_> = target.components().collect();
    let common = d.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    let s = out.display().to_string();
    if s.starts_with("..") {
        s
    } else {
        format!("./{s}")
    }
}

/// The functions the package publishes, with their trigger type.
fn functions() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(repo().join("function-defs")).unwrap() {
        let dir = e.unwrap().path();
        let def: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("function.json")).unwrap())
                .unwrap();
        let trigger = def["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"].as_str().is_some_and(|t| t.ends_with("Trigger")))
            .and_then(|b| b["type"].as_str())
            .unwrap_or_default()
            .to_string();
        out.insert(
            dir.file_name().unwrap().to_string_lossy().to_string(),
            trigger,
        );
    }
    out
}

/// Problems with what the stages deploy: stage 2's Event Grid subscriptions must hang off a
/// topic stage 1 created (custom topics under `topics`, the Azure ML one under `systemTopics`)
/// and deliver to a published function with an eventGridTrigger; stage 2's `existing`
/// resources must be ones stage 1 created.
fn stage_problems(deployments: &[(String, Deployment)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut created: Vec<Instance> = Vec::new();
    let functions = functions();
    for (stage, d) in deployments {
        let instances = match bicep::instances(&d.file) {
            Ok(i) => i,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for i in &instances {
            let at = format!("{}:{}", d.template, i.line);
            if i.existing && stage != "stage 1" {
                if !created
                    .iter()
                    .any(|c| c.rtype == i.rtype && c.name == i.name)
                {
                    problems.push(format!(
                        "{at}: {stage} (docs/deploying.md:{}) refers to the existing {} {}, which no earlier stage creates",
                        d.doc_line, i.rtype, i.name
                    ));
                }
                continue;
            }
            if let Some(parent_type) = i.rtype.strip_suffix("/eventSubscriptions") {
                let (topic, sub) = i.name.split_once('/').unwrap_or((&i.name, ""));
                let made = created
                    .iter()
                    .find(|c| c.rtype == parent_type && c.name == topic);
                if made.is_none() {
                    let same_name = created
                        .iter()
                        .filter(|c| c.rtype.starts_with("Microsoft.EventGrid/"))
                        .map(|c| format!("{} {}", c.rtype, c.name))
                        .collect::<Vec<_>>();
                    problems.push(format!(
                        "{at}: {stage} (docs/deploying.md:{}) subscribes {sub} to the {parent_type} {topic}, which no earlier stage creates; created: {same_name:?}",
                        d.doc_line
                    ));
                }
                match functions.get(sub) {
                    Some(t) if t == "eventGridTrigger" => {}
                    Some(t) => problems.push(format!(
                        "{at}: {sub} is a {t} function, not an eventGridTrigger"
                    )),
                    None => problems.push(format!(
                        "{at}: {sub} is not a function in function-defs/ (the package)"
                    )),
                }
            }
        }
        created.extend(instances.into_iter().filter(|i| !i.existing));
    }
    problems
}

fn working_tree() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for rel in infra_files() {
        files.insert(rel.clone(), read(&rel));
    }
    files
}

#[test]
fn docs_deploying_walked_literally_deploys_every_stage() {
    let doc = read("docs/deploying.md");
    let mut files = working_tree();
    let (mut problems, deployments) = walk_docs(&doc, &mut files);
    let stages: BTreeSet<(&str, &str)> = deployments
        .iter()
        .map(|(s, d)| (s.as_str(), d.template.as_str()))
        .collect();
    assert!(
        stages.contains(&("stage 1", "infra/main.bicep"))
            && stages.contains(&("stage 2", "infra/subscriptions.bicep")),
        "the guide deploys {stages:?}; problems so far: {problems:#?}"
    );
    problems.extend(stage_problems(&deployments));
    fail_if(problems);
}

#[test]
fn the_walk_catches_a_copied_param_file_whose_using_no_longer_resolves() {
    let doc = "## 1. Stage 1\n\n```sh\ncp infra/main.bicepparam my.bicepparam\naz deployment group create -g <rg> -f infra/main.bicep -p my.bicepparam\n```\n## 3. Stage 2\n\n```sh\naz deployment group create -g <rg> -f infra/subscriptions.bicep \\\n   -p infra/subscriptions.bicepparam\n```\n";
    let mut files = working_tree();
    let (problems, deployments) = walk_docs(doc, &mut files);
    assert_eq!(deployments.len(), 2);
    assert_eq!(
        problems,
        vec!["docs/deploying.md:5: my.bicepparam says `using './main.bicep'`, which from the repository root is main.bicep, not the template infra/main.bicep; expected `using './infra/main.bicep'`"]
    );
}

#[test]
fn the_walk_catches_a_subscription_to_a_topic_no_stage_creates() {
    let stage1 = "param prefix string\nvar suffix = uniqueString(resourceGroup().id, prefix)\nvar names = [\n  'a'\n]\nresource topics 'Microsoft.EventGrid/topics@2024-06-01-preview' = [for t in names: {\n  name: '${prefix}-${t}-${suffix}'\n}]\n";
    let stage2 = "param prefix string\nvar suffix = uniqueString(resourceGroup().id, prefix)\nvar subs = [\n  { topic: 'a', function: 'incident-created' }\n  { topic: 'b', function: 'incident-created' }\n]\nresource s 'Microsoft.EventGrid/topics/eventSubscriptions@2024-06-01-preview' = [for s in subs: {\n  name: '${prefix}-${s.topic}-${suffix}/${s.function}'\n}]\n";
    let d = |t: &str, text: &str| Deployment {
        doc_line: 1,
        template: t.to_string(),
        file: bicep::parse(&repo().join(t), text).unwrap(),
    };
    let problems = stage_problems(&[
        ("stage 1".into(), d("one.bicep", stage1)),
        ("stage 2".into(), d("two.bicep", stage2)),
    ]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("two.bicep:7: stage 2 (docs/deploying.md:1) subscribes incident-created to the Microsoft.EventGrid/topics {param:prefix}-b-{uniqueString("),
        "{}",
        problems[0]
    );
}

#[test]
fn the_bicep_subset_parser_reads_both_templates_and_both_parameter_files() {
    for rel in [
        "infra/main.bicep",
        "infra/subscriptions.bicep",
        "infra/main.bicepparam",
        "infra/subscriptions.bicepparam",
    ] {
        let text = read(rel);
        bicep::parse(Path::new(rel), &text).unwrap_or_else(|e| panic!("{e}"));
    }
    // Outside the subset is an error naming the line, not a silent skip.
    let err = bicep::parse(
        Path::new("x.bicep"),
        "param a string\nmodule m './m.bicep' = {}\n",
    )
    .unwrap_err();
    assert_eq!(
        err,
        "x.bicep: line 2: \"module\" is outside the Bicep subset this parser reads"
    );
    // Object keys keep their lines; loops and conditions unroll.
    let f = bicep::parse(
        Path::new("x.bicep"),
        "var n = [\n  'a'\n  'b'\n]\nresource r 'T/u@1' = [for (x, i) in n: if (i == 1) {\n  name: 'r-${x}'\n}]\n",
    )
    .unwrap();
    let inst = bicep::instances(&f).unwrap();
    let names: Vec<(String, Option<String>)> = inst
        .iter()
        .map(|i| (i.name.clone(), i.condition.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("r-a".to_string(), Some("false".to_string())),
            ("r-b".to_string(), Some("true".to_string()))
        ]
    );
    assert_eq!(f.resources().next().unwrap().object()[0].line, 6);
    let _ = Val::Null;
}

/// Every hub main.bicep creates takes its retention from infra/eventhubs.json, the file the
/// local host reads too (`eventHubSettings[h]` would fail the deployment for a missing hub).
#[test]
fn every_event_hub_has_its_retention_in_the_shared_file() {
    let file = bicep::load(&repo().join("infra/main.bicep"));
    let settings: Value = serde_json::from_str(&read("infra/eventhubs.json")).unwrap();
    let hubs: Vec<String> = bicep::instances(&file)
        .unwrap()
        .into_iter()
        .filter(|i| i.rtype == "Microsoft.EventHub/namespaces/eventhubs")
        .map(|i| i.name.rsplit('/').next().unwrap().to_string())
        .collect();
    assert!(hubs.len() >= 2, "{hubs:?}");
    for hub in &hubs {
        let days = settings[hub]["retentionDays"].as_u64();
        assert!(
            days.is_some_and(|d| (1..=7).contains(&d)),
            "infra/eventhubs.json: {hub} needs retentionDays between 1 and 7 (Standard tier), found {:?}",
            settings[hub]
        );
    }
}

//! HTTP triggers at `http://127.0.0.1:{port}/api/{route}` with function-key checks, and the
//! triage reports the local report store writes, at `/reports/…`.

use super::shared::Shared;
use crate::config::{OutputTarget, Trigger};
use crate::envelope;
use crate::stats::Outcome;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Map, Value};
use socwire_common::text::for_log;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest HTTP trigger body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Binds the HTTP port on `ip` (port 0 = any free port).
pub(crate) async fn bind(
    ip: std::net::IpAddr,
    port: u16,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((ip, port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {ip}:{port}: {e}"))
}

/// Serves HTTP triggers, reports and the mounted console on `listener` in the background;
/// returns its address.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    s: Arc<Shared>,
    console: Option<Router>,
) -> anyhow::Result<std::net::SocketAddr> {
    let key = Arc::new(function_key(&s)?);
    // Reports and the console show incident data: both pass the gate (loopback names only on
    // loopback, the function key beyond it). HTTP triggers check their own keys, as in Azure.
    let gate = ConsoleGate {
        key: key.clone(),
        key_required: !s.opts.listen.is_loopback(),
    };
    let reports = Router::new()
        .route("/reports/{*path}", get(report))
        .with_state((s.clone(), key.clone()))
        .layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            console_gate,
        ));
    let mut app = Router::new()
        .route("/api/{*path}", any(api))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state((s.clone(), key))
        .merge(reports);
    if let Some(console) = console {
        app = app.merge(console.layer(axum::middleware::from_fn_with_state(gate, console_gate)));
    }
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = socwire_common::listener::serve(
            listener,
            app,
            socwire_common::listener::Limits::default(),
        )
        .await
        {
            tracing::error!(error = %e, "HTTP trigger server stopped");
        }
    });
    Ok(addr)
}

/// The function key: `SOCWIRE_FUNCTION_KEY` from the app settings, else one generated on first
/// run and kept in `{data_dir}/function-key` (readable only by its owner).
/// Shortest function key accepted: a short or empty key would make the check meaningless.
const MIN_KEY_CHARS: usize = 32;

fn function_key(s: &Shared) -> anyhow::Result<String> {
    // An empty value means "not set", as everywhere in the settings.
    if let Some(k) = s
        .cfg
        .settings
        .get("SOCWIRE_FUNCTION_KEY")
        .filter(|k| !k.trim().is_empty())
    {
        let k = k.trim();
        if k.chars().count() < MIN_KEY_CHARS {
            anyhow::bail!(
                "SOCWIRE_FUNCTION_KEY is {} characters; use at least {MIN_KEY_CHARS} (or unset it to have one generated)",
                k.chars().count()
            );
        }
        return Ok(k.to_string());
    }
    load_or_create_key(&s.opts.data_dir.join("function-key"))
}

/// Reads the generated key at `path`, or writes a new one there: created with mode 0600 in
/// one step (never world-readable, not even briefly) through a temporary file and a rename, so
/// a crash never leaves an empty key. An existing key that is empty or short is refused.
pub(crate) fn load_or_create_key(path: &std::path::Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(k) => {
            let k = k.trim().to_string();
            if k.chars().count() < MIN_KEY_CHARS {
                anyhow::bail!(
                    "{} holds a {}-character key; delete it to have a new one generated",
                    path.display(),
                    k.chars().count()
                );
            }
            return Ok(k);
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            anyhow::bail!("cannot read {}: {e}", path.display())
        }
        Err(_) => {}
    }
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(key.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(key)
}

/// Who may read the console and the reports.
#[derive(Clone)]
struct ConsoleGate {
    key: Arc<String>,
    /// Listening beyond loopback: every request must prove it knows the function key.
    key_required: bool,
}

/// Cookie that carries the function key after `?code=` was given once.
const KEY_COOKIE: &str = "socwire_key";

/// On loopback, refuses requests whose Host is not a loopback name (a page elsewhere cannot
/// read the console through DNS rebinding). Beyond loopback, requires the function key: the
/// `x-functions-key` header, the key cookie, or `?code=` once, which sets the cookie
/// (HttpOnly, SameSite=Strict) and redirects to the same page without it.
async fn console_gate(
    State(gate): State<ConsoleGate>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    if !gate.key_required {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name);
        if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
            return (
                StatusCode::FORBIDDEN,
                "the console answers loopback names only",
            )
                .into_response();
        }
        return next.run(request).await;
    }
    let matches = |given: &str| constant_time_eq(given.as_bytes(), gate.key.as_bytes());
    let header_ok = headers
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(matches);
    let cookie_ok = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == KEY_COOKIE && matches(v));
    if header_ok || cookie_ok {
        return next.run(request).await;
    }
    let query = request.uri().query().map(url_pairs).unwrap_or_default();
    if query.get("code").is_some_and(|c| matches(c)) {
        let rest: Vec<(String, String)> = query.into_iter().filter(|(k, _)| k != "code").collect();
        let mut location = request.uri().path().to_string();
        if !rest.is_empty() {
            location.push('?');
            location.push_str(
                &url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(rest)
                    .finish(),
            );
        }
        return Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header("location", location)
            .header(
                "set-cookie",
                format!(
                    "{KEY_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                    gate.key
                ),
            )
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    (
        StatusCode::UNAUTHORIZED,
        "the console listens beyond loopback: open it once with ?code=<function key>",
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Matches `path` against a route template (`a/{id}/b`); returns the route parameters.
pub fn match_route(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut params = BTreeMap::new();
    let mut i = 0;
    for seg in &t {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (name, optional) = match name.strip_suffix('?') {
                Some(n) => (n, true),
                None => (name, false),
            };
            match p.get(i) {
                Some(v) if !v.is_empty() => {
                    params.insert(name.to_string(), v.to_string());
                }
                _ if optional => {}
                _ => return None,
            }
        } else if !p.get(i).is_some_and(|v| v.eq_ignore_ascii_case(seg)) {
            return None;
        }
        i += 1;
    }
    (i >= p.len()).then_some(params)
}

type AppState = (Arc<Shared>, Arc<String>);

/// The enabled HTTP function whose route and methods match: its definition, trigger binding
/// name, auth level and route parameters. The host's routes carry their methods as constraints,
/// so a route whose methods leave this one out does not match, and no match is 404, never 405
/// (azure-functions-host `WebScriptHostHttpRoutesManager` maps each function's route with an
/// `HttpMethodRouteConstraint`; azure-webjobs-sdk-extensions `WebJobsRouteBuilder`). A disabled
/// function has no route.
fn http_function(
    cfg: &crate::config::AppConfig,
    method: &str,
    path: &str,
) -> Option<(
    crate::config::FunctionDef,
    String,
    String,
    BTreeMap<String, String>,
)> {
    cfg.functions.iter().find_map(|f| match &f.trigger {
        Trigger::Http {
            name,
            methods,
            route,
            auth_level,
        } if !cfg.is_disabled(&f.name)
            && (methods.is_empty() || methods.iter().any(|m| m.eq_ignore_ascii_case(method))) =>
        {
            let params = match_route(route, path)?;
            Some((f.clone(), name.clone(), auth_level.clone(), params))
        }
        _ => None,
    })
}

/// The request URL the handler gets as `Url`: the whole URL, query string included.
fn request_url(host: Option<&str>, uri: &Uri) -> String {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    format!("http://{}{path}", host.unwrap_or("127.0.0.1"))
}

async fn api(
    State((s, key)): State<AppState>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let found = http_function(&s.cfg, method.as_str(), &path);
    let Some((f, binding, auth_level, params)) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let query: BTreeMap<String, String> = uri.query().map(url_pairs).unwrap_or_default();
    if auth_level != "anonymous" && !key_given(&headers, &query, &key) {
        return (
            StatusCode::UNAUTHORIZED,
            "missing or wrong function key (x-functions-key header or ?code=)",
        )
            .into_response();
    }
    let Some(body_value) = body_value(&headers, &body) else {
        return (
            StatusCode::BAD_REQUEST,
            "body is not UTF-8 text; send application/octet-stream for bytes",
        )
            .into_response();
    };
    let mut query_no_code = query.clone();
    query_no_code.remove("code");
    let mut req = json!({
        "Url": request_url(headers.get("host").and_then(|h| h.to_str().ok()), &uri),
        "Method": method.as_str(),
        "Query": query_no_code,
        "Headers": header_lists(&headers),
        "Params": params,
        "Identities": [],
    });
    if !body_value.is_null() {
        req["Body"] = body_value;
    }
    let mut data = Map::new();
    data.insert(binding, req);
    let mut meta = Map::new();
    meta.insert("Query".into(), json!(query_no_code));
    for (k, v) in &params {
        meta.insert(k.clone(), envelope::encoded(v));
    }
    meta.insert(
        "sys".into(),
        envelope::sys(&f.name, chrono::Utc::now().timestamp_millis()),
    );
    let request = envelope::request(data, meta);
    // A failed invocation is a bare 500: the host never puts the handler's error text in the
    // caller's response (it goes to the log).
    let answer = match s.invoke(&f.name, &request).await {
        Ok(a) => a,
        Err(failure) => {
            s.stats
                .record(&f.name, Outcome::Retried, 1, &for_log(&failure.reason, 300));
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if let Err(reason) = s.route_outputs(&f, &answer) {
        s.stats
            .record(&f.name, Outcome::Retried, 1, &for_log(&reason, 300));
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    s.stats
        .record(&f.name, Outcome::Delivered, 1, &Shared::log_lines(&answer));
    let http_binding = f
        .outputs
        .iter()
        .find(|o| o.target == OutputTarget::Http)
        .map(|o| o.name.clone());
    match http_binding.and_then(|b| answer.output(&b).cloned()) {
        Some(v) => http_response(&v),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Whether the request carries the function key (`x-functions-key` or `?code=`).
fn key_given(headers: &HeaderMap, query: &BTreeMap<String, String>, key: &str) -> bool {
    let given = headers
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| query.get("code").cloned());
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes()))
}

/// The request's headers as the host hands them on (a list per name), less the function key.
fn header_lists(headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut header_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if k.as_str().eq_ignore_ascii_case("x-functions-key") {
            continue;
        }
        header_map
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).to_string());
    }
    header_map
}

/// The body as the host binds it: null when empty, base64 for bytes and multipart, text
/// otherwise; `None` when a text body is not UTF-8.
fn body_value(headers: &HeaderMap, body: &Bytes) -> Option<Value> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if body.is_empty() {
        Some(Value::Null)
    } else if content_type.starts_with("application/octet-stream")
        || content_type.starts_with("multipart/")
    {
        use base64::Engine as _;
        Some(Value::String(
            base64::engine::general_purpose::STANDARD.encode(body),
        ))
    } else {
        std::str::from_utf8(body)
            .ok()
            .map(|text| Value::String(text.to_string()))
    }
}

fn url_pairs(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Turns an HTTP output binding value into a response; the host requires a JSON object.
fn http_response(v: &Value) -> Response {
    let Some(obj) = v.as_object() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "HTTP output binding must be a JSON object",
        )
            .into_response();
    };
    let field = |k: &str| {
        obj.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    };
    let status = field("statusCode")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| StatusCode::from_u16(c as u16).ok())
        .unwrap_or(StatusCode::OK);
    let mut builder = Response::builder().status(status);
    if let Some(Value::Object(h)) = field("headers") {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                builder = builder.header(k, v);
            }
        }
    }
    let body = match field("body") {
        None | Some(Value::Null) => Body::empty(),
        Some(Value::String(text)) => Body::from(text.clone()),
        Some(other) => Body::from(other.to_string()),
    };
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn report(State((s, _)): State<AppState>, Path(path): Path<String>) -> Response {
    let safe = path.split('/').all(|seg| {
        !seg.is_empty()
            && seg != ".."
            && seg != "."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    });
    if !safe || !path.ends_with(".html") {
        return (StatusCode::NOT_FOUND, "no such report").into_response();
    }
    match tokio::fs::read(s.opts.data_dir.join("reports").join(&path)).await {
        Ok(bytes) => (
            [
                ("content-type", "text/html; charset=utf-8"),
                (
                    "content-security-policy",
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such report").into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_generated_key_is_private_and_kept_and_a_short_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("function-key");
        let key = super::load_or_create_key(&path).unwrap();
        assert_eq!(key.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(super::load_or_create_key(&path).unwrap(), key);
        std::fs::write(&path, "").unwrap();
        let e = super::load_or_create_key(&path).unwrap_err().to_string();
        assert!(e.contains("0-character key"), "{e}");
    }

    use super::*;

    #[test]
    fn routes_match_with_params() {
        assert!(match_route("playbook/triage", "playbook/triage").is_some());
        assert!(match_route("playbook/triage", "playbook/other").is_none());
        let p = match_route("items/{id}", "items/42").unwrap();
        assert_eq!(p["id"], "42");
        assert!(match_route("items/{id?}", "items").is_some());
        assert!(match_route("items/{id}", "items/42/extra").is_none());
    }

    async fn through_gate(key_required: bool, uri: &str, headers: &[(&str, &str)]) -> Response {
        use tower::ServiceExt as _;
        let gate = ConsoleGate {
            key: Arc::new("k".repeat(40)),
            key_required,
        };
        let app = Router::new()
            .route("/", get(|| async { "console" }))
            .layer(axum::middleware::from_fn_with_state(gate, console_gate));
        let mut req = axum::http::Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn on_loopback_the_console_answers_loopback_names_only() {
        for host in [
            "127.0.0.1:7071",
            "localhost:7071",
            "[::1]:7071",
            "localhost",
        ] {
            let r = through_gate(false, "/", &[("host", host)]).await;
            assert_eq!(r.status(), StatusCode::OK, "{host}");
        }
        // A page elsewhere that rebinds its own name to 127.0.0.1 sends its own name.
        let r = through_gate(false, "/", &[("host", "attacker.example:7071")]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn beyond_loopback_the_console_needs_the_function_key() {
        let key = "k".repeat(40);
        let host = [("host", "10.0.0.5:7071")];
        assert_eq!(
            through_gate(true, "/", &host).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            through_gate(true, "/?code=wrong", &host).await.status(),
            StatusCode::UNAUTHORIZED
        );
        let r = through_gate(true, &format!("/?code={key}&offset=50"), &host).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/?offset=50");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let pair = cookie.split(';').next().unwrap().to_string();
        let r = through_gate(true, "/", &[("cookie", &pair)]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = through_gate(true, "/", &[("x-functions-key", &key)]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = through_gate(true, "/", &[("cookie", "socwire_key=nope")]).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    fn app_with_http_function(
        dir: &std::path::Path,
        settings: &[(&str, &str)],
    ) -> crate::config::AppConfig {
        std::fs::write(
            dir.join("host.json"),
            r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "x"}}}"#,
        )
        .unwrap();
        let f = dir.join("function-defs").join("hook");
        std::fs::create_dir_all(&f).unwrap();
        std::fs::write(
            f.join("function.json"),
            r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "methods": ["post"], "route": "items/{id}", "authLevel": "anonymous"}, {"type": "http", "direction": "out", "name": "res"}]}"#,
        )
        .unwrap();
        let env = settings.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        crate::config::AppConfig::load_with_env(dir, env).unwrap()
    }

    #[test]
    fn a_route_matches_only_its_methods_and_only_while_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = app_with_http_function(dir.path(), &[]);
        let (f, binding, _, params) = http_function(&cfg, "POST", "items/7").unwrap();
        assert_eq!(
            (f.name.as_str(), binding.as_str(), params["id"].as_str()),
            ("hook", "req", "7")
        );
        // A method the route does not allow finds no route: 404 like the host, not 405.
        assert!(http_function(&cfg, "GET", "items/7").is_none());
        let off = tempfile::tempdir().unwrap();
        let cfg = app_with_http_function(off.path(), &[("AzureWebJobs.hook.Disabled", "1")]);
        assert!(http_function(&cfg, "POST", "items/7").is_none());
    }

    #[test]
    fn the_url_keeps_the_query_string() {
        let uri: Uri = "/api/items/7?a=1&b=two".parse().unwrap();
        assert_eq!(
            request_url(Some("localhost:7071"), &uri),
            "http://localhost:7071/api/items/7?a=1&b=two"
        );
    }

    #[test]
    fn key_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

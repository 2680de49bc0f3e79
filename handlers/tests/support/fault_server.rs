//! A fault-injecting HTTP server for adapter tests: axum on 127.0.0.1:0, a fake service
//! behaviour (a closure), and per-route scripts of faults consumed in order before the
//! behaviour answers normally. Every request is recorded.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: Method,
    /// Path (percent-encoded, as sent).
    pub path: String,
    /// Query string (empty when none).
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Seen {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// What the fake service answers: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A scripted fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status with these headers and body; the service never sees the request.
    Status(u16, Vec<(&'static str, String)>, &'static str),
    /// Answer this instead of the service (a body made at run time: a huge one, a link to
    /// this server); the service never sees the request.
    Reply(Answer),
    /// The service handles the request (a write lands), then this status goes back instead.
    LandThen(u16),
    /// The service handles the request, then the answer is held back for this long (longer
    /// than the client's timeout).
    LandThenHang(Duration),
    /// Nothing is handled; the answer is held back for this long.
    Hang(Duration),
    /// The service's answer, with its full `Content-Length` but only half of the body before
    /// the connection is cut.
    Truncated,
}

type Behaviour = dyn Fn(&Seen) -> Answer + Send + Sync;

struct State {
    behaviour: Box<Behaviour>,
    scripts: Mutex<HashMap<(Method, String), VecDeque<Fault>>>,
    seen: Mutex<Vec<Seen>>,
}

/// A running fault server.
#[derive(Clone)]
pub struct FaultServer {
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    state: Arc<State>,
}

impl FaultServer {
    /// Starts a server whose normal answers come from `behaviour`.
    pub async fn start(behaviour: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let state = Arc::new(State {
            behaviour: Box::new(behaviour),
            scripts: Mutex::default(),
            seen: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    /// Queues faults for requests with `method` on exactly `path`, used one per request.
    pub fn script(&self, method: Method, path: &str, faults: impl IntoIterator<Item = Fault>) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .entry((method, path.to_string()))
            .or_default()
            .extend(faults);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests with `method` on `path`.
    pub fn seen_on(&self, method: Method, path: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.path == path)
            .collect()
    }
}

/// A port on 127.0.0.1 that nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn respond((status, headers, body): Answer) -> Response<Body> {
    let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        response = response.header(k, v);
    }
    response.body(Body::from(body)).unwrap()
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    request: Request<Body>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let seen = Seen {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers,
        body: axum::body::to_bytes(body, usize::MAX).await.unwrap(),
        at: Instant::now(),
    };
    state.seen.lock().unwrap().push(seen.clone());
    let fault = state
        .scripts
        .lock()
        .unwrap()
        .get_mut(&(seen.method.clone(), seen.path.clone()))
        .and_then(VecDeque::pop_front);
    match fault {
        None => respond((state.behaviour)(&seen)),
        Some(Fault::Status(status, headers, body)) => {
            respond((status, headers, body.as_bytes().to_vec()))
        }
        Some(Fault::Reply(answer)) => respond(answer),
        Some(Fault::LandThen(status)) => {
            (state.behaviour)(&seen);
            respond((status, vec![], b"injected after the write".to_vec()))
        }
        Some(Fault::LandThenHang(wait)) => {
            let answer = (state.behaviour)(&seen);
            tokio::time::sleep(wait).await;
            respond(answer)
        }
        Some(Fault::Hang(wait)) => {
            tokio::time::sleep(wait).await;
            respond((state.behaviour)(&seen))
        }
        Some(Fault::Truncated) => {
            let (status, headers, body) = (state.behaviour)(&seen);
            let half = Bytes::from(body[..body.len() / 2].to_vec());
            // Half the body, then (once the headers and that half are out) the cut.
            let chunks = futures_util::stream::unfold(0, move |step| {
                let half = half.clone();
                async move {
                    match step {
                        0 => Some((Ok(half), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let cut = std::io::Error::other("connection cut by the fault server");
                            Some((Err(cut), 2))
                        }
                        _ => None,
                    }
                }
            });
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-length", body.len().to_string());
            for (k, v) in headers {
                response = response.header(k, v);
            }
            response.body(Body::from_stream(chunks)).unwrap()
        }
    }
}

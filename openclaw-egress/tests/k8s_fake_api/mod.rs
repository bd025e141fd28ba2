//! A fake API server for kube's real client: a tower service that records
//! each request and answers with what the test says (recorded responses
//! from `fixtures/k8s/`). No network: the client never opens a connection.
// Each test binary uses its part.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use kube::client::Body;

/// One request as the fake API server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: String,
}

impl Seen {
    pub fn is_watch(&self) -> bool {
        self.query.get("watch").map(String::as_str) == Some("true")
    }
}

pub type Seens = Arc<Mutex<Vec<Seen>>>;

/// Answers each request with `answer(request, lists so far, watches so
/// far)`: `Some(body)` is a 200 with that JSON body, `None` a response that
/// never comes (a quiet watch).
pub fn fake_api_server(
    seen: Seens,
    answer: impl Fn(&Seen, usize, usize) -> Option<String> + Send + Sync + 'static,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future = BoxFuture<'static, Result<Response<Body>, std::convert::Infallible>>,
> + Send
+ 'static {
    let answer = Arc::new(answer);
    tower::service_fn(move |request: Request<Body>| {
        let seen = Arc::clone(&seen);
        let answer = Arc::clone(&answer);
        let future: BoxFuture<'static, _> = Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let request = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts
                    .uri
                    .query()
                    .map(|q| url_decode_pairs(q).into_iter().collect())
                    .unwrap_or_default(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let (lists, watches) = {
                let mut seen = seen.lock().unwrap();
                seen.push(request.clone());
                let watches = seen.iter().filter(|r| r.is_watch()).count();
                (seen.len() - watches, watches)
            };
            match answer(&request, lists, watches) {
                Some(body) => Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Body::from(body.into_bytes()))
                    .unwrap()),
                None => futures::future::pending().await,
            }
        });
        future
    })
}

/// `a=b&c=d%3De` to pairs.
pub fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let mut out = Vec::new();
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'%' => {
                    let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                    let hex = std::str::from_utf8(&hex).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                }
                b'+' => out.push(b' '),
                b => out.push(b),
            }
        }
        String::from_utf8(out).unwrap()
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

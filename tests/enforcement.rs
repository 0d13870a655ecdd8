//! What latchkey authorizes is exactly what the data API receives (SPEC
//! §12), tested against the real readers.
//!
//! A corpus of hostile requests (path tricks, duplicate and look-alike
//! parameters, bodies in odd places, token and header tricks, tokens of
//! another org) is sent, byte for byte, through (a) `latchkey gateway`,
//! (b) nginx `auth_request` and (c) Caddy `forward_auth`, each configured
//! exactly as `docs/deploy.md` says, to an echo upstream. The upstream
//! records what arrived and reads it the ways real data APIs do: first and
//! last duplicate wins, case-insensitive names (nginx's `$arg_`), PHP's key
//! mangling, body before or after the URL, JSON whatever the content type,
//! paths as sent, as nginx normalises them and as the WHATWG URL parser
//! does. For every request: it was refused, or every reading is a request
//! the token allows, with the token latchkey decided on and the identity
//! latchkey reported.
//!
//! Tokens restricted to client addresses are tested through the same
//! proxies: a client on 127.0.0.2 (not the proxies' trusted 127.0.0.1)
//! sends `X-Forwarded-For` headers naming an address its token allows, and
//! must still be seen as 127.0.0.2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, TempDir, create_connection, create_user};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------
// The proxies, configured from docs/deploy.md.

/// The fenced block of `language` in docs/deploy.md.
fn documented(language: &str) -> String {
    latchkey_testkit::nginx::documented(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy.md")),
        language,
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tool(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var(variable).map_or_else(|_| PathBuf::from(default), PathBuf::from);
    assert!(path.exists(), "this test needs {} (cargo xtask test installs it), or set {variable}", path.display());
    path
}

/// A child process stopped with SIGTERM (nginx leaves its worker behind
/// when killed outright).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..100 {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("exited ({status}):\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("did not listen:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

fn start_nginx(root: &Path, port: u16, upstream: &str, latchkey: &str) -> Process {
    std::fs::create_dir_all(root).unwrap();
    let server = documented("nginx")
        .replace("LISTEN", &format!("127.0.0.1:{port}"))
        .replace("UPSTREAM", upstream)
        .replace("LATCHKEY", latchkey);
    let config = latchkey_testkit::nginx::config(root, "1", &server);
    std::fs::write(root.join("nginx.conf"), config).unwrap();
    let mut child = Command::new(tool("LATCHKEY_TEST_NGINX", "/usr/sbin/nginx"))
        .args(["-p", root.to_str().unwrap(), "-c", root.join("nginx.conf").to_str().unwrap()])
        .args(["-e", root.join("error.log").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, &root.join("error.log"));
    Process(child)
}

fn start_caddy(root: &Path, port: u16, upstream: &str, latchkey: &str) -> Process {
    std::fs::create_dir_all(root).unwrap();
    let config = documented("caddyfile")
        .replace("PORT", &port.to_string())
        .replace("UPSTREAM", upstream)
        .replace("LATCHKEY", latchkey);
    std::fs::write(root.join("Caddyfile"), config).unwrap();
    let log = root.join("caddy.log");
    let mut child = Command::new(tool("LATCHKEY_TEST_CADDY", "/usr/bin/caddy"))
        .args(["run", "--adapter", "caddyfile", "--config", root.join("Caddyfile").to_str().unwrap()])
        .env("HOME", root)
        .env("XDG_DATA_HOME", root)
        .env("XDG_CONFIG_HOME", root)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, &log);
    Process(child)
}

// ---------------------------------------------------------------------------
// The echo upstream.

/// A request as the data API received it.
#[derive(Clone, Debug)]
struct Received {
    target: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

type Log = Arc<Mutex<HashMap<String, Received>>>;

/// A data API that records every request by its `X-Test-Case` header.
async fn start_upstream() -> (String, Log) {
    let log: Log = Arc::new(Mutex::new(HashMap::new()));
    let record = log.clone();
    let app = Router::new().fallback(move |request: Request| {
        let record = record.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let headers: Vec<(String, String)> = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let case = headers.iter().find(|(n, _)| n == "x-test-case").map(|(_, v)| v.clone()).unwrap_or_default();
            let target = parts.uri.path_and_query().map_or("/".to_owned(), |t| t.as_str().to_owned());
            let received = Received { target, headers, body };
            record.lock().unwrap().insert(case, received);
            "upstream"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, log)
}

// ---------------------------------------------------------------------------
// How data APIs read a request: independent of latchkey's own code.

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " ")).decode_utf8_lossy().into_owned()
}

fn decode_path(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Resolves `.` and `..` and merges empty segments.
fn resolve(segments: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for segment in segments {
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(segment),
        }
    }
    out
}

/// The path's segments as different routers see them.
fn path_readings(target: &str) -> Vec<Vec<String>> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let mut readings = vec![
        // As sent, each segment decoded (Go, Express's req.path, latchkey).
        path.split('/').filter(|s| !s.is_empty()).map(decode_path).collect(),
        // nginx: decode first (%2F and %2E included), then resolve.
        resolve(decode_path(path).split('/').map(str::to_owned)),
        // Windows servers: backslashes are separators too.
        resolve(decode_path(&path.replace('\\', "/")).split(['/', '\\']).map(str::to_owned)),
        // Servlet containers drop `;parameters` from each segment.
        resolve(path.split('/').map(|s| decode_path(s.split(';').next().unwrap_or("")))),
    ];
    // WHATWG URL (Node's `new URL()`).
    if let Ok(url) = url::Url::parse(&format!("http://h{path}")) {
        readings.push(
            url.path_segments().map(|s| s.filter(|s| !s.is_empty()).map(decode_path).collect()).unwrap_or_default(),
        );
    }
    readings
}

fn query_of(target: &str) -> &str {
    let without_fragment = target.split('#').next().unwrap_or("");
    without_fragment.split_once('?').map_or("", |(_, q)| q)
}

fn form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Go before 1.17 and Rack 2 also split on `;`.
fn form_semicolons(text: &str) -> Vec<(String, String)> {
    text.split(['&', ';']).flat_map(form).collect()
}

/// The body's parameters, read regardless of its Content-Type (Flask's
/// `get_json(force=True)`, Express parsing what it can), JSON duplicates
/// last-wins, a byte-order mark skipped (Python, Express).
fn body_readings(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let mut readings = vec![Vec::new()];
    let text = String::from_utf8_lossy(body);
    let text = text.trim_start_matches('\u{feff}');
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    if let Some(Ok(Value::Object(map))) = stream.next() {
        readings
            .push(map.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect());
    }
    if !text.trim_start().starts_with('{') && !text.is_empty() {
        readings.push(form(text));
    }
    readings
}

/// PHP's reading of a parameter name: `.` and ` ` become `_`, `[…]` makes
/// an array, a NUL ends the name.
fn php_name(name: &str) -> String {
    let name = name.split('\0').next().unwrap_or("");
    let name = name.split('[').next().unwrap_or("");
    name.replace(['.', ' '], "_")
}

/// A way to pick one parameter's value from the URL's and the body's.
type Pick = fn(&[(String, String)], &[(String, String)], &str) -> Option<String>;

fn first(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn last(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

const PICKS: &[Pick] = &[
    // URL first-wins, then body (Flask's request.values, Go, nginx order).
    |url, body, n| first(url, n).or_else(|| first(body, n)),
    // URL last-wins (PHP, Rails), then body.
    |url, body, n| last(url, n).or_else(|| last(body, n)),
    // Body first (a POST's parameters), then URL.
    |url, body, n| last(body, n).or_else(|| first(url, n)),
    // nginx's `$arg_`: case-insensitive name, first wins.
    |url, _, n| url.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone()),
    // PHP: mangled names, last wins, POST over GET in $_REQUEST.
    |url, body, n| {
        let pick =
            |pairs: &[(String, String)]| pairs.iter().rev().find(|(k, _)| php_name(k) == n).map(|(_, v)| v.clone());
        pick(body).or_else(|| pick(url))
    },
];

/// One reading of a request, as the data API could act on it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Reading {
    api: &'static str,
    connection: String,
    source_type: &'static str,
    source: String,
    token: String,
}

/// Every reading of `received`. A request that carries no token is read
/// with the one latchkey named in `X-Latchkey-Token-Id` (the gateway
/// removes `access_token`: the data API behind it trusts that header).
fn readings(received: &Received, named: Option<&str>) -> BTreeSet<Reading> {
    let mut out = BTreeSet::new();
    let authorization: Vec<&str> = received
        .headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .filter_map(|(_, v)| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .collect();
    let query = query_of(&received.target);
    for url in [form(query), form_semicolons(query)] {
        for body in body_readings(&received.body) {
            for path in path_readings(&received.target) {
                for pick in PICKS {
                    let param = |name: &str| pick(&url, &body, name);
                    let mut tokens: Vec<String> =
                        authorization.iter().map(|t| (*t).to_owned()).chain(param("access_token")).collect();
                    if tokens.is_empty() {
                        tokens.extend(named.map(str::to_owned));
                    }
                    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
                    let shape = match parts.as_slice() {
                        ["v3", "sql", c, "query"] => Some(("sql", c.to_string(), "query", param("q"))),
                        ["v3", "sql", c, "job"] => {
                            Some(("sql", c.to_string(), "query", param("query").or_else(|| param("q"))))
                        }
                        ["v3", "maps", c, "table"] => Some(("maps", c.to_string(), "table", param("name"))),
                        ["v3", "maps", c, "tileset"] => Some(("maps", c.to_string(), "tileset", param("name"))),
                        ["v3", "maps", c, "query"] => Some(("maps", c.to_string(), "query", param("q"))),
                        ["v3", "lds", ..] => Some(("lds", String::new(), "", Some(String::new()))),
                        _ => None,
                    };
                    let Some((api, connection, source_type, Some(source))) = shape else { continue };
                    for token in &tokens {
                        out.insert(Reading {
                            api,
                            connection: connection.clone(),
                            source_type,
                            source: source.clone(),
                            token: token.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Sending raw requests.

/// One request, as bytes on the wire.
#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    chunked: bool,
    /// Whether it must reach the data API through this proxy (controls).
    passes: &'static [Via],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Gateway,
    Nginx,
    Caddy,
}

const EVERYWHERE: &[Via] = &[Via::Gateway, Via::Nginx, Via::Caddy];
const NOWHERE: &[Via] = &[];

fn case(name: &'static str, method: &'static str, target: &str, token: &str) -> Case {
    Case {
        name,
        method,
        target: target.to_owned(),
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        body: None,
        chunked: false,
        passes: NOWHERE,
    }
}

impl Case {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    fn without_authorization(mut self) -> Self {
        self.headers.retain(|(n, _)| n != "Authorization");
        self
    }
    fn body(mut self, content_type: Option<&str>, body: &[u8]) -> Self {
        if let Some(content_type) = content_type {
            self = self.header("Content-Type", content_type);
        }
        self.body = Some(body.to_vec());
        self
    }
    fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }
    fn passes(mut self, via: &'static [Via]) -> Self {
        self.passes = via;
        self
    }

    fn bytes(&self, index: usize) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Test-Case: {index}\r\n",
            self.method, self.target
        )
        .into_bytes();
        for (name, value) in &self.headers {
            out.extend(format!("{name}: {value}\r\n").bytes());
        }
        match (&self.body, self.chunked) {
            (Some(body), true) => {
                out.extend(b"Transfer-Encoding: chunked\r\n\r\n");
                out.extend(format!("{:x}\r\n", body.len()).bytes());
                out.extend(body);
                out.extend(b"\r\n0\r\n\r\n");
            }
            (Some(body), false) => {
                out.extend(format!("Content-Length: {}\r\n\r\n", body.len()).bytes());
                out.extend(body);
            }
            (None, _) => out.extend(b"\r\n"),
        }
        out
    }
}

/// Sends raw bytes and returns the status code (0 when the connection was
/// closed without an answer).
async fn send(port: u16, bytes: &[u8]) -> u16 {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(bytes).await.ok()?;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let line = String::from_utf8_lossy(&answer).lines().next()?.to_owned();
        line.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.ok().flatten().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The corpus and the test.

struct Tokens {
    lds: String,
    table: String,
    query: String,
    other_org: String,
}

fn corpus(t: &Tokens) -> Vec<Case> {
    let json = Some("application/json");
    let form_type = Some("application/x-www-form-urlencoded");
    let secret = "SELECT%20*%20FROM%20secret";
    vec![
        // Controls: these must reach the data API, or the test proves nothing.
        case("table", "GET", "/v3/maps/bq/table?name=p.d.t", &t.table).passes(EVERYWHERE),
        case("query", "GET", "/v3/sql/bq/query?q=SELECT%201", &t.query).passes(EVERYWHERE),
        case("lds", "GET", "/v3/lds/geocode?address=x", &t.lds).passes(EVERYWHERE),
        case("token in the URL", "GET", &format!("/v3/maps/bq/table?name=p.d.t&access_token={}", t.table), "")
            .without_authorization()
            .passes(EVERYWHERE),
        case("encoded letters", "GET", "/v3/maps/bq/tab%6Ce?n%61me=p.d.t", &t.table).passes(EVERYWHERE),
        case("posted query", "POST", "/v3/sql/bq/query", &t.query)
            .body(json, br#"{"q": "SELECT 1"}"#)
            .passes(&[Via::Gateway]),
        case("posted form", "POST", "/v3/maps/bq/table", &t.table)
            .body(form_type, b"name=p.d.t")
            .passes(&[Via::Gateway]),
        case("post without a body", "POST", "/v3/maps/bq/table?name=p.d.t", &t.table)
            .body(None, b"")
            .passes(&[Via::Gateway, Via::Nginx]),
        // Paths that routers normalise.
        case("lds dot-dot to sql", "GET", &format!("/v3/lds/%2e%2e/sql/bq/query?q={secret}"), &t.lds),
        case("lds plain dot-dot", "GET", &format!("/v3/lds/../sql/bq/query?q={secret}"), &t.lds),
        case("upper-case encoded dots", "GET", &format!("/v3/lds/%2E%2E/sql/bq/query?q={secret}"), &t.lds),
        case("mixed dots", "GET", &format!("/v3/lds/.%2e/sql/bq/query?q={secret}"), &t.lds),
        case("double slash dot-dot", "GET", &format!("/v3/lds//../sql/bq/query?q={secret}"), &t.lds),
        case("encoded slash", "GET", &format!("/v3/lds/..%2fsql%2fbq%2fquery?q={secret}"), &t.lds),
        case("deeper encoded slash", "GET", &format!("/v3/lds/x/..%2f..%2fsql/bq/query?q={secret}"), &t.lds),
        case("backslashes", "GET", &format!("/v3/lds\\..\\sql/bq/query?q={secret}"), &t.lds),
        case("encoded backslashes", "GET", &format!("/v3/lds/%5c..%5c..%5csql/bq/query?q={secret}"), &t.lds),
        case("fragment", "GET", &format!("/v3/lds/x#/../../sql/bq/query?q={secret}"), &t.lds),
        case("leading double slash", "GET", "//v3/lds/x", &t.lds),
        case("matrix parameter", "GET", "/v3/maps/bq/table;v=1?name=p.d.t", &t.table),
        case("trailing slash", "GET", "/v3/maps/bq/table/?name=p.d.t", &t.table),
        case("NUL", "GET", "/v3/maps/bq/table%00?name=p.d.t", &t.table),
        case("bad escape", "GET", "/v3/lds/%zz", &t.lds),
        case("not UTF-8", "GET", "/v3/lds/%ff", &t.lds),
        case("dot-dot to another connection", "GET", "/v3/maps/bq/../other/table?name=p.d.t", &t.table),
        case("absolute form", "GET", "http://evil.example/v3/maps/bq/table?name=p.d.t", &t.table),
        // Parameters that readers pick differently.
        case("duplicate name", "GET", "/v3/maps/bq/table?name=p.d.t&name=p.d.secret", &t.table),
        case("duplicate name, secret first", "GET", "/v3/maps/bq/table?name=p.d.secret&name=p.d.t", &t.table),
        case("name in two cases", "GET", "/v3/maps/bq/table?name=p.d.t&NAME=p.d.secret", &t.table),
        case("upper-case name first", "GET", "/v3/maps/bq/table?NAME=p.d.secret&name=p.d.t", &t.table),
        case("PHP array", "GET", "/v3/maps/bq/table?name=p.d.t&name[]=p.d.secret", &t.table),
        case("PHP array first", "GET", "/v3/maps/bq/table?name[]=p.d.secret&name=p.d.t", &t.table),
        case("PHP mangled dot", "GET", &format!("/v3/maps/bq/table?name=p.d.t&access.token={}", t.other_org), &t.table),
        case("semicolon separator", "GET", "/v3/maps/bq/table?name=p.d.t;name=p.d.secret", &t.table),
        case("encoded name duplicate", "GET", "/v3/maps/bq/table?na%6De=p.d.secret&name=p.d.t", &t.table),
        case("NUL in a name", "GET", "/v3/maps/bq/table?name%00x=p.d.secret&name=p.d.t", &t.table),
        case("duplicate query", "GET", &format!("/v3/sql/bq/query?q=SELECT%201&q={secret}"), &t.query),
        // Bodies.
        case("body overrides URL", "POST", "/v3/sql/bq/query?q=SELECT%201", &t.query)
            .body(json, br#"{"q": "SELECT * FROM secret"}"#),
        case("form overrides URL", "POST", "/v3/sql/bq/query?q=SELECT%201", &t.query)
            .body(form_type, b"q=SELECT+*+FROM+secret"),
        case("JSON as text/plain", "POST", "/v3/sql/bq/query?q=SELECT%201", &t.query)
            .body(Some("text/plain"), br#"{"q": "SELECT * FROM secret"}"#),
        case("JSON without a type", "POST", "/v3/sql/bq/query?q=SELECT%201", &t.query)
            .body(None, br#"{"q": "SELECT * FROM secret"}"#),
        case("two content types", "POST", "/v3/sql/bq/query", &t.query)
            .header("Content-Type", "text/plain")
            .body(json, br#"{"q": "SELECT 1"}"#),
        case("byte-order mark", "POST", "/v3/sql/bq/query", &t.query).body(json, b"\xef\xbb\xbf{\"q\": \"SELECT 1\"}"),
        case("duplicate JSON key", "POST", "/v3/sql/bq/query", &t.query)
            .body(json, br#"{"q": "SELECT 1", "q": "SELECT * FROM secret"}"#),
        case("trailing JSON", "POST", "/v3/sql/bq/query", &t.query)
            .body(json, br#"{"q": "SELECT 1"}{"q": "SELECT * FROM secret"}"#),
        case("JSON array", "POST", "/v3/sql/bq/query", &t.query).body(json, br#"[{"q": "SELECT * FROM secret"}]"#),
        case("job with two names", "POST", "/v3/sql/bq/job", &t.query)
            .body(json, br#"{"query": "SELECT 1", "q": "SELECT * FROM secret"}"#),
        case("GET with a body", "GET", "/v3/sql/bq/query?q=SELECT%201", &t.query)
            .body(json, br#"{"q": "SELECT * FROM secret"}"#),
        case("GET with a chunked body", "GET", "/v3/sql/bq/query?q=SELECT%201", &t.query)
            .body(json, br#"{"q": "SELECT * FROM secret"}"#)
            .chunked(),
        case("GET table with a form body", "GET", "/v3/maps/bq/table?name=p.d.t", &t.table)
            .body(form_type, b"name=p.d.secret"),
        // Tokens and headers.
        case("two tokens", "GET", &format!("/v3/maps/bq/table?name=p.d.t&access_token={}", t.lds), &t.table),
        case(
            "two access tokens",
            "GET",
            &format!("/v3/maps/bq/table?name=p.d.t&access_token={}&access_token={}", t.table, t.lds),
            "",
        )
        .without_authorization(),
        case("two Authorization headers", "GET", "/v3/maps/bq/table?name=p.d.t", &t.table)
            .header("Authorization", &format!("Bearer {}", t.lds)),
        case("spoofed identity", "GET", "/v3/maps/bq/table?name=p.d.t", &t.table).header("X-Latchkey-Org", "other"),
        case("spoofed identity, underscores", "GET", "/v3/maps/bq/table?name=p.d.t", &t.table)
            .header("X_Latchkey_User", "bob"),
        case("spoofed original URI", "GET", &format!("/v3/sql/bq/query?q={secret}"), &t.table)
            .header("X-Original-URI", "/v3/maps/bq/table?name=p.d.t"),
        case("spoofed forwarded URI", "GET", &format!("/v3/sql/bq/query?q={secret}"), &t.table)
            .header("X-Forwarded-Uri", "/v3/maps/bq/table?name=p.d.t")
            .header("X-Forwarded-Method", "GET"),
        case("spoofed body report", "GET", "/v3/sql/bq/query?q=SELECT%201", &t.query)
            .header("X-Original-Body", "/")
            .body(json, br#"{"q": "SELECT * FROM secret"}"#),
        // Another org's token on a connection of the same name.
        case("another org", "GET", &format!("/v3/sql/bq/query?q={secret}"), &t.other_org),
        case("another org, table", "GET", "/v3/maps/bq/table?name=p.d.secret", &t.other_org),
        // Methods.
        case("DELETE", "DELETE", "/v3/maps/bq/table?name=p.d.t", &t.table),
        case("lower-case method", "get", "/v3/maps/bq/table?name=p.d.secret", &t.table),
        case("method override header", "GET", "/v3/maps/bq/table?name=p.d.t", &t.table)
            .header("X-HTTP-Method-Override", "DELETE"),
        case("method override parameter", "POST", "/v3/maps/bq/table", &t.table)
            .body(form_type, b"name=p.d.t&_method=DELETE"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_latchkey_authorizes_is_what_the_data_api_receives() {
    let dir = TempDir::new("enforcement");
    let database = dir.sqlite_url();
    let nginx_mode = ["--org", "default", "--forward-auth-headers", "nginx", "--trusted-proxies", "127.0.0.1"];
    let server = Server::start(&database, &nginx_mode, &[], &dir.path().join("serve-nginx.log"));
    let key = server.admin_key.clone().unwrap();
    let caddy_mode =
        ["--org", "default", "--forward-auth-headers", "caddy", "--trusted-proxies", "127.0.0.1", "--no-bootstrap"];
    let caddy_server = Server::start(&database, &caddy_mode, &[], &dir.path().join("serve-caddy.log"));
    create_connection(&database, "default", "bq", "bigquery");
    let bob = create_user(&database, "other", "bob");
    create_connection(&database, "other", "bq", "bigquery");

    let create = |credential: String, body: Value| {
        let server = &server;
        async move {
            let (status, token) = server.call(Method::POST, "/v3/tokens", Some(&credential), Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{token}");
            (token["token"].as_str().unwrap().to_owned(), token["id"].as_str().unwrap().to_owned())
        }
    };
    let lds = create(key.clone(), json!({"allowed_apis": ["lds"], "grants": []})).await;
    let table = create(
        key.clone(),
        json!({"allowed_apis": ["maps"], "grants": [{"connection_name": "bq", "source": "p.d.t"}]}),
    )
    .await;
    let query = create(
        key.clone(),
        json!({"allowed_apis": ["sql"], "grants": [{"connection_name": "bq", "source": "SELECT 1"}]}),
    )
    .await;
    let other =
        create(bob, json!({"allowed_apis": ["sql", "maps"], "grants": [{"connection_name": "bq", "source": "*"}]}))
            .await;
    let ids: HashMap<String, String> =
        [&lds, &table, &query, &other].iter().map(|(value, id)| (value.clone(), id.clone())).collect();
    let tokens = Tokens { lds: lds.0, table: table.0, query: query.0, other_org: other.0.clone() };

    let (upstream, log) = start_upstream().await;
    let gateway = Server::gateway(
        &database,
        &format!("http://{upstream}"),
        &["--org", "default"],
        &[],
        &dir.path().join("gateway.log"),
    );
    let gateway_port: u16 = gateway.url.rsplit(':').next().unwrap().parse().unwrap();
    let latchkey = server.url.trim_start_matches("http://").to_owned();
    let (nginx_port, caddy_port) = (free_port(), free_port());
    let _nginx = start_nginx(&dir.path().join("nginx"), nginx_port, &upstream, &latchkey);
    let _caddy =
        start_caddy(&dir.path().join("caddy"), caddy_port, &upstream, caddy_server.url.trim_start_matches("http://"));

    // What latchkey says of a reading: allowed, for the token it names.
    let mut verdicts: HashMap<Reading, bool> = HashMap::new();
    let mut failures = Vec::new();
    let cases = corpus(&tokens);
    for (via, port) in [(Via::Gateway, gateway_port), (Via::Nginx, nginx_port), (Via::Caddy, caddy_port)] {
        for (index, case) in cases.iter().enumerate() {
            let id = format!("{via:?}-{index}");
            let mut bytes = case.bytes(index);
            // The case header names the request and the proxy.
            let marker = format!("X-Test-Case: {index}\r\n");
            let at = String::from_utf8_lossy(&bytes).find(&marker).unwrap();
            bytes.splice(at..at + marker.len(), format!("X-Test-Case: {id}\r\n").into_bytes());
            let status = send(port, &bytes).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let received = log.lock().unwrap().remove(&id);
            let Some(received) = received else {
                if case.passes.contains(&via) {
                    failures.push(format!("{via:?} refused the control {:?} ({status})", case.name));
                }
                continue;
            };
            // Who latchkey said it was.
            let header = |name: &str| {
                received
                    .headers
                    .iter()
                    .filter(|(n, _)| n.replace('_', "-").eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect::<Vec<_>>()
            };
            let token_ids = header("x-latchkey-token-id");
            let orgs = header("x-latchkey-org");
            let users = header("x-latchkey-user");
            if token_ids.len() != 1 || orgs != ["default"] || users != ["admin"] {
                failures.push(format!("{via:?} {:?}: identity {orgs:?} {users:?} {token_ids:?}", case.name));
            }
            let named =
                token_ids.first().and_then(|id| ids.iter().find(|(_, i)| *i == id)).map(|(value, _)| value.as_str());
            let all = readings(&received, named);
            if !case.passes.contains(&via) {
                eprintln!("{via:?} forwarded {:?} ({status}); every reading is checked", case.name);
            }
            if all.is_empty() {
                failures.push(format!("{via:?} {:?}: the data API cannot read it at all: {received:?}", case.name));
            }
            for reading in all {
                if ids.get(&reading.token) != token_ids.first() {
                    failures.push(format!(
                        "{via:?} {:?}: read with another token than latchkey decided on: {reading:?}",
                        case.name
                    ));
                    continue;
                }
                let allowed = match verdicts.get(&reading) {
                    Some(allowed) => *allowed,
                    None => {
                        let mut ask = json!({"token": reading.token, "api": reading.api});
                        if reading.api != "lds" {
                            ask["connection_name"] = json!(reading.connection);
                            ask["source_type"] = json!(reading.source_type);
                            ask["source"] = json!(reading.source);
                        }
                        let (allowed, _) = server.authorize(ask).await;
                        verdicts.insert(reading.clone(), allowed);
                        allowed
                    }
                };
                if !allowed {
                    failures.push(format!("{via:?} {:?}: the data API may read it as {reading:?}", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Tokens restricted to client addresses (SPEC §13, `allowed_ips`).

/// The test client's address: loopback, but not the proxies' own
/// 127.0.0.1, which is latchkey's only trusted proxy.
const CLIENT: [u8; 4] = [127, 0, 0, 2];
/// The proxies' address, also a client on the proxies' own host.
const PROXY: [u8; 4] = [127, 0, 0, 1];

/// Headers a client sends to pass for 203.0.113.7, which the token
/// `outside` allows: none may work through a documented proxy.
const SPOOFS: &[(&str, &[u8])] = &[
    ("one header", b"X-Forwarded-For: 203.0.113.7\r\n"),
    ("two headers", b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 203.0.113.8\r\n"),
    ("spaces and commas", b"X-Forwarded-For:   203.0.113.7 ,, 203.0.113.8 ,  \r\n"),
    ("names itself, then a trusted proxy", b"X-Forwarded-For: 127.0.0.2, 203.0.113.7, 127.0.0.1\r\n"),
    ("a trusted proxy on a line of its own", b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 127.0.0.1\r\n"),
    ("garbage on the left", b"X-Forwarded-For: garbage, 203.0.113.7\r\n"),
    ("garbage on the right", b"X-Forwarded-For: 203.0.113.7, garbage\r\n"),
    ("ports and brackets", b"X-Forwarded-For: 203.0.113.7:443, [203.0.113.8]\r\n"),
    ("unknown", b"X-Forwarded-For: unknown\r\n"),
    ("empty", b"X-Forwarded-For:\r\n"),
    ("not UTF-8", b"X-Forwarded-For: 203.0.113.7\xff\r\n"),
    ("other letter cases", b"x-forwarded-for: 203.0.113.7\r\nX-FORWARDED-FOR: 203.0.113.8\r\n"),
    ("underscores", b"X_Forwarded_For: 203.0.113.7\r\n"),
    ("other headers", b"X-Real-IP: 203.0.113.7\r\nForwarded: for=203.0.113.7\r\nTrue-Client-IP: 203.0.113.7\r\n"),
];

/// One request of the address tests and what must come of it.
struct AddressCase {
    name: String,
    from: [u8; 4],
    token: String,
    headers: Vec<u8>,
    allowed: bool,
}

/// An lds request with `token` and raw extra `headers`.
fn lds_request(id: &str, token: &str, headers: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "GET /v3/lds/geocode?address=x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         X-Test-Case: {id}\r\nAuthorization: Bearer {token}\r\n"
    )
    .into_bytes();
    out.extend(headers);
    out.extend(b"\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_restricted_to_addresses_sees_the_client_not_what_it_claims() {
    let dir = TempDir::new("enforcement-ips");
    let database = dir.sqlite_url();
    let nginx_mode = ["--org", "default", "--forward-auth-headers", "nginx", "--trusted-proxies", "127.0.0.1"];
    let server = Server::start(&database, &nginx_mode, &[], &dir.path().join("serve-nginx.log"));
    let key = server.admin_key.clone().unwrap();
    let caddy_mode =
        ["--org", "default", "--forward-auth-headers", "caddy", "--trusted-proxies", "127.0.0.1", "--no-bootstrap"];
    let caddy_server = Server::start(&database, &caddy_mode, &[], &dir.path().join("serve-caddy.log"));
    let create = |allowed_ips: Value| {
        let (server, key) = (&server, &key);
        async move {
            let body = json!({"allowed_apis": ["lds"], "grants": [], "allowed_ips": allowed_ips});
            let (status, token) = server.call(Method::POST, "/v3/tokens", Some(key), Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{token}");
            token["token"].as_str().unwrap().to_owned()
        }
    };
    // `inside` holds the client's 127.0.0.2 (and 127.0.0.3), not the
    // proxies' 127.0.0.1; `proxy` holds only the proxies' address.
    let inside = create(json!(["203.0.113.0/24", "127.0.0.2/31"])).await;
    let outside = create(json!(["203.0.113.0/24"])).await;
    let proxy = create(json!(["127.0.0.1"])).await;
    let open = create(json!([])).await;

    let (upstream, log) = start_upstream().await;
    let (nginx_port, caddy_port) = (free_port(), free_port());
    let latchkey = server.url.trim_start_matches("http://");
    let _nginx = start_nginx(&dir.path().join("nginx"), nginx_port, &upstream, latchkey);
    let _caddy =
        start_caddy(&dir.path().join("caddy"), caddy_port, &upstream, caddy_server.url.trim_start_matches("http://"));

    let case = |name: &str, from, token: &str, headers: &[u8], allowed| AddressCase {
        name: name.to_owned(),
        from,
        token: token.to_owned(),
        headers: headers.to_vec(),
        allowed,
    };
    let mut cases = vec![
        case("the client is inside allowed_ips", CLIENT, &inside, b"", true),
        case("the client is outside allowed_ips", CLIENT, &outside, b"", false),
        case("the proxy's address is not the client's", CLIENT, &proxy, b"", false),
        case("a token without allowed_ips", CLIENT, &open, b"", true),
        // A client whose own address latchkey trusts as a proxy is still
        // the client: it must not be skipped for what it wrote (nginx's
        // `$proxy_add_x_forwarded_for` would let it).
        case("a client on the proxy's address", PROXY, &proxy, b"X-Forwarded-For: 203.0.113.7\r\n", true),
        case("a client on the proxy's address, spoofing", PROXY, &outside, b"X-Forwarded-For: 203.0.113.7\r\n", false),
        case(
            "a client on the proxy's address, spoofing a chain",
            PROXY,
            &outside,
            b"X-Forwarded-For: 203.0.113.7, 127.0.0.1\r\n",
            false,
        ),
    ];
    for (name, headers) in SPOOFS {
        cases.push(case(&format!("spoofed, {name}"), CLIENT, &outside, headers, false));
        // The proxy replaced the header: the real client still passes.
        cases.push(case(&format!("spoof ignored, {name}"), CLIENT, &inside, headers, true));
    }

    let mut failures = Vec::new();
    for (via, port) in [(Via::Nginx, nginx_port), (Via::Caddy, caddy_port)] {
        for (index, case) in cases.iter().enumerate() {
            let id = format!("ips-{via:?}-{index}");
            let answer =
                support::exchange_from(case.from.into(), port, &lds_request(&id, &case.token, &case.headers)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let received = log.lock().unwrap().remove(&id);
            let reason = answer.header("x-latchkey-reason").unwrap_or_default();
            match (case.allowed, received) {
                (true, Some(received)) => {
                    // Each proxy tells the data API who the client is, as
                    // it told latchkey.
                    let forwarded_for: Vec<&str> = received
                        .headers
                        .iter()
                        .filter(|(n, _)| n == "x-forwarded-for")
                        .map(|(_, v)| v.as_str())
                        .collect();
                    let from = std::net::Ipv4Addr::from(case.from).to_string();
                    if forwarded_for != [from.as_str()] {
                        failures.push(format!("{via:?} {:?}: the data API got {forwarded_for:?}", case.name));
                    }
                }
                (true, None) => {
                    failures.push(format!("{via:?} refused {:?}: {} {reason:?}", case.name, answer.status));
                }
                (false, Some(_)) => failures.push(format!("{via:?} forwarded {:?} ({})", case.name, answer.status)),
                (false, None) if (answer.status, reason) != (403, "ip_not_allowed") => {
                    failures.push(format!("{via:?} {:?}: refused with {} {reason:?}", case.name, answer.status));
                }
                (false, None) => {}
            }
        }
    }

    // Straight to forward-auth, not through a proxy: from 127.0.0.2 the
    // header is the client's word and is ignored; from the trusted
    // 127.0.0.1 it names the client.
    let ask = |from: [u8; 4], token: &str| {
        let request = format!(
            "GET /v3/forward-auth HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             X-Original-Method: GET\r\nX-Original-URI: /v3/lds/geocode\r\nX-Original-Body: /\r\n\
             X-Forwarded-For: 203.0.113.7\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        let port: u16 = latchkey.rsplit(':').next().unwrap().parse().unwrap();
        async move {
            let answer = support::exchange_from(from.into(), port, request.as_bytes()).await;
            (answer.status, answer.header("x-latchkey-reason").unwrap_or_default().to_owned())
        }
    };
    let direct = [
        ("untrusted peer, spoofing", ask(CLIENT, &outside).await, (403, "ip_not_allowed")),
        ("untrusted peer, its own address", ask(CLIENT, &inside).await, (200, "")),
        ("trusted peer, the client it names", ask(PROXY, &outside).await, (200, "")),
        ("trusted peer, not itself", ask(PROXY, &proxy).await, (403, "ip_not_allowed")),
    ];
    for (name, (status, reason), (expected_status, expected_reason)) in direct {
        if (status, reason.as_str()) != (expected_status, expected_reason) {
            failures.push(format!("forward-auth {name:?}: {status} {reason:?}"));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

//! nginx with `auth_request` protecting a stub data API through latchkey's
//! forward-auth endpoint, with the configuration of `docs/deploy.md`.
//!
//! Needs Debian's nginx (`/usr/sbin/nginx`, or `LATCHKEY_TEST_NGINX`);
//! `cargo xtask test` and CI install it. Without it the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{Server, TempDir};

fn nginx_binary() -> PathBuf {
    let path = std::env::var("LATCHKEY_TEST_NGINX").map_or_else(|_| PathBuf::from("/usr/sbin/nginx"), PathBuf::from);
    assert!(
        path.exists(),
        "this test needs nginx at {}: apt-get install nginx (cargo xtask test does), or set LATCHKEY_TEST_NGINX",
        path.display()
    );
    path
}

/// The `nginx` block of docs/deploy.md.
fn documented_server_block() -> String {
    let deploy = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy.md")).unwrap();
    let block = deploy.split("```nginx\n").nth(1).expect("docs/deploy.md has an nginx block");
    block.split("```").next().unwrap().to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Nginx(Child);

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: killed outright, the master leaves its worker
    /// running as an orphan.
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

fn start_nginx(dir: &TempDir, listen: &str, upstream: &str, latchkey: &str) -> Nginx {
    let root = dir.path().join("nginx");
    std::fs::create_dir_all(&root).unwrap();
    let server =
        documented_server_block().replace("LISTEN", listen).replace("UPSTREAM", upstream).replace("LATCHKEY", latchkey);
    let temp = |name: &str| root.join(name).display().to_string();
    let config = format!(
        "user root;\nworker_processes 1;\ndaemon off;\npid {pid};\nerror_log {log} info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {body};\n  proxy_temp_path {proxy};\n  \
         fastcgi_temp_path {fcgi};\n  uwsgi_temp_path {uwsgi};\n  scgi_temp_path {scgi};\n{server}\n}}\n",
        pid = temp("nginx.pid"),
        log = temp("error.log"),
        body = temp("body"),
        proxy = temp("proxy"),
        fcgi = temp("fcgi"),
        uwsgi = temp("uwsgi"),
        scgi = temp("scgi"),
    );
    let config_path = root.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let mut child = Command::new(nginx_binary())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .arg("-p")
        .arg(&root)
        .arg("-c")
        .arg(&config_path)
        .arg("-e")
        .arg(root.join("error.log"))
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return Nginx(child);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("nginx did not start:\n{}", std::fs::read_to_string(root.join("error.log")).unwrap_or_default());
}

/// A data API that answers every request with what it received.
async fn start_stub() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = Router::new().fallback(move |request: Request| {
        let log = log.clone();
        async move {
            let line = format!("{} {}", request.method(), request.uri());
            log.lock().unwrap().push(line.clone());
            axum::Json(json!({"stub": line}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_protects_a_data_api() {
    let dir = TempDir::new("nginx");
    let latchkey = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("latchkey.log"));
    let key = latchkey.admin_key.clone().unwrap();
    let (stub, seen) = start_stub().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let _nginx = start_nginx(&dir, &listen, &stub, latchkey.url.trim_start_matches("http://"));
    let proxy = format!("http://{listen}");
    let client = reqwest::Client::new();

    let (_, narrow) = latchkey
        .call(
            Method::POST,
            "/v3/tokens",
            Some(&key),
            Some(json!({"name": "narrow", "allowed_apis": ["maps", "sql"],
            "grants": [{"connection_name": "carto_dw", "source": "p.d.cities"},
                       {"connection_name": "carto_dw", "source": "SELECT 1"}]})),
        )
        .await;
    let (_, wide) = latchkey
        .call(
            Method::POST,
            "/v3/tokens",
            Some(&key),
            Some(json!({"name": "wide", "allowed_apis": ["sql"],
            "grants": [{"connection_name": "carto_dw", "source": "*"}]})),
        )
        .await;
    let narrow_value = narrow["token"].as_str().unwrap().to_owned();
    let wide_value = wide["token"].as_str().unwrap().to_owned();

    let send = |method: Method, path: &str, token: Option<&str>, body: Option<serde_json::Value>| {
        let mut request = client.request(method, format!("{proxy}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let reason = response.headers().get("x-latchkey-reason").map(|v| v.to_str().unwrap().to_owned());
            (status, reason)
        }
    };

    let cases = [
        (
            Method::GET,
            "/v3/maps/carto_dw/table?name=p.d.cities",
            Some(narrow_value.as_str()),
            None,
            StatusCode::OK,
            None,
        ),
        (
            Method::GET,
            "/v3/maps/carto_dw/table?name=p.d.salaries",
            Some(&narrow_value),
            None,
            StatusCode::FORBIDDEN,
            Some("source_not_granted"),
        ),
        (
            Method::GET,
            "/v3/maps/carto_dw/table?name=p.d.cities",
            None,
            None,
            StatusCode::UNAUTHORIZED,
            Some("token_malformed"),
        ),
        (
            Method::GET,
            "/v3/maps/other/table?name=p.d.cities",
            Some(&narrow_value),
            None,
            StatusCode::FORBIDDEN,
            Some("connection_not_granted"),
        ),
        (Method::GET, "/v3/sql/carto_dw/query?q=SELECT%201", Some(&narrow_value), None, StatusCode::OK, None),
        (
            Method::GET,
            "/v3/sql/carto_dw/query?q=SELECT%202",
            Some(&narrow_value),
            None,
            StatusCode::FORBIDDEN,
            Some("source_not_granted"),
        ),
        // The query in a POST body is out of nginx's sight: only `*` allows it.
        (
            Method::POST,
            "/v3/sql/carto_dw/query",
            Some(&narrow_value),
            Some(json!({"q": "SELECT 1"})),
            StatusCode::FORBIDDEN,
            Some("source_not_granted"),
        ),
        (
            Method::POST,
            "/v3/sql/carto_dw/query",
            Some(&wide_value),
            Some(json!({"q": "SELECT 42"})),
            StatusCode::OK,
            None,
        ),
        (Method::GET, "/v3/tokens", Some(&narrow_value), None, StatusCode::FORBIDDEN, Some("unknown_request")),
    ];
    for (method, path, token, body, status, reason) in cases {
        let got = send(method.clone(), path, token, body).await;
        assert_eq!(got, (status, reason.map(str::to_owned)), "{method} {path}");
    }
    let with_parameter = format!("/v3/maps/carto_dw/table?name=p.d.cities&access_token={narrow_value}");
    assert_eq!(send(Method::GET, &with_parameter, None, None).await, (StatusCode::OK, None), "access_token parameter");

    // A deleted token stops working at the proxy at once.
    let (status, _) = latchkey
        .call(Method::DELETE, &format!("/v3/tokens/{}", narrow["id"].as_str().unwrap()), Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let after = send(Method::GET, "/v3/maps/carto_dw/table?name=p.d.cities", Some(&narrow_value), None).await;
    assert_eq!(after, (StatusCode::UNAUTHORIZED, Some("token_unknown".to_owned())));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "only the allowed requests reached the data API: {seen:?}");
    assert!(seen.iter().all(|line| !line.contains("salaries") && !line.contains("SELECT%202")));
}

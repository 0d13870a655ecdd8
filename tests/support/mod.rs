//! Starting the real `latchkey` binary and talking to it over HTTP.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

/// The server key every test server uses (base64 of 32 bytes).
pub const SECRET_KEY: &str = "dGVzdC1vbmx5LXNlcnZlci1rZXktMzItYnl0ZXMhISE=";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_latchkey")
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "latchkey-e2e-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.0.join("latchkey.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a one-shot command of the binary and returns (status, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary())
        .args(args)
        .env_remove("LATCHKEY_DATABASE_URL")
        .env("LATCHKEY_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

/// Creates a user with the CLI and returns the key.
pub fn create_user(database: &str, org: &str, name: &str) -> String {
    let (ok, stdout, stderr) = run_cli(&["users", "create", name, "--org", org, "--database", database, "--create"]);
    assert!(ok, "users create failed: {stderr}");
    stdout.trim().to_owned()
}

/// Creates an org admin with the CLI and returns the key.
pub fn create_admin(database: &str, org: &str, name: &str) -> String {
    let (ok, stdout, stderr) =
        run_cli(&["users", "create", name, "--org", org, "--admin", "--database", database, "--create"]);
    assert!(ok, "users create --admin failed: {stderr}");
    stdout.trim().to_owned()
}

/// Creates a connection with the CLI.
pub fn create_connection(database: &str, org: &str, name: &str, provider: &str) {
    let (ok, _, stderr) = run_cli(&[
        "connections",
        "create",
        name,
        "--org",
        org,
        "--provider",
        provider,
        "--database",
        database,
        "--create",
    ]);
    assert!(ok, "connections create failed: {stderr}");
}

/// A running `latchkey serve`.
pub struct Server {
    pub url: String,
    /// The key the first-run bootstrap printed, if it ran.
    pub admin_key: Option<String>,
    pub stdout: Vec<String>,
    pub log: PathBuf,
    child: Child,
    client: Client,
}

impl Server {
    /// Starts the binary on a free port and waits until it listens.
    pub fn start(database: &str, extra_args: &[&str], env: &[(&str, &str)], log: &Path) -> Self {
        Self::start_listening_with(database, "127.0.0.1:0", extra_args, env, log)
    }

    /// Starts the binary listening on `listen`.
    pub fn start_listening(database: &str, listen: &str, log: &Path) -> Self {
        Self::start_listening_with(database, listen, &[], &[], log)
    }

    fn start_listening_with(
        database: &str,
        listen: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Self {
        let serve = ["serve", "--listen", listen, "--database", database, "--usage-flush-ms", "100"];
        Self::run(&serve, extra_args, env, log)
    }

    /// Starts `latchkey gateway` in front of `upstream` on a free port.
    pub fn gateway(database: &str, upstream: &str, extra_args: &[&str], env: &[(&str, &str)], log: &Path) -> Self {
        let gateway = ["gateway", "--listen", "127.0.0.1:0", "--database", database, "--upstream", upstream];
        Self::run(&gateway, extra_args, env, log)
    }

    fn run(args: &[&str], extra_args: &[&str], env: &[(&str, &str)], log: &Path) -> Self {
        let log_file = std::fs::File::create(log).unwrap();
        let mut command = Command::new(binary());
        command
            .args(args)
            .args(extra_args)
            .env_remove("LATCHKEY_DATABASE_URL")
            .env_remove("LATCHKEY_LISTEN")
            .env("LATCHKEY_SECRET_KEY", SECRET_KEY)
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let url = loop {
            match lines_rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("latchkey listening on ") {
                        break url.to_owned();
                    }
                    lines.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("the server did not start; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
                }
            }
        };
        let admin_key = lines.iter().find(|l| l.starts_with("latchkey_uk_")).cloned();
        Self { url, admin_key, stdout: lines, log: log.to_owned(), child, client: Client::new() }
    }

    /// A request to `path` with an optional bearer credential.
    pub fn request(&self, method: Method, path: &str, credential: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.url));
        match credential {
            Some(credential) => builder.bearer_auth(credential),
            None => builder,
        }
    }

    /// Sends a JSON request and returns the status and the parsed body
    /// (null for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        credential: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut builder = self.request(method, path, credential);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        parse(builder.send().await.unwrap()).await
    }

    /// Asks for an authorize decision; returns `(allowed, reason)`.
    pub async fn authorize(&self, request: Value) -> (bool, Option<String>) {
        let (status, body) = self.call(Method::POST, "/v3/authorize", None, Some(request)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["allowed"].as_bool().unwrap(), body["reason"].as_str().map(str::to_owned))
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("the server did not stop on SIGTERM");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the server's log contains `text` `times` times.
    pub async fn wait_for_log(&self, text: &str, times: usize) {
        for _ in 0..400 {
            if self.log_text().matches(text).count() >= times {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the log never showed {text:?} {times} times:\n{}", self.log_text());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn parse(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body)
}

/// An answer read off the wire: the status (0 when the connection closed
/// without one) and the headers, names in lower case.
#[derive(Clone, Debug, Default)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Everything after the head, as text (chunked framing left in).
    pub body: String,
}

impl RawAnswer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends raw `bytes` to `127.0.0.1:port` from the local address `from`
/// and reads the answer until the server closes (send `Connection:
/// close`). On Linux all of 127.0.0.0/8 is loopback, so `127.0.0.2` is a
/// client that is not the proxies' own `127.0.0.1`.
pub async fn exchange_from(from: std::net::IpAddr, port: u16, bytes: &[u8]) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).expect("bind the client's address");
        let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
        assert_eq!(stream.local_addr().unwrap().ip(), from, "the client's own address");
        stream.write_all(bytes).await.ok()?;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
        Some(RawAnswer { status, headers, body })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.ok().flatten().unwrap_or_default()
}

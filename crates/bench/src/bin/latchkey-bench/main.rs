//! The load benchmarks, run by `cargo xtask bench` after the decision
//! benchmark: HTTP authorize against a bare axum handler (and with a rolled
//! token's previous and current values during its grace period), token
//! creation, the gateway, revocation propagation between two instances, and
//! scale to a million tokens. It reads the decision figures criterion wrote,
//! adds its own, prints one table and writes it to `target/bench/report.md`.
//!
//! `--compare LABEL=PATH` (repeatable) names another `latchkey` binary,
//! such as a build of an older commit, whose token creation is measured
//! beside this one's, alternated store by store: an A/B of a change to the
//! write path.
//!
//! The edge section sets cached authorize beside `/healthz`, and the gateway
//! and nginx `auth_request` beside nginx as a bare proxy (see `edge`); the
//! report ends on a table of every target with the figure and the peer
//! measured for it in this run.
//!
//! `latchkey-bench baseline --listen ADDR` is the bare axum server the
//! HTTP figures are compared with: the same runtime and HTTP stack, a
//! handler that answers a constant body.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod edge;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use latchkey_bench::{IpCase, IpScenario, Scenario};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The same allocator as `latchkey`, so that the bare handler it is compared
/// with runs in the same setup.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET_KEY: &str = "YmVuY2htYXJrLW9ubHktc2VydmVyLWtleS0zMi1ieXQ=";
const CONNECTIONS: usize = 16;
const THREADS: usize = 2;

/// How hard wrk loads a server.
#[derive(Clone, Copy)]
struct Concurrency {
    threads: usize,
    connections: usize,
}

/// The load of every table: as many threads as cores, 16 connections.
const LOADED: Concurrency = Concurrency { threads: THREADS, connections: CONNECTIONS };

/// One request at a time: latency without queueing.
const ALONE: Concurrency = Concurrency { threads: 1, connections: 1 };

/// How long a rolled token's previous value keeps working in the HTTP
/// table: longer than any run, so that every request is inside it.
const GRACE_SECONDS: u64 = 600;

struct Options {
    latchkey: PathBuf,
    root: PathBuf,
    seconds: u64,
    scale: Vec<u64>,
    trials: usize,
    /// Which load sections to run: http, create, edge (the gateway among
    /// its peers), propagation, scale.
    sections: Vec<String>,
    /// Other `latchkey` binaries to measure token creation against, by label.
    compare: Vec<(String, PathBuf)>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("baseline") {
        let listen = args.get(2).context("baseline --listen ADDR")?;
        return baseline(listen).await;
    }
    let mut options = Options {
        latchkey: PathBuf::from("target/release/latchkey"),
        root: PathBuf::from("."),
        seconds: 5,
        scale: vec![10_000, 1_000_000],
        trials: 200,
        sections: ["http", "create", "edge", "propagation", "scale"].map(str::to_owned).to_vec(),
        compare: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--latchkey" => options.latchkey = rest.next().context("--latchkey PATH")?.into(),
            "--root" => options.root = rest.next().context("--root PATH")?.into(),
            "--seconds" => options.seconds = rest.next().context("--seconds N")?.parse()?,
            "--scale" => {
                options.scale =
                    rest.next().context("--scale N,N")?.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--trials" => options.trials = rest.next().context("--trials N")?.parse()?,
            "--compare" => {
                let (label, path) = rest.next().and_then(|a| a.split_once('=')).context("--compare LABEL=PATH")?;
                options.compare.push((label.to_owned(), path.into()));
            }
            "--sections" => {
                options.sections = rest.next().context("--sections a,b")?.split(',').map(str::to_owned).collect();
            }
            other => bail!("unknown option {other}"),
        }
    }
    let mut report = String::new();
    writeln!(report, "# latchkey benchmarks\n")?;
    writeln!(report, "{}\n", machine())?;
    writeln!(report, "{}", decision_table(&options.root)?)?;
    writeln!(report, "{}", allowed_ips_table(&options.root))?;
    println!("{report}");
    let wants = |section: &str| options.sections.iter().any(|s| s == section);
    // Each section prints as soon as it is measured: a long run shows its
    // progress, and a failure late in it keeps what came before on screen.
    let mut add = |table: String| {
        println!("{table}");
        report.push_str(&table);
    };
    if wants("http") {
        add(http_table(&options).await?);
    }
    if wants("create") {
        add(create_table(&options).await?);
    }
    let mut targets = Vec::new();
    if wants("edge") {
        let mut figures = edge::EdgeFigures::default();
        add(edge::edge_table(&options, &mut figures).await?);
        targets.extend(edge::edge_targets(&figures));
    }
    if wants("propagation") {
        let (table, p99s) = propagation_table(&options).await?;
        add(table);
        for (store, p99) in p99s {
            targets.push(edge::TargetRow {
                what: format!("revocation across two processes on one {store} database, p99 (cache on)"),
                measured: micros_text(p99.as_secs_f64() * 1e6),
                peer: "—".into(),
                target: "≤ 100 ms".into(),
                met: Some(p99 <= Duration::from_millis(100)),
            });
        }
    }
    if wants("scale") {
        let (table, p99s) = scale_table(&options).await?;
        add(table);
        let postgres: Vec<_> = p99s.iter().filter(|(store, ..)| *store == "postgres").collect();
        if let (Some((_, small, small_p99)), Some((_, large, large_p99))) = (postgres.first(), postgres.last()) {
            targets.push(edge::TargetRow {
                what: format!("PostgreSQL uncached authorize p99, {small} → {large} tokens"),
                measured: format!("{} → {}", micros_text(*small_p99), micros_text(*large_p99)),
                peer: "—".into(),
                target: "flat within noise, or the cause shown".into(),
                // Within noise: a run-to-run spread of p99 on this machine
                // is tens of percent, so flat means less than half again.
                met: Some(*large_p99 <= small_p99 * 1.5),
            });
        }
    }
    if let Some(row) = edge::reworded_target(&options.root) {
        targets.push(row);
    }
    add(edge::targets_table(&targets));
    let out = options.root.join("target/bench/report.md");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, &report)?;
    println!("written to {}", out.display());
    Ok(())
}

// ------------------------------------------------------------------ machine

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let kb: u64 = text.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {cpu}, {cores} cores, {memory} of memory, Linux {}. The load generator (wrk) shares the cores with \
         the server, as it would on one small machine.",
        kernel.trim()
    )
}

// ------------------------------------------------------------------ decision

/// The median criterion wrote for `group/function/parameter`.
fn criterion_median_ns(root: &Path, group: &str, function: &str, parameter: usize) -> Option<f64> {
    let path =
        root.join("target/criterion").join(group).join(function).join(parameter.to_string()).join("new/estimates.json");
    let value: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    value["median"]["point_estimate"].as_f64()
}

fn median_ns(root: &Path, scenario: Scenario, engine: &str, grants: usize) -> Option<f64> {
    criterion_median_ns(root, &format!("decision_{}", scenario.slug()), engine, grants)
}

fn duration_text(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

fn decision_table(root: &Path) -> Result<String> {
    let mut out = String::from(
        "## Decision latency\n\nMedian time from the request's strings to the answer (criterion). The same policy for \
         each engine; for the query scenario every engine is given the canonical form, computed in the timed loop. \
         Targets: latchkey ≤ 1 µs for table grants and ≤ 5 µs for query grants at 100 grants.\n\n\
         | scenario | grants | latchkey | Cedar | Casbin |\n|---|---:|---:|---:|---:|\n",
    );
    let mut any = false;
    for scenario in Scenario::ALL {
        for grants in [1, 10, 100] {
            let cell = |engine| median_ns(root, scenario, engine, grants).map_or("—".to_owned(), duration_text);
            let latchkey = median_ns(root, scenario, "latchkey", grants);
            any |= latchkey.is_some();
            writeln!(
                out,
                "| {} | {grants} | {} | {} | {} |",
                scenario.name(),
                cell("latchkey"),
                cell("cedar"),
                cell("casbin")
            )?;
        }
    }
    if !any {
        // `cargo xtask bench` runs criterion first; a run of this binary
        // alone (one section, say) reports the load figures only.
        out.push_str("\nNo criterion results under target/criterion: `cargo xtask bench` runs them first.\n");
    }
    Ok(out)
}

/// The decision of a token restricted by `allowed_ips`, beside the same
/// token unrestricted. A missing figure (a benchmark run from before the
/// group existed) shows as a dash.
fn allowed_ips_table(root: &Path) -> String {
    let grants = IpCase::GRANTS;
    let ranges = latchkey_domain::ip::MAX_IP_RANGES;
    let mut out = format!(
        "## Decision with allowed_ips\n\nlatchkey's decision for the table hit at {grants} grants, made from a client \
         address (read from its text in the timed loop, as `/v3/authorize` reads `client_ip`), by a token \
         restricted to {ranges} IPv4 and IPv6 ranges (the most a token may list) and by the same token without them \
         (criterion, median); \"added\" is against the row without them. Target: the table-grant target, ≤ 1 µs \
         at 100 grants.\n\n\
         | token | latchkey | added |\n|---|---:|---:|\n"
    );
    let median = |scenario: IpScenario| criterion_median_ns(root, "decision_allowed_ips", scenario.slug(), grants);
    let unrestricted = median(IpScenario::Unrestricted);
    // The table hit of the table above: the same token and request, with no
    // client address at all, so that reading one shows in the table.
    let without_client = median_ns(root, Scenario::TableHit, "latchkey", grants);
    let _ = writeln!(
        out,
        "| no allowed_ips, no client_ip (the table hit above) | {} | — |",
        without_client.map_or("—".to_owned(), duration_text)
    );
    for scenario in IpScenario::ALL {
        let time = median(scenario);
        let added = match (time, unrestricted) {
            (Some(time), Some(base)) if scenario != IpScenario::Unrestricted => {
                let sign = if time < base { "−" } else { "+" };
                format!("{sign}{}", duration_text((time - base).abs()))
            }
            _ => "—".to_owned(),
        };
        let _ = writeln!(out, "| {} | {} | {added} |", scenario.name(), time.map_or("—".to_owned(), duration_text));
    }
    out
}

// ------------------------------------------------------------------ servers

struct Server {
    child: Child,
    url: String,
    key: Option<String>,
    log: PathBuf,
}

impl Server {
    async fn start(binary: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<Self> {
        // The default log level, as an operator runs it (the cost of what it
        // logs per request is part of the figures); the lines go to a file,
        // shown if the server does not start.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "latchkey-bench-{}-{}.log",
            std::process::id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut command = Command::new(binary);
        command
            .args(args)
            .env("LATCHKEY_SECRET_KEY", SECRET_KEY)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut key = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line()).await??.with_context(|| {
                format!("the server exited:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
            })?;
            if line.starts_with("latchkey_uk_") {
                key = Some(line);
            } else if let Some(url) = line.strip_prefix("latchkey listening on ") {
                let url = url.to_owned();
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Ok(Self { child, url, key, log });
            }
        }
    }

    async fn serve(binary: &Path, database: &str, cached: bool) -> Result<Self> {
        Self::serve_with(binary, database, cached, &[]).await
    }

    /// `serve` with `extra` arguments after the usual ones.
    async fn serve_with(binary: &Path, database: &str, cached: bool, extra: &[&str]) -> Result<Self> {
        let capacity = if cached { "100000" } else { "0" };
        // Loopback is exempt from rate limiting: the propagation trials ask
        // about deleted tokens on purpose, many times a second.
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            database,
            "--cache-capacity",
            capacity,
            "--rate-limit-exempt",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        Self::start(binary, &args, &[]).await
    }

    fn peak_memory_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let _ = std::fs::remove_file(&self.log);
    }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Result<Value> {
    let mut request = client.request(method, url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
}

fn token_body(name: &str) -> Value {
    json!({"name": name, "allowed_apis": ["maps"],
        "grants": [{"connection_name": "carto_dw", "source": "my-project.dataset.cities"}]})
}

fn authorize_body(token: &str) -> Value {
    json!({"token": token, "api": "maps", "connection_name": "carto_dw", "source_type": "table",
        "source": "my-project.dataset.cities"})
}

// ------------------------------------------------------------------ wrk

struct Load {
    requests_per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

fn lua_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The Lua lines that make every request of a wrk run `method` with `body`
/// and the bearer `key`.
fn wrk_request(method: &str, body: Option<&Value>, key: Option<&str>) -> String {
    let mut lua = format!("wrk.method = {}\n", lua_string(method));
    if let Some(body) = body {
        let _ = writeln!(lua, "wrk.body = {}", lua_string(&body.to_string()));
        lua.push_str("wrk.headers[\"Content-Type\"] = \"application/json\"\n");
    }
    if let Some(key) = key {
        let _ = writeln!(lua, "wrk.headers[\"Authorization\"] = {}", lua_string(&format!("Bearer {key}")));
    }
    lua
}

async fn wrk(url: &str, seconds: u64, method: &str, body: Option<&Value>, key: Option<&str>) -> Result<Load> {
    wrk_script(url, seconds, LOADED, &wrk_request(method, body, key)).await
}

/// Runs wrk with the Lua script `lua`. Any answer other than 2xx fails the
/// run: a figure for refused requests would measure the wrong thing.
async fn wrk_script(url: &str, seconds: u64, load: Concurrency, lua: &str) -> Result<Load> {
    let script = std::env::temp_dir().join(format!("latchkey-wrk-{}.lua", std::process::id()));
    std::fs::write(&script, lua)?;
    let output = Command::new("wrk")
        .args([
            "-t",
            &load.threads.to_string(),
            "-c",
            &load.connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
            script.to_str().unwrap_or_default(),
            url,
        ])
        .output()
        .await
        .context("cannot run wrk (apt-get install wrk)")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx")) {
        bail!("wrk saw errors against {url}: {line}\n{text}");
    }
    let percentile = |label: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(parse_wrk_time)
            .with_context(|| format!("no {label} in wrk's output:\n{text}"))
    };
    let requests_per_second = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    Ok(Load { requests_per_second, p50_us: percentile("50%")?, p99_us: percentile("99%")? })
}

/// wrk prints times as `123.45us`, `1.23ms` or `1.02s`.
fn parse_wrk_time(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

fn micros_text(us: f64) -> String {
    if us < 1_000.0 { format!("{us:.0} µs") } else { format!("{:.2} ms", us / 1_000.0) }
}

// ------------------------------------------------------------------ HTTP

async fn baseline(listen: &str) -> Result<()> {
    // Every path answers the same small JSON: the bare handler of the HTTP
    // comparison.
    let app = axum::Router::new()
        .fallback(|| async { ([("content-type", "application/json")], r#"{"allowed":true,"reason":null}"#) });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("latchkey listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn fresh_postgres() -> Result<latchkey_test_postgres::TestDatabase> {
    Ok(latchkey_test_postgres::TestDatabase::create().await)
}

async fn http_table(options: &Options) -> Result<String> {
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    let this = std::env::current_exe()?;
    let baseline_server = Server::start(&this, &["baseline", "--listen", "127.0.0.1:0"], &[]).await?;
    let body = authorize_body("latchkey_tk_constant");
    let bare =
        wrk(&format!("{}/v3/authorize", baseline_server.url), options.seconds, "POST", Some(&body), None).await?;
    baseline_server.stop().await;
    let dir = std::env::temp_dir().join(format!("latchkey-bench-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (store, cached) in [
        ("memory", true),
        ("memory", false),
        ("sqlite", true),
        ("sqlite", false),
        ("postgres", true),
        ("postgres", false),
    ] {
        let database = match store {
            "memory" => ("memory://".to_owned(), None),
            "sqlite" => (format!("sqlite://{}/{}-{cached}.db", dir.display(), store), None),
            _ => {
                let db = fresh_postgres().await?;
                (db.url().to_owned(), Some(db))
            }
        };
        let server = Server::serve(&options.latchkey, &database.0, cached).await?;
        let key = server.key.clone().context("bootstrap key")?;
        let token = call(
            &client,
            reqwest::Method::POST,
            &format!("{}/v3/tokens", server.url),
            Some(&key),
            Some(token_body("bench")),
        )
        .await?;
        let mut values = vec![(ValueKind::NeverRolled, token["token"].as_str().unwrap_or_default().to_owned())];
        // A rolled token's previous value is found by another column
        // (`previous_secret_hash`) and cached under its own hash; the stores
        // are where that differs, so memory is left out.
        if store != "memory" {
            let (previous, current) = rolled_token(&client, &server, &key).await?;
            values.push((ValueKind::Current, current));
            values.push((ValueKind::Previous, previous));
        }
        for (kind, value) in values {
            let body = authorize_body(&value);
            let allowed =
                call(&client, reqwest::Method::POST, &format!("{}/v3/authorize", server.url), None, Some(body.clone()))
                    .await?;
            if allowed["allowed"] != true {
                bail!("the benchmark token ({}) is refused: {allowed}", kind.name());
            }
            let load = wrk(&format!("{}/v3/authorize", server.url), options.seconds, "POST", Some(&body), None).await?;
            rows.push((store, cached, kind, load));
        }
        server.stop().await;
        if let Some(db) = database.1 {
            db.drop_database().await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut out = format!(
        "## HTTP authorize\n\n`POST /v3/authorize` for an allowed table request, on loopback: wrk, {THREADS} threads, \
         {CONNECTIONS} connections, {} s each. The bare axum handler answers a constant body with the same runtime and \
         HTTP stack. With SQLite and PostgreSQL a second token is rolled with a {GRACE_SECONDS} s grace period and \
         authorized with its new value and with its previous one, which is looked up by its own column. Target: cached \
         at ≥ 70 % of the bare handler's throughput.\n\n\
         | server | cache | value | requests/s | p50 | p99 | of bare axum |\n|---|---|---|---:|---:|---:|---:|\n",
        options.seconds
    );
    writeln!(
        out,
        "| bare axum handler | — | — | {:.0} | {} | {} | 100 % |",
        bare.requests_per_second,
        micros_text(bare.p50_us),
        micros_text(bare.p99_us)
    )?;
    for (store, cached, kind, load) in rows {
        writeln!(
            out,
            "| latchkey, {store} | {} | {} | {:.0} | {} | {} | {:.0} % |",
            if cached { "on" } else { "off" },
            kind.name(),
            load.requests_per_second,
            micros_text(load.p50_us),
            micros_text(load.p99_us),
            100.0 * load.requests_per_second / bare.requests_per_second
        )?;
    }
    out.push('\n');
    Ok(out)
}

/// Which value of a token the HTTP table authorizes with.
#[derive(Clone, Copy)]
enum ValueKind {
    /// A token that was never rolled.
    NeverRolled,
    /// A rolled token's new value.
    Current,
    /// A rolled token's previous value, inside its grace period.
    Previous,
}

impl ValueKind {
    const fn name(self) -> &'static str {
        match self {
            ValueKind::NeverRolled => "never rolled",
            ValueKind::Current => "rolled: current",
            ValueKind::Previous => "rolled: previous, in grace",
        }
    }
}

/// Creates a token and rolls it with a grace period longer than the run:
/// its (previous, current) values.
async fn rolled_token(client: &reqwest::Client, server: &Server, key: &str) -> Result<(String, String)> {
    let token = call(
        client,
        reqwest::Method::POST,
        &format!("{}/v3/tokens", server.url),
        Some(key),
        Some(token_body("bench rolled")),
    )
    .await?;
    let previous = token["token"].as_str().context("a new token's value")?.to_owned();
    let id = token["id"].as_str().context("a new token's id")?;
    let rolled = call(
        client,
        reqwest::Method::POST,
        &format!("{}/v3/tokens/{id}/roll", server.url),
        Some(key),
        Some(json!({"grace_seconds": GRACE_SECONDS})),
    )
    .await?;
    let current = rolled["token"].as_str().context("a rolled token's value")?.to_owned();
    if current == previous || rolled["previous_value_expires_at"].is_null() {
        bail!("the roll started no grace period: {rolled}");
    }
    Ok((previous, current))
}

// ------------------------------------------------------------------ create

/// A wrk script that creates a token with a name no other request of the
/// server's life uses (`run`, wrk's thread, a counter): a name taken twice
/// would be answered 409 and fail the run.
fn create_script(key: &str, run: &str) -> String {
    let template = token_body(&format!("{run}-%d-%d")).to_string();
    let mut lua = wrk_request("POST", None, Some(key));
    lua.push_str("wrk.headers[\"Content-Type\"] = \"application/json\"\n");
    lua.push_str(
        "local threads = 0\n\
         function setup(thread)\n  threads = threads + 1\n  thread:set(\"id\", threads)\nend\n\
         local count = 0\n",
    );
    let _ = writeln!(
        lua,
        "function request()\n  count = count + 1\n  \
         return wrk.format(nil, nil, nil, string.format({}, id, count))\nend",
        lua_string(&template)
    );
    lua
}

/// `POST /v3/tokens` on a fresh store: one client alone (the latency a
/// user sees), then the usual load (the rate the store sustains). Every
/// create writes the token and its audit event in one transaction.
async fn create_table(options: &Options) -> Result<String> {
    let mut builds = vec![("this build".to_owned(), options.latchkey.clone())];
    builds.extend(options.compare.iter().cloned());
    let dir = std::env::temp_dir().join(format!("latchkey-bench-create-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for store in ["memory", "sqlite", "postgres"] {
        // Alternated store by store, so that a slow minute of a shared
        // machine falls on both builds rather than on one.
        for (index, (build, binary)) in builds.iter().enumerate() {
            let (database, postgres) = match store {
                "memory" => ("memory://".to_owned(), None),
                "sqlite" => (format!("sqlite://{}/create-{index}.db", dir.display()), None),
                _ => {
                    let db = fresh_postgres().await?;
                    (db.url().to_owned(), Some(db))
                }
            };
            let server = Server::serve(binary, &database, true).await?;
            let key = server.key.clone().context("bootstrap key")?;
            let url = format!("{}/v3/tokens", server.url);
            let alone = wrk_script(&url, options.seconds, ALONE, &create_script(&key, "alone")).await?;
            let loaded = wrk_script(&url, options.seconds, LOADED, &create_script(&key, "loaded")).await?;
            server.stop().await;
            if let Some(db) = postgres {
                db.drop_database().await;
            }
            rows.push((store, build.as_str(), ALONE, alone));
            rows.push((store, build.as_str(), LOADED, loaded));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut out = format!(
        "## Token creation\n\n`POST /v3/tokens` with a new name each request (one table grant), on a fresh store: \
         wrk with 1 connection, then {THREADS} threads and {CONNECTIONS} connections, {} s each. A create writes the \
         token and its audit event in one transaction.\n\n\
         | store | build | connections | creates/s | p50 | p99 |\n|---|---|---:|---:|---:|---:|\n",
        options.seconds
    );
    for (store, build, load, measured) in rows {
        writeln!(
            out,
            "| {store} | {build} | {} | {:.0} | {} | {} |",
            load.connections,
            measured.requests_per_second,
            micros_text(measured.p50_us),
            micros_text(measured.p99_us)
        )?;
    }
    out.push('\n');
    Ok(out)
}

// ------------------------------------------------------------------ propagation

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Two instances on one database, SQLite file and PostgreSQL: how long
/// after a DELETE through one the other refuses the token it had cached.
async fn propagation_table(options: &Options) -> Result<(String, Vec<(&'static str, Duration)>)> {
    let mut out = format!(
        "## Revocation propagation\n\nTwo instances (`serve`, cache on) on one database: one SQLite file, whose \
         change log each process polls, or one PostgreSQL database, with LISTEN/NOTIFY. Each trial creates a token \
         through A, authorizes it through B (so B caches it), deletes it through A, then asks B in a loop: the time \
         from the DELETE's answer to B's first refusal. {} trials each. Target: p99 ≤ 100 ms.\n\n\
         | store | p50 | p99 | max |\n|---|---:|---:|---:|\n",
        options.trials
    );
    let dir = std::env::temp_dir().join(format!("latchkey-bench-propagation-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut p99s = Vec::new();
    for store in ["sqlite", "postgres"] {
        let (database, postgres) = if store == "sqlite" {
            (format!("sqlite://{}/propagation.db", dir.display()), None)
        } else {
            let db = fresh_postgres().await?;
            (db.url().to_owned(), Some(db))
        };
        let times = propagation_times(options, &database).await?;
        if let Some(db) = postgres {
            db.drop_database().await;
        }
        let p99 = percentile(&times, 99.0);
        writeln!(
            out,
            "| {store} | {} | {} | {} |",
            micros_text(percentile(&times, 50.0).as_secs_f64() * 1e6),
            micros_text(p99.as_secs_f64() * 1e6),
            micros_text(times.last().copied().unwrap_or_default().as_secs_f64() * 1e6),
        )?;
        p99s.push((store, p99));
    }
    let _ = std::fs::remove_dir_all(&dir);
    out.push('\n');
    Ok((out, p99s))
}

/// The propagation trials on one database, sorted.
async fn propagation_times(options: &Options, database: &str) -> Result<Vec<Duration>> {
    let client = reqwest::Client::new();
    let a = Server::serve(&options.latchkey, database, true).await?;
    let b = Server::serve(&options.latchkey, database, true).await?;
    let key = a.key.clone().context("bootstrap key")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut times = Vec::with_capacity(options.trials);
    for trial in 0..options.trials {
        let token = call(
            &client,
            reqwest::Method::POST,
            &format!("{}/v3/tokens", a.url),
            Some(&key),
            Some(token_body(&format!("t{trial}"))),
        )
        .await?;
        let body = authorize_body(token["token"].as_str().unwrap_or_default());
        let first =
            call(&client, reqwest::Method::POST, &format!("{}/v3/authorize", b.url), None, Some(body.clone())).await?;
        if first["allowed"] != true {
            bail!("B refuses a new token: {first}");
        }
        call(
            &client,
            reqwest::Method::DELETE,
            &format!("{}/v3/tokens/{}", a.url, token["id"].as_str().unwrap_or_default()),
            Some(&key),
            None,
        )
        .await?;
        let deleted = Instant::now();
        loop {
            let answer =
                call(&client, reqwest::Method::POST, &format!("{}/v3/authorize", b.url), None, Some(body.clone()))
                    .await?;
            if answer["reason"] == "token_unknown" {
                times.push(deleted.elapsed());
                break;
            }
            if deleted.elapsed() > Duration::from_secs(30) {
                bail!("B still allows a token deleted 30 s ago");
            }
        }
    }
    a.stop().await;
    b.stop().await;
    times.sort();
    Ok(times)
}

// ------------------------------------------------------------------ scale

/// Filler tokens: valid rows of a thousand other users, written straight to
/// the store (through the API a million would take too long to set up).
fn fill_sqlite(path: &Path, count: u64) -> Result<()> {
    use sha2::{Digest, Sha256};
    let mut connection = rusqlite::Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(30))?;
    let transaction = connection.transaction()?;
    {
        let mut insert = transaction.prepare(
            "INSERT INTO tokens (id, org, owner, name, secret_hash, sealed_secret, allowed_apis, grants, referers,
                                 created_at, updated_at, version)
             VALUES (?1, 'filler', ?2, ?3, ?4, x'00', 'lds', '[]', '[]', ?5, ?5, 1)",
        )?;
        for i in 0..count {
            let id = format!("{i:012}");
            let hash: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            insert.execute(rusqlite::params![
                id,
                format!("user{}", i % 1000),
                format!("tk_{id}"),
                hash.to_vec(),
                1_700_000_000_000_000i64 + i as i64
            ])?;
        }
    }
    transaction.commit()?;
    Ok(())
}

async fn fill_postgres(url: &str, count: u64) -> Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await?;
    sqlx::query(
        "INSERT INTO tokens (id, org, owner, name, secret_hash, sealed_secret, allowed_apis, grants, referers,
                             created_at, updated_at, version)
         SELECT lpad(to_hex(i), 12, '0'), 'filler', 'user' || (i % 1000), 'tk_' || lpad(to_hex(i), 12, '0'),
                sha256(int8send(i)), '\\x00'::bytea, 'lds', '[]'::jsonb, '[]'::jsonb,
                now() - make_interval(secs => i), now(), 1
         FROM generate_series(1::bigint, $1::bigint) AS i",
    )
    .bind(i64::try_from(count)?)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE tokens").execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// The scale table, and authorize's p99 by (store, tokens).
async fn scale_table(options: &Options) -> Result<(String, Vec<(&'static str, u64, f64)>)> {
    let mut p99s = Vec::new();
    let client = reqwest::Client::new();
    let mut out = format!(
        "## Scale\n\nThe store holds N tokens (a thousand users' filler plus the measured user's 120). Authorize with \
         the cache off, so every request reads the store; the list is the user's first page (50 tokens). wrk as \
         above, {} s each. Peak memory is the server's peak resident set. Target: authorize p99 flat from 10 000 to \
         1 000 000 tokens.\n\n\
         | store | tokens | authorize p99 | authorize requests/s | list p99 | peak memory |\n|---|---:|---:|---:|---:|---:|\n",
        options.seconds
    );
    let dir = std::env::temp_dir().join(format!("latchkey-bench-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for store in ["sqlite", "postgres"] {
        for &count in &options.scale {
            let (database, postgres) = if store == "sqlite" {
                (format!("sqlite://{}/scale-{count}.db", dir.display()), None)
            } else {
                let db = fresh_postgres().await?;
                (db.url().to_owned(), Some(db))
            };
            // First start: schema, bootstrap, the measured user's tokens.
            let server = Server::serve(&options.latchkey, &database, false).await?;
            let key = server.key.clone().context("bootstrap key")?;
            let mut value = String::new();
            for i in 0..120 {
                let token = call(
                    &client,
                    reqwest::Method::POST,
                    &format!("{}/v3/tokens", server.url),
                    Some(&key),
                    Some(token_body(&format!("scale {i}"))),
                )
                .await?;
                value = token["token"].as_str().unwrap_or_default().to_owned();
            }
            server.stop().await;
            let filler = count.saturating_sub(120);
            let started = Instant::now();
            if store == "sqlite" {
                let path = dir.join(format!("scale-{count}.db"));
                tokio::task::spawn_blocking(move || fill_sqlite(&path, filler)).await??;
            } else {
                fill_postgres(&database, filler).await?;
            }
            println!("filled {store} with {filler} tokens in {:.1} s", started.elapsed().as_secs_f64());
            let server = Server::serve(&options.latchkey, &database, false).await?;
            let authorize = wrk(
                &format!("{}/v3/authorize", server.url),
                options.seconds,
                "POST",
                Some(&authorize_body(&value)),
                None,
            )
            .await?;
            let list =
                wrk(&format!("{}/v3/tokens?limit=50", server.url), options.seconds, "GET", None, Some(&key)).await?;
            let memory =
                server.peak_memory_kib().map_or("—".to_owned(), |kib| format!("{:.0} MiB", kib as f64 / 1024.0));
            server.stop().await;
            if let Some(db) = postgres {
                db.drop_database().await;
            }
            writeln!(
                out,
                "| {store} | {count} | {} | {:.0} | {} | {memory} |",
                micros_text(authorize.p99_us),
                authorize.requests_per_second,
                micros_text(list.p99_us)
            )?;
            p99s.push((store, count, authorize.p99_us));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    out.push('\n');
    Ok((out, p99s))
}

//! The edge against its peers (issue [2.7]): cached authorize against the
//! same server's `/healthz`, the gateway and nginx `auth_request` with
//! forward-auth against nginx as a bare reverse proxy to the same upstream,
//! and the latency the gateway adds to one request alone.
//!
//! nginx plays two parts here. A `return 200` server is the data API every
//! route ends at, so that the upstream costs the same and next to nothing
//! for each. And nginx proxying to it is the peer: what any reverse proxy
//! in front of a data API costs at least. The `auth_request` configuration
//! is the one docs/deploy.md documents, read from that file.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::process::{Child, Command};

use super::{ALONE, Load, Options, Server, authorize_body, call, fresh_postgres, micros_text, token_body, wrk_script};

/// The data API's answer: a small JSON body, as a table request's first
/// page would be for a tiny table.
const UPSTREAM_BODY: &str = r#"{"rows":[],"total_rows":0}"#;

/// The referer the token of the referer rows allows, and the page a
/// browser would name in its `Referer`.
const ALLOWED_REFERER: &str = "https://app.example.com/";
const REQUEST_REFERER: &str = "https://app.example.com/maps/cities?view=1";

/// How many times each measurement of the authorize comparison is
/// repeated, alternated, so that a slow moment of a shared machine falls
/// on every route rather than on one.
const ROUNDS: usize = 3;

/// What the edge section measured, for the targets table.
#[derive(Default)]
pub(crate) struct EdgeFigures {
    pub healthz: f64,
    pub authorize_referer: f64,
    pub authorize_plain: f64,
    pub straight: Option<Load>,
    pub nginx_proxy: Option<Load>,
    pub auth_request: Option<Load>,
    /// Through the gateway, by store.
    pub gateway: Vec<(&'static str, Load)>,
    /// One connection: straight, nginx, and the gateway by store.
    pub alone_straight: Option<Load>,
    pub alone_nginx: Option<Load>,
    pub alone_gateway: Vec<(&'static str, Load)>,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// An nginx process, stopped with SIGTERM (killed outright it leaves its
/// workers behind).
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Ports: the upstream (`return 200`), the bare proxy, and the
    /// documented `auth_request` configuration in front of `latchkey`.
    async fn start(root: &Path, ports: [u16; 3], latchkey: &str) -> Result<Self> {
        let [upstream, bare, auth] = ports;
        let dir = std::env::temp_dir().join(format!("latchkey-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let documented = latchkey_testkit::nginx::documented(&root.join("docs/deploy.md"), "nginx")
            .replace("LISTEN", &format!("127.0.0.1:{auth}"))
            .replace("UPSTREAM", &format!("127.0.0.1:{upstream}"))
            .replace("LATCHKEY", latchkey);
        // The bare proxy forwards as the documented configuration does once
        // latchkey has said yes (the same upstream block, so the same
        // keep-alive to the data API), without asking latchkey.
        let servers = format!(
            "server {{\n    listen 127.0.0.1:{upstream};\n    keepalive_requests 100000;\n    \
             location / {{ default_type application/json; return 200 '{UPSTREAM_BODY}'; }}\n  }}\n\
             server {{\n    listen 127.0.0.1:{bare};\n    location / {{\n      \
             proxy_set_header X-Forwarded-For $remote_addr;\n      proxy_http_version 1.1;\n      \
             proxy_set_header Connection \"\";\n      proxy_pass http://data_api;\n    }}\n  }}\n{documented}"
        );
        let config = latchkey_testkit::nginx::config(&dir, "auto", &servers);
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config)?;
        let child = Command::new(std::env::var("LATCHKEY_BENCH_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into()))
            .args(["-p", dir.to_str().unwrap_or_default(), "-c", conf.to_str().unwrap_or_default()])
            .args(["-e", &dir.join("error.log").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start nginx (apt-get install nginx)")?;
        let mut nginx = Self { child, dir };
        for port in ports {
            nginx.wait_for(port).await?;
        }
        Ok(nginx)
    }

    async fn wait_for(&mut self, port: u16) -> Result<()> {
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}):\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("nginx does not listen on {port}")
    }

    /// Asks the master to stop its workers and exit. Without it, a run
    /// that fails half-way would kill the master outright (`kill_on_drop`)
    /// and leave its workers listening.
    fn quit(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-QUIT", &pid.to_string()]).status();
        }
    }

    async fn stop(mut self) {
        self.quit();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.quit();
        }
    }
}

/// The Lua lines of a wrk run: `GET` with the bearer `key`.
fn get_request(key: Option<&str>) -> String {
    super::wrk_request("GET", None, key)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Cached `POST /v3/authorize` against `GET /healthz` of the same server
/// (SQLite, the default), for a token that allows one referer and for one
/// that allows any.
async fn authorize_against_healthz(options: &Options, figures: &mut EdgeFigures) -> Result<()> {
    let client = reqwest::Client::new();
    let dir = std::env::temp_dir().join(format!("latchkey-bench-edge-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let server = Server::serve(&options.latchkey, &format!("sqlite://{}/edge.db", dir.display()), true).await?;
    let key = server.key.clone().context("bootstrap key")?;
    let tokens = format!("{}/v3/tokens", server.url);
    let mut with_referer = token_body("edge referer");
    with_referer["referers"] = json!([ALLOWED_REFERER]);
    let referer_token = call(&client, reqwest::Method::POST, &tokens, Some(&key), Some(with_referer)).await?;
    let plain_token = call(&client, reqwest::Method::POST, &tokens, Some(&key), Some(token_body("edge plain"))).await?;
    let mut referer_body = authorize_body(referer_token["token"].as_str().unwrap_or_default());
    referer_body["referer"] = json!(REQUEST_REFERER);
    let plain_body = authorize_body(plain_token["token"].as_str().unwrap_or_default());
    let authorize = format!("{}/v3/authorize", server.url);
    for body in [&referer_body, &plain_body] {
        let answer = call(&client, reqwest::Method::POST, &authorize, None, Some(body.clone())).await?;
        if answer["allowed"] != true {
            bail!("the edge benchmark's token is refused: {answer}");
        }
    }
    let (mut healthz, mut referer, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        healthz.push(
            super::wrk(&format!("{}/healthz", server.url), options.seconds, "GET", None, None)
                .await?
                .requests_per_second,
        );
        referer.push(
            super::wrk(&authorize, options.seconds, "POST", Some(&referer_body), None).await?.requests_per_second,
        );
        plain.push(super::wrk(&authorize, options.seconds, "POST", Some(&plain_body), None).await?.requests_per_second);
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    figures.healthz = median(healthz);
    figures.authorize_referer = median(referer);
    figures.authorize_plain = median(plain);
    Ok(())
}

/// A token allowed to read the benchmark's table through `serve`.
async fn gateway_token(client: &reqwest::Client, serve: &Server) -> Result<String> {
    let key = serve.key.clone().context("bootstrap key")?;
    let token =
        call(client, reqwest::Method::POST, &format!("{}/v3/tokens", serve.url), Some(&key), Some(token_body("edge")))
            .await?;
    Ok(token["token"].as_str().context("a new token's value")?.to_owned())
}

/// The median of runs, by `key`.
fn median_load(mut loads: Vec<Load>, key: fn(&Load) -> f64) -> Option<Load> {
    loads.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = loads.len() / 2;
    loads.into_iter().nth(middle)
}

/// The same table request straight to the upstream, through nginx, through
/// nginx `auth_request` with latchkey's forward-auth, and through the
/// gateway on each store; under load, then one connection alone. Every
/// route is measured once a round, for `ROUNDS` rounds: the median.
async fn proxies(options: &Options, figures: &mut EdgeFigures) -> Result<()> {
    let client = reqwest::Client::new();
    let path = "/v3/maps/carto_dw/table?name=my-project.dataset.cities";
    let dir = std::env::temp_dir().join(format!("latchkey-bench-proxies-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = format!("sqlite://{}/proxies.db", dir.display());
    // Forward-auth as docs/deploy.md sets it up for nginx.
    let forward_auth = ["--org", "default", "--forward-auth-headers", "nginx", "--trusted-proxies", "127.0.0.1"];
    let serve = Server::serve_with(&options.latchkey, &sqlite, true, &forward_auth).await?;
    let sqlite_token = gateway_token(&client, &serve).await?;
    let latchkey_address = serve.url.trim_start_matches("http://").to_owned();
    let ports = [free_port()?, free_port()?, free_port()?];
    let nginx = Nginx::start(&options.root, ports, &latchkey_address).await?;
    let [upstream, bare, auth] = ports.map(|port| format!("http://127.0.0.1:{port}{path}"));
    let upstream_base = format!("http://127.0.0.1:{}", ports[0]);
    // The forward-auth configuration must really ask latchkey: a token it
    // refuses has to be refused through nginx.
    let refused = client.get(&auth).bearer_auth("latchkey_tk_notatoken").send().await?.status();
    if refused != reqwest::StatusCode::UNAUTHORIZED {
        let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
        bail!("nginx auth_request did not refuse an unknown token as latchkey does ({refused}):\n{log}");
    }
    let postgres = fresh_postgres().await?;
    let pg_serve = Server::serve(&options.latchkey, postgres.url(), true).await?;
    let pg_token = gateway_token(&client, &pg_serve).await?;
    let mut gateways = Vec::new();
    for (store, database, token) in
        [("sqlite", sqlite.as_str(), &sqlite_token), ("postgres", postgres.url(), &pg_token)]
    {
        let gateway = Server::start(
            &options.latchkey,
            &[
                "gateway",
                "--org",
                "default",
                "--listen",
                "127.0.0.1:0",
                "--database",
                database,
                "--upstream",
                &upstream_base,
            ],
            &[],
        )
        .await?;
        let url = format!("{}{path}", gateway.url);
        let through = client.get(&url).bearer_auth(token).send().await?;
        let status = through.status();
        if status != reqwest::StatusCode::OK || through.text().await? != UPSTREAM_BODY {
            bail!("the gateway on {store} did not relay the upstream's answer ({status})");
        }
        gateways.push((store, gateway, url, get_request(Some(token))));
    }
    let seconds = options.seconds;
    let keyed = get_request(Some(&sqlite_token));
    let (mut straight, mut nginx_proxy, mut auth_request) = (Vec::new(), Vec::new(), Vec::new());
    let (mut alone_straight, mut alone_nginx) = (Vec::new(), Vec::new());
    let mut through: Vec<(Vec<Load>, Vec<Load>)> = gateways.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for _ in 0..ROUNDS {
        straight.push(wrk_script(&upstream, seconds, super::LOADED, &keyed).await?);
        nginx_proxy.push(wrk_script(&bare, seconds, super::LOADED, &keyed).await?);
        auth_request.push(wrk_script(&auth, seconds, super::LOADED, &keyed).await?);
        for ((_, _, url, lua), (loaded, _)) in gateways.iter().zip(&mut through) {
            loaded.push(wrk_script(url, seconds, super::LOADED, lua).await?);
        }
        alone_straight.push(wrk_script(&upstream, seconds, ALONE, &keyed).await?);
        alone_nginx.push(wrk_script(&bare, seconds, ALONE, &keyed).await?);
        for ((_, _, url, lua), (_, alone)) in gateways.iter().zip(&mut through) {
            alone.push(wrk_script(url, seconds, ALONE, lua).await?);
        }
    }
    let by_rate: fn(&Load) -> f64 = |load| load.requests_per_second;
    let by_p50: fn(&Load) -> f64 = |load| load.p50_us;
    figures.straight = median_load(straight, by_rate);
    figures.nginx_proxy = median_load(nginx_proxy, by_rate);
    figures.auth_request = median_load(auth_request, by_rate);
    figures.alone_straight = median_load(alone_straight, by_p50);
    figures.alone_nginx = median_load(alone_nginx, by_p50);
    for ((store, gateway, ..), (loaded, alone)) in gateways.into_iter().zip(through) {
        gateway.stop().await;
        figures.gateway.extend(median_load(loaded, by_rate).map(|load| (store, load)));
        figures.alone_gateway.extend(median_load(alone, by_p50).map(|load| (store, load)));
    }
    pg_serve.stop().await;
    postgres.drop_database().await;
    nginx.stop().await;
    serve.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Runs the edge measurements and writes their tables.
pub(crate) async fn edge_table(options: &Options, figures: &mut EdgeFigures) -> Result<String> {
    authorize_against_healthz(options, figures).await?;
    proxies(options, figures).await?;
    let mut out = format!(
        "## The edge against its peers\n\nCached `POST /v3/authorize` (SQLite) against `GET /healthz` of the same \
         server, for a token allowing one referer (the request names a page under it) and for a token allowing any: \
         wrk as above, {} s each, {ROUNDS} rounds alternated, the median.\n\n\
         | route | requests/s | of /healthz |\n|---|---:|---:|\n",
        options.seconds
    );
    let share = |part: f64, whole: f64| if whole > 0.0 { 100.0 * part / whole } else { 0.0 };
    writeln!(out, "| `GET /healthz` | {:.0} | 100 % |", figures.healthz)?;
    writeln!(
        out,
        "| authorize, token with a referer | {:.0} | {:.0} % |",
        figures.authorize_referer,
        share(figures.authorize_referer, figures.healthz)
    )?;
    writeln!(
        out,
        "| authorize, token without referers | {:.0} | {:.0} % |",
        figures.authorize_plain,
        share(figures.authorize_plain, figures.healthz)
    )?;
    let bare = figures.nginx_proxy.as_ref().map_or(0.0, |l| l.requests_per_second);
    out.push_str(&format!(
        "\nA Maps API table request, answered by nginx (`return 200`, a small JSON body) as the data API: straight, \
         through nginx as a bare reverse proxy (keep-alive to the upstream), through nginx `auth_request` with \
         latchkey's forward-auth (the configuration of docs/deploy.md, keep-alive to latchkey and to the upstream; \
         latchkey on SQLite, cached), and through `latchkey gateway` (cached; SQLite follows the file's change \
         log, PostgreSQL LISTEN/NOTIFY). nginx runs one worker per core. Under load (wrk as above), then one \
         connection alone, where p50 has no queueing in it. {ROUNDS} rounds, every route once a round: the \
         median.\n\n\
         | route | requests/s | p50 | p99 | of bare nginx | alone: p50 | alone: added at p50 |\n\
         |---|---:|---:|---:|---:|---:|---:|\n"
    ));
    let alone_base = figures.alone_straight.as_ref().map_or(0.0, |l| l.p50_us);
    let mut row = |name: &str, load: Option<&Load>, alone: Option<&Load>| {
        let Some(load) = load else { return };
        let (alone_p50, added) = alone.map_or(("—".to_owned(), "—".to_owned()), |a| {
            (micros_text(a.p50_us), micros_text((a.p50_us - alone_base).max(0.0)))
        });
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {} | {} | {:.0} % | {alone_p50} | {added} |",
            load.requests_per_second,
            micros_text(load.p50_us),
            micros_text(load.p99_us),
            share(load.requests_per_second, bare)
        );
    };
    row("straight to the upstream", figures.straight.as_ref(), figures.alone_straight.as_ref());
    row("nginx, bare reverse proxy", figures.nginx_proxy.as_ref(), figures.alone_nginx.as_ref());
    row("nginx `auth_request` + forward-auth", figures.auth_request.as_ref(), None);
    for (store, load) in &figures.gateway {
        let alone = figures.alone_gateway.iter().find(|(s, _)| s == store).map(|(_, l)| l);
        row(&format!("latchkey gateway, {store}"), Some(load), alone);
    }
    out.push('\n');
    Ok(out)
}

/// A figure beside its target, and whether it meets it.
pub(crate) struct TargetRow {
    pub what: String,
    pub measured: String,
    pub peer: String,
    pub target: String,
    pub met: Option<bool>,
}

pub(crate) fn targets_table(rows: &[TargetRow]) -> String {
    let mut out = String::from(
        "## Targets\n\nEach figure of issue [2.7] from this run, with the peer it is compared with beside it.\n\n\
         | what | latchkey | peer | target | met |\n|---|---|---|---|---|\n",
    );
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(out, "| {} | {} | {} | {} | {met} |", row.what, row.measured, row.peer, row.target);
    }
    out.push('\n');
    out
}

/// The targets rows this section's figures give.
pub(crate) fn edge_targets(figures: &EdgeFigures) -> Vec<TargetRow> {
    let percent = |part: f64, whole: f64| if whole > 0.0 { 100.0 * part / whole } else { 0.0 };
    let mut rows = Vec::new();
    if figures.healthz > 0.0 {
        let referer = percent(figures.authorize_referer, figures.healthz);
        let plain = percent(figures.authorize_plain, figures.healthz);
        rows.push(TargetRow {
            what: "cached authorize vs `/healthz`, token with a referer".into(),
            measured: format!(
                "{:.0} req/s: {referer:.0} % (without a referer {plain:.0} %)",
                figures.authorize_referer
            ),
            peer: format!("`/healthz` {:.0} req/s", figures.healthz),
            target: "≥ 85 % (then 90 %)".into(),
            met: Some(referer >= 85.0),
        });
    }
    if let (Some(bare), Some(auth)) = (&figures.nginx_proxy, &figures.auth_request) {
        for (store, load) in &figures.gateway {
            let ratio = percent(load.requests_per_second, bare.requests_per_second);
            rows.push(TargetRow {
                what: format!("gateway ({store}) vs nginx as a bare reverse proxy, requests/s"),
                measured: format!("{:.0} req/s: {ratio:.0} %", load.requests_per_second),
                peer: format!("nginx {:.0} req/s", bare.requests_per_second),
                target: "≥ 80 %".into(),
                met: Some(ratio >= 80.0),
            });
        }
        let ratio = percent(auth.requests_per_second, bare.requests_per_second);
        rows.push(TargetRow {
            what: "nginx `auth_request` + forward-auth vs the same bare nginx".into(),
            measured: format!("{:.0} req/s: {ratio:.0} %", auth.requests_per_second),
            peer: format!("nginx {:.0} req/s", bare.requests_per_second),
            target: "≥ 60 %".into(),
            met: Some(ratio >= 60.0),
        });
    }
    if let (Some(straight), Some(nginx)) = (&figures.alone_straight, &figures.alone_nginx) {
        for (store, alone) in &figures.alone_gateway {
            let added = (alone.p50_us - straight.p50_us).max(0.0);
            rows.push(TargetRow {
                what: format!("gateway ({store}) added latency at p50, one connection"),
                measured: micros_text(added),
                peer: format!("nginx adds {}", micros_text((nginx.p50_us - straight.p50_us).max(0.0))),
                target: "≤ 150 µs".into(),
                met: Some(added <= 150.0),
            });
        }
    }
    rows
}

/// The reworded-query row of the targets table, from criterion's figures.
pub(crate) fn reworded_target(root: &Path) -> Option<TargetRow> {
    let ns = super::median_ns(root, latchkey_bench::Scenario::QueryHit, "latchkey", 100)?;
    let cedar = super::median_ns(root, latchkey_bench::Scenario::QueryHit, "cedar", 100);
    Some(TargetRow {
        what: "reworded query decision at 100 grants (repeated text / first seen)".into(),
        measured: format!(
            "{} / {} (every request is lexed: no memo, none needed)",
            super::duration_text(ns),
            super::duration_text(ns)
        ),
        peer: cedar.map_or("—".to_owned(), |c| format!("Cedar {}", super::duration_text(c))),
        target: "≤ 5 µs / ≤ 20 µs".into(),
        met: Some(ns <= 5_000.0),
    })
}

//! The project's verbs, run as `cargo xtask <verb>` (an alias in
//! `.cargo/config.toml`), so that the README, CI and developers run the same
//! one-liners.

#![allow(clippy::print_stdout)]

mod api_conformance;
mod architecture;
mod clients;
mod fuzz;
mod server;
mod setup;

use std::env;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <verb> [options]

verbs:
  test [--no-browser] [--fast]
                       formatting, lints and every test (the command CI runs):
                       the Rust tests, the web page in headless Chromium,
                       generated Python and TypeScript clients and schemathesis
                       against a live server, and a short fuzzing run. --no-browser leaves out the browser test (for
                       machines without Chromium); --fast leaves out the browser,
                       the clients, schemathesis and fuzzing. CI uses neither.
  bench [--quick]      every benchmark (decision latency against Cedar and Casbin,
                       HTTP authorize, creates, the gateway, the edge against
                       nginx, revocation propagation, scale) and the table of
                       targets: prints it all and writes
                       target/bench/report.md; --quick shortens
                       the runs and stops the scale test at 100 000 tokens
  fuzz [--seconds N]   run every fuzz target for N seconds (default 60)
  schemathesis [--seconds N]
                       schemathesis against a live server for N seconds (default 90)
  clients              generate Python and TypeScript clients from the served
                       OpenAPI document and run them against the binary
  architecture         check the crate dependency rules of docs/architecture.md
";

/// The only option of `fuzz` and `schemathesis`: `--seconds N`, or
/// `default` without it.
fn seconds_option(args: impl Iterator<Item = String>, default: u32) -> Result<u32> {
    let rest: Vec<String> = args.collect();
    match rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => Ok(default),
        ["--seconds", n] => n.parse().context("--seconds takes a number"),
        _ => bail!("unknown options {rest:?}\n{USAGE}"),
    }
}

fn main() -> Result<()> {
    let mut args = env::args().skip(1);
    match args.next().as_deref() {
        Some("test") => {
            let mut plan = TestPlan { browser: true, live: true };
            for option in args {
                match option.as_str() {
                    "--no-browser" => plan.browser = false,
                    "--fast" => plan = TestPlan { browser: false, live: false },
                    other => bail!("unknown option {other:?}\n{USAGE}"),
                }
            }
            test(plan)
        }
        Some("bench") => {
            let rest: Vec<String> = args.collect();
            let quick = match rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                [] => false,
                ["--quick"] => true,
                _ => bail!("unknown options {rest:?}\n{USAGE}"),
            };
            bench(quick)
        }
        Some("schemathesis") => api_conformance::schemathesis(seconds_option(args, 90)?),
        Some("fuzz") => fuzz::fuzz(seconds_option(args, 60)?),
        Some("clients") => clients::generated_clients(),
        Some("architecture") => {
            let broken = architecture::broken_rules()?;
            if broken.is_empty() {
                println!("every rule of docs/architecture.md holds");
                Ok(())
            } else {
                bail!("docs/architecture.md is broken:\n{}", broken.join("\n"))
            }
        }
        Some("-h" | "--help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown verb {other:?}\n{USAGE}"),
    }
}

/// Runs a cargo command in the workspace root, failing when it fails.
pub(crate) fn cargo(args: &[&str], envs: &[(&str, String)]) -> Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("\n$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(architecture::workspace_root())
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The PostgreSQL the tests use: `LATCHKEY_TEST_POSTGRES_URL` when set,
/// otherwise the local server when one answers on 127.0.0.1:5432. With
/// neither, the PostgreSQL tests start a container, and fail with a message
/// saying how to provide a server when that is not possible either.
fn postgres_for_tests() -> Option<String> {
    if let Ok(url) = env::var("LATCHKEY_TEST_POSTGRES_URL") {
        return Some(url);
    }
    let local = SocketAddr::from(([127, 0, 0, 1], 5432));
    TcpStream::connect_timeout(&local, Duration::from_secs(1))
        .ok()
        .map(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// What `cargo xtask test` runs beyond formatting, lints and `cargo test`.
struct TestPlan {
    browser: bool,
    /// Schemathesis and fuzzing.
    live: bool,
}

fn test(plan: TestPlan) -> Result<()> {
    setup::debian_packages()?;
    cargo(&["fmt", "--all", "--check"], &[])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"], &[])?;
    let mut envs = Vec::new();
    match postgres_for_tests() {
        Some(url) => {
            println!("PostgreSQL tests use LATCHKEY_TEST_POSTGRES_URL={}", redact(&url));
            envs.push(("LATCHKEY_TEST_POSTGRES_URL", url));
        }
        None => println!("no PostgreSQL on 127.0.0.1:5432: the PostgreSQL tests will try testcontainers"),
    }
    let rust = cargo_test(&envs)?;
    if plan.browser {
        browser_test()?;
    } else {
        println!("\nthe browser test was left out");
    }
    if plan.live {
        node_test("tests/carto-client", "gateway.mjs")?;
        clients::generated_clients()?;
        api_conformance::schemathesis(90)?;
        fuzz::fuzz(10)?;
    } else {
        println!("the generated clients, schemathesis and fuzzing were left out (--fast)");
    }
    println!(
        "\n== cargo xtask test passed: {} Rust tests passed ({} ignored) in {} test binaries{}{}",
        rust.passed,
        rust.ignored,
        rust.binaries,
        if plan.browser { "; the browser flow passed" } else { "" },
        if plan.live { "; the CARTO client, the generated clients, schemathesis and fuzzing passed" } else { "" },
    );
    Ok(())
}

/// What `cargo test` reported, summed over its test binaries.
#[derive(Default)]
struct RustTests {
    binaries: u64,
    passed: u64,
    ignored: u64,
}

/// `cargo test --workspace`, its output passed through as it comes, and
/// its `test result:` lines summed so that the run ends with one total.
fn cargo_test(envs: &[(&str, String)]) -> Result<RustTests> {
    use std::io::{BufRead, BufReader};
    let args = ["test", "--workspace", "--locked"];
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("\n$ cargo {}", args.join(" "));
    let mut child = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(architecture::workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cargo}"))?;
    let mut totals = RustTests::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("cannot read cargo test's output")?;
            println!("{line}");
            if let Some(result) = line.strip_prefix("test result: ") {
                totals.binaries += 1;
                let count = |label: &str| {
                    result
                        .split(';')
                        .find_map(|part| part.trim().strip_suffix(label).map(str::trim))
                        .and_then(|number| {
                            number.trim_start_matches("ok. ").trim_start_matches("FAILED. ").parse().ok()
                        })
                        .unwrap_or(0)
                };
                totals.passed += count("passed");
                totals.ignored += count("ignored");
            }
        }
    }
    let status = child.wait().context("cargo test")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(totals)
}

/// A Node test in `folder` against the binary the tests just built.
fn node_test(folder: &str, script: &str) -> Result<()> {
    let root = architecture::workspace_root();
    let dir = setup::npm_packages(folder, ".package-lock.json")?;
    cargo(&["build", "--locked", "--package", "latchkey"], &[])?;
    println!("\n$ node {folder}/{script}");
    let status = Command::new("node")
        .arg(script)
        .current_dir(&dir)
        .env("LATCHKEY_BIN", root.join("target/debug/latchkey"))
        .status()
        .context("cannot run node")?;
    if !status.success() {
        bail!("{folder}/{script} failed ({status})");
    }
    Ok(())
}

/// The web page in headless Chromium, driven by `tests/browser/flow.mjs`
/// against the binary the tests just built.
fn browser_test() -> Result<()> {
    let root = architecture::workspace_root();
    let chromium = env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        bail!(
            "the browser test needs Chromium at {chromium}: install Debian's `chromium` package (or set CHROMIUM), \
             or run `cargo xtask test --no-browser`"
        );
    }
    let folder = setup::npm_packages("tests/browser", "axe-core")?;
    cargo(&["build", "--locked", "--package", "latchkey"], &[])?;
    let binary = root.join("target/debug/latchkey");
    println!("\n$ node tests/browser/flow.mjs");
    let status = Command::new("node")
        .arg("flow.mjs")
        .current_dir(&folder)
        .env("LATCHKEY_BIN", binary)
        .env("CHROMIUM", chromium)
        .status()
        .context("cannot run node")?;
    if !status.success() {
        bail!("the browser test failed ({status})");
    }
    Ok(())
}

fn bench(quick: bool) -> Result<()> {
    let root = architecture::workspace_root();
    // wrk loads the servers; nginx is the data API and the peer of the edge
    // section.
    let nginx = std::path::Path::new("/usr/sbin/nginx").exists();
    if Command::new("wrk").arg("--version").output().is_err() || !nginx {
        println!("wrk or nginx is missing; installing Debian's packages");
        // A fresh machine has no package lists yet.
        run("apt-get", &["update", "-qq"], &root)?;
        run("apt-get", &["install", "-y", "-qq", "wrk", "nginx"], &root)?;
        // Debian starts the packaged nginx on port 80; the bench starts its own.
        let _ = Command::new("nginx").args(["-s", "stop"]).status();
    }
    let mut envs = Vec::new();
    if let Some(url) = postgres_for_tests() {
        envs.push(("LATCHKEY_TEST_POSTGRES_URL", url));
    }
    cargo(&["build", "--release", "--locked", "--package", "latchkey"], &[])?;
    cargo(&["bench", "--locked", "--package", "latchkey-bench", "--features", "bench", "--bench", "decision"], &[])?;
    cargo(
        &[
            "build",
            "--release",
            "--locked",
            "--package",
            "latchkey-bench",
            "--features",
            "bench",
            "--bin",
            "latchkey-bench",
        ],
        &[],
    )?;
    let binary = root.join("target/release/latchkey-bench");
    let latchkey = root.join("target/release/latchkey");
    let mut args =
        vec!["--latchkey".to_owned(), latchkey.display().to_string(), "--root".to_owned(), root.display().to_string()];
    if quick {
        args.extend(["--seconds", "2", "--scale", "10000,100000", "--trials", "50"].map(str::to_owned));
    }
    println!("\n$ {} {}", binary.display(), args.join(" "));
    let status = Command::new(&binary)
        .args(&args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(&root)
        .status()
        .context("cannot run the benchmark")?;
    if !status.success() {
        bail!("the load benchmarks failed ({status})");
    }
    Ok(())
}

pub(crate) fn run(program: &str, args: &[&str], dir: &std::path::Path) -> Result<()> {
    println!("\n$ {program} {}", args.join(" "));
    let status =
        Command::new(program).args(args).current_dir(dir).status().with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Hides a password in a database URL before printing it.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}

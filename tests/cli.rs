//! The command line of SPEC §10, end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{TempDir, run_cli};

#[test]
fn users_create_prints_the_key_as_the_only_line() {
    let dir = TempDir::new("cli-users");
    let db = dir.sqlite_url();
    let create = ["users", "create", "ana@example.com", "--org", "acme", "--database", &db, "--create"];
    let (ok, stdout, _) = run_cli(&create);
    assert!(ok);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout:?}");
    assert!(lines[0].starts_with("latchkey_uk_") && lines[0].len() == 50, "{stdout:?}");

    let (ok, stdout, stderr) = run_cli(&["users", "create", "ana@example.com", "--org", "acme", "--database", &db]);
    assert!(!ok && stdout.is_empty(), "a second create of the same user fails");
    assert!(stderr.contains("already exists"), "{stderr}");

    let (ok, _, stderr) = run_cli(&["users", "create", "two words", "--org", "acme", "--database", &db]);
    assert!(!ok && stderr.contains("invalid user name"), "{stderr}");
    let (ok, _, stderr) = run_cli(&["users", "create", "x", "--org", "acme", "--database", "memory://"]);
    assert!(!ok && stderr.contains("memory://"), "{stderr}");
    let (ok, _, stderr) = run_cli(&["users", "create", "x", "--org", "acme", "--database", "mysql://h/db"]);
    assert!(!ok && stderr.contains("expected sqlite://"), "{stderr}");
}

#[test]
fn connections_create_needs_an_existing_org_and_a_known_provider() {
    let dir = TempDir::new("cli-connections");
    let db = dir.sqlite_url();
    let create = |name: &str, org: &str, provider: &str| {
        run_cli(&["connections", "create", name, "--org", org, "--provider", provider, "--database", &db])
    };
    let (ok, _, _) = run_cli(&["users", "create", "ana", "--org", "other", "--database", &db, "--create"]);
    assert!(ok);
    let (ok, _, stderr) = create("bq", "acme", "bigquery");
    assert!(!ok && stderr.contains("there is no org"), "{stderr}");
    let (ok, _, _) = run_cli(&["users", "create", "ana", "--org", "acme", "--database", &db]);
    assert!(ok);
    for provider in ["bigquery", "snowflake", "redshift", "postgres", "databricks", "carto_dw"] {
        let (ok, stdout, stderr) = create(&format!("c_{provider}"), "acme", provider);
        assert!(ok, "{provider}: {stderr}");
        assert!(stdout.is_empty());
    }
    let (ok, _, stderr) = create("c_bigquery", "acme", "bigquery");
    assert!(!ok && stderr.contains("already has a connection"), "{stderr}");
    let (ok, _, stderr) = create("oracle", "acme", "oracle");
    assert!(!ok && stderr.contains("unknown provider"), "{stderr}");
}

#[test]
fn serve_refuses_postgres_without_a_shared_key() {
    let output = std::process::Command::new(support::binary())
        .args(["serve", "--database", "postgres://nobody@127.0.0.1:1/none", "--listen", "127.0.0.1:0"])
        .env_remove("LATCHKEY_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("LATCHKEY_SECRET_KEY must be set with PostgreSQL"), "{stderr}");
}

#[test]
fn help_lists_the_commands() {
    let (ok, stdout, _) = run_cli(&["--help"]);
    assert!(ok);
    for command in ["serve", "users", "connections"] {
        assert!(stdout.contains(command), "{stdout}");
    }
    let (ok, stdout, _) = run_cli(&["serve", "--help"]);
    assert!(ok);
    for flag in ["--listen", "--database", "--no-bootstrap", "LATCHKEY_LISTEN", "LATCHKEY_DATABASE_URL"] {
        assert!(stdout.contains(flag), "{flag} missing from:\n{stdout}");
    }
}

/// Every environment variable the binary reads, found in its source (a
/// flag's `env = "…"` or a name read directly), is in the `--help` of the
/// commands that read it, as the README promises.
#[test]
fn help_names_every_environment_variable() {
    let source: String = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    let mut variables: Vec<&str> = source
        .match_indices("\"LATCHKEY_")
        .map(|(at, _)| {
            let name = &source[at + 1..];
            &name[..name.find('"').unwrap()]
        })
        .collect();
    variables.push("RUST_LOG");
    variables.sort_unstable();
    variables.dedup();
    assert!(variables.len() > 20, "{variables:?}");
    let (_, serve, _) = run_cli(&["serve", "--help"]);
    let (_, gateway, _) = run_cli(&["gateway", "--help"]);
    for variable in variables {
        assert!(serve.contains(variable) || gateway.contains(variable), "{variable} is in no --help");
    }
    for text in [&serve, &gateway] {
        for always in ["LATCHKEY_SECRET_KEY", "RUST_LOG", "LATCHKEY_LOG_FORMAT"] {
            assert!(text.contains(always), "{always} missing from:\n{text}");
        }
    }
}

/// A one-shot command pointed at a SQLite file that does not exist (run in
/// the wrong directory, or with a mistyped path) refuses, naming the
/// absolute path, instead of making an empty database the server never
/// reads; `--create` makes it on purpose.
#[test]
fn one_shot_commands_refuse_a_database_that_is_not_there() {
    let dir = TempDir::new("cli-missing");
    let missing = dir.path().join("nowhere/latchkey.db");
    let url = format!("sqlite://{}", missing.display());
    let (ok, stdout, stderr) = run_cli(&["users", "create", "ana", "--org", "acme", "--database", &url]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains(&format!("there is no database at {}", missing.display())), "{stderr}");
    assert!(stderr.contains("--create"), "{stderr}");
    assert!(!missing.exists() && !dir.path().join("nowhere").exists(), "nothing was made");
    let (ok, _, stderr) =
        run_cli(&["connections", "create", "bq", "--org", "acme", "--provider", "bigquery", "--database", &url]);
    assert!(!ok && stderr.contains("there is no database at"), "{stderr}");

    // A relative path is named as the absolute path it stands for.
    let output = std::process::Command::new(support::binary())
        .args(["users", "create", "ana", "--org", "acme", "--database", "sqlite://relative.db"])
        .current_dir(dir.path())
        .env_remove("LATCHKEY_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(&format!("{}/relative.db", dir.path().display())), "{stderr}");

    let beside = dir.path().join("new.db");
    let url = format!("sqlite://{}", beside.display());
    let (ok, stdout, stderr) = run_cli(&["users", "create", "ana", "--org", "acme", "--database", &url, "--create"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("latchkey_uk_") && beside.exists());

    // The gateway reads the database serve writes: it never makes one.
    let (ok, _, stderr) = run_cli(&[
        "gateway",
        "--org",
        "acme",
        "--upstream",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &format!("sqlite://{}", missing.display()),
    ]);
    assert!(!ok && stderr.contains("there is no database at"), "{stderr}");
}

/// `serve` on a port that is taken fails before it creates anything: no
/// database, no key file, no admin key printed.
#[test]
fn serve_on_a_taken_port_creates_nothing() {
    let dir = TempDir::new("cli-taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let db = dir.path().join("latchkey.db");
    let output = std::process::Command::new(support::binary())
        .args(["serve", "--listen", &address, "--database", &format!("sqlite://{}", db.display())])
        .env_remove("LATCHKEY_SECRET_KEY")
        .env_remove("LATCHKEY_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stdout.contains("latchkey_uk_"), "{stdout}");
    assert!(stderr.contains(&format!("cannot listen on {address}")), "{stderr}");
    assert!(!db.exists() && !dir.path().join("latchkey.db.key").exists());
}

/// `--listen` takes host names, as operators write them.
#[test]
fn listen_takes_a_host_name() {
    let dir = TempDir::new("cli-listen");
    let server = support::Server::start_listening(&dir.sqlite_url(), "localhost:0", &dir.path().join("log"));
    assert!(server.url.starts_with("http://127.0.0.1:") || server.url.starts_with("http://[::1]:"), "{}", server.url);
    let (ok, _, stderr) = run_cli(&["serve", "--listen", "localhost", "--database", "memory://"]);
    assert!(!ok && stderr.contains("HOST:PORT"), "{stderr}");
    let (ok, _, stderr) = run_cli(&["serve", "--listen", ":8080", "--database", "memory://"]);
    assert!(!ok && stderr.contains("0.0.0.0:PORT"), "{stderr}");
}

/// An unreachable PostgreSQL fails the start within seconds, naming where
/// and why.
#[test]
fn an_unreachable_postgres_is_named_with_its_cause() {
    let started = std::time::Instant::now();
    let output = std::process::Command::new(support::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--database", "postgres://latchkey@127.0.0.1:9/tokens"])
        .env("LATCHKEY_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot connect to PostgreSQL at 127.0.0.1:9/tokens"), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "the cause: {stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8), "{:?}", started.elapsed());
}

/// Completions and manual pages come from the definitions that parse the
/// command line, so they name every command and flag there is.
#[test]
fn completions_and_manual_pages_cover_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (ok, script, stderr) = run_cli(&["completions", shell]);
        assert!(ok, "{shell}: {stderr}");
        for word in ["serve", "gateway", "rotate", "oidc-issuer", "metrics-listen", "log-format"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (ok, page, _) = run_cli(&["man"]);
    assert!(ok && page.starts_with(".ie") && page.contains(".TH latchkey 1"), "{page}");
    for command in ["serve", "gateway", "users", "connections", "keys"] {
        assert!(page.contains(command), "the main page lists {command}");
    }
    let (ok, page, _) = run_cli(&["man", "serve"]);
    assert!(ok && page.contains(".TH latchkey\\-serve 1") || page.contains(".TH latchkey-serve 1"), "{page}");
    for flag in ["listen", "oidc\\-issuer", "forward\\-auth\\-headers", "LATCHKEY_SECRET_KEY"] {
        assert!(page.contains(flag), "the serve page lacks {flag}");
    }
    let (ok, _, stderr) = run_cli(&["man", "nope"]);
    assert!(!ok && stderr.contains("the commands are serve, gateway"), "{stderr}");
}

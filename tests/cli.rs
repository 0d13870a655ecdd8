//! The command line of SPEC §10, end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{TempDir, run_cli};

#[test]
fn users_create_prints_the_key_as_the_only_line() {
    let dir = TempDir::new("cli-users");
    let db = dir.sqlite_url();
    let (ok, stdout, _) = run_cli(&["users", "create", "ana@example.com", "--org", "acme", "--database", &db]);
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

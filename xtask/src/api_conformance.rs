//! Schemathesis (from PyPI) against a live server: every check, every
//! phase, stateful runs through the document's links.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::architecture::workspace_root;
use crate::cargo;
use crate::server::Server;

/// The version the checks were last made to pass with.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

pub fn schemathesis(seconds: u32) -> Result<()> {
    let root = workspace_root();
    let schemathesis = crate::setup::python_tool(SCHEMATHESIS, "schemathesis")?;
    cargo(&["build", "--locked", "--package", "latchkey"], &[])?;
    let dir = std::env::temp_dir().join(format!("latchkey-schemathesis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let database = format!("sqlite://{}", dir.join("latchkey.db").display());
    // Loopback is exempt from the rate limiting of failed authentication:
    // the run sends many bad credentials on purpose (ignored_auth), and a
    // limited client would test nothing but 429s.
    let server = Server::start(
        &root.join("target/debug/latchkey"),
        &[
            "--database",
            &database,
            "--rate-limit-exempt",
            "127.0.0.1,::1",
            "--org",
            "default",
            "--forward-auth-headers",
            "nginx",
        ],
    )?;
    println!("\n$ schemathesis run {}/v3/openapi.json?include=all --checks all --max-time {seconds}", server.url);
    let status = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(root.join("tests/api/schemathesis.toml"))
        .args(["--no-color", "run"])
        .arg(format!("{}/v3/openapi.json?include=all", server.url))
        .args(["--checks", "all", "--max-time", &seconds.to_string(), "--seed", "20261127"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", server.key))
        .current_dir(&dir)
        .status()
        .context("cannot run schemathesis")?;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("schemathesis found failures ({status})");
    }
    Ok(())
}

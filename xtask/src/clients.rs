//! Clients generated from the served OpenAPI document, run against the real
//! binary: Python (openapi-python-client, PyPI) and TypeScript
//! (openapi-typescript and openapi-fetch, npm). Each goes through create,
//! list, update with If-Match, authorize and delete; a document that
//! generates a client that cannot do that fails here.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::architecture::workspace_root;
use crate::server::Server;
use crate::{cargo, run, setup};

/// The generator version the Python flow was written against.
const OPENAPI_PYTHON_CLIENT: &str = "openapi-python-client==0.29.1";

pub fn generated_clients() -> Result<()> {
    let root = workspace_root();
    cargo(&["build", "--locked", "--package", "latchkey"], &[])?;
    let generator = setup::python_tool(OPENAPI_PYTHON_CLIENT, "openapi-python-client")?;
    let typescript = setup::npm_packages("tests/clients/typescript", "openapi-fetch")?;
    let out = root.join("target/clients");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let database = format!("sqlite://{}", out.join("latchkey.db").display());
    let server = Server::start(&root.join("target/debug/latchkey"), &["--database", &database])?;

    // The document as a client generator fetches it (with the Python the
    // tools run on: no other HTTP client is assumed on the machine).
    let document = out.join("openapi.json");
    let python = root.join("target/tools/venv/bin/python");
    let fetch = "import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())";
    let status = Command::new(&python)
        .args(["-c", fetch])
        .arg(format!("{}/v3/openapi.json", server.url))
        .arg(&document)
        .status()
        .context("cannot run python")?;
    if !status.success() {
        bail!("could not fetch {}/v3/openapi.json", server.url);
    }
    let envs = [("LATCHKEY_URL", server.url.clone()), ("LATCHKEY_KEY", server.key.clone())];

    let config = root.join("tests/clients/python/generator.yml");
    let generator = generator.display().to_string();
    run(
        &generator,
        &[
            "generate",
            "--path",
            &document.display().to_string(),
            "--output-path",
            &out.join("python").display().to_string(),
            "--overwrite",
            "--fail-on-warning",
            "--config",
            &config.display().to_string(),
        ],
        &out,
    )?;
    println!("\n$ python tests/clients/python/flow.py");
    let status = Command::new(&python)
        .arg(root.join("tests/clients/python/flow.py"))
        .env("PYTHONPATH", out.join("python"))
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .status()
        .context("cannot run python")?;
    if !status.success() {
        bail!("the generated Python client failed ({status})");
    }

    for script in ["generate", "build", "flow"] {
        println!("\n$ npm run {script} (tests/clients/typescript)");
        let status = Command::new("npm")
            .args(["run", "--silent", script])
            .current_dir(&typescript)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .status()
            .context("cannot run npm")?;
        if !status.success() {
            bail!("the generated TypeScript client failed at `npm run {script}` ({status})");
        }
    }
    Ok(())
}

//! What the tests need beyond Rust, installed when missing so that
//! `cargo xtask test` works on a fresh machine with nothing set up by hand:
//! Debian packages (after one `apt-get update`), npm packages in each Node
//! test's own folder, and Python tools in a virtual environment under
//! `target/tools`. Each step says what it does; a step that cannot install
//! fails with what to install by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::architecture::workspace_root;
use crate::run;

/// Debian packages the tests need, by a file each installs.
const DEBIAN_PACKAGES: [(&str, &str, &str); 5] = [
    ("nginx", "/usr/sbin/nginx", "forward-auth behind nginx (tests/enforcement.rs)"),
    ("caddy", "/usr/bin/caddy", "forward-auth behind Caddy (tests/enforcement.rs)"),
    ("libclang-dev", "libclang", "building PostgreSQL's parser for the query oracle (crates/oracle)"),
    ("chromium", "/usr/bin/chromium", "the web page in a browser (tests/browser)"),
    ("prometheus", "/usr/bin/prometheus", "scraping /metrics (tests/metrics.rs)"),
];

fn has_libclang() -> bool {
    std::fs::read_dir("/usr/lib").into_iter().flatten().flatten().any(|entry| {
        entry.file_name().to_string_lossy().starts_with("llvm-") && entry.path().join("lib/libclang.so").exists()
    })
}

/// Installs the Debian packages that are missing.
pub fn debian_packages() -> Result<()> {
    let missing: Vec<(&str, &str)> = DEBIAN_PACKAGES
        .iter()
        .filter(
            |(package, file, _)| if *package == "libclang-dev" { !has_libclang() } else { !Path::new(file).exists() },
        )
        .map(|(package, _, why)| (*package, *why))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("\nDebian packages the tests need and this machine lacks:");
    for (package, why) in &missing {
        println!("  {package}: {why}");
    }
    let names: Vec<&str> = missing.iter().map(|(package, _)| *package).collect();
    let by_hand = format!("install them by hand: apt-get update && apt-get install -y {}", names.join(" "));
    if Command::new("apt-get").arg("--version").output().is_err() {
        bail!("apt-get is not available here; {by_hand}");
    }
    let root = workspace_root();
    // A fresh machine has no package lists yet.
    run("apt-get", &["update", "-qq"], &root).with_context(|| by_hand.clone())?;
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(&names);
    println!("\n$ apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .current_dir(&root)
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("apt-get install failed ({status}); {by_hand}");
    }
    // The packages start a system nginx and Caddy on port 80 where an init
    // system runs; the tests run their own.
    let _ = Command::new("nginx").args(["-s", "stop"]).output();
    let _ = Command::new("caddy").arg("stop").output();
    Ok(())
}

/// Installs the npm packages of the Node project in `folder` (relative to
/// the workspace) from its lock file, unless `marker` (a path under its
/// `node_modules`) shows they are there.
pub fn npm_packages(folder: &str, marker: &str) -> Result<PathBuf> {
    let dir = workspace_root().join(folder);
    if !dir.join("node_modules").join(marker).exists() {
        println!("\ninstalling the npm packages of {folder} from its package-lock.json");
        run("npm", &["ci", "--no-audit", "--no-fund"], &dir)
            .with_context(|| format!("npm could not install {folder}'s packages: is Node.js with npm installed?"))?;
    }
    Ok(dir)
}

/// The path of `program` from the Python package `requirement` (as
/// `name==version`), installed in the project's own virtual environment
/// (`target/tools/venv`) when it is not there yet.
pub fn python_tool(requirement: &str, program: &str) -> Result<PathBuf> {
    let root = workspace_root();
    let venv = root.join("target/tools/venv");
    let python = venv.join("bin/python");
    let tool = venv.join("bin").join(program);
    if !python.exists() {
        println!("\ncreating a Python virtual environment for the test tools in target/tools/venv");
        run("python3", &["-m", "venv", &venv.display().to_string()], &root)
            .context("cannot create a virtual environment: install Python 3 with venv (Debian: python3-venv)")?;
    }
    let installed = Command::new(&python)
        .args(["-m", "pip", "show", "--quiet", requirement.split("==").next().unwrap_or(requirement)])
        .output()
        .is_ok_and(|output| output.status.success());
    let pinned = Command::new(&python)
        .args(["-m", "pip", "freeze"])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).lines().any(|line| line == requirement));
    if !(installed && pinned && tool.exists()) {
        println!("\ninstalling {requirement} from PyPI into target/tools/venv");
        run(&python.display().to_string(), &["-m", "pip", "install", "--quiet", requirement], &root)
            .with_context(|| format!("pip could not install {requirement}"))?;
    }
    Ok(tool)
}

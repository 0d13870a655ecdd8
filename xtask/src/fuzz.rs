//! Fuzzing with cargo-fuzz (libFuzzer) on the machine's stable toolchain:
//! `RUSTC_BOOTSTRAP=1` lets it take the nightly flags cargo-fuzz passes.
//! The targets live in `fuzz/`; each run starts from the corpus committed in
//! `fuzz/corpus/<target>` and adds what it finds there.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::architecture::workspace_root;
use crate::run;

/// Every fuzz target, in `fuzz/fuzz_targets/`.
pub const TARGETS: [&str; 7] = ["referer", "source", "sql", "sql_deep", "sql_oracle", "token_value", "request_body"];

pub fn fuzz(seconds: u32) -> Result<()> {
    let root = workspace_root();
    let installed = Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !installed {
        run("cargo", &["install", "cargo-fuzz", "--locked"], &root)?;
    }
    let fuzz_dir = root.join("fuzz");
    for target in TARGETS {
        println!("\n$ cargo fuzz run {target} -- -max_total_time={seconds}");
        let status = Command::new("cargo")
            .args(["fuzz", "run", "--sanitizer", "none", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            // A single input that takes a second is a hang to fix.
            .args(["-timeout=5", "-max_len=16384", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&fuzz_dir)
            .status()
            .context("cannot run cargo fuzz")?;
        if !status.success() {
            bail!("fuzz target {target} failed ({status}); the input is under fuzz/artifacts/{target}/");
        }
    }
    Ok(())
}

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
    let logs = root.join("target/fuzz-logs");
    std::fs::create_dir_all(&logs).context("cannot create target/fuzz-logs")?;
    for target in TARGETS {
        // libFuzzer prints a line for every input it keeps: hundreds of
        // thousands a run, which would bury the test results of the whole
        // run in CI's log. They go to a file; the final statistics and, on
        // a failure, the end of the file are printed.
        let log_path = logs.join(format!("{target}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        println!("\n$ cargo fuzz run {target} -- -max_total_time={seconds}  (output in {})", log_path.display());
        let status = Command::new("cargo")
            .args(["fuzz", "run", "--sanitizer", "none", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            // A single input that takes a second is a hang to fix.
            .args(["-timeout=5", "-max_len=16384", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&fuzz_dir)
            .stdout(log.try_clone().context("cannot share the fuzz log")?)
            .stderr(log)
            .status()
            .context("cannot run cargo fuzz")?;
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if !status.success() {
            let lines: Vec<&str> = text.lines().collect();
            println!("{}", lines[lines.len().saturating_sub(80)..].join("\n"));
            bail!("fuzz target {target} failed ({status}); the input is under fuzz/artifacts/{target}/");
        }
        for line in text.lines().filter(|line| line.starts_with("stat::") || line.starts_with("Done ")) {
            println!("  {line}");
        }
    }
    Ok(())
}

//! Starting `latchkey serve` for the verbs that test a live server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A running server, stopped when dropped.
pub struct Server {
    pub url: String,
    pub key: String,
    child: Child,
}

impl Server {
    /// Starts `binary serve` on a free port with `args`, and reads the admin
    /// key its first-run bootstrap prints.
    pub fn start(binary: &Path, args: &[&str]) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("LATCHKEY_SECRET_KEY", "eHRhc2stb25seS1zZXJ2ZXIta2V5LTMyLWJ5dGVzISE=")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut key = None;
        loop {
            let Ok(line) = received.recv_timeout(Duration::from_secs(60)) else {
                let _ = child.kill();
                bail!("the server did not start");
            };
            if line.starts_with("latchkey_uk_") {
                key = Some(line);
            } else if let Some(url) = line.strip_prefix("latchkey listening on ") {
                let key = key.context("no admin key: was the database new?")?;
                return Ok(Self { url: url.to_owned(), key, child });
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The README's walkthrough, run as written against the real server, so
//! that it cannot rot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::{Server, TempDir};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap()
}

/// The `sh` blocks of the section titled `title`.
fn shell_blocks(markdown: &str, title: &str) -> Vec<String> {
    let section = markdown.split(&format!("\n## {title}\n")).nth(1).expect("the section exists");
    let section = section.split("\n## ").next().unwrap_or(section);
    section.split("```sh\n").skip(1).map(|block| block.split("```").next().unwrap_or("").to_owned()).collect()
}

#[test]
fn the_two_set_up_commands_are_there() {
    let blocks = shell_blocks(&readme(), "Set up");
    assert_eq!(
        blocks.iter().map(|b| b.trim()).collect::<Vec<_>>(),
        ["cargo run --release -p latchkey -- serve", "cargo xtask test"]
    );
}

#[test]
fn the_walkthrough_works_as_written() {
    let dir = TempDir::new("readme");
    let server = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("server.log"));
    let key = server.admin_key.clone().unwrap();
    let blocks = shell_blocks(&readme(), "Walkthrough");
    assert!(blocks.len() >= 5, "the walkthrough has its steps");
    // The first block only names the address and the key, which the test
    // provides; everything after it runs exactly as written.
    assert!(blocks[0].contains("export LATCHKEY=http://127.0.0.1:8080"), "the README names the default address");
    let script = format!("set -euo pipefail\n{}", blocks[1..].join("\n"));
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("LATCHKEY", &server.url)
        .env("KEY", &key)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "the walkthrough failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let allowed = stdout.find(r#"{"allowed":true,"reason":null}"#).expect("the first authorize allows");
    let deleted = stdout[allowed..].find("204").expect("the delete answers 204") + allowed;
    assert!(
        stdout[deleted..].contains(r#"{"allowed":false,"reason":"token_unknown"}"#),
        "the authorize after the delete refuses:\n{stdout}"
    );
    assert!(stdout.contains(r#""name":"my first map""#), "the list shows the token:\n{stdout}");
}

//! The crate dependency rules of `docs/architecture.md`, checked against
//! the resolved dependency graph.
//!
//! The rules are read from the document itself, so the page and the check
//! cannot drift apart. Two blocks:
//!
//! - `workspace-edges`, an allowlist: for every crate of the workspace, the
//!   workspace crates it may depend on directly (normal dependencies). An
//!   edge not listed, or a crate not listed at all, breaks it.
//! - `dependency-rules`: a rule forbids a crate from reaching others
//!   (external crates, mostly) directly or through any chain of normal
//!   (non-dev) dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map_or(manifest_dir.clone(), PathBuf::from)
}

/// The lines of the fenced block `name` of the document, comments and
/// blank lines left out, each split at `separator` into a crate and a list.
fn block_lines(document: &str, name: &str, separator: &str) -> Result<Vec<(String, Vec<String>)>> {
    let block = document
        .split(&format!("```{name}"))
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .with_context(|| format!("docs/architecture.md has no ```{name} block"))?;
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (krate, list) = line.split_once(separator).with_context(|| format!("cannot read {line:?}"))?;
            let list = list.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            Ok((krate.trim().to_owned(), list))
        })
        .collect()
}

/// `crate -> crates it must not depend on`, from the document.
pub fn rules(document: &str) -> Result<BTreeMap<String, Vec<String>>> {
    Ok(block_lines(document, "dependency-rules", "must not depend on")?.into_iter().collect())
}

/// Every package `krate` reaches through normal dependencies, by name, with
/// features resolved as when `krate` is built on its own. (`cargo tree`
/// rather than `cargo metadata`: the latter's graph ignores the feature
/// resolver and lists optional dependencies that are never built.)
pub fn normal_closure(krate: &str) -> Result<BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", krate])
        .current_dir(workspace_root())
        .output()
        .context("cannot run cargo tree")?;
    if !output.status.success() {
        bail!("cargo tree -p {krate} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout)?;
    let mut names: BTreeSet<String> =
        text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect();
    names.remove(krate);
    Ok(names)
}

/// `crate -> workspace crates it may depend on directly`, from the
/// document's `workspace-edges` block (`crate: a, b`; `crate:` for none).
pub fn allowed_edges(document: &str) -> Result<BTreeMap<String, BTreeSet<String>>> {
    Ok(block_lines(document, "workspace-edges", ":")?
        .into_iter()
        .map(|(krate, allowed)| (krate, allowed.into_iter().collect()))
        .collect())
}

fn cargo_tree(args: &[&str]) -> Result<BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--locked", "--prefix", "none", "--format", "{p}"])
        .args(args)
        .current_dir(workspace_root())
        .output()
        .context("cannot run cargo tree")?;
    if !output.status.success() {
        bail!("cargo tree {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout)?;
    Ok(text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect())
}

/// The crates of the workspace (the `xtask` crate aside).
pub fn workspace_crates() -> Result<BTreeSet<String>> {
    let mut crates = cargo_tree(&["--workspace", "--depth", "0", "-e", "normal"])?;
    crates.retain(|name| name.starts_with("latchkey"));
    Ok(crates)
}

/// The workspace crates `krate` depends on directly (normal dependencies).
pub fn direct_workspace_deps(krate: &str) -> Result<BTreeSet<String>> {
    let mut deps = cargo_tree(&["-p", krate, "--depth", "1", "-e", "normal"])?;
    deps.remove(krate);
    deps.retain(|name| name.starts_with("latchkey"));
    Ok(deps)
}

/// The edges `actual` has that `allowed` does not list, and the crates it
/// does not list at all, in words.
fn edge_violations(
    allowed: &BTreeMap<String, BTreeSet<String>>,
    actual: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut broken = Vec::new();
    for (krate, deps) in actual {
        match allowed.get(krate) {
            None => broken.push(format!("{krate} is not in the workspace-edges allowlist")),
            Some(allowed) => {
                for dep in deps.iter().filter(|d| !allowed.contains(*d)) {
                    broken.push(format!("{krate} depends on {dep}, which the allowlist does not allow"));
                }
            }
        }
    }
    broken
}

/// Every broken rule of `docs/architecture.md`, in words.
pub fn broken_rules() -> Result<Vec<String>> {
    let document = std::fs::read_to_string(workspace_root().join("docs/architecture.md"))?;
    let mut actual = BTreeMap::new();
    for krate in workspace_crates()? {
        let deps = direct_workspace_deps(&krate)?;
        actual.insert(krate, deps);
    }
    let mut broken = edge_violations(&allowed_edges(&document)?, &actual);
    for (krate, forbidden) in rules(&document)? {
        let reached = normal_closure(&krate)?;
        for bad in forbidden.iter().filter(|f| reached.contains(*f)) {
            broken.push(format!("{krate} depends on {bad}"));
        }
    }
    Ok(broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_dependencies_follow_docs_architecture() {
        let broken = broken_rules().unwrap();
        assert!(broken.is_empty(), "docs/architecture.md is broken:\n{}", broken.join("\n"));
    }

    #[test]
    fn the_rules_are_read_as_written() {
        let doc = "intro\n```dependency-rules\n# comment\na must not depend on b, c\nd must not depend on e\n```\n";
        let rules = rules(doc).unwrap();
        assert_eq!(rules["a"], ["b", "c"]);
        assert_eq!(rules["d"], ["e"]);
        assert!(super::rules("no block").is_err());
    }

    #[test]
    fn an_edge_the_allowlist_does_not_list_would_be_seen() {
        let document = std::fs::read_to_string(workspace_root().join("docs/architecture.md")).unwrap();
        let mut allowed = allowed_edges(&document).unwrap();
        let app = direct_workspace_deps("latchkey-app").unwrap();
        assert!(app.contains("latchkey-ports"), "the real graph is read");
        let actual = BTreeMap::from([("latchkey-app".to_owned(), app)]);
        assert!(edge_violations(&allowed, &actual).is_empty());
        // Take the edge out of the allowlist, as if the document had
        // forgotten it, and the check fails.
        allowed.get_mut("latchkey-app").unwrap().remove("latchkey-ports");
        assert_eq!(
            edge_violations(&allowed, &actual),
            ["latchkey-app depends on latchkey-ports, which the allowlist does not allow"]
        );
        allowed.remove("latchkey-app");
        assert_eq!(edge_violations(&allowed, &actual), ["latchkey-app is not in the workspace-edges allowlist"]);
    }

    #[test]
    fn a_broken_rule_would_be_seen() {
        // The domain reaches sqlparser; a rule against it must fail, which
        // shows the closure sees real edges.
        assert!(normal_closure("latchkey-domain").unwrap().contains("sqlparser"));
        assert!(normal_closure("latchkey-app").unwrap().contains("latchkey-domain"));
        assert!(!normal_closure("latchkey-app").unwrap().contains("mockall"), "dev-dependencies do not count");
        assert!(normal_closure("no-such-crate").is_err(), "a rule for a crate that does not exist fails");
    }
}

//! nginx as the tests and benchmarks run it: the configurations that
//! docs/deploy.md documents, inside a main configuration that keeps every
//! file nginx writes in one folder, so that it runs unprivileged of any
//! system installation and beside other instances.

use std::path::Path;

/// The fenced block of `language` (`nginx`, `caddyfile`) in the deployment
/// guide at `deploy_md`.
///
/// # Panics
/// When the file or the block is missing: the guide is what is tested.
#[must_use]
pub fn documented(deploy_md: &Path, language: &str) -> String {
    let deploy = std::fs::read_to_string(deploy_md).unwrap_or_else(|e| panic!("{}: {e}", deploy_md.display()));
    let block = deploy.split(&format!("```{language}\n")).nth(1).unwrap_or_else(|| panic!("no {language} block"));
    block.split("```").next().unwrap_or_default().to_owned()
}

/// A whole nginx configuration holding `servers` (text of the `http`
/// block), with its pid file, log and temporary folders in `dir`, in the
/// foreground, without an access log. `user root` keeps the workers able to
/// use `dir` when started as root (nginx ignores it, with a warning,
/// otherwise).
#[must_use]
pub fn config(dir: &Path, workers: &str, servers: &str) -> String {
    let temp = |name: &str| dir.join(name).display().to_string();
    format!(
        "user root;\nworker_processes {workers};\ndaemon off;\npid {pid};\nerror_log {log} info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {body};\n  proxy_temp_path {proxy};\n  \
         fastcgi_temp_path {fcgi};\n  uwsgi_temp_path {uwsgi};\n  scgi_temp_path {scgi};\n{servers}\n}}\n",
        pid = temp("nginx.pid"),
        log = temp("error.log"),
        body = temp("body"),
        proxy = temp("proxy"),
        fcgi = temp("fcgi"),
        uwsgi = temp("uwsgi"),
        scgi = temp("scgi"),
    )
}

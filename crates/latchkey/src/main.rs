//! The `latchkey` binary, the composition root: it reads one typed
//! configuration, builds the adapters the database URL names, injects them
//! into the use cases and serves (SPEC §10).

mod cli;
mod database;
mod gateway;
mod secret_key;
mod serve;

use anyhow::Result;

/// mimalloc rather than the system allocator: the hot path allocates small
/// objects per request, and mimalloc serves those faster and with less
/// contention between worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::Parser;

use crate::cli::{Cli, Command, ConnectionsCommand, KeysCommand, LogFormat, UsersCommand};

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // Serving logs what it does; the one-shot commands keep standard error
    // for warnings, so their standard output is only what they print.
    let default_filter = if matches!(cli.command, Command::Serve(_) | Command::Gateway(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        // Fields at the top level and the span's fields beside them, so a
        // pipeline reads `request_id` without digging.
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }

    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Gateway(args) => gateway::run(*args).await,
        Command::Users { command: UsersCommand::Create(args) } => cli::create_user(args).await,
        Command::Connections { command: ConnectionsCommand::Create(args) } => cli::create_connection(args).await,
        Command::Keys { command: KeysCommand::Rotate(args) } => cli::rotate_keys(args).await,
        Command::Completions { shell } => {
            cli::completions(shell);
            Ok(())
        }
        Command::Man { command } => cli::man(command.as_deref()),
    }
}

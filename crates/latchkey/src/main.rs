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

use crate::cli::{Cli, Command, ConnectionsCommand, UsersCommand};

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // Serving logs what it does; the one-shot commands keep standard error
    // for warnings, so their standard output is only what they print.
    let default_filter = if matches!(cli.command, Command::Serve(_) | Command::Gateway(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).init();

    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Gateway(args) => gateway::run(*args).await,
        Command::Users { command: UsersCommand::Create(args) } => cli::create_user(args).await,
        Command::Connections { command: ConnectionsCommand::Create(args) } => cli::create_connection(args).await,
    }
}

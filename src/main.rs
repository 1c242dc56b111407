//! The `ceryx` binary: subcommands and wiring only.

use anyhow::Context;
use ceryx::config::{ProxyArgs, StoreArgs};
use ceryx::proxy::{self, Proxy};
use ceryx::store::{MemoryStore, RedisStore, RouteStore};
use clap::{Args, Parser, Subcommand};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Dynamic reverse proxy: every public host name maps to a target, and a route change
/// is served at once.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log at debug level.
    #[arg(long, global = true, env = "CERYX_DEBUG", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    debug: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process (the proxy, for now); in-memory routes unless Redis is set.
    Run(ProxyCommand),
    /// The data plane alone; replicas share routes through Redis.
    Proxy(ProxyCommand),
}

#[derive(Args)]
struct ProxyCommand {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let level = if cli.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    // One crypto provider for every TLS user in the process (Redis over rediss://).
    let _ = rustls::crypto::ring::default_provider().install_default();

    match cli.command {
        Command::Run(cmd) | Command::Proxy(cmd) => run_proxy(cmd).await,
    }
}

async fn run_proxy(cmd: ProxyCommand) -> anyhow::Result<()> {
    let store: Arc<dyn RouteStore> = match cmd.store.redis() {
        Some(redis) => {
            tracing::info!(prefix = %redis.prefix, "routes in redis");
            Arc::new(RedisStore::connect(&redis).context("redis settings")?)
        }
        None => {
            tracing::info!(
                "routes in memory (set CERYX_REDIS_HOST or CERYX_REDIS_URL to share them)"
            );
            Arc::new(MemoryStore::default())
        }
    };
    let addr = cmd.proxy.http_addr;
    let proxy = Proxy::new(store, cmd.proxy)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "proxy listening");

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    proxy::serve(listener, proxy, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

/// Cancels `token` on SIGTERM or Ctrl-C.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return token.cancel();
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = ctrl_c => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing in-flight requests");
    token.cancel();
}

//! The `ceryx` binary: subcommands and wiring only.

use anyhow::Context;
use ceryx::certificate;
use ceryx::config::{
    ApiArgs, ControllerArgs, ListenArgs, OpsArgs, ProxyArgs, StoreArgs, UpstreamArgs,
};
use ceryx::proxy::tls::Certificates;
use ceryx::proxy::{self, Proxy};
use ceryx::store::{MemoryStore, RedisStore, RouteStore};
use ceryx::targets::TargetRules;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

/// mimalloc: the proxy allocates and frees small buffers on every request, where it is
/// measurably faster than glibc's allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Proxy and REST API in one process; in-memory routes unless Redis is set.
    Run(RunCommand),
    /// The data plane alone; replicas share routes through Redis.
    Proxy(ProxyCommand),
    /// The Ceryx-compatible REST API alone.
    Api(ApiCommand),
    /// The Kubernetes controller alone: reconciles CeryxRoute resources into the store.
    Controller(ControllerCommand),
    /// Print the CeryxRoute CustomResourceDefinition (YAML), for `kubectl apply -f -`.
    Crd,
}

#[derive(Args)]
struct ControllerCommand {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    controller: ControllerArgs,
    #[command(flatten)]
    ops: OpsArgs,
}

#[derive(Args)]
struct RunCommand {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    ops: OpsArgs,
}

#[derive(Args)]
struct ProxyCommand {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    ops: OpsArgs,
}

#[derive(Args)]
struct ApiCommand {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    upstream: UpstreamArgs,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    ops: OpsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Crd = cli.command {
        print!("{}", ceryx::controller::crd_yaml()?);
        return Ok(());
    }
    let level = if cli.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // rustls warns of every client that sends an IP address as SNI (wrk,
                // some probes): a log line per handshake that clients control.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(format!("{level},rustls=error"))
                }),
        )
        // stdout carries the access log alone, one JSON object per line.
        .with_writer(std::io::stderr)
        .init();
    // One crypto provider for every TLS user in the process (Redis over rediss://).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Each client connection holds a file descriptor, often two: the soft open-file limit
    // (often 1024) is raised to the hard one, as Go's runtime does; the default
    // CERYX_MAX_CONNECTIONS is taken from it.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match cli.command {
        Command::Run(cmd) => {
            let store = prepare(&cmd.store, &cmd.ops).await?;
            let backlog = cmd.listen.listen_backlog;
            // Targets naming the proxy's own listeners are refused: they would loop.
            let targets = TargetRules {
                deny: cmd.proxy.upstream.upstream_deny.0.clone(),
                listeners: [Some(cmd.proxy.http_addr), cmd.proxy.https_addr]
                    .into_iter()
                    .flatten()
                    .collect(),
            };
            let proxy = start_proxy(store.clone(), cmd.proxy, backlog, shutdown.clone()).await?;
            let api = start_api(store.clone(), cmd.api, targets, backlog, shutdown.clone()).await?;
            start_ops(store, &cmd.ops, shutdown).await?;
            let (proxy, api) = tokio::join!(proxy, api);
            proxy?;
            api??;
        }
        Command::Proxy(cmd) => {
            let store = prepare(&cmd.store, &cmd.ops).await?;
            let backlog = cmd.listen.listen_backlog;
            let proxy = start_proxy(store.clone(), cmd.proxy, backlog, shutdown.clone()).await?;
            start_ops(store, &cmd.ops, shutdown).await?;
            proxy.await?;
        }
        Command::Api(cmd) => {
            let store = prepare(&cmd.store, &cmd.ops).await?;
            let backlog = cmd.listen.listen_backlog;
            let targets = TargetRules {
                deny: cmd.upstream.upstream_deny.0,
                listeners: Vec::new(),
            };
            let api = start_api(store.clone(), cmd.api, targets, backlog, shutdown.clone()).await?;
            start_ops(store, &cmd.ops, shutdown).await?;
            api.await??;
        }
        Command::Controller(cmd) => {
            anyhow::ensure!(
                cmd.store.redis().is_some(),
                "the controller needs Redis (CERYX_REDIS_HOST, CERYX_REDIS_URL or CERYX_REDIS_SENTINELS): the proxies read routes from there"
            );
            let store = prepare(&cmd.store, &cmd.ops).await?;
            start_ops(store.clone(), &cmd.ops, shutdown.clone()).await?;
            let client = kube::Client::try_default()
                .await
                .context("no Kubernetes API: neither in a cluster nor a kubeconfig")?;
            run_controller(client, store, cmd.controller, shutdown).await?;
        }
        Command::Crd => unreachable!("answered above"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs the controller, as the elected leader unless election is off; a replica that
/// lost the Lease exits (non-zero), so that it restarts as a follower.
async fn run_controller(
    client: kube::Client,
    store: Arc<dyn RouteStore>,
    args: ControllerArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use ceryx::controller::{self, leader, reconcile::Context};
    let install = match &args.install_id {
        Some(id) => id.clone(),
        None => {
            // The kube-system namespace's UID names the cluster (it lives as long as it).
            let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                kube::Api::all(client.clone());
            let cluster = namespaces
                .get("kube-system")
                .await
                .context("reading namespace kube-system (the cluster's identity; or set CERYX_INSTALL_ID)")?
                .metadata
                .uid
                .unwrap_or_default();
            format!("{cluster}/{}/{}", args.lease_namespace, args.lease_name)
        }
    };
    let mut ctx = Context::new(
        client.clone(),
        store,
        args.cluster_domain.clone(),
        args.ingress_class.clone(),
        install,
    );
    ctx.publish = controller::reconcile::Publish {
        addresses: args.publish_address.clone(),
        service: args.publish_service.clone(),
    };
    ctx.gateway_controller = args.gateway_controller_name.clone();
    tracing::info!(class = %ctx.class, install = %ctx.install, "controller starting");
    const CRD_HINT: &str =
        "controller (is the CeryxRoute CRD installed? `ceryx crd | kubectl apply -f -`)";
    if !args.leader_election {
        return controller::run(ctx, shutdown).await.context(CRD_HINT);
    }
    let elector = leader::Elector::new(
        client,
        &args.lease_namespace,
        &args.lease_name,
        &args.identity(),
        leader::Timing::new(std::time::Duration::from_secs(args.lease_duration)),
    );
    leader::lead(elector, shutdown, |leadership, stop| {
        ctx.leadership = leadership;
        controller::run(ctx, stop)
    })
    .await?
    .context(CRD_HINT)
}

/// Installs the metrics recorder (with StatsD if configured), then opens the store.
async fn prepare(store: &StoreArgs, ops: &OpsArgs) -> anyhow::Result<Arc<dyn RouteStore>> {
    ceryx::telemetry::install(ops.statsd_addr.as_deref())?;
    open_store(store).await
}

/// How long start-up waits for Redis before serving anyway (with nothing known, every
/// host gets 500 until Redis answers).
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn RouteStore>> {
    Ok(match args.redis() {
        Some(redis) => {
            tracing::info!(prefix = %redis.prefix, "routes in redis");
            let store = RedisStore::connect(&redis).context("redis settings")?;
            let deadline = std::time::Instant::now() + STORE_WAIT;
            while let Err(e) = store.ping().await {
                if std::time::Instant::now() >= deadline {
                    tracing::warn!(error = %e, "redis unreachable; starting anyway");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Arc::new(store)
        }
        None => {
            tracing::info!(
                "routes in memory (set CERYX_REDIS_HOST, CERYX_REDIS_URL or CERYX_REDIS_SENTINELS to share them)"
            );
            Arc::new(MemoryStore::default())
        }
    })
}

/// A listener on `addr` whose kernel queue holds `backlog` connections
/// (`CERYX_LISTEN_BACKLOG`; `TcpListener::bind` would fix it at 128).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted process can listen at once, beside the
    // connections of its predecessor still in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

async fn start_proxy(
    store: Arc<dyn RouteStore>,
    args: ProxyArgs,
    backlog: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (addr, https) = (args.http_addr, args.https_addr);
    let default = match https {
        Some(_) => Some(default_certificate(&args)?),
        None => None,
    };
    let proxy = Proxy::new(store, args.config())?;
    let certificates = default.map(|default| Certificates::new(proxy.routes().clone(), default));
    let listeners = proxy::Listeners {
        http: addr,
        https: https.zip(certificates),
        backlog,
    };
    let workers = args.workers;
    let served = proxy::serve_workers(proxy, listeners, shutdown)?;
    tracing::info!(%addr, ?https, backlog, workers, "proxy listening");
    Ok(tokio::spawn(served))
}

/// The certificate for hosts without their own: the configured files, else a
/// self-signed one (a misconfigured default stops the start, as nginx does).
fn default_certificate(args: &ProxyArgs) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let key = match (&args.ssl_default_certificate, &args.ssl_default_key) {
        (Some(certificate), Some(key)) => certificate::load(certificate, key)
            .context("CERYX_SSL_DEFAULT_CERTIFICATE / CERYX_SSL_DEFAULT_KEY")?,
        (None, None) => {
            tracing::info!("no default certificate configured: serving a self-signed one");
            certificate::self_signed()?
        }
        _ => anyhow::bail!(
            "set both CERYX_SSL_DEFAULT_CERTIFICATE and CERYX_SSL_DEFAULT_KEY, or neither"
        ),
    };
    Ok(certificate::server_config(key))
}

async fn start_api(
    store: Arc<dyn RouteStore>,
    args: ApiArgs,
    targets: TargetRules,
    backlog: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let addr = args.api_addr;
    let open = args.api_token.as_deref().is_none_or(str::is_empty);
    if open && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the REST API listens beyond loopback without CERYX_API_TOKEN: anyone who reaches it can reroute every host");
    }
    let listener = listen(addr, backlog).with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, auth = !open, "REST API listening");
    let router = ceryx::api::router(store, args.api_token, targets);
    Ok(tokio::spawn(ceryx::api::serve(listener, router, shutdown)))
}

/// Serves the ops endpoints (probes and metrics) on `CERYX_METRICS_ADDR`, if set, until
/// shutdown; last, so a pod is not reported up before its other listeners are.
async fn start_ops(
    store: Arc<dyn RouteStore>,
    args: &OpsArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(statsd) = &args.statsd_addr {
        tracing::info!(%statsd, "metrics to StatsD");
    }
    let Some(addr) = args.metrics_addr else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "ops endpoints listening");
    let router = ceryx::ops::standalone(store);
    tokio::spawn(async move {
        if let Err(e) = ceryx::api::serve(listener, router, shutdown).await {
            tracing::error!(error = %e, "ops listener failed");
        }
    });
    Ok(())
}

/// Cancels `token` on SIGTERM or Ctrl-C.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
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

//! `oxcd`: starts one member with etcd's flags.

use oxcd_server::config::{parse_flags, Config, FlagError};
use oxcd_server::server::EtcdServer;

fn init_logging(cfg: &Config) {
    if let Err(e) = oxcd_server::logging::init(&cfg.log_level, &cfg.log_outputs) {
        eprintln!("oxcd: failed to open --log-outputs: {e}");
        std::process::exit(1);
    }
}

/// Printed after a command-line error, where etcd prints its short usage.
const USAGE: &str = "Usage:

  oxcd [flags]
    Start an oxcd server.

  oxcd --version
    Show the version of oxcd.

  oxcd -h | --help
    Show the help information about oxcd.
";

/// Prints a flag error where etcd prints it and exits with etcd's code.
fn exit_with(e: &FlagError) -> ! {
    match e {
        FlagError::Help(text) => print!("{text}"),
        FlagError::CommandLine(_) => eprint!("{e}\n{USAGE}"),
        FlagError::Verify(_) | FlagError::Shadowed(_) => eprintln!("{e}"),
    }
    std::process::exit(e.exit_code())
}

fn main() {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let flags = parse_flags(&args, &env).unwrap_or_else(|e| exit_with(&e));
    if flags.version {
        println!("oxcd Version: {}", env!("CARGO_PKG_VERSION"));
        println!("etcd API Version: {}", oxcd_server::ETCD_VERSION);
        println!(
            "Rust Version: {}",
            option_env!("RUSTC_VERSION").unwrap_or("stable")
        );
        println!(
            "OS/Arch: {}/{}",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        return;
    }
    let config_file = flags.config_file.clone();
    let ignored_keys = flags.config_file_ignored.clone();
    let mut cfg = Config::from_flags(flags)
        .unwrap_or_else(|e| exit_with(&FlagError::Verify(format!("{e:#}"))));
    init_logging(&cfg);
    // Failpoint builds only: configured from FAILPOINTS, for as long as the process runs.
    #[cfg(feature = "failpoints")]
    let _failpoints = oxcd_server::failpoints::setup();
    if let Some(path) = config_file {
        tracing::info!(
            path = %path,
            "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"
        );
        for key in ignored_keys {
            tracing::warn!(path = %path, key = %key, "configuration key not supported by oxcd; ignored");
        }
    }
    // Like etcd, TLS problems (missing files, an https URL without certificates) stop the
    // member after the flags were verified, with its "failed to start" error.
    if let Err(e) = oxcd_server::tls::prepare(&mut cfg) {
        tracing::warn!(error = %format!("{e:#}"), "failed to start etcd");
        eprintln!("oxcd: {e:#}");
        std::process::exit(1);
    }
    // etcd parses the retention when it starts the server, after the flags were verified.
    let auto_compaction = oxcd_server::compactor::AutoCompaction::parse(
        &cfg.auto_compaction_mode,
        &cfg.auto_compaction_retention,
    )
    .unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(cfg, auto_compaction)) {
        tracing::error!("{e:#}");
        eprintln!("oxcd: {e:#}");
        std::process::exit(1);
    }
}

async fn run(
    cfg: Config,
    auto_compaction: Option<oxcd_server::compactor::AutoCompaction>,
) -> anyhow::Result<()> {
    let retention = auto_compaction.map_or_else(|| "0s".to_string(), |a| a.retention_string());
    use oxcd_server::logging::go_duration;
    let raws = |urls: &[oxcd_server::config::Url]| {
        oxcd_server::logging::strings(&urls.iter().map(|u| u.raw.as_str()).collect::<Vec<_>>())
    };
    let initial_cluster = cfg
        .initial_cluster
        .iter()
        .flat_map(|(name, urls)| urls.iter().map(move |u| format!("{name}={u}")))
        .collect::<Vec<_>>()
        .join(",");
    tracing::info!(
        etcd_version = oxcd_server::ETCD_VERSION,
        oxcd_version = env!("CARGO_PKG_VERSION"),
        go_os = std::env::consts::OS,
        go_arch = oxcd_server::logging::go_arch(),
        name = %cfg.name,
        data_dir = %cfg.data_dir.display(),
        force_new_cluster = cfg.force_new_cluster,
        heartbeat_interval = %go_duration(std::time::Duration::from_millis(cfg.heartbeat_interval_ms)),
        election_timeout = %go_duration(std::time::Duration::from_millis(cfg.election_timeout_ms)),
        snapshot_count = cfg.snapshot_count,
        max_snapshots = cfg.max_snapshots,
        initial_advertise_peer_urls = ?oxcd_server::logging::strings(&cfg.initial_advertise_peer_urls),
        listen_peer_urls = ?raws(&cfg.listen_peer_urls),
        advertise_client_urls = ?oxcd_server::logging::strings(&cfg.advertise_client_urls),
        listen_client_urls = ?raws(&cfg.listen_client_urls),
        listen_metrics_urls = ?raws(&cfg.listen_metrics_urls),
        initial_cluster = %initial_cluster,
        initial_cluster_state = if cfg.initial_cluster_state_new { "new" } else { "existing" },
        initial_cluster_token = %cfg.initial_cluster_token,
        quota_backend_bytes = cfg.quota_backend_bytes,
        max_request_bytes = cfg.max_request_bytes,
        "max-concurrent-streams" = cfg.max_concurrent_streams,
        initial_corrupt_check = cfg.initial_corrupt_check,
        corrupt_check_time_interval = %go_duration(cfg.corrupt_check_time),
        "auto-compaction-mode" = %cfg.auto_compaction_mode,
        "auto-compaction-retention" = %retention,
        "auto-compaction-interval" = %retention,
        "starting an etcd server"
    );
    let client_tls = oxcd_server::tls::client_acceptor(&cfg)?;
    let mut listeners = Vec::new();
    for url in &cfg.listen_client_urls {
        listeners.push(oxcd_server::http::bind(url).await?);
    }
    oxcd_server::grpc_metrics::set_extensive(cfg.metrics_extensive);
    let mut metrics_listeners = Vec::new();
    for url in &cfg.listen_metrics_urls {
        metrics_listeners.push((oxcd_server::http::bind(url).await?, url.clone()));
    }
    oxcd_server::tls::expiry::spawn(oxcd_server::tls::cert_files(&cfg));
    let urls = cfg.listen_client_urls.clone();
    let server = tokio::task::spawn_blocking(move || EtcdServer::start(cfg)).await??;
    server.serve_peers().await?;
    oxcd_server::lease::spawn_expiry_loop(server.clone());
    oxcd_server::corrupt::spawn_monitor(server.clone());
    server
        .store
        .start_compactor(server.cfg.compaction_batch_limit);
    if let Some(ac) = auto_compaction {
        oxcd_server::compactor::spawn(&server, ac);
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    // Like etcd, answer clients only once this member's attributes are applied: connections
    // wait in the listen backlog until then.
    tokio::select! {
        _ = server.publish() => {}
        _ = tokio::signal::ctrl_c() => return shutdown(&server).await,
        _ = sigterm.recv() => return shutdown(&server).await,
    }

    let mut tasks = tokio::task::JoinSet::new();
    for (listener, url) in metrics_listeners {
        tracing::info!(address = %url.raw, "serving metrics");
        let tls = (url.scheme == "https")
            .then(|| client_tls.clone())
            .flatten();
        let app = oxcd_server::http::metrics_router(server.clone());
        tasks.spawn(async move { oxcd_server::http::serve(listener, app, 0, tls).await });
    }
    for (listener, url) in listeners.into_iter().zip(urls) {
        let address = format!("{}:{}", url.host, url.port);
        let tls = if url.scheme == "https" {
            tracing::info!(address = %address, "serving client traffic securely");
            client_tls.clone()
        } else {
            tracing::info!(address = %address, "serving client traffic insecurely; this is strongly discouraged!");
            None
        };
        let server = server.clone();
        let max_streams = server.cfg.max_concurrent_streams;
        tasks.spawn(async move {
            let app = oxcd_server::http::router(server);
            oxcd_server::http::serve(listener, app, max_streams, tls).await
        });
    }
    tracing::info!("ready to serve client requests");
    // Under systemd's Type=notify, the unit counts as started only from here.
    match oxcd_server::sd_notify::notify(oxcd_server::sd_notify::READY) {
        Ok(true) => tracing::info!("successfully notified init daemon"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "failed to notify systemd for readiness"),
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
        r = tasks.join_next() => {
            if let Some(Ok(Err(e))) = r {
                anyhow::bail!("client listener failed: {e}");
            }
        }
    }
    shutdown(&server).await
}

async fn shutdown(server: &EtcdServer) -> anyhow::Result<()> {
    tracing::info!("received signal; shutting down");
    server.raft.stop();
    // Give the apply loop a moment to make its last batch durable.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(())
}

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use outbox_relay::check::{report_json, run_checks, Outcome};
use outbox_relay::cli::{Cli, Command, Output};
use outbox_relay::config::Config;
use outbox_relay::telemetry::{init_logging, otlp, serve, Health, HttpLimits, Metrics};
use outbox_relay::{leader, pipeline, RelayError};
use tokio::sync::watch;
use tracing::{error, info};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // Logging is not set up yet: set it up from whatever of `telemetry` can be
            // read, so that with `log_format: json` this line is JSON like all others.
            let (format, level) =
                Config::log_settings_of_invalid(cli.config.as_deref(), std::env::vars());
            init_logging(format, &level);
            error!(error = %e, "outbox-relay cannot start");
            match cli.command {
                Command::Check {
                    output: Output::Json,
                } => println!(
                    "{}",
                    serde_json::json!({"ok": false, "checks": [
                        {"name": "config", "outcome": "fail", "detail": e.to_string()}
                    ]})
                ),
                Command::Check { .. } => println!("FAIL config: {e}"),
                _ => {}
            }
            return ExitCode::from(2);
        }
    };
    init_logging(config.telemetry.log_format, &config.telemetry.log_level);
    // A panic is fatal too; the default hook's plain text would break JSON logs.
    std::panic::set_hook(Box::new(|panic| error!(%panic, "outbox-relay panicked")));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(outbox_relay::workers::worker_threads(
            config.source.shards,
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Check { output } => check(config, output).await,
            Command::Status { output } => match outbox_relay::status::run(&config, output).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    error!(error = %e, "status");
                    ExitCode::FAILURE
                }
            },
            Command::Config { output } => {
                println!("{}", outbox_relay::config::render(&config, output));
                ExitCode::SUCCESS
            }
            Command::Run => run(config).await,
            Command::Parked { action } => match outbox_relay::parked::run(&config, action).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    error!(error = %e, "parked");
                    ExitCode::from(2)
                }
            },
        }
    })
}

async fn check(config: Config, output: Output) -> ExitCode {
    let results = run_checks(&config).await;
    match output {
        Output::Json => println!("{}", report_json(&results)),
        Output::Text => {
            for r in &results {
                println!("{}", r.line());
            }
        }
    }
    if results.iter().any(|r| r.outcome == Outcome::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(config: Config) -> ExitCode {
    let config = Arc::new(config);
    let max_labels = config.telemetry.max_destination_labels;
    let mut metrics = if config.source.shards > 1 {
        Metrics::sharded(max_labels)
    } else {
        Metrics::with_destination_labels(max_labels)
    };
    let exporter = config.telemetry.otlp.enabled().then(|| {
        let (spans, exporter) = otlp::start(
            config.telemetry.otlp.clone(),
            metrics.otlp_spans_exported.clone(),
            metrics.otlp_spans_dropped.clone(),
        );
        metrics.spans = Some(spans);
        exporter
    });
    let health = Arc::new(Health::default());
    if let Some(addr) = config.telemetry.listen_addr() {
        let limits = HttpLimits {
            max_connections: config.telemetry.max_connections,
            request_timeout: config.telemetry.request_timeout,
        };
        match serve(addr, limits, metrics.clone(), health.clone()).await {
            Ok((bound, _task)) => info!(%bound, "serving /metrics, /healthz and /readyz"),
            Err(e) => {
                error!(%addr, error = %e, "cannot bind telemetry.listen");
                return ExitCode::from(2);
            }
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested: draining in-flight events");
        let _ = stop_tx.send(true);
        // A second signal while draining exits at once; nothing unacknowledged is lost,
        // it is replayed at the next start.
        wait_for_signal().await;
        std::process::exit(130);
    });
    // With ha.enabled, wait as a standby until this replica holds the slot's lock; a
    // lost lease stops the process at once (code 3), so nothing more is published.
    let mut lease = None;
    if config.ha.enabled {
        let mut stop = stop_rx.clone();
        match leader::acquire(&config, &metrics, &health, &mut stop).await {
            Ok(Some(l)) => lease = Some(l),
            Ok(None) => {
                info!("shut down as a standby");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                error!(error = %e, "outbox-relay stopped");
                return ExitCode::FAILURE;
            }
        }
    } else {
        metrics.leader.set(1);
        metrics.leader_transitions.inc();
    }
    // On a worker, not in `block_on`: the main thread does not drive the I/O driver, so
    // a reader there was woken through another thread for every socket read (a futex
    // wake and two context switches), which was most of the relay's kernel CPU.
    let run = async {
        tokio::spawn(pipeline::run(config, metrics, health, stop_rx))
            .await
            .unwrap_or_else(|e| {
                Err(RelayError::Halted(format!(
                    "the pipeline task ended abnormally: {e}"
                )))
            })
    };
    let result = match lease.as_mut() {
        None => run.await,
        Some(lease) => tokio::select! {
            result = run => result,
            _ = lease.lost() => {
                error!("leadership lost: stopping at once so that nothing more is published (a standby takes over)");
                std::process::exit(3);
            }
        },
    };
    // The pipeline has drained: the exporter sends the last batches' spans and ends.
    if let Some(exporter) = exporter {
        exporter.finish(std::time::Duration::from_secs(3)).await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "outbox-relay stopped");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

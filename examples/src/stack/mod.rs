//! `saga up`: the whole example on one machine. Creates the databases, topics and queues,
//! starts the three services and their three relays as supervised child processes, and
//! serves the console page.

pub mod audit;
pub mod chaos;
pub mod children;
pub mod console;
pub mod metrics;
pub mod provision;
pub mod relays;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Names, Service, AWS_REGION};
use children::Supervised;
use provision::Server;

#[derive(clap::Args, Clone, Debug)]
pub struct StackArgs {
    #[arg(long, env = "SAGA_PREFIX", default_value = "saga")]
    pub prefix: String,
    #[arg(long, env = "OUTBOX_RELAY_PG_HOST", default_value = "127.0.0.1")]
    pub pg_host: String,
    #[arg(long, env = "OUTBOX_RELAY_PG_PORT", default_value_t = 54329)]
    pub pg_port: u16,
    #[arg(long, env = "OUTBOX_RELAY_PG_USER", default_value = "outbox")]
    pub pg_user: String,
    #[arg(long, env = "OUTBOX_RELAY_PG_PASSWORD", default_value = "outbox")]
    pub pg_password: String,
    /// An existing database, used to create the services' databases.
    #[arg(long, env = "OUTBOX_RELAY_PG_DATABASE", default_value = "outbox")]
    pub pg_admin_database: String,
    #[arg(
        long,
        env = "OUTBOX_RELAY_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:19092"
    )]
    pub kafka: String,
    /// SNS/SQS endpoint: fauxqs (fast; deploy/local/aws.sh fauxqs-start) by default, moto
    /// (http://127.0.0.1:19324) works too, at a few events per second.
    #[arg(
        long,
        env = "SAGA_AWS_ENDPOINT",
        default_value = "http://127.0.0.1:19325"
    )]
    pub aws_endpoint: String,
    /// The relay binary (default: `outbox-relay` next to this binary).
    #[arg(long, env = "OUTBOX_RELAY_BIN")]
    pub relay_bin: Option<PathBuf>,
    /// The console page.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Services listen on base+1..3, relays' metrics on base+11..13.
    #[arg(long, default_value_t = 18100)]
    pub base_port: u16,
    /// Relay configurations and logs of every process.
    #[arg(long, default_value = "/tmp/outbox-relay/saga")]
    pub state_dir: PathBuf,
    /// `deploy/local/kafka.sh`, for the Kafka outage button.
    #[arg(long)]
    pub kafka_script: Option<PathBuf>,
    /// `deploy/local/postgres.sh`, for the PostgreSQL restart button.
    #[arg(long)]
    pub postgres_script: Option<PathBuf>,
}

impl StackArgs {
    pub fn server(&self) -> Server {
        Server {
            host: self.pg_host.clone(),
            port: self.pg_port,
            user: self.pg_user.clone(),
            password: self.pg_password.clone(),
            admin_database: self.pg_admin_database.clone(),
        }
    }

    pub fn service_port(&self, s: Service) -> u16 {
        self.base_port + 1 + Service::ALL.iter().position(|x| *x == s).unwrap_or(0) as u16
    }

    pub fn relay_metrics_port(&self, s: Service) -> u16 {
        self.service_port(s) + 10
    }
}

pub async fn run(a: StackArgs) -> crate::Result<()> {
    let names = Names::new(&a.prefix)?;
    std::fs::create_dir_all(&a.state_dir)?;
    let server = a.server();
    let this = std::env::current_exe()?;
    let relay_bin = match &a.relay_bin {
        Some(p) => p.clone(),
        None => this.with_file_name("outbox-relay"),
    };
    if !relay_bin.exists() {
        return Err(crate::Error::Setup(format!(
            "relay binary {} not found: cargo build -p outbox-relay, or --relay-bin",
            relay_bin.display()
        )));
    }

    eprintln!(
        "saga: provisioning databases, topics and queues ({})",
        names.prefix
    );
    provision::databases(&server, &names).await?;
    provision::topics(&a.kafka, &names).await?;
    let sdk = crate::aws::sdk(&a.aws_endpoint).await;
    let sns = crate::aws::provision(&sdk, &names).await?;

    let mut children = Vec::new();
    let mut tasks = Vec::new();
    for s in Service::ALL {
        let c = Supervised::new(
            s.name(),
            this.clone(),
            vec![s.name().to_string()],
            vec![
                ("SAGA_PREFIX".into(), names.prefix.clone()),
                ("SAGA_DATABASE".into(), server.url(&names.database(s))),
                ("SAGA_KAFKA".into(), a.kafka.clone()),
                ("SAGA_AWS_ENDPOINT".into(), a.aws_endpoint.clone()),
                (
                    "SAGA_LISTEN".into(),
                    format!("127.0.0.1:{}", a.service_port(s)),
                ),
            ],
            a.state_dir.join(format!("{}.log", s.name())),
        );
        tasks.push(c.spawn());
        children.push(c);
    }
    let http = reqwest::Client::new();
    for s in Service::ALL {
        wait_http(
            &http,
            &format!("http://127.0.0.1:{}/healthz", a.service_port(s)),
        )
        .await?;
    }
    eprintln!("saga: services up; starting their relays");
    for s in Service::ALL {
        let config = a.state_dir.join(format!("relay-{}.yaml", s.name()));
        std::fs::write(
            &config,
            relays::yaml(
                &names,
                s,
                &relays::RelayPlace {
                    pg_host: &a.pg_host,
                    pg_port: a.pg_port,
                    pg_user: &a.pg_user,
                    pg_password: &a.pg_password,
                    kafka: &a.kafka,
                    aws_endpoint: &a.aws_endpoint,
                    metrics_port: a.relay_metrics_port(s),
                    sns_topic_arn: &sns.inventory,
                    sns_dead_letter_arn: &sns.dead_letter,
                },
            ),
        )?;
        let c = Supervised::new(
            &format!("relay-{}", s.name()),
            relay_bin.clone(),
            vec![
                "--config".into(),
                config.display().to_string(),
                "run".into(),
            ],
            vec![
                ("AWS_ACCESS_KEY_ID".into(), "test".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
                ("AWS_REGION".into(), AWS_REGION.into()),
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ],
            a.state_dir.join(format!("relay-{}.log", s.name())),
        );
        tasks.push(c.spawn());
        children.push(c);
    }
    for s in Service::ALL {
        wait_http(
            &http,
            &format!("http://127.0.0.1:{}/readyz", a.relay_metrics_port(s)),
        )
        .await?;
    }

    let console = console::Console::new(
        names.clone(),
        Service::ALL
            .iter()
            .map(|s| (*s, format!("http://127.0.0.1:{}", a.service_port(*s))))
            .collect(),
        Service::ALL
            .iter()
            .map(|s| (*s, a.relay_metrics_port(*s)))
            .collect(),
        children.clone(),
        chaos::Scripts {
            kafka: a.kafka_script.clone(),
            postgres: a.postgres_script.clone(),
        },
    );
    console.spawn_tasks(a.kafka.clone(), sdk);
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    let server = tokio::spawn(async move { axum::serve(listener, console.router()).await });
    eprintln!("saga: ready — open http://{}/", a.listen);
    eprintln!("saga: logs and relay configs in {}", a.state_dir.display());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = server => eprintln!("saga: console server ended: {r:?}"),
    }
    eprintln!("saga: stopping");
    stop_all(&children).await;
    Ok(())
}

/// SIGTERM to every child (relays first, so they finish in-flight events), then wait.
async fn stop_all(children: &[Arc<Supervised>]) {
    for c in children.iter().rev() {
        c.stop();
    }
    for _ in 0..100 {
        if children.iter().all(|c| c.pid().is_none()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_http(http: &reqwest::Client, url: &str) -> crate::Result<()> {
    for _ in 0..600 {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(crate::Error::Setup(format!(
        "{url} did not answer within 60 s"
    )))
}

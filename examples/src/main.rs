//! `saga`: the example application's one binary.
//!
//!   saga up                  everything: databases, services, relays, console page
//!   saga orders|payments|inventory   one service (started by `saga up`)
//!   saga chaos ACTION        a chaos action on a running `saga up`
//!   saga teardown            drop the databases, topics and queues of a prefix

use clap::{Parser, Subcommand};
use outbox_saga_example::config::{Names, ServiceArgs};
use outbox_saga_example::services;
use outbox_saga_example::stack::{self, chaos::Action, StackArgs};

#[derive(Parser)]
#[command(
    name = "saga",
    about = "The outbox-relay example: a choreography saga over three services"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision and run everything; the console page at --listen.
    Up(StackArgs),
    /// The orders service.
    Orders(ServiceArgs),
    /// The payments service.
    Payments(ServiceArgs),
    /// The inventory service.
    Inventory(ServiceArgs),
    /// Break something in a running `saga up`.
    Chaos {
        /// The console's address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        console: String,
        #[command(subcommand)]
        action: ChaosCmd,
    },
    /// Create the databases, topics and queues of a prefix, and exit (for deployments
    /// that run the services and relays themselves, e.g. compose).
    Provision(StackArgs),
    /// Remove the databases, topics and queues of a prefix (stop `saga up` first).
    Teardown(StackArgs),
}

#[derive(Subcommand)]
enum ChaosCmd {
    /// SIGKILL a relay (orders, payments or inventory); it restarts.
    KillRelay { target: String },
    /// SIGKILL a service; it restarts.
    KillService { target: String },
    /// Stop Kafka for a while.
    KafkaOutage {
        #[arg(default_value_t = 30)]
        seconds: u64,
    },
    /// Restart PostgreSQL.
    RestartPostgres,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Up(a) => stack::run(a).await,
        Cmd::Orders(a) => services::orders::run(a).await,
        Cmd::Payments(a) => services::payments::run(a).await,
        Cmd::Inventory(a) => services::inventory::run(a).await,
        Cmd::Chaos { console, action } => chaos(&console, action).await,
        Cmd::Provision(a) => provision(a).await,
        Cmd::Teardown(a) => teardown(a).await,
    };
    if let Err(e) = result {
        eprintln!("saga: {e}");
        std::process::exit(1);
    }
}

async fn chaos(console: &str, action: ChaosCmd) -> outbox_saga_example::Result<()> {
    let action = match action {
        ChaosCmd::KillRelay { target } => Action::KillRelay { target },
        ChaosCmd::KillService { target } => Action::KillService { target },
        ChaosCmd::KafkaOutage { seconds } => Action::KafkaOutage { seconds },
        ChaosCmd::RestartPostgres => Action::RestartPostgres,
    };
    let r = reqwest::Client::new()
        .post(format!("{}/api/chaos", console.trim_end_matches('/')))
        .json(&action)
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await?;
    println!("{text}");
    if status.is_success() {
        Ok(())
    } else {
        Err(outbox_saga_example::Error::Setup(format!(
            "chaos refused: {status}"
        )))
    }
}

async fn teardown(a: StackArgs) -> outbox_saga_example::Result<()> {
    let names = Names::new(&a.prefix)?;
    let sdk = outbox_saga_example::aws::sdk(&a.aws_endpoint).await;
    stack::provision::teardown(&a.server(), &a.kafka, &sdk, &names).await?;
    println!(
        "removed the databases, topics and queues of {}",
        names.prefix
    );
    Ok(())
}

async fn provision(a: StackArgs) -> outbox_saga_example::Result<()> {
    let names = Names::new(&a.prefix)?;
    stack::provision::databases(&a.server(), &names).await?;
    stack::provision::topics(&a.kafka, &names).await?;
    let sdk = outbox_saga_example::aws::sdk(&a.aws_endpoint).await;
    let topics = outbox_saga_example::aws::provision(&sdk, &names).await?;
    println!("databases, topics and queues of {} are ready", names.prefix);
    println!("inventory SNS topic: {}", topics.inventory);
    println!("SNS dead-letter topic: {}", topics.dead_letter);
    Ok(())
}

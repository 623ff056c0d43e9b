//! Creating (and, for tests, removing) what the example needs on the shared servers: one
//! database per service, the Kafka topics, the SNS topic and SQS queues.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use crate::config::{Names, Service};
use crate::db;

/// How to reach the PostgreSQL server as a user who may create databases.
#[derive(Clone, Debug)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// An existing database to connect to for CREATE/DROP DATABASE.
    pub admin_database: String,
}

impl Server {
    pub fn url(&self, database: &str) -> String {
        db::url(&self.host, self.port, &self.user, &self.password, database)
    }
}

/// Partitions of the example's Kafka topics.
pub const PARTITIONS: i32 = 3;

pub async fn databases(server: &Server, names: &Names) -> crate::Result<()> {
    let admin = db::connect(&server.url(&server.admin_database)).await?;
    for s in Service::ALL {
        let name = names.database(s);
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await?;
        }
    }
    Ok(())
}

fn admin_client(brokers: &str) -> crate::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?)
}

pub async fn topics(brokers: &str, names: &Names) -> crate::Result<()> {
    let admin = admin_client(brokers)?;
    let names = [
        names.order_topic(),
        names.payment_topic(),
        format!("{}.dead-letter", names.prefix),
    ];
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for r in admin.create_topics(&topics, &opts).await? {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => {
                return Err(crate::Error::Setup(format!("create topic {t}: {e}")));
            }
        }
    }
    Ok(())
}

/// Removes everything the example created under `names` (its relays must be stopped:
/// their slots are dropped with the databases).
pub async fn teardown(
    server: &Server,
    brokers: &str,
    sdk: &aws_config::SdkConfig,
    names: &Names,
) -> crate::Result<()> {
    let admin = db::connect(&server.url(&server.admin_database)).await?;
    for s in Service::ALL {
        let name = names.database(s);
        drop_slot(&admin, &name).await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
    }
    let kafka = admin_client(brokers)?;
    let topics = [
        names.order_topic(),
        names.payment_topic(),
        format!("{}.dead-letter", names.prefix),
    ];
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let _ = kafka.delete_topics(&refs, &AdminOptions::new()).await;
    crate::aws::teardown(sdk, names).await;
    Ok(())
}

/// Drops a replication slot, ending a walsender that still holds it (a relay that is
/// shutting down), so that the database can be dropped and no WAL stays retained.
async fn drop_slot(admin: &tokio_postgres::Client, slot: &str) -> crate::Result<()> {
    for _ in 0..40 {
        let row = admin
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        let Some(row) = row else { return Ok(()) };
        match row.get::<_, Option<i32>>(0) {
            Some(pid) => {
                admin
                    .execute("SELECT pg_terminate_backend($1)", &[&pid])
                    .await?;
            }
            None => {
                // Another session may take it between the check and the drop: retry.
                if admin
                    .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(crate::Error::Setup(format!(
        "replication slot {slot} still in use after 10 s"
    )))
}

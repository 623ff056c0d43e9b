//! Names shared by the services, the relays and the supervisor. Everything is derived from
//! one prefix so that several copies of the example (a demo and tests) can share one
//! PostgreSQL cluster, one Kafka broker and one SNS/SQS emulator.

use std::net::SocketAddr;

/// The emulator's region (it accepts any credentials).
pub const AWS_REGION: &str = "us-east-1";

/// The three services, in saga order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Orders,
    Payments,
    Inventory,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Orders, Service::Payments, Service::Inventory];

    pub fn name(self) -> &'static str {
        match self {
            Service::Orders => "orders",
            Service::Payments => "payments",
            Service::Inventory => "inventory",
        }
    }

    pub fn parse(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Names of every shared resource of one copy of the example.
#[derive(Clone, Debug)]
pub struct Names {
    pub prefix: String,
}

impl Names {
    /// `prefix` must be lower-case letters, digits and `_` (it names databases and slots).
    pub fn new(prefix: &str) -> crate::Result<Self> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 40
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(crate::Error::Setup(format!(
                "prefix {prefix:?}: use 1-40 lower-case letters, digits and _, starting with a letter"
            )));
        }
        Ok(Names {
            prefix: prefix.to_string(),
        })
    }

    /// Each service's own database (also its relay's slot and publication).
    pub fn database(&self, s: Service) -> String {
        format!("{}_{}", self.prefix, s.name())
    }

    /// Kafka topic of the orders relay (outbox table, aggregate type `Order`).
    pub fn order_topic(&self) -> String {
        format!("{}.Order", self.prefix)
    }

    /// Kafka topic of the payments relay (logical messages, aggregate type `Payment`).
    pub fn payment_topic(&self) -> String {
        format!("{}.Payment", self.prefix)
    }

    /// The relay route template for the Kafka relays.
    pub fn kafka_route_template(&self) -> String {
        format!("{}.{{aggregatetype}}", self.prefix)
    }

    /// Prefix of the payments service's `pg_logical_emit_message` events.
    pub fn payment_message_prefix(&self) -> String {
        format!("{}_payments", self.prefix)
    }

    /// The SNS topic the inventory relay publishes to.
    pub fn inventory_sns_topic(&self) -> String {
        format!("{}_inventory", self.prefix)
    }

    /// The SQS queue (subscribed to the inventory topic) a consumer reads.
    pub fn inventory_queue(&self, consumer: &str) -> String {
        format!("{}_{consumer}_inventory", self.prefix)
    }

    pub fn consumer_group(&self, consumer: &str) -> String {
        format!("{}_{consumer}", self.prefix)
    }
}

/// What every service process needs (`saga orders|payments|inventory …`).
#[derive(clap::Args, Clone, Debug)]
pub struct ServiceArgs {
    /// Names all shared resources (databases, topics, queues).
    #[arg(long, env = "SAGA_PREFIX", default_value = "saga")]
    pub prefix: String,
    /// The service's own database, as a tokio-postgres connection string.
    #[arg(long, env = "SAGA_DATABASE")]
    pub database: String,
    #[arg(long, env = "SAGA_KAFKA", default_value = "127.0.0.1:19092")]
    pub kafka: String,
    /// SNS/SQS endpoint (the emulator).
    #[arg(
        long,
        env = "SAGA_AWS_ENDPOINT",
        default_value = "http://127.0.0.1:19325"
    )]
    pub aws_endpoint: String,
    /// HTTP listen address (API, /healthz, /audit).
    #[arg(long, env = "SAGA_LISTEN")]
    pub listen: SocketAddr,
}

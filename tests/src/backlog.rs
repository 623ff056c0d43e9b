//! The benchmarks' backlog: a PL/pgSQL procedure that writes outbox events in
//! transactions of a fixed size, ~450-byte JSON order payloads with a per-row `seq`.

use tokio_postgres::Client;

/// The backlog's shape, the same flags in every benchmark binary.
#[derive(Debug, Clone, clap::Args)]
pub struct BacklogArgs {
    /// Events in the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Distinct aggregate ids (`order-<n>`), round robin.
    #[arg(long, default_value_t = 10_000)]
    pub aggregates: usize,
    /// Rows per transaction in the backlog.
    #[arg(long, default_value_t = 100)]
    pub txn_rows: usize,
}

impl BacklogArgs {
    /// Writes the backlog with `procedure` (defined by [`define_fill`]).
    pub async fn write(&self, client: &Client, procedure: &str, who: &str) {
        eprintln!(
            "{who}: writing {} events ({} per transaction, {} aggregates)",
            self.events, self.txn_rows, self.aggregates
        );
        client
            .execute(
                &format!("CALL {procedure}($1, $2, $3)"),
                &[
                    &(self.events as i32),
                    &(self.txn_rows as i32),
                    &(self.aggregates as i32),
                ],
            )
            .await
            .expect("fill");
    }
}

/// Defines `procedure(total int, per_txn int, aggs int)` writing into `table`.
pub async fn define_fill(client: &Client, procedure: &str, table: &str) {
    client
        .batch_execute(&format!(
            "CREATE OR REPLACE PROCEDURE {procedure}(total int, per_txn int, aggs int) LANGUAGE plpgsql AS $$
             DECLARE n int := 0;
             BEGIN
               WHILE n < total LOOP
                 INSERT INTO {table} (aggregatetype, aggregateid, type, payload)
                 SELECT 'Order', 'order-' || (i % aggs), 'OrderCreated',
                   ('{{\"orderId\":\"order-' || (i % aggs) || '\",\"seq\":' || i || ',\"customerId\":\"c-' || (i % 997)
                    || '\",\"status\":\"CREATED\",\"currency\":\"EUR\",\"total\":' || (i % 1000) || '.99,'
                    || '\"items\":[{{\"sku\":\"SKU-' || (i % 50) || '\",\"qty\":2,\"price\":10.5}},{{\"sku\":\"SKU-' || (i % 77) || '\",\"qty\":1,\"price\":99.0}}],'
                    || '\"shippingAddress\":{{\"street\":\"Main Street ' || (i % 300) || '\",\"city\":\"Berlin\",\"zip\":\"10115\",\"country\":\"DE\"}},'
                    || '\"note\":\"' || repeat('x', 120) || '\"}}')::jsonb
                 FROM generate_series(n, n + per_txn - 1) i;
                 COMMIT;
                 n := n + per_txn;
               END LOOP;
             END $$;"
        ))
        .await
        .expect("define the fill procedure");
}

/// Creates pgoutput slots; done before the backlog is written so each reader drains all of it.
pub async fn create_slots(client: &Client, slots: &[&str]) {
    for slot in slots {
        client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[slot],
            )
            .await
            .expect("create slot");
    }
}

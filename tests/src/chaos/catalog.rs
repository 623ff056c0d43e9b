//! The aggregates of a chaos run: names (keys) with multi-byte characters, an aggregate
//! type each (the destination), and the per-aggregate version counters in PostgreSQL that
//! fix each aggregate's commit order.

use std::collections::HashMap;

use tokio_postgres::Client;

pub const TYPES: [&str; 3] = ["Order", "Customer", "Invoice"];

#[derive(Debug, Clone)]
pub struct Catalog {
    pub names: Vec<String>,
    pub types: Vec<&'static str>,
    pub index: HashMap<String, u32>,
}

impl Catalog {
    /// `n` aggregates. `bmp_only` keeps every character in the Basic Multilingual Plane
    /// (fauxqs refuses others, which SNS and SQS accept).
    pub fn new(n: usize, bmp_only: bool) -> Catalog {
        let names: Vec<String> = (0..n)
            .map(|i| match i % 5 {
                0 => format!("agg-{i}"),
                1 => format!("Bestellung-ü-{i}"),
                2 => format!("注文-{i}"),
                3 if bmp_only => format!("заказ-{i}"),
                3 => format!("🚀-{i}"),
                _ => format!("ÅÄÖ \"q\" {i}"),
            })
            .collect();
        let types = (0..n).map(|i| TYPES[i % TYPES.len()]).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        Catalog {
            names,
            types,
            index,
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

pub fn versions_table(table: &str) -> String {
    format!("{table}_versions")
}

/// The outbox table (ids given by the writers) and the version counters.
pub async fn prepare(client: &Client, table: &str, catalog: &Catalog) -> Result<(), String> {
    let vt = versions_table(table);
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                aggregatetype varchar(255) NOT NULL,
                aggregateid varchar(255) NOT NULL,
                type varchar(255) NOT NULL,
                payload jsonb,
                timestamp timestamptz NOT NULL DEFAULT now(),
                tracingspancontext varchar(512)
            );
            CREATE TABLE {vt} (agg text PRIMARY KEY, atype text NOT NULL, version int NOT NULL DEFAULT 0);"
        ))
        .await
        .map_err(|e| format!("create tables: {e}"))?;
    let types: Vec<String> = catalog.types.iter().map(|t| t.to_string()).collect();
    client
        .execute(
            &format!("INSERT INTO {vt} (agg, atype) SELECT * FROM unnest($1::text[], $2::text[])"),
            &[&catalog.names, &types],
        )
        .await
        .map_err(|e| format!("fill {vt}: {e}"))?;
    Ok(())
}

/// Each aggregate's final version: the number of its committed events.
pub async fn final_versions(
    client: &Client,
    table: &str,
    catalog: &Catalog,
) -> Result<Vec<u32>, String> {
    let rows = client
        .query(
            &format!("SELECT agg, version FROM {}", versions_table(table)),
            &[],
        )
        .await
        .map_err(|e| format!("read versions: {e}"))?;
    let mut out = vec![0u32; catalog.len()];
    for r in rows {
        let name: String = r.get(0);
        let v: i32 = r.get(1);
        let i = *catalog
            .index
            .get(&name)
            .ok_or_else(|| format!("unknown aggregate {name:?} in the versions table"))?;
        out[i as usize] = v as u32;
    }
    Ok(out)
}

//! `source.shards`: one outbox split across N slots and N publications by a hash of the
//! aggregate id, so that N walsenders stream in parallel (docs/scaling.md).
//!
//! Every aggregate hashes to exactly one shard, and one shard is one ordered stream, so
//! the per-aggregate order survives the split. The hash is computed by PostgreSQL in the
//! publication's row filter; the relay only names the shards and writes the filter.

use crate::config::{Config, SinkConfig, TableConfig};
use crate::error::RelayError;
use crate::source::setup::quote_ident;

/// The most shards a configuration may ask for: each is a walsender, a slot holding WAL
/// and a handful of connections, so more than this is a mistake rather than a plan.
pub const MAX_SHARDS: u32 = 64;

/// Row filters exist from PostgreSQL 15 on.
pub const MIN_SERVER_VERSION: i32 = 150000;

/// Which shard a sharded session reads; `None` in [`crate::config::SourceConfig::shard`]
/// is the unsharded relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Shard `index`'s name for `base` (a slot or a publication): `<base>_<index>`.
pub fn shard_name(base: &str, index: u32) -> String {
    format!("{base}_{index}")
}

/// The immutable built-in hash function a row filter may apply to an aggregate id column
/// of type `typname` (`pg_type.typname`), or `None` for a type without one.
///
/// A cast to text would cover every type, but for most types it is an I/O conversion,
/// which PostgreSQL refuses in a row filter ("invalid publication WHERE expression"), so
/// each type gets its own function. varchar and smallint reach `hashtextextended` and
/// `hashint4extended` through implicit casts, which row filters allow.
pub fn hash_function(typname: &str) -> Option<&'static str> {
    Some(match typname {
        "text" | "varchar" => "hashtextextended",
        "bpchar" => "hashbpcharextended",
        "uuid" => "uuid_hash_extended",
        "int2" | "int4" => "hashint4extended",
        "int8" => "hashint8extended",
        _ => return None,
    })
}

/// The row filter that puts an aggregate in shard `shard.index`, for `column` (the
/// aggregate id) hashed by `hash` ([`hash_function`]).
///
/// The sign bit is masked off rather than `abs()` taken: `abs(hashtext(x))` is accepted
/// too, but raises "integer out of range" for the one id that hashes to INT_MIN, which
/// would stop the walsender on that row for good. With the mask the result is in
/// 0..count for every id.
pub fn row_filter(column: &str, hash: &str, shard: Shard) -> String {
    format!(
        "({hash}({}, 0) & 9223372036854775807) % {} = {}",
        quote_ident(column),
        shard.count,
        shard.index
    )
}

/// `CREATE PUBLICATION` for a shard: every outbox table with its row filter (`hashes[i]`
/// is table i's aggregate id hash function).
pub fn create_publication_sql(
    publication: &str,
    tables: &[TableConfig],
    hashes: &[&str],
    shard: Shard,
) -> String {
    let tables: Vec<String> = tables
        .iter()
        .zip(hashes)
        .map(|(t, hash)| {
            let (s, n) = t.qualified();
            format!(
                "{}.{} WHERE ({})",
                quote_ident(s),
                quote_ident(n),
                row_filter(&t.columns.aggregate_id, hash, shard)
            )
        })
        .collect();
    format!(
        "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert')",
        quote_ident(publication),
        tables.join(", ")
    )
}

/// Whether `deparsed` (`pg_publication_tables.rowfilter`, PostgreSQL's own rendering of
/// the stored expression) is the filter [`row_filter`] writes.
///
/// PostgreSQL adds parentheses, casts of the constants (`(0)::bigint`) and of the
/// implicitly cast column (`(id)::text` for varchar), and quotes the big constant; those
/// are stripped from both sides before comparing. Stripping parentheses could in
/// principle equate two filters that group differently, but the operators here bind the
/// same way either way, and any other function, column, constant, modulus or remainder
/// still differs.
pub fn filter_matches(deparsed: &str, column: &str, hash: &str, shard: Shard) -> bool {
    normalize(deparsed) == normalize(&row_filter(column, hash, shard))
}

fn normalize(expr: &str) -> String {
    let mut s: String = expr
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '(' | ')' | '\'' | '"'))
        .collect();
    for cast in ["::bigint", "::integer", "::text"] {
        s = s.replace(cast, "");
    }
    s
}

/// Refuses a server without row filters before anything is created.
pub fn check_server_version(version: i32, shards: u32) -> Result<(), RelayError> {
    if shards > 1 && version < MIN_SERVER_VERSION {
        return Err(RelayError::Setup(format!(
            "source.shards {shards} needs PostgreSQL 15 or newer (publication row filters split the outbox; the server is {}.{}); set source.shards: 1",
            version / 10000,
            version % 10000
        )));
    }
    Ok(())
}

impl Config {
    /// One configuration per shard: its slot and publication, and (with Kafka exactly-once)
    /// its own transactional id so that the shards' producers do not fence each other.
    /// `shards: 1` is this configuration unchanged.
    pub fn shard_configs(&self) -> Vec<Config> {
        let count = self.source.shards;
        if count <= 1 {
            return vec![self.clone()];
        }
        (0..count)
            .map(|index| {
                let mut c = self.clone();
                c.source.slot = shard_name(&self.source.slot, index);
                c.source.publication = shard_name(&self.source.publication, index);
                c.source.shard = Some(Shard { index, count });
                if let SinkConfig::Kafka(k) = &mut c.sink {
                    if !k.transactional_id.is_empty() {
                        k.transactional_id = format!("{}.{index}", k.transactional_id);
                    }
                }
                c
            })
            .collect()
    }

    /// Every slot this configuration reads: `source.slot`, or each shard's.
    pub fn shard_slots(&self) -> Vec<String> {
        self.shard_configs()
            .into_iter()
            .map(|c| c.source.slot)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, count: u32) -> Shard {
        Shard { index, count }
    }

    #[test]
    fn the_filter_masks_the_sign_bit_and_quotes_the_column() {
        assert_eq!(
            row_filter("aggregateId", "hashtextextended", shard(2, 4)),
            r#"(hashtextextended("aggregateId", 0) & 9223372036854775807) % 4 = 2"#
        );
    }

    #[test]
    fn the_publication_filters_every_table_and_publishes_inserts_only() {
        let tables: Vec<TableConfig> = serde_json::from_value(serde_json::json!([
            {"table": "public.outbox"},
            {"table": "billing.outbox", "columns": {"aggregate_id": "agg"}}
        ]))
        .unwrap();
        assert_eq!(
            create_publication_sql(
                "outbox_relay_1",
                &tables,
                &["hashtextextended", "uuid_hash_extended"],
                shard(1, 3)
            ),
            "CREATE PUBLICATION \"outbox_relay_1\" FOR TABLE \
             \"public\".\"outbox\" WHERE ((hashtextextended(\"aggregateid\", 0) & 9223372036854775807) % 3 = 1), \
             \"billing\".\"outbox\" WHERE ((uuid_hash_extended(\"agg\", 0) & 9223372036854775807) % 3 = 1) \
             WITH (publish = 'insert')"
        );
    }

    #[test]
    fn postgresqls_rendering_of_the_filter_matches_and_other_filters_do_not() {
        let text = "hashtextextended";
        // pg_publication_tables.rowfilter on PostgreSQL 15.18 for a text column ...
        let deparsed = "(((hashtextextended(aggregateid, (0)::bigint) & '9223372036854775807'::bigint) % (4)::bigint) = 1)";
        assert!(filter_matches(deparsed, "aggregateid", text, shard(1, 4)));
        // ... for a varchar column, cast implicitly ...
        let varchar = "(((hashtextextended((aggregateid)::text, (0)::bigint) & '9223372036854775807'::bigint) % (4)::bigint) = 1)";
        assert!(filter_matches(varchar, "aggregateid", text, shard(1, 4)));
        // ... and for a uuid column.
        let uuid = "(((uuid_hash_extended(aggregateid, (0)::bigint) & '9223372036854775807'::bigint) % (4)::bigint) = 1)";
        assert!(filter_matches(
            uuid,
            "aggregateid",
            "uuid_hash_extended",
            shard(1, 4)
        ));
        assert!(!filter_matches(uuid, "aggregateid", text, shard(1, 4)));
        assert!(!filter_matches(deparsed, "aggregateid", text, shard(2, 4)));
        assert!(!filter_matches(deparsed, "aggregateid", text, shard(1, 8)));
        assert!(!filter_matches(deparsed, "other", text, shard(1, 4)));
        let abs = "(mod(abs(hashtext(aggregateid)), 4) = 1)";
        assert!(!filter_matches(abs, "aggregateid", text, shard(1, 4)));
    }

    #[test]
    fn each_id_type_has_a_hash_a_row_filter_accepts() {
        assert_eq!(hash_function("varchar"), Some("hashtextextended"));
        assert_eq!(hash_function("uuid"), Some("uuid_hash_extended"));
        assert_eq!(hash_function("int2"), Some("hashint4extended"));
        assert_eq!(hash_function("int8"), Some("hashint8extended"));
        assert_eq!(hash_function("jsonb"), None);
    }

    #[test]
    fn row_filters_need_postgresql_15() {
        let e = check_server_version(140011, 4).unwrap_err().to_string();
        assert!(e.contains("source.shards 4 needs PostgreSQL 15"), "{e}");
        assert!(e.contains("the server is 14.11"), "{e}");
        check_server_version(140011, 1).unwrap();
        check_server_version(150018, 4).unwrap();
    }

    fn config(extra: serde_json::Value) -> Result<Config, crate::config::ConfigError> {
        let mut v = serde_json::json!({
            "source": {"host": "db", "database": "app", "user": "relay", "slot": "s", "publication": "p"},
            "sink": {"kind": "kafka", "kafka": {"brokers": "k:9092"}},
        });
        for (section, fields) in extra.as_object().unwrap() {
            let target = v
                .as_object_mut()
                .unwrap()
                .entry(section.clone())
                .or_insert_with(|| serde_json::json!({}));
            for (k, val) in fields.as_object().unwrap() {
                target[k] = val.clone();
            }
        }
        let c: Config =
            serde_json::from_value(v).map_err(|e| crate::config::ConfigError(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    fn refused(extra: serde_json::Value) -> String {
        config(extra).unwrap_err().to_string()
    }

    #[test]
    fn one_shard_is_the_unsharded_configuration_unchanged() {
        let c = config(serde_json::json!({})).unwrap();
        assert_eq!(c.source.shards, 1);
        let shards = c.shard_configs();
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].source.slot, "s");
        assert_eq!(shards[0].source.publication, "p");
        assert_eq!(shards[0].source.shard, None);
        assert_eq!(c.shard_slots(), ["s"]);
    }

    #[test]
    fn each_shard_has_its_own_slot_publication_and_transactional_id() {
        let c = config(serde_json::json!({
            "source": {"shards": 3},
            "sink": {"kafka": {"brokers": "k:9092", "exactly_once": true, "transactional_id": "tx"}},
        }))
        .unwrap();
        let shards = c.shard_configs();
        let names: Vec<_> = shards
            .iter()
            .map(|c| {
                (
                    c.source.slot.as_str(),
                    c.source.publication.as_str(),
                    c.source.shard,
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("s_0", "p_0", Some(shard(0, 3))),
                ("s_1", "p_1", Some(shard(1, 3))),
                ("s_2", "p_2", Some(shard(2, 3))),
            ]
        );
        let ids: Vec<_> = shards
            .iter()
            .map(|c| match &c.sink {
                SinkConfig::Kafka(k) => k.transactional_id.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, ["tx.0", "tx.1", "tx.2"]);
    }

    #[test]
    fn the_shard_count_is_bounded_and_names_must_fit() {
        assert!(refused(serde_json::json!({"source": {"shards": 0}}))
            .contains("source.shards: must be 1 to 64 (got 0)"));
        assert!(refused(serde_json::json!({"source": {"shards": 65}}))
            .contains("source.shards: must be 1 to 64 (got 65)"));
        config(serde_json::json!({"source": {"shards": 64}})).unwrap();
        let long = "a".repeat(62);
        config(serde_json::json!({"source": {"slot": long}})).unwrap();
        let e = refused(serde_json::json!({"source": {"slot": long, "shards": 2}}));
        assert!(e.contains("source.slot (with its shard suffix)"), "{e}");
    }

    #[test]
    fn messages_and_snapshots_are_refused_with_shards() {
        let e = refused(serde_json::json!({
            "source": {"shards": 2},
            "outbox": {"messages": {"prefix": "outbox"}},
        }));
        assert!(
            e.contains("outbox.messages: cannot be combined with source.shards 2"),
            "{e}"
        );
        config(serde_json::json!({"outbox": {"messages": {"prefix": "outbox"}}})).unwrap();
        for source in [
            serde_json::json!({"shards": 2, "snapshot": "initial"}),
            serde_json::json!({"shards": 2, "on_slot_lost": "snapshot"}),
        ] {
            let e = refused(serde_json::json!({"source": source}));
            assert!(
                e.contains("snapshots cannot be combined with source.shards 2"),
                "{e}"
            );
        }
    }
}

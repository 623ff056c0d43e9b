//! Issue 11, item 2, against the local cluster: a role that sets every
//! output-formatting setting the other way still gets the pinned values on a
//! replication connection, because startup-packet settings outrank role
//! settings.

mod common;

use common::*;
use outbox_pgwire::{ReplicationClient, SslMode};

#[tokio::test]
async fn startup_settings_override_the_roles_output_styles() {
    let admin = admin().await;
    let role = unique("settings");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'pw';
             ALTER ROLE {role} SET datestyle = 'SQL, DMY';
             ALTER ROLE {role} SET intervalstyle = 'sql_standard';
             ALTER ROLE {role} SET bytea_output = 'escape';
             ALTER ROLE {role} SET extra_float_digits = -3;
             ALTER ROLE {role} SET timezone = 'America/St_Johns';"
        ))
        .await
        .unwrap();
    let body = {
        let role = role.clone();
        async move {
            // The SQL path of the same role shows the role's settings do apply...
            let mut o = opts(&role, Some("pw"));
            o.sslmode = SslMode::Disable;
            let (sql, _task) = outbox_pgwire::connect_sql(&o).await.unwrap();
            let row = sql
                .query_one(
                    "SELECT current_setting('bytea_output'), current_setting('IntervalStyle')",
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(
                (row.get::<_, String>(0), row.get::<_, String>(1)),
                ("escape".into(), "sql_standard".into())
            );
            // ...and the replication connection overrides every one of them.
            let mut c = ReplicationClient::connect(&o).await.unwrap();
            let rows = c
                .simple_query(
                    "SELECT current_setting('DateStyle'), current_setting('IntervalStyle'),
                            current_setting('bytea_output'), current_setting('extra_float_digits'),
                            current_setting('TimeZone'),
                            '2026-01-02 03:04:05.006+00'::timestamptz::text,
                            '\\x00ff'::bytea::text, interval '1 day 2 hours'::text,
                            0.1::float8::text",
                )
                .await
                .unwrap();
            let got: Vec<String> = rows[0].iter().map(|v| v.clone().unwrap()).collect();
            assert_eq!(
                got,
                [
                    "ISO, MDY",
                    "postgres",
                    "hex",
                    "3",
                    "UTC",
                    "2026-01-02 03:04:05.006+00",
                    "\\x00ff",
                    "1 day 02:00:00",
                    "0.1",
                ]
            );
            c.close().await.unwrap();
        }
    };
    with_cleanup(body, async {
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .await
            .unwrap();
    })
    .await;
}

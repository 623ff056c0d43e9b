//! Authentication methods against the local cluster: relay_trust (trust),
//! relay_md5 (md5), relay_scram and the main user (SCRAM-SHA-256), over the
//! replication protocol and over tokio-postgres.

mod common;

use common::*;
use outbox_pgwire::{
    connect_sql, AuthMethod, ChannelBinding, PgWireError, ReplicationClient, RequireAuth, SslMode,
};

/// relay_md5 needs the explicit allowance on these unverified connections;
/// the refusal itself is tested below and in fake_server.rs.
async fn replication_as(
    user: &str,
    password: Option<&str>,
    sslmode: SslMode,
) -> Result<ReplicationClient, PgWireError> {
    let _ = admin().await; // fails clearly if the cluster is down
    let mut o = opts(user, password);
    o.sslmode = sslmode;
    o.allow_password_without_verified_tls = user == "relay_md5";
    ReplicationClient::connect(&o).await
}

async fn check_replication_login(user: &str, password: Option<&str>) {
    for sslmode in [SslMode::Disable, SslMode::Require] {
        let mut c = replication_as(user, password, sslmode)
            .await
            .unwrap_or_else(|e| panic!("{user} ({sslmode}) should log in: {e}"));
        assert_eq!(c.is_tls(), sslmode == SslMode::Require);
        assert_eq!(
            repl_scalar(&mut c, "SELECT current_user").await.as_deref(),
            Some(user)
        );
        assert!(c.backend_pid().is_some());
        assert!(c.parameter("server_version").is_some());
        let id = c.identify_system().await.expect("IDENTIFY_SYSTEM");
        assert_eq!(id.dbname.as_deref(), Some(dbname().as_str()));
        c.close().await.unwrap();
    }
}

async fn check_sql_login(user: &str, password: Option<&str>) {
    let _ = admin().await;
    for sslmode in [SslMode::Disable, SslMode::Require] {
        let mut o = opts(user, password);
        o.sslmode = sslmode;
        // These logins are about the methods, not about the channel policy (see
        // sql_connection_refuses_md5_on_unverified_connections_by_default).
        o.allow_password_without_verified_tls = true;
        let (client, task) = connect_sql(&o)
            .await
            .unwrap_or_else(|e| panic!("{user} ({sslmode}) should log in: {e}"));
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), user);
        assert_eq!(sql_uses_ssl(&client).await, sslmode == SslMode::Require);
        drop(client);
        task.await.unwrap();
    }
}

#[tokio::test]
async fn replication_trust() {
    check_replication_login("relay_trust", None).await;
}

#[tokio::test]
async fn replication_md5() {
    check_replication_login("relay_md5", Some("relay_md5")).await;
}

#[tokio::test]
async fn replication_scram() {
    // Over TLS the server offers SCRAM-SHA-256-PLUS, so this also covers
    // tls-server-end-point channel binding (a wrong binding fails the login).
    check_replication_login("relay_scram", Some("relay_scram")).await;
}

#[tokio::test]
async fn replication_main_user() {
    let o = main_opts();
    check_replication_login(&o.user, o.password.as_deref()).await;
}

#[tokio::test]
async fn sql_trust() {
    check_sql_login("relay_trust", None).await;
}

#[tokio::test]
async fn sql_md5() {
    check_sql_login("relay_md5", Some("relay_md5")).await;
}

#[tokio::test]
async fn sql_scram() {
    check_sql_login("relay_scram", Some("relay_scram")).await;
}

const WRONG: &str = "not-the-password-7f3a";

fn assert_rejected(e: &PgWireError, user: &str) {
    assert_eq!(e.sqlstate(), Some("28P01"), "{e}");
    assert!(e.is_auth_failure(), "{e}");
    assert!(!e.is_retryable(), "auth failures must not be retried: {e}");
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains(WRONG),
        "the password leaked into the error: {text}"
    );
    assert!(
        text.contains(user),
        "the error should name the user: {text}"
    );
}

#[tokio::test]
async fn wrong_password_is_final() {
    for (user, sslmode) in [
        ("relay_md5", SslMode::Disable),
        ("relay_scram", SslMode::Disable),
        ("relay_scram", SslMode::Require),
    ] {
        let e = replication_as(user, Some(WRONG), sslmode)
            .await
            .unwrap_err();
        assert_rejected(&e, user);

        let mut o = opts(user, Some(WRONG));
        o.sslmode = sslmode;
        // MD5 over plaintext is refused before any password goes out unless allowed.
        o.allow_password_without_verified_tls = true;
        let e = connect_sql(&o).await.unwrap_err();
        assert_rejected(&e, user);
    }
}

#[tokio::test]
async fn missing_password_names_the_user() {
    for user in ["relay_md5", "relay_scram"] {
        let e = replication_as(user, None, SslMode::Disable)
            .await
            .unwrap_err();
        assert!(matches!(&e, PgWireError::Auth { .. }), "{e:?}");
        assert!(e.to_string().contains(user), "{e}");
        assert!(e.to_string().contains("password"), "{e}");
        assert!(!e.is_retryable());
    }
}

#[tokio::test]
async fn unknown_database_is_final() {
    let _ = admin().await;
    let mut o = opts("relay_trust", None);
    o.dbname = unique("no_such_db");
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_eq!(e.sqlstate(), Some("3D000"), "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn refused_connection_is_retryable() {
    // Nothing listens on the discard port of the loopback interface here.
    let mut o = opts("relay_trust", None);
    o.port = 9;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert!(matches!(e, PgWireError::Io(_)), "{e:?}");
    assert!(e.is_retryable(), "{e}");
    let e = connect_sql(&o).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn md5_is_refused_on_unverified_connections_by_default() {
    let _ = admin().await;
    for sslmode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
        let mut o = opts("relay_md5", Some("relay_md5"));
        o.sslmode = sslmode;
        let e = ReplicationClient::connect(&o).await.unwrap_err();
        assert!(matches!(&e, PgWireError::Auth { .. }), "{sslmode}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains("MD5") && text.contains("allow_password_without_verified_tls"),
            "{sslmode}: {text}"
        );
    }
}

#[tokio::test]
async fn md5_over_verified_tls_needs_no_allowance() {
    let _ = admin().await;
    let mut o = opts("relay_md5", Some("relay_md5"));
    o.host = "localhost".into();
    o.sslmode = SslMode::VerifyFull;
    o.sslrootcert = Some(tls_dir().join("ca.crt"));
    let mut c = ReplicationClient::connect(&o).await.unwrap();
    assert!(c.is_tls());
    assert_eq!(
        repl_scalar(&mut c, "SELECT current_user").await.as_deref(),
        Some("relay_md5")
    );
}

#[tokio::test]
async fn channel_binding_require_logs_in_with_scram_plus_and_refuses_md5() {
    let _ = admin().await;
    let mut o = opts("relay_scram", Some("relay_scram"));
    o.sslmode = SslMode::Require;
    o.channel_binding = ChannelBinding::Require;
    let mut c = ReplicationClient::connect(&o).await.unwrap();
    assert_eq!(
        repl_scalar(&mut c, "SELECT current_user").await.as_deref(),
        Some("relay_scram")
    );
    let mut o = opts("relay_md5", Some("relay_md5"));
    o.sslmode = SslMode::Require;
    o.channel_binding = ChannelBinding::Require;
    o.allow_password_without_verified_tls = true;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert!(e.to_string().contains("channel_binding=require"), "{e}");
}

#[tokio::test]
async fn require_auth_scram_accepts_scram_and_refuses_md5_and_trust() {
    let _ = admin().await;
    let scram_only = RequireAuth::only(&[AuthMethod::ScramSha256]);
    let mut o = opts("relay_scram", Some("relay_scram"));
    o.sslmode = SslMode::Disable;
    o.require_auth = scram_only;
    ReplicationClient::connect(&o).await.unwrap();
    for (user, password) in [("relay_md5", Some("relay_md5")), ("relay_trust", None)] {
        let mut o = opts(user, password);
        o.sslmode = SslMode::Disable;
        o.allow_password_without_verified_tls = true;
        o.require_auth = scram_only;
        let e = ReplicationClient::connect(&o).await.unwrap_err();
        assert!(matches!(&e, PgWireError::Auth { .. }), "{user}: {e:?}");
        assert!(
            e.to_string().contains("require_auth=scram-sha-256"),
            "{user}: {e}"
        );
    }
}

#[tokio::test]
async fn sql_connection_honours_channel_binding() {
    let _ = admin().await;
    let mut o = opts("relay_scram", Some("relay_scram"));
    o.sslmode = SslMode::Require;
    o.channel_binding = ChannelBinding::Require;
    let (client, _task) = connect_sql(&o).await.unwrap();
    assert!(sql_uses_ssl(&client).await);
    // MD5 cannot bind: tokio-postgres refuses it under require, like the replication client.
    let mut o = opts("relay_md5", Some("relay_md5"));
    o.sslmode = SslMode::Require;
    o.channel_binding = ChannelBinding::Require;
    let e = connect_sql(&o).await.unwrap_err();
    assert!(format!("{e} {e:?}").contains("channel binding"), "{e:?}");
}

/// The SQL connection (tokio-postgres) is held to the same rule as the replication
/// client: no cleartext or MD5 password over plaintext or unverified TLS unless allowed.
/// Before, tokio-postgres answered the MD5 request on every sslmode.
#[tokio::test]
async fn sql_connection_refuses_md5_on_unverified_connections_by_default() {
    let _ = admin().await;
    for sslmode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
        let mut o = opts("relay_md5", Some("relay_md5"));
        o.sslmode = sslmode;
        let e = connect_sql(&o).await.unwrap_err();
        assert!(matches!(&e, PgWireError::Auth { .. }), "{sslmode}: {e:?}");
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(
            text.contains("MD5") && text.contains("allow_password_without_verified_tls"),
            "{sslmode}: {text}"
        );
    }
    // Allowed explicitly, or over verified TLS, it logs in.
    let mut o = opts("relay_md5", Some("relay_md5"));
    o.allow_password_without_verified_tls = true;
    let (client, _task) = connect_sql(&o).await.unwrap();
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "relay_md5");
    let mut o = opts("relay_md5", Some("relay_md5"));
    o.host = "localhost".into();
    o.sslmode = SslMode::VerifyFull;
    o.sslrootcert = Some(tls_dir().join("ca.crt"));
    let (client, _task) = connect_sql(&o).await.unwrap();
    assert!(sql_uses_ssl(&client).await);
}

#[tokio::test]
async fn sql_connection_honours_require_auth() {
    let _ = admin().await;
    let mut o = opts("relay_md5", Some("relay_md5"));
    o.allow_password_without_verified_tls = true;
    o.require_auth = "scram-sha-256".parse().unwrap();
    let e = connect_sql(&o).await.unwrap_err();
    assert!(matches!(&e, PgWireError::Auth { .. }), "{e:?}");
    let mut o = opts("relay_scram", Some("relay_scram"));
    o.require_auth = "scram-sha-256".parse().unwrap();
    connect_sql(&o).await.unwrap();
}

//! The replication connection: startup with `replication=database` and the
//! commands of the replication protocol, over the simple query protocol.

use std::collections::HashMap;

use outbox_pgoutput::Lsn;
use postgres_protocol::message::frontend;
use tokio::io::{ReadHalf, WriteHalf};

use crate::auth::{Channel, Policy};
use crate::config::ConnectOptions;
use crate::error::PgWireError;
use crate::frame::{parse_error_fields, tag, Body, Frame, FrameReader};
use crate::silence::{Heard, PingPolicy};
use crate::stream::{ReplicationStream, StatusSender};
use crate::transport::{establish, MessageWriter, Transport};

/// Session settings sent in the startup packet. The walsender prints every
/// value pgoutput sends with its own session settings, which a role or
/// database may change (`ALTER ROLE .. SET datestyle = 'SQL, DMY'`); settings
/// from the startup packet override those. PostgreSQL's own apply worker pins
/// datestyle, intervalstyle and extra_float_digits the same way
/// (libpqwalreceiver.c); the relay also decodes bytea and timestamps itself,
/// hence bytea_output and TimeZone.
pub(crate) const OUTPUT_SETTINGS: &[(&str, &str)] = &[
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("TimeZone", "UTC"),
];

/// Result of `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    pub systemid: String,
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// `None` for a physical replication connection.
    pub dbname: Option<String>,
}

/// Result of `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    pub slot_name: String,
    /// Changes committed after this LSN will be streamed from the slot.
    pub consistent_point: Lsn,
    /// The exported snapshot (`SNAPSHOT 'export'`): what the database held at the
    /// consistent point, importable with `SET TRANSACTION SNAPSHOT` until the next
    /// command on this connection.
    pub snapshot_name: Option<String>,
    pub output_plugin: Option<String>,
}

/// A connection in the replication protocol (walsender) with a database,
/// which also accepts ordinary SQL through `simple_query`.
pub struct ReplicationClient {
    reader: FrameReader<ReadHalf<Transport>>,
    writer: MessageWriter<WriteHalf<Transport>>,
    parameters: HashMap<String, String>,
    backend_key: Option<(i32, i32)>,
    tls: bool,
    /// For the stream, once replication starts.
    receive_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for ReplicationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationClient")
            .field("backend_pid", &self.backend_pid())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ReplicationClient {
    /// Connects, negotiates TLS per `sslmode`, authenticates and waits until
    /// the server is ready for commands, all within `connect_timeout`.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self, PgWireError> {
        match tokio::time::timeout(opts.connect_timeout, Self::connect_inner(opts)).await {
            Ok(result) => result,
            Err(_) => Err(PgWireError::ConnectTimeout {
                addr: opts.addr(),
                timeout: opts.connect_timeout,
            }),
        }
    }

    async fn connect_inner(opts: &ConnectOptions) -> Result<Self, PgWireError> {
        if opts.user.is_empty() {
            return Err(PgWireError::Config("user must not be empty".into()));
        }
        let established = establish(opts).await?;
        let tls = matches!(established.transport, Transport::Tls(_));
        let fd = established.transport.raw_fd();
        let (read, write) = tokio::io::split(established.transport);
        let mut reader = FrameReader::new(read);
        reader.set_socket(fd);
        reader.set_max_len(opts.max_message_len);
        let mut client = ReplicationClient {
            reader,
            writer: MessageWriter::new(write),
            parameters: HashMap::new(),
            backend_key: None,
            tls,
            receive_timeout: opts.liveness.receive_timeout,
        };
        let mut params = vec![
            ("user", opts.user.as_str()),
            ("database", opts.dbname.as_str()),
            ("replication", "database"),
            ("application_name", opts.application_name.as_str()),
        ];
        params.extend_from_slice(OUTPUT_SETTINGS);
        client
            .writer
            .send(|buf| frontend::startup_message(params, buf))
            .await?;
        let channel = if tls {
            Channel::Tls {
                verified: opts.verifies_server(),
                end_point: established.channel_binding,
            }
        } else {
            Channel::Plain
        };
        let policy = Policy {
            user: &opts.user,
            password: opts.password.as_deref(),
            require_auth: opts.require_auth,
            channel_binding: opts.channel_binding,
            allow_password_without_verified_tls: opts.allow_password_without_verified_tls,
        };
        crate::auth::authenticate(&mut client.reader, &mut client.writer, &policy, &channel)
            .await?;
        client.wait_ready().await?;
        tracing::debug!(
            addr = %opts.addr(),
            user = %opts.user,
            tls,
            server_version = client.parameter("server_version").unwrap_or("?"),
            "replication connection established"
        );
        Ok(client)
    }

    /// Reads the post-authentication messages up to ReadyForQuery.
    async fn wait_ready(&mut self) -> Result<(), PgWireError> {
        loop {
            let frame = self.reader.next_frame().await?;
            match frame.tag {
                tag::READY_FOR_QUERY => return Ok(()),
                tag::BACKEND_KEY_DATA => {
                    let mut b = Body::new(&frame.body, "BackendKeyData");
                    self.backend_key = Some((b.i32()?, b.i32()?));
                }
                tag::ERROR_RESPONSE => {
                    return Err(PgWireError::Server(parse_error_fields(&frame.body)?))
                }
                _ => self.handle_async(&frame, "startup")?,
            }
        }
    }

    /// Messages the server may send at any time.
    fn handle_async(&mut self, frame: &Frame, during: &str) -> Result<(), PgWireError> {
        match frame.tag {
            tag::PARAMETER_STATUS => {
                let mut b = Body::new(&frame.body, "ParameterStatus");
                let name = b.cstr_lossy()?;
                let value = b.cstr_lossy()?;
                self.parameters.insert(name, value);
                Ok(())
            }
            tag::NOTICE_RESPONSE => {
                log_notice(&frame.body);
                Ok(())
            }
            tag::NOTIFICATION_RESPONSE | tag::NEGOTIATE_PROTOCOL_VERSION => Ok(()),
            other => Err(PgWireError::protocol(format!(
                "unexpected message {:?} during {during}",
                char::from(other)
            ))),
        }
    }

    /// A run-time parameter the server reported (`server_version`,
    /// `integer_datetimes`, ...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// Process id of the walsender serving this connection.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_key.map(|(pid, _)| pid)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Runs one or more statements with the simple query protocol and returns
    /// the rows of all their results as text (NULL as `None`).
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, PgWireError> {
        self.writer.send(|buf| frontend::query(sql, buf)).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let frame = self.reader.next_frame().await?;
            match frame.tag {
                tag::ROW_DESCRIPTION | tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE => {}
                tag::DATA_ROW => rows.push(parse_data_row(&frame.body)?),
                // The server goes on to ReadyForQuery after an error; stay in
                // step with it so the connection remains usable.
                tag::ERROR_RESPONSE => error = Some(parse_error_fields(&frame.body)?),
                tag::READY_FOR_QUERY => {
                    return match error {
                        Some(e) => Err(PgWireError::Server(e)),
                        None => Ok(rows),
                    }
                }
                tag::COPY_BOTH_RESPONSE | tag::COPY_OUT_RESPONSE | tag::COPY_IN_RESPONSE => {
                    return Err(PgWireError::protocol(
                        "simple_query got a COPY response; use start_logical_replication for streaming commands",
                    ))
                }
                _ => self.handle_async(&frame, "a query")?,
            }
        }
    }

    pub async fn identify_system(&mut self) -> Result<IdentifySystem, PgWireError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = single_row(rows, 4, "IDENTIFY_SYSTEM")?;
        let field = |i: usize| {
            row[i]
                .clone()
                .ok_or_else(|| PgWireError::protocol(format!("IDENTIFY_SYSTEM column {i} is NULL")))
        };
        let timeline = field(1)?;
        let xlogpos = field(2)?;
        Ok(IdentifySystem {
            systemid: field(0)?,
            timeline: timeline.parse().map_err(|_| {
                PgWireError::protocol(format!(
                    "IDENTIFY_SYSTEM timeline {timeline:?} is not a number"
                ))
            })?,
            xlogpos: parse_lsn(&xlogpos, "IDENTIFY_SYSTEM xlogpos")?,
            dbname: row[3].clone(),
        })
    }

    /// `CREATE_REPLICATION_SLOT slot LOGICAL plugin NOEXPORT_SNAPSHOT`: a
    /// persistent slot.
    pub async fn create_logical_slot(
        &mut self,
        slot: &str,
        plugin: &str,
    ) -> Result<CreatedSlot, PgWireError> {
        self.create_slot(slot, plugin, false).await
    }

    /// A persistent slot with `FAILOVER`: PostgreSQL 17+ synchronizes it to standbys
    /// that have `sync_replication_slots` on, so it survives a failover. Older servers
    /// refuse the option (a syntax error); the caller words that for the operator.
    pub async fn create_failover_logical_slot(
        &mut self,
        slot: &str,
        plugin: &str,
    ) -> Result<CreatedSlot, PgWireError> {
        // The parenthesized option list exists since 15; FAILOVER since 17.
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL {} (SNAPSHOT 'nothing', FAILOVER true)",
            quote_ident(slot),
            quote_ident(plugin)
        );
        self.run_create_slot(&sql, slot).await
    }

    /// A persistent slot that exports its snapshot (`EXPORT_SNAPSHOT`; with `failover`,
    /// PostgreSQL 17's `(SNAPSHOT 'export', FAILOVER true)`). The snapshot stays
    /// importable only while this connection sends no further command: import it
    /// (`SET TRANSACTION SNAPSHOT`) on another connection before starting replication.
    pub async fn create_logical_slot_exporting(
        &mut self,
        slot: &str,
        plugin: &str,
        failover: bool,
    ) -> Result<CreatedSlot, PgWireError> {
        // The legacy spelling is accepted from PostgreSQL 10 to 18, so 13 and 14 (which
        // lack the option list) need no branch; FAILOVER exists only in the list.
        let options = if failover {
            "(SNAPSHOT 'export', FAILOVER true)"
        } else {
            "EXPORT_SNAPSHOT"
        };
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL {} {options}",
            quote_ident(slot),
            quote_ident(plugin)
        );
        let created = self.run_create_slot(&sql, slot).await?;
        if created.snapshot_name.is_none() {
            return Err(PgWireError::protocol(
                "CREATE_REPLICATION_SLOT with EXPORT_SNAPSHOT returned no snapshot name",
            ));
        }
        Ok(created)
    }

    /// Like `create_logical_slot`, but the server drops the slot when this
    /// connection ends.
    pub async fn create_temporary_logical_slot(
        &mut self,
        slot: &str,
        plugin: &str,
    ) -> Result<CreatedSlot, PgWireError> {
        self.create_slot(slot, plugin, true).await
    }

    async fn create_slot(
        &mut self,
        slot: &str,
        plugin: &str,
        temporary: bool,
    ) -> Result<CreatedSlot, PgWireError> {
        // The pre-15 spelling (NOEXPORT_SNAPSHOT) is still accepted by newer
        // servers, so one command works everywhere from PostgreSQL 10 on.
        let sql = format!(
            "CREATE_REPLICATION_SLOT {}{} LOGICAL {} NOEXPORT_SNAPSHOT",
            quote_ident(slot),
            if temporary { " TEMPORARY" } else { "" },
            quote_ident(plugin)
        );
        self.run_create_slot(&sql, slot).await
    }

    async fn run_create_slot(&mut self, sql: &str, slot: &str) -> Result<CreatedSlot, PgWireError> {
        let rows = self.simple_query(sql).await?;
        let row = single_row(rows, 2, "CREATE_REPLICATION_SLOT")?;
        let point = row[1].as_deref().ok_or_else(|| {
            PgWireError::protocol("CREATE_REPLICATION_SLOT returned no consistent_point")
        })?;
        Ok(CreatedSlot {
            slot_name: row[0].clone().unwrap_or_else(|| slot.to_owned()),
            consistent_point: parse_lsn(point, "consistent_point")?,
            snapshot_name: row.get(2).cloned().flatten(),
            output_plugin: row.get(3).cloned().flatten(),
        })
    }

    /// `DROP_REPLICATION_SLOT slot [WAIT]`. With `wait`, a slot still in use
    /// by another connection is waited for instead of being an error (55006).
    pub async fn drop_slot(&mut self, slot: &str, wait: bool) -> Result<(), PgWireError> {
        let sql = format!(
            "DROP_REPLICATION_SLOT {}{}",
            quote_ident(slot),
            if wait { " WAIT" } else { "" }
        );
        self.simple_query(&sql).await.map(drop)
    }

    /// `START_REPLICATION SLOT slot LOGICAL start (options)`, then splits the
    /// connection into the stream of server messages and the sender of status
    /// updates, which may live on different tasks.
    pub async fn start_logical_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &[(&str, &str)],
    ) -> Result<(ReplicationStream, StatusSender), PgWireError> {
        let sql = start_replication_command(slot, start, options);
        self.writer.send(|buf| frontend::query(&sql, buf)).await?;
        loop {
            let frame = self.reader.next_frame().await?;
            match frame.tag {
                tag::COPY_BOTH_RESPONSE => break,
                tag::ERROR_RESPONSE => {
                    return Err(PgWireError::Server(parse_error_fields(&frame.body)?))
                }
                _ => self.handle_async(&frame, "START_REPLICATION")?,
            }
        }
        tracing::debug!(slot, %start, "logical replication started");
        // Only now: before streaming there is no way to make a live server
        // speak (CREATE_REPLICATION_SLOT may wait minutes for old transactions),
        // so those waits rely on TCP keepalive instead.
        let heard = Heard::new();
        self.reader
            .watch_silence(self.receive_timeout, heard.clone());
        Ok((
            ReplicationStream::new(self.reader),
            StatusSender::new(self.writer, PingPolicy::new(heard, self.receive_timeout)),
        ))
    }

    /// Sends Terminate and closes the connection.
    pub async fn close(mut self) -> Result<(), PgWireError> {
        self.writer
            .send(|buf| {
                frontend::terminate(buf);
                Ok(())
            })
            .await?;
        let _ = self.writer.shutdown().await;
        Ok(())
    }
}

pub(crate) fn start_replication_command(
    slot: &str,
    start: Lsn,
    options: &[(&str, &str)],
) -> String {
    let mut sql = format!(
        "START_REPLICATION SLOT {} LOGICAL {start}",
        quote_ident(slot)
    );
    if !options.is_empty() {
        let opts: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("{} {}", quote_ident(k), quote_literal(v)))
            .collect();
        sql.push_str(" (");
        sql.push_str(&opts.join(", "));
        sql.push(')');
    }
    sql
}

/// Double-quoted identifier, as the replication command scanner reads it.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Single-quoted literal. The replication scanner knows no backslash
/// escapes, so doubling quotes is the whole job.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn parse_lsn(s: &str, what: &str) -> Result<Lsn, PgWireError> {
    s.parse()
        .map_err(|_| PgWireError::protocol(format!("{what} {s:?} is not an LSN")))
}

fn single_row(
    mut rows: Vec<Vec<Option<String>>>,
    min_columns: usize,
    command: &str,
) -> Result<Vec<Option<String>>, PgWireError> {
    if rows.len() != 1 || rows[0].len() < min_columns {
        return Err(PgWireError::protocol(format!(
            "{command} returned {} rows (expected one row of at least {min_columns} columns)",
            rows.len()
        )));
    }
    Ok(rows.remove(0))
}

fn parse_data_row(body: &[u8]) -> Result<Vec<Option<String>>, PgWireError> {
    let mut b = Body::new(body, "DataRow");
    let n = b.i16()?;
    let mut row = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = b.i32()?;
        if len < 0 {
            row.push(None);
        } else {
            let bytes = b.bytes(len as usize)?;
            let s = std::str::from_utf8(bytes).map_err(|_| {
                PgWireError::protocol("a text column is not UTF-8 despite client_encoding=UTF8")
            })?;
            row.push(Some(s.to_owned()));
        }
    }
    Ok(row)
}

/// NoticeResponse: worth a log line, never an error.
pub(crate) fn log_notice(body: &[u8]) {
    match parse_error_fields(body) {
        Ok(n) if n.severity == "WARNING" => {
            tracing::warn!(code = %n.code, message = %n.message, detail = ?n.detail, "PostgreSQL warning")
        }
        Ok(n) => {
            tracing::info!(severity = %n.severity, code = %n.code, message = %n.message, "PostgreSQL notice")
        }
        Err(e) => tracing::warn!(error = %e, "malformed NoticeResponse"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("slot"), "\"slot\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "'a\\b'");
    }

    #[test]
    fn start_replication_text() {
        assert_eq!(
            start_replication_command(
                "s",
                Lsn(0x16_B374_D848),
                &[
                    ("proto_version", "1"),
                    ("publication_names", "\"pub\",\"o'ther\""),
                    ("messages", "true")
                ]
            ),
            "START_REPLICATION SLOT \"s\" LOGICAL 16/B374D848 (\"proto_version\" '1', \
             \"publication_names\" '\"pub\",\"o''ther\"', \"messages\" 'true')"
        );
        assert_eq!(
            start_replication_command("s", Lsn(0), &[]),
            "START_REPLICATION SLOT \"s\" LOGICAL 0/0"
        );
    }

    #[test]
    fn data_rows() {
        let mut body = 3i16.to_be_bytes().to_vec();
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(b"ab");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(
            parse_data_row(&body).unwrap(),
            vec![Some("ab".into()), None, Some(String::new())]
        );
        assert!(parse_data_row(&body[..5]).is_err());
    }
}

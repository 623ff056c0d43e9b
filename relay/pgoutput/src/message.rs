//! The message types, one per entry of PostgreSQL's "Logical Replication Message
//! Formats" page (protocol versions 1 and 2).
//!
//! Doc comments follow the page's wording. Integer fields keep their wire
//! meaning: LSNs are [`Lsn`], timestamps are `i64` microseconds since the
//! PostgreSQL epoch (see [`pg_timestamp_to_unix_micros`](crate::pg_timestamp_to_unix_micros)),
//! transaction ids and OIDs are `u32`.
//!
//! Fields named `xid: Option<u32>` are the protocol-version-2 prefix "Xid of the
//! transaction (only present for streamed transactions)": `Some` exactly when the
//! message was decoded inside a Stream Start / Stream Stop block.

use bytes::Bytes;

use crate::lsn::Lsn;
use crate::tuple::{OldTuple, TupleData};

/// Tag bytes: the `Byte1` that identifies each message.
pub mod tag {
    /// Begin.
    pub const BEGIN: u8 = b'B';
    /// Logical decoding message.
    pub const MESSAGE: u8 = b'M';
    /// Commit.
    pub const COMMIT: u8 = b'C';
    /// Origin.
    pub const ORIGIN: u8 = b'O';
    /// Relation.
    pub const RELATION: u8 = b'R';
    /// Type.
    pub const TYPE: u8 = b'Y';
    /// Insert.
    pub const INSERT: u8 = b'I';
    /// Update.
    pub const UPDATE: u8 = b'U';
    /// Delete.
    pub const DELETE: u8 = b'D';
    /// Truncate.
    pub const TRUNCATE: u8 = b'T';
    /// Stream Start (protocol version 2).
    pub const STREAM_START: u8 = b'S';
    /// Stream Stop (protocol version 2).
    pub const STREAM_STOP: u8 = b'E';
    /// Stream Commit (protocol version 2).
    pub const STREAM_COMMIT: u8 = b'c';
    /// Stream Abort (protocol version 2).
    pub const STREAM_ABORT: u8 = b'A';
}

/// The protocol page's name for the message with this tag, or `None` for a tag
/// this crate does not decode.
pub fn message_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        tag::BEGIN => "Begin",
        tag::MESSAGE => "Message",
        tag::COMMIT => "Commit",
        tag::ORIGIN => "Origin",
        tag::RELATION => "Relation",
        tag::TYPE => "Type",
        tag::INSERT => "Insert",
        tag::UPDATE => "Update",
        tag::DELETE => "Delete",
        tag::TRUNCATE => "Truncate",
        tag::STREAM_START => "Stream Start",
        tag::STREAM_STOP => "Stream Stop",
        tag::STREAM_COMMIT => "Stream Commit",
        tag::STREAM_ABORT => "Stream Abort",
        _ => return None,
    })
}

/// One pgoutput message, as carried in the data of an XLogData (`w`) message of
/// the streaming replication protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicalReplicationMessage {
    /// `Byte1('B')`: identifies the message as a begin message.
    Begin(Begin),
    /// `Byte1('M')`: identifies the message as a logical decoding message.
    Message(LogicalMessage),
    /// `Byte1('C')`: identifies the message as a commit message.
    Commit(Commit),
    /// `Byte1('O')`: identifies the message as an origin message.
    Origin(Origin),
    /// `Byte1('R')`: identifies the message as a relation message.
    Relation(Relation),
    /// `Byte1('Y')`: identifies the message as a type message.
    Type(TypeMessage),
    /// `Byte1('I')`: identifies the message as an insert message.
    Insert(Insert),
    /// `Byte1('U')`: identifies the message as an update message.
    Update(Update),
    /// `Byte1('D')`: identifies the message as a delete message.
    Delete(Delete),
    /// `Byte1('T')`: identifies the message as a truncate message.
    Truncate(Truncate),
    /// `Byte1('S')`: identifies the message as a stream start message.
    /// Protocol version 2.
    StreamStart(StreamStart),
    /// `Byte1('E')`: identifies the message as a stream stop message.
    /// Protocol version 2. It has no fields.
    StreamStop,
    /// `Byte1('c')`: identifies the message as a stream commit message.
    /// Protocol version 2.
    StreamCommit(StreamCommit),
    /// `Byte1('A')`: identifies the message as a stream abort message.
    /// Protocol version 2.
    StreamAbort(StreamAbort),
}

impl LogicalReplicationMessage {
    /// The tag byte identifying this message on the wire.
    pub fn tag(&self) -> u8 {
        use LogicalReplicationMessage as M;
        match self {
            M::Begin(_) => tag::BEGIN,
            M::Message(_) => tag::MESSAGE,
            M::Commit(_) => tag::COMMIT,
            M::Origin(_) => tag::ORIGIN,
            M::Relation(_) => tag::RELATION,
            M::Type(_) => tag::TYPE,
            M::Insert(_) => tag::INSERT,
            M::Update(_) => tag::UPDATE,
            M::Delete(_) => tag::DELETE,
            M::Truncate(_) => tag::TRUNCATE,
            M::StreamStart(_) => tag::STREAM_START,
            M::StreamStop => tag::STREAM_STOP,
            M::StreamCommit(_) => tag::STREAM_COMMIT,
            M::StreamAbort(_) => tag::STREAM_ABORT,
        }
    }

    /// The protocol page's name for this message (`"Stream Commit"`, …).
    pub fn name(&self) -> &'static str {
        // Every variant's tag is known.
        message_name(self.tag()).unwrap_or("(unknown)")
    }

    /// The protocol-version-2 xid prefix, for the message kinds that carry one
    /// inside a streamed block (Message, Relation, Type, Insert, Update, Delete,
    /// Truncate). `None` for other kinds and outside streamed blocks.
    pub fn stream_xid(&self) -> Option<u32> {
        use LogicalReplicationMessage as M;
        match self {
            M::Message(m) => m.xid,
            M::Relation(m) => m.xid,
            M::Type(m) => m.xid,
            M::Insert(m) => m.xid,
            M::Update(m) => m.xid,
            M::Delete(m) => m.xid,
            M::Truncate(m) => m.xid,
            M::Begin(_)
            | M::Commit(_)
            | M::Origin(_)
            | M::StreamStart(_)
            | M::StreamStop
            | M::StreamCommit(_)
            | M::StreamAbort(_) => None,
        }
    }
}

/// Begin (`B`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// `Int64 (XLogRecPtr)`: the final LSN of the transaction.
    pub final_lsn: Lsn,
    /// `Int64 (TimestampTz)`: commit timestamp of the transaction. The value is in
    /// number of microseconds since PostgreSQL epoch (2000-01-01).
    pub commit_ts: i64,
    /// `Int32 (TransactionId)`: xid of the transaction.
    pub xid: u32,
}

/// Logical decoding message (`M`), as emitted by `pg_logical_emit_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// `Int32 (TransactionId)`: xid of the transaction (only present for streamed
    /// transactions). This field is available since protocol version 2.
    pub xid: Option<u32>,
    /// `Int8`: flags; either 0 for no flags or 1 if the logical decoding message is
    /// transactional. Decoded as `flags & 1`; other bits are ignored.
    pub transactional: bool,
    /// `Int64 (XLogRecPtr)`: the LSN of the logical decoding message.
    pub lsn: Lsn,
    /// `String`: the prefix of the logical decoding message.
    pub prefix: String,
    /// `Int32` length, then `Byte`n: the content of the logical decoding message.
    /// A zero-copy slice of the decoded buffer.
    pub content: Bytes,
}

/// Commit (`C`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// `Int8(0)`: flags; currently unused.
    pub flags: u8,
    /// `Int64 (XLogRecPtr)`: the LSN of the commit.
    pub commit_lsn: Lsn,
    /// `Int64 (XLogRecPtr)`: the end LSN of the transaction.
    pub end_lsn: Lsn,
    /// `Int64 (TimestampTz)`: commit timestamp of the transaction. The value is in
    /// number of microseconds since PostgreSQL epoch (2000-01-01).
    pub commit_ts: i64,
}

/// Origin (`O`). There can be multiple Origin messages inside a single transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `Int64 (XLogRecPtr)`: the LSN of the commit on the origin server.
    pub commit_lsn: Lsn,
    /// `String`: name of the origin.
    pub name: String,
}

/// Relation (`R`): describes a table before the first change to it (and again
/// after its definition changes). Later messages refer to it by `rel_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// `Int32 (TransactionId)`: xid of the transaction (only present for streamed
    /// transactions). This field is available since protocol version 2.
    pub xid: Option<u32>,
    /// `Int32 (Oid)`: OID of the relation.
    pub rel_id: u32,
    /// `String`: namespace (empty string for `pg_catalog`).
    pub namespace: String,
    /// `String`: relation name.
    pub name: String,
    /// `Int8`: replica identity setting for the relation (same as `relreplident`
    /// in `pg_class`).
    pub replica_identity: ReplicaIdentity,
    /// `Int16` number of columns, then one entry per column (except generated
    /// columns, which are not sent).
    pub columns: Vec<Column>,
}

/// A relation's replica identity, `pg_class.relreplident`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: default (primary key, if any).
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: index with `indisreplident` set.
    Index,
}

impl ReplicaIdentity {
    /// Parses a `relreplident` byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }

    /// The `relreplident` byte.
    pub fn as_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// `Int8`: flags for the column. Currently can be either 0 for no flags or 1
    /// which marks the column as part of the key.
    pub flags: u8,
    /// `String`: name of the column.
    pub name: String,
    /// `Int32 (Oid)`: OID of the column's data type.
    pub type_oid: u32,
    /// `Int32`: type modifier of the column (`atttypmod`).
    pub type_modifier: i32,
}

impl Column {
    /// Flag bit marking the column as part of the key.
    pub const FLAG_KEY: u8 = 1;

    /// Whether the column is part of the replica identity key (`flags & 1`).
    pub fn is_key(&self) -> bool {
        self.flags & Self::FLAG_KEY != 0
    }
}

/// Type (`Y`): describes a non-built-in data type before it is first used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    /// `Int32 (TransactionId)`: xid of the transaction (only present for streamed
    /// transactions). This field is available since protocol version 2.
    pub xid: Option<u32>,
    /// `Int32 (Oid)`: OID of the data type.
    pub oid: u32,
    /// `String`: namespace (empty string for `pg_catalog`).
    pub namespace: String,
    /// `String`: name of the data type.
    pub name: String,
}

/// Insert (`I`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// `Int32 (TransactionId)`: xid of the transaction (only present for streamed
    /// transactions). This field is available since protocol version 2.
    pub xid: Option<u32>,
    /// `Int32 (Oid)`: OID of the relation corresponding to the ID in the relation
    /// message.
    pub rel_id: u32,
    /// `Byte1('N')` then TupleData: the contents of a new tuple.
    pub new: TupleData,
}

/// Update (`U`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// `Int32 (TransactionId)`: xid of the transaction (only present for streamed
    /// transactions). This field is available since protocol version 2.
    pub xid: Option<u32>,
    /// `Int32 (Oid)`: OID of the relation corresponding to the ID in the relation
    /// message.
    pub rel_id: u32,
    /// Optional `Byte1('K')` or `Byte1('O')` then TupleData. `K` is present only if
    /// the update changed data in any of the column(s) that are part of the
    /// REPLICA IDENTITY index; `O` only if the table uses REPLICA IDENTITY FULL.
    /// Absent otherwise: the old key is the new tuple's key.
    pub old: Option<OldTuple>,
    /// `Byte1('N')` then TupleData: the contents of a new tuple.
    pub new: TupleData,
}

/// Delete (`D`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// `Int32 (TransactionId)`: xid of the transaction (only present for streamed
    /// transactions). This field is available since protocol version 2.
    pub xid: Option<u32>,
    /// `Int32 (Oid)`: OID of the relation corresponding to the ID in the relation
    /// message.
    pub rel_id: u32,
    /// `Byte1('K')` (the key, for REPLICA IDENTITY DEFAULT or INDEX) or
    /// `Byte1('O')` (the whole old tuple, for REPLICA IDENTITY FULL), then TupleData.
    pub old: OldTuple,
}

/// Truncate (`T`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// `Int32 (TransactionId)`: xid of the transaction (only present for streamed
    /// transactions). This field is available since protocol version 2.
    pub xid: Option<u32>,
    /// `Int8`: option bits for TRUNCATE: 1 for CASCADE, 2 for RESTART IDENTITY.
    pub options: u8,
    /// `Int32` number of relations, then `Int32 (Oid)` OID of each relation.
    pub rel_ids: Vec<u32>,
}

impl Truncate {
    /// Option bit: `TRUNCATE … CASCADE`.
    pub const OPTION_CASCADE: u8 = 1;
    /// Option bit: `TRUNCATE … RESTART IDENTITY`.
    pub const OPTION_RESTART_IDENTITY: u8 = 2;

    pub fn cascade(&self) -> bool {
        self.options & Self::OPTION_CASCADE != 0
    }

    pub fn restart_identity(&self) -> bool {
        self.options & Self::OPTION_RESTART_IDENTITY != 0
    }
}

/// Stream Start (`S`). Protocol version 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// `Int32 (TransactionId)`: xid of the transaction.
    pub xid: u32,
    /// `Int8`: a value of 1 indicates this is the first stream segment for this
    /// XID, 0 for any other stream segment. Decoded as `== 1`, like PostgreSQL's
    /// own reader.
    pub first_segment: bool,
}

/// Stream Commit (`c`). Protocol version 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    /// `Int32 (TransactionId)`: xid of the transaction.
    pub xid: u32,
    /// `Int8(0)`: flags; currently unused.
    pub flags: u8,
    /// `Int64 (XLogRecPtr)`: the LSN of the commit.
    pub commit_lsn: Lsn,
    /// `Int64 (XLogRecPtr)`: the end LSN of the transaction.
    pub end_lsn: Lsn,
    /// `Int64 (TimestampTz)`: commit timestamp of the transaction. The value is in
    /// number of microseconds since PostgreSQL epoch (2000-01-01).
    pub commit_ts: i64,
}

/// Stream Abort (`A`). Protocol version 2 form only: the protocol-version-4 form
/// (parallel apply, with abort LSN and timestamp) is rejected as trailing bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    /// `Int32 (TransactionId)`: xid of the transaction.
    pub xid: u32,
    /// `Int32 (TransactionId)`: xid of the subtransaction (will be same as xid of
    /// the transaction for top-level transactions).
    pub subxid: u32,
}

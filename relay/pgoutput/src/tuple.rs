//! TupleData: the row images carried by Insert, Update and Delete.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::error::DecodeError;

/// TupleData kind byte: the column is NULL.
pub const KIND_NULL: u8 = b'n';
/// TupleData kind byte: an unchanged TOASTed value (the actual value is not sent).
pub const KIND_UNCHANGED_TOAST: u8 = b'u';
/// TupleData kind byte: the column is sent as text-formatted data.
pub const KIND_TEXT: u8 = b't';
/// TupleData kind byte: the column is sent as binary data.
pub const KIND_BINARY: u8 = b'b';

/// One row image: a value for each column, in the order of the Relation message's
/// columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TupleData(pub Vec<TupleValue>);

impl TupleData {
    /// The column values, in column order.
    pub fn values(&self) -> &[TupleValue] {
        &self.0
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of column `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&TupleValue> {
        self.0.get(index)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, TupleValue> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a TupleData {
    type Item = &'a TupleValue;
    type IntoIter = std::slice::Iter<'a, TupleValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One column of a [`TupleData`].
///
/// `Text` and `Binary` hold slices of the buffer passed to [`decode`](crate::decode()):
/// no bytes are copied, and the slice keeps that buffer alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// `Byte1('n')`: identifies the data as NULL value.
    Null,
    /// `Byte1('u')`: identifies unchanged TOASTed value (the actual value is not sent).
    UnchangedToast,
    /// `Byte1('t')`: identifies the data as text formatted value, followed by
    /// `Int32` length and the value's bytes.
    Text(Bytes),
    /// `Byte1('b')`: identifies the data as binary formatted value, followed by
    /// `Int32` length and the value's bytes.
    Binary(Bytes),
}

impl TupleValue {
    /// The kind byte this value has on the wire.
    pub fn kind(&self) -> u8 {
        match self {
            TupleValue::Null => KIND_NULL,
            TupleValue::UnchangedToast => KIND_UNCHANGED_TOAST,
            TupleValue::Text(_) => KIND_TEXT,
            TupleValue::Binary(_) => KIND_BINARY,
        }
    }

    /// The value's bytes for `Text` and `Binary`; `None` for `Null` and `UnchangedToast`.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            TupleValue::Text(b) | TupleValue::Binary(b) => Some(b),
            TupleValue::Null | TupleValue::UnchangedToast => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, TupleValue::Null)
    }
}

/// The old row image of an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `Byte1('K')`: the following TupleData submessage is a key (the replica
    /// identity columns only; other columns are sent as NULL).
    Key(TupleData),
    /// `Byte1('O')`: the following TupleData submessage is the whole old tuple
    /// (replica identity FULL).
    Full(TupleData),
}

/// Marker byte: new tuple follows.
pub const MARKER_NEW: u8 = b'N';
/// Marker byte: old key tuple follows.
pub const MARKER_KEY: u8 = b'K';
/// Marker byte: old full tuple follows.
pub const MARKER_OLD: u8 = b'O';

impl OldTuple {
    /// The row image, whichever kind it is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }

    /// The marker byte (`K` or `O`) announcing this tuple on the wire.
    pub fn marker(&self) -> u8 {
        match self {
            OldTuple::Key(_) => MARKER_KEY,
            OldTuple::Full(_) => MARKER_OLD,
        }
    }
}

/// Reads a TupleData submessage: `Int16` column count, then each column.
pub(crate) fn read_tuple_data(cur: &mut Cursor<'_>) -> Result<TupleData, DecodeError> {
    let n = usize::from(cur.u16("number of columns")?);
    // Each column takes at least one byte; don't trust the count for capacity.
    let mut values = Vec::with_capacity(n.min(cur.remaining()));
    for _ in 0..n {
        let value = match cur.u8("column kind")? {
            KIND_NULL => TupleValue::Null,
            KIND_UNCHANGED_TOAST => TupleValue::UnchangedToast,
            KIND_TEXT => {
                let len = cur.len_i32("column value length")?;
                TupleValue::Text(cur.bytes(len, "column value")?)
            }
            KIND_BINARY => {
                let len = cur.len_i32("column value length")?;
                TupleValue::Binary(cur.bytes(len, "column value")?)
            }
            other => return Err(DecodeError::UnknownTupleKind(other)),
        };
        values.push(value);
    }
    Ok(TupleData(values))
}

//! A bounds-checked reader over one message buffer.
//!
//! Every read checks the remaining length and returns [`DecodeError`] instead of
//! panicking. Byte fields come back as [`Bytes`] slices of the input, so column
//! values are never copied.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::lsn::Lsn;

pub(crate) struct Cursor<'a> {
    buf: &'a Bytes,
    /// Invariant: `pos <= buf.len()`.
    pos: usize,
    /// Protocol name of the message being decoded, for errors.
    message: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Cursor {
            buf,
            pos: 0,
            message: "(untagged)",
        }
    }

    /// Names the message being decoded; used in every later error.
    pub(crate) fn set_message(&mut self, message: &'static str) {
        self.message = message;
    }

    pub(crate) fn message(&self) -> &'static str {
        self.message
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn rest(&self) -> &'a [u8] {
        let buf: &'a [u8] = self.buf;
        buf.get(self.pos..).unwrap_or_default()
    }

    fn eof(&self, field: &'static str) -> DecodeError {
        DecodeError::UnexpectedEof {
            message: self.message,
            field,
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let arr = *self
            .rest()
            .first_chunk::<N>()
            .ok_or_else(|| self.eof(field))?;
        self.pos += N;
        Ok(arr)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(field)?)))
    }

    /// An `Int32` length or count that must not be negative.
    pub(crate) fn len_i32(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let value = self.i32(field)?;
        usize::try_from(value).map_err(|_| DecodeError::NegativeLength {
            message: self.message,
            field,
            value,
        })
    }

    /// `len` bytes as a zero-copy slice of the input buffer.
    pub(crate) fn bytes(&mut self, len: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if len > self.remaining() {
            return Err(self.eof(field));
        }
        let start = self.pos;
        self.pos += len;
        Ok(self.buf.slice(start..self.pos))
    }

    /// A NUL-terminated UTF-8 `String` field.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let rest = self.rest();
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::UnterminatedString {
                message: self.message,
                field,
            })?;
        let raw = rest.get(..nul).unwrap_or_default();
        let s = std::str::from_utf8(raw).map_err(|source| DecodeError::InvalidUtf8 {
            message: self.message,
            field,
            source,
        })?;
        self.pos += nul + 1;
        Ok(s.to_owned())
    }

    /// Succeeds only if the whole buffer was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            remaining => Err(DecodeError::TrailingBytes {
                message: self.message,
                remaining,
            }),
        }
    }
}

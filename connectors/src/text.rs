//! [`Text`]: UTF-8 text in shared bytes.
//!
//! An event's strings used to be a `String` each, plus a `String` per header name: nine
//! allocations per event, made on the reader's thread and freed on the acker's, where
//! glibc's per-thread caches cannot help (callgrind: about 2,800 of an event's 9,600
//! instructions in malloc and free). With `Text` the id, aggregate type, aggregate id,
//! event type and payload of an event are slices of one buffer, header names are static
//! or shared, and cloning any of them is a reference count.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::str::Utf8Error;

use bytes::Bytes;

/// Immutable UTF-8 text backed by [`Bytes`]; reads as a `&str` (`Deref`).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(Bytes);

impl Text {
    /// Text of a string literal, without allocating.
    pub const fn from_static(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// The bytes as text, if they are UTF-8 (they are not copied).
    pub fn from_utf8(bytes: Bytes) -> Result<Text, Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks or inherits UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The text's bytes, sharing its buffer.
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// By the `str`, so that `Borrow<str>` lookups in hash maps agree.
impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Text {
    /// Takes the string's buffer (no copy).
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text::from(s.as_str())
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.as_str().to_owned()
    }
}

impl From<Text> for Bytes {
    fn from(t: Text) -> Bytes {
        t.0
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        String::deserialize(d).map(Text::from)
    }
}

/// Builds the texts (and raw byte values) of one event in one buffer: `push` appends and
/// returns the range, `finish` freezes the buffer once and hands out the slices.
pub struct TextBuffer {
    buf: Vec<u8>,
}

/// Where a pushed value sits in a [`TextBuffer`].
#[derive(Clone, Copy, Debug)]
pub struct Span {
    start: usize,
    end: usize,
}

/// A frozen [`TextBuffer`]: the slices of its values share one allocation.
pub struct Frozen(Bytes);

impl TextBuffer {
    pub fn with_capacity(capacity: usize) -> TextBuffer {
        TextBuffer {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Appends `bytes` (checked as UTF-8 only when taken as [`Frozen::text`]).
    pub fn push(&mut self, bytes: &[u8]) -> Span {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        Span {
            start,
            end: self.buf.len(),
        }
    }

    pub fn finish(self) -> Frozen {
        Frozen(Bytes::from(self.buf))
    }
}

impl Frozen {
    /// The value at `span` as raw bytes.
    pub fn bytes(&self, span: Span) -> Bytes {
        self.0.slice(span.start..span.end)
    }

    /// The value at `span` as text, if it is UTF-8.
    pub fn text(&self, span: Span) -> Result<Text, Utf8Error> {
        Text::from_utf8(self.bytes(span))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn reads_compares_and_hashes_as_its_str() {
        let t = Text::from("order-1");
        assert_eq!(&*t, "order-1");
        let owned = String::from("order-1");
        assert_eq!(t, "order-1");
        assert_eq!("order-1", t);
        assert_eq!(t, owned);
        let mut map: HashMap<Text, u32> = HashMap::new();
        map.insert(t.clone(), 7);
        assert_eq!(
            map.get("order-1"),
            Some(&7),
            "Borrow<str> lookups hash alike"
        );
        assert_eq!(format!("{t} {t:?}"), "order-1 \"order-1\"");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"order-1\"");
        assert_eq!(serde_json::from_str::<Text>("\"é\"").unwrap(), "é");
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(Text::from_utf8(Bytes::from_static(b"\xff")).is_err());
        let mut b = TextBuffer::with_capacity(4);
        let ok = b.push(b"ab");
        let bad = b.push(b"\xc3");
        let frozen = b.finish();
        assert_eq!(frozen.text(ok).unwrap(), "ab");
        assert!(frozen.text(bad).is_err());
    }

    #[test]
    fn values_of_one_buffer_share_its_allocation() {
        let mut b = TextBuffer::with_capacity(16);
        let (x, y) = (b.push(b"id-1"), b.push(b"{\"n\":1}"));
        let frozen = b.finish();
        let (id, payload) = (frozen.text(x).unwrap(), frozen.bytes(y));
        assert_eq!((id.as_str(), &payload[..]), ("id-1", &b"{\"n\":1}"[..]));
        // Adjacent in memory: the same buffer.
        assert_eq!(id.as_ptr() as usize + 4, payload.as_ptr() as usize);
    }
}

//! The keys a configuration type accepts, read from its `Deserialize` implementation.
//!
//! serde's derived `Deserialize` for a struct hands the deserializer the list of its
//! field names (after renames) before it reads anything. [`keys`] answers with a
//! deserializer that follows one path of field names into the type and records what it
//! finds at its end: a struct (whose fields are followed in turn), a list (whose element
//! is followed as `[]`), or anything else, a key. Nothing is read from a file, so the
//! keys are those the code accepts, not those some example happens to use.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Field(&'static str),
    Element,
}

/// What the type expects where a path ends.
enum Shape {
    Struct(&'static [&'static str]),
    List,
    /// A scalar, an enum or a free-form map such as `sink.kafka.properties`.
    Key,
}

/// Every key `T` accepts, spelled `a.b`, with `[]` for a list element
/// (`outbox.tables[].table`).
pub fn keys<T: for<'de> Deserialize<'de>>() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut pending = vec![Vec::new()];
    while let Some(path) = pending.pop() {
        let found = RefCell::new(None);
        // The walk always ends in an error: it stops where the path ends.
        let _ = T::deserialize(Walker {
            rest: &path,
            found: &found,
        });
        match found.into_inner() {
            Some(Shape::Struct(fields)) => pending.extend(fields.iter().map(|f| {
                let mut p = path.clone();
                p.push(Step::Field(f));
                p
            })),
            Some(Shape::List) => {
                let mut p = path.clone();
                p.push(Step::Element);
                pending.push(p);
            }
            Some(Shape::Key) => {
                keys.insert(spell(&path));
            }
            None => panic!("the walk did not reach {:?}", spell(&path)),
        }
    }
    keys
}

fn spell(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Field(f) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
            Step::Element => out.push_str("[]"),
        }
    }
    out
}

struct Walker<'a> {
    rest: &'a [Step],
    found: &'a RefCell<Option<Shape>>,
}

impl Walker<'_> {
    fn end(self, shape: Shape) -> Error {
        *self.found.borrow_mut() = Some(shape);
        de::Error::custom("end of the path")
    }

    fn key<V>(self) -> Result<V, Error> {
        if self.rest.is_empty() {
            Err(self.end(Shape::Key))
        } else {
            Err(de::Error::custom("a scalar has no keys below it"))
        }
    }
}

macro_rules! keys_at_scalars {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
            self.key()
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Walker<'_> {
    type Error = Error;

    keys_at_scalars! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _visitor: V,
    ) -> Result<V::Value, Error> {
        self.key()
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Error> {
        self.key()
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Error> {
        self.key()
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        self.key()
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.rest.split_first() {
            None => Err(self.end(Shape::List)),
            Some((Step::Element, rest)) => visitor.visit_seq(One {
                key: None,
                value: Some(Walker {
                    rest,
                    found: self.found,
                }),
            }),
            Some((Step::Field(f), _)) => Err(de::Error::custom(format!("a list has no key {f}"))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.rest.split_first() {
            None => Err(self.end(Shape::Struct(fields))),
            Some((Step::Field(f), rest)) => visitor.visit_map(One {
                key: Some(f),
                value: Some(Walker {
                    rest,
                    found: self.found,
                }),
            }),
            Some((Step::Element, _)) => Err(de::Error::custom("a struct is not a list")),
        }
    }
}

/// A map with the one key on the path, or a list with the one element on it.
struct One<'a> {
    key: Option<&'static str>,
    value: Option<Walker<'a>>,
}

impl<'de> MapAccess<'de> for One<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.key.take() {
            Some(key) => {
                let key: StrDeserializer<'_, Error> = key.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        match self.value.take() {
            Some(walker) => seed.deserialize(walker),
            None => Err(de::Error::custom("one value only")),
        }
    }
}

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match self.value.take() {
            Some(walker) => seed.deserialize(walker).map(Some),
            None => Ok(None),
        }
    }
}

//! Stable, explainable key building.
//!
//! A key is a BLAKE3 digest over tagged, length-prefixed fields, never
//! `std::hash::Hash`. Every field is also kept by name with a short printable
//! value, so that a later miss can be explained by naming the inputs that
//! differ. What goes into each kind of key is documented where that key is
//! built (see [`crate::rust::key`]).

use std::ffi::OsString;

use crate::digest::Digest;

/// Bumped whenever the meaning of any key input changes, so that entries
/// written by an older cachepot are never read as if they were current.
pub const KEY_FORMAT_VERSION: u32 = 1;

/// Longest value kept verbatim for explanations; longer ones are shown by digest.
const MAX_SHOWN_VALUE: usize = 200;

/// One named input of a key, as kept for explanations.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyInput {
    /// What the input is, such as `arg` or `env:CARGO_PKG_NAME`.
    pub name: String,
    /// The value, or `blake3:<hex>` when it is long or binary.
    pub value: String,
}

/// A finished key with its named inputs.
#[derive(Clone, Debug)]
pub struct Key {
    /// The digest that names the key.
    pub digest: Digest,
    /// The inputs, in the order they were added.
    pub inputs: Vec<KeyInput>,
}

/// Accumulates tagged fields into a key.
pub struct KeyBuilder {
    hasher: blake3::Hasher,
    inputs: Vec<KeyInput>,
}

impl KeyBuilder {
    /// Starts a key of the given kind (such as `rust-a`) at the current format version.
    pub fn new(kind: &str) -> KeyBuilder {
        let mut b = KeyBuilder {
            hasher: blake3::Hasher::new(),
            inputs: Vec::new(),
        };
        b.add("format", format!("{kind}/{KEY_FORMAT_VERSION}").as_bytes());
        b
    }

    /// Adds a named field.
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.write_field(name.as_bytes());
        self.write_field(value);
        let shown = match std::str::from_utf8(value) {
            Ok(s) if s.len() <= MAX_SHOWN_VALUE => s.replace('\0', "$"),
            _ => format!("blake3:{}", Digest::of(value).to_hex()),
        };
        self.inputs.push(KeyInput {
            name: name.to_string(),
            value: shown,
        });
    }

    /// Adds a named digest.
    pub fn add_digest(&mut self, name: &str, digest: &Digest) {
        self.write_field(name.as_bytes());
        self.write_field(&digest.0);
        self.inputs.push(KeyInput {
            name: name.to_string(),
            value: format!("blake3:{}", digest.to_hex()),
        });
    }

    fn write_field(&mut self, bytes: &[u8]) {
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }

    /// Finishes the key.
    pub fn finish(self) -> Key {
        Key {
            digest: Digest(*self.hasher.finalize().as_bytes()),
            inputs: self.inputs,
        }
    }
}

/// Looks up a variable in an environment list (the last setting wins).
pub fn env_value(env: &[(OsString, OsString)], name: &str) -> Option<OsString> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_boundaries_matter() {
        let mut a = KeyBuilder::new("t");
        a.add("x", b"ab");
        a.add("y", b"c");
        let mut b = KeyBuilder::new("t");
        b.add("x", b"a");
        b.add("y", b"bc");
        assert_ne!(a.finish().digest, b.finish().digest);
    }

    #[test]
    fn kind_and_order_matter_and_values_are_kept() {
        let mut a = KeyBuilder::new("t");
        a.add("x", b"1");
        let a = a.finish();
        let mut b = KeyBuilder::new("u");
        b.add("x", b"1");
        assert_ne!(a.digest, b.finish().digest);
        assert_eq!(a.inputs[1].value, "1");
        let mut c = KeyBuilder::new("t");
        c.add("x", b"1");
        assert_eq!(a.digest, c.finish().digest);
    }
}

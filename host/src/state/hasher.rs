//! The state hash: SHA-256 over every table's name and last change, then every row in id
//! order (its id, object and each index's keys, each length-prefixed). One definition for
//! the store ([`crate::state::Tables::hash`]) and for a `state.bin` streamed before it is
//! rebuilt (`snapshot::state_file`), so the two can never disagree.

use sha2::{Digest, Sha256};

/// Computes the state hash as rows arrive: tables in schema order, rows in id order.
pub struct StateHasher(Sha256);

impl Default for StateHasher {
    fn default() -> Self {
        StateHasher(Sha256::new())
    }
}

impl StateHasher {
    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    /// The next table: its name and the index of its last change.
    pub fn table(&mut self, name: &str, last_change: u64) {
        self.field(name.as_bytes());
        self.field(&last_change.to_be_bytes());
    }

    /// The next row of the current table (ids increasing): its id, object and the keys of
    /// each index in schema order (the `id` index's being the id alone).
    pub fn row<'a, K, I>(&mut self, id: &[u8], object: &[u8], keys: I)
    where
        K: IntoIterator<Item = &'a [u8]>,
        K::IntoIter: ExactSizeIterator,
        I: IntoIterator<Item = K>,
    {
        self.field(id);
        self.field(object);
        for index in keys {
            let index = index.into_iter();
            self.field(&(index.len() as u64).to_be_bytes());
            for k in index {
                self.field(k);
            }
        }
    }

    /// The hash.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

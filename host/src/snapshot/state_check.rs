//! A `state.bin` checked against its recorded state hash by streaming it once, before any
//! row is kept: an archive from outside (a user restore) cannot make a server hold more
//! than one row at a time until it is known to be the state it claims to be.
//!
//! Owns: the order rule the stream needs (ids strictly increasing within a table, as every
//! writer writes them) and the refusal texts. The hash itself is `state::StateHasher`'s.

use std::cell::RefCell;
use std::io::Read;

use super::SnapshotError;
use super::state_file::StateReader;
use crate::state::StateHasher;

impl<R: Read> StateReader<R> {
    /// Streams every row, computing the hash the rebuilt store would have, and compares it
    /// with the hash recorded in the file. Holds one row at a time; refuses rows out of id
    /// order, a row without exactly one `id` key, and a hash that differs.
    pub fn check_hash(mut self) -> Result<(), SnapshotError> {
        let tables: Vec<(String, Option<usize>)> = self
            .header()
            .tables()
            .map(|(_, t)| {
                let id_pos = t.indexes.iter().position(|i| i.name == "id");
                (t.name.clone(), id_pos)
            })
            .collect();
        let hasher = RefCell::new(StateHasher::default());
        let last_id: RefCell<Option<Vec<u8>>> = RefCell::new(None);
        let recorded = self.for_each_row(
            |t, last_change| {
                hasher.borrow_mut().table(&tables[t].0, last_change);
                *last_id.borrow_mut() = None;
                Ok(())
            },
            |t, object, keys| {
                let (name, id_pos) = &tables[t];
                let id = id_pos
                    .and_then(|p| keys.get(p))
                    .filter(|k| k.len() == 1)
                    .and_then(|k| k.first())
                    .ok_or_else(|| {
                        SnapshotError::Corrupt(format!("table {name}: a row without one id key"))
                    })?;
                let mut last = last_id.borrow_mut();
                if last.as_ref().is_some_and(|l| l.as_slice() >= id.as_slice()) {
                    return Err(SnapshotError::Corrupt(format!(
                        "table {name}: rows are not in increasing id order"
                    )));
                }
                let per_index = keys.iter().map(|ks| ks.iter().map(|k| k.as_slice()));
                hasher.borrow_mut().row(id, &object, per_index);
                *last = Some(id.clone());
                Ok(())
            },
        )?;
        if hasher.into_inner().finish() != recorded {
            return Err(SnapshotError::Corrupt(
                "the state's hash differs from the hash recorded when it was written (checked \
                 before restoring any row)"
                    .into(),
            ));
        }
        Ok(())
    }
}

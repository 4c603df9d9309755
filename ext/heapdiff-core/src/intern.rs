//! Interned byte strings: file paths, method names, class names repeat across millions
//! of objects, so each object stores a `u32` id instead.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

/// Id 0 means "absent"; real strings start at 1.
pub const NO_STRING: u32 = 0;

/// Each string is kept once, in `strings`; the table holds ids only and compares
/// through `strings`. (A map from the bytes to the id kept every string twice: two
/// allocations and copies for each new one, half of what interning cost a load.)
#[derive(Default, Debug, Clone)]
pub struct Interner {
    ids: HashTable<u32>,
    strings: Vec<Box<[u8]>>,
    hasher: DefaultHashBuilder,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `n` strings before the table grows.
    pub fn with_capacity(n: usize) -> Self {
        Interner {
            ids: HashTable::with_capacity(n),
            strings: Vec::with_capacity(n),
            hasher: DefaultHashBuilder::default(),
        }
    }

    pub fn intern(&mut self, bytes: &[u8]) -> u32 {
        let hasher = &self.hasher;
        let strings = &self.strings;
        let entry = self.ids.entry(
            hasher.hash_one(bytes),
            |&id| *strings[id as usize - 1] == *bytes,
            |&id| hasher.hash_one(&*strings[id as usize - 1]),
        );
        match entry {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let id = strings.len() as u32 + 1;
                entry.insert(id);
                self.strings.push(bytes.into());
                id
            }
        }
    }

    pub fn get(&self, id: u32) -> Option<&[u8]> {
        if id == NO_STRING {
            return None;
        }
        self.strings.get(id as usize - 1).map(|s| &s[..])
    }

    pub fn lookup(&self, bytes: &[u8]) -> Option<u32> {
        self.ids
            .find(self.hasher.hash_one(bytes), |&id| {
                *self.strings[id as usize - 1] == *bytes
            })
            .copied()
    }

    /// Bytes it holds: the strings, the table (an id and a control byte a slot) and
    /// the list.
    pub fn heap_bytes(&self) -> usize {
        let strings: usize = self.strings.iter().map(|s| s.len()).sum();
        strings
            + self.ids.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.strings.capacity() * std::mem::size_of::<Box<[u8]>>()
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// Adds every string of `other` and returns the table that maps `other`'s ids to
    /// ours (index = other's id).
    pub fn absorb(&mut self, other: &Interner) -> Vec<u32> {
        let mut map = Vec::with_capacity(other.strings.len() + 1);
        map.push(NO_STRING);
        for s in &other.strings {
            map.push(self.intern(s));
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_get_one_id_and_read_back() {
        let mut strings = Interner::new();
        let names: Vec<Vec<u8>> = (0..2_000u32)
            .map(|i| format!("/app/lib/file_{}.rb", i % 700).into_bytes())
            .collect();
        let ids: Vec<u32> = names.iter().map(|n| strings.intern(n)).collect();
        assert_eq!(strings.len(), 700);
        for (name, &id) in names.iter().zip(&ids) {
            assert_ne!(id, NO_STRING);
            assert_eq!(strings.get(id), Some(&name[..]));
            assert_eq!(strings.lookup(name), Some(id));
            assert_eq!(strings.intern(name), id);
        }
        assert_eq!(ids[0], ids[700]);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(strings.lookup(b"/app/lib/file_700.rb"), None);
        assert_eq!(strings.intern(b""), 701);

        let mut other = Interner::new();
        let b = other.intern(b"b");
        let a = other.intern(&names[3]);
        let map = strings.absorb(&other);
        assert_eq!(map[a as usize], ids[3]);
        assert_eq!(strings.get(map[b as usize]), Some(&b"b"[..]));
        assert_eq!(map[NO_STRING as usize], NO_STRING);
    }
}

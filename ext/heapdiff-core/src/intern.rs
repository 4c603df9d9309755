//! Interned byte strings: file paths, method names, class names repeat across millions
//! of objects, so each object stores a `u32` id instead.

use hashbrown::HashMap;

/// Id 0 means "absent"; real strings start at 1.
pub const NO_STRING: u32 = 0;

#[derive(Default, Debug, Clone)]
pub struct Interner {
    ids: HashMap<Box<[u8]>, u32>,
    strings: Vec<Box<[u8]>>,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn intern(&mut self, bytes: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(bytes) {
            return id;
        }
        self.strings.push(bytes.into());
        let id = self.strings.len() as u32;
        self.ids.insert(bytes.into(), id);
        id
    }

    pub fn get(&self, id: u32) -> Option<&[u8]> {
        if id == NO_STRING {
            return None;
        }
        self.strings.get(id as usize - 1).map(|s| &s[..])
    }

    pub fn lookup(&self, bytes: &[u8]) -> Option<u32> {
        self.ids.get(bytes).copied()
    }

    /// Bytes it holds: each string twice (key and list), the table and the list.
    pub fn heap_bytes(&self) -> usize {
        let strings: usize = self.strings.iter().map(|s| s.len()).sum();
        2 * strings
            + self.ids.capacity() * (std::mem::size_of::<(Box<[u8]>, u32)>() + 1)
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

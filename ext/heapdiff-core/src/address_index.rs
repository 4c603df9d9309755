//! Finding the row of an address. A hash map over every object would cost ~32 bytes an
//! object, more than half of the rest of the index. Ruby dumps its heap page by page,
//! each page's slots in address order, and pages are aligned blocks; so a small map from
//! block to row range plus a binary search inside the block does the job in a few bytes
//! per *page*. Dumps that break that layout (hand-made, or a future Ruby) fall back to
//! the hash map.

use hashbrown::HashMap;

/// 16 KiB: the smallest heap page alignment of any Ruby (3.1); larger pages are made
/// of whole blocks.
const BLOCK_SHIFT: u32 = 14;

#[derive(Debug)]
pub enum AddressIndex {
    /// Block (address >> BLOCK_SHIFT) → rows `start..end`, sorted by address.
    Paged(HashMap<u64, (u32, u32)>),
    /// Address → row, for dumps not laid out page by page.
    Hashed {
        rows: HashMap<u64, u32>,
        duplicates: u64,
    },
}

impl AddressIndex {
    /// Bytes of its table (entries and hashbrown's control byte each).
    pub fn heap_bytes(&self) -> usize {
        match self {
            AddressIndex::Paged(blocks) => blocks.capacity() * (8 + 8 + 1),
            AddressIndex::Hashed { rows, .. } => rows.capacity() * (8 + 4 + 1),
        }
    }

    pub fn build(addresses: &[u64]) -> AddressIndex {
        Self::paged(addresses).unwrap_or_else(|| Self::hashed(addresses))
    }

    fn paged(addresses: &[u64]) -> Option<AddressIndex> {
        let mut blocks: HashMap<u64, (u32, u32)> = HashMap::new();
        let mut start = 0usize;
        while start < addresses.len() {
            let block = addresses[start] >> BLOCK_SHIFT;
            let mut end = start + 1;
            while end < addresses.len() && addresses[end] >> BLOCK_SHIFT == block {
                if addresses[end] <= addresses[end - 1] {
                    return None;
                }
                end += 1;
            }
            if blocks.insert(block, (start as u32, end as u32)).is_some() {
                return None;
            }
            start = end;
        }
        Some(AddressIndex::Paged(blocks))
    }

    fn hashed(addresses: &[u64]) -> AddressIndex {
        let mut rows = HashMap::with_capacity(addresses.len());
        let mut duplicates = 0;
        for (i, &address) in addresses.iter().enumerate() {
            if rows.insert(address, i as u32).is_some() {
                duplicates += 1;
            }
        }
        AddressIndex::Hashed { rows, duplicates }
    }

    /// The row of `address`; `addresses` is the column the index was built from.
    pub fn find(&self, addresses: &[u64], address: u64) -> Option<usize> {
        match self {
            AddressIndex::Paged(blocks) => {
                let &(start, end) = blocks.get(&(address >> BLOCK_SHIFT))?;
                let block = &addresses[start as usize..end as usize];
                find_in_block(block, address).map(|i| start as usize + i)
            }
            AddressIndex::Hashed { rows, .. } => rows.get(&address).map(|&i| i as usize),
        }
    }

    /// Records whose address an earlier record has (the last one wins).
    pub fn duplicates(&self) -> u64 {
        match self {
            AddressIndex::Paged(_) => 0,
            AddressIndex::Hashed { duplicates, .. } => *duplicates,
        }
    }
}

/// The position of `address` in a block's sorted addresses. Slots in a page are evenly
/// spaced and most are live, so the position is close to where the address falls
/// between the block's first and last: look there first, then gallop from there
/// towards it (the free slots between put it a few places off, not half a block).
#[inline]
fn find_in_block(block: &[u64], address: u64) -> Option<usize> {
    let (&first, &last) = (block.first()?, block.last()?);
    if address < first || address > last {
        return None;
    }
    // A block's addresses differ by less than 1 << BLOCK_SHIFT and are distinct, so
    // the product is under 1 << 2 * BLOCK_SHIFT: no u128 division needed.
    let span = last - first;
    let guess = ((address - first) * (block.len() as u64 - 1))
        .checked_div(span)
        .unwrap_or(0) as usize;
    match block[guess].cmp(&address) {
        std::cmp::Ordering::Equal => Some(guess),
        std::cmp::Ordering::Less => {
            // block[guess] < address <= last: widen `after` until it holds the address.
            let after = &block[guess + 1..];
            let mut end = 1;
            while end < after.len() && after[end - 1] < address {
                end = (end * 2).min(after.len());
            }
            let from = end / 2;
            after[from..end]
                .binary_search(&address)
                .ok()
                .map(|i| guess + 1 + from + i)
        }
        std::cmp::Ordering::Greater => {
            // first <= address < block[guess]: the same, backwards.
            let before = &block[..guess];
            let mut start = before.len().saturating_sub(1);
            let mut step = 1;
            while start > 0 && before[start] > address {
                step *= 2;
                start = before.len().saturating_sub(step);
            }
            let to = before.len() - step / 2;
            before[start..to]
                .binary_search(&address)
                .ok()
                .map(|i| start + i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paged_layout_uses_blocks() {
        let addresses = [0x10000, 0x10028, 0x10050, 0x30000, 0x30028, 0x20000];
        let index = AddressIndex::build(&addresses);
        assert!(matches!(index, AddressIndex::Paged(_)));
        for (i, &a) in addresses.iter().enumerate() {
            assert_eq!(index.find(&addresses, a), Some(i));
        }
        assert_eq!(index.find(&addresses, 0x10030), None);
        assert_eq!(index.find(&addresses, 0x50000), None);
    }

    #[test]
    fn finds_every_address_in_a_block_with_gaps() {
        // Slots of 40 bytes with some free (absent) ones, and an uneven tail.
        let block: Vec<u64> = (0..400u64)
            .filter(|i| i % 7 != 3)
            .map(|i| 0x10000 + 40 * i)
            .chain([0x10000 + 40 * 400 + 8])
            .collect();
        for (i, &a) in block.iter().enumerate() {
            assert_eq!(find_in_block(&block, a), Some(i));
        }
        for absent in [
            0x10000 - 40,
            0x10000 + 40 * 3,
            0x10000 + 1,
            0x10000 + 40 * 402,
        ] {
            assert_eq!(find_in_block(&block, absent), None);
        }
        assert_eq!(find_in_block(&[0x10000], 0x10000), Some(0));
        assert_eq!(find_in_block(&[], 0x10000), None);
    }

    #[test]
    fn the_gallop_agrees_with_a_binary_search() {
        // Blocks with long runs of free slots at the start, middle or end put the guess
        // far from the address, on either side.
        // A fixed-seed LCG (its high bits): varied blocks, the same every run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        for _ in 0..2_000 {
            let slots = 1 + next() % 400;
            let free_from = next() % slots;
            let free_to = free_from + next() % (slots - free_from + 1);
            let sparse = 1 + next() % 9;
            let block: Vec<u64> = (0..slots)
                .filter(|&i| !(free_from..free_to).contains(&i) && next() % sparse != 0)
                .map(|i| 0x10000 + 40 * i)
                .collect();
            for probe in (0x10000 - 40..0x10000 + 40 * (slots + 1)).step_by(8) {
                assert_eq!(
                    find_in_block(&block, probe),
                    block.binary_search(&probe).ok(),
                    "{probe:#x} in {block:x?}"
                );
            }
        }
    }

    #[test]
    fn other_layouts_fall_back_to_hashing() {
        // A block that comes back after another one, and a duplicate.
        let addresses = [0x10000, 0x20000, 0x10028, 0x20000];
        let index = AddressIndex::build(&addresses);
        assert!(matches!(index, AddressIndex::Hashed { .. }));
        assert_eq!(index.find(&addresses, 0x10028), Some(2));
        assert_eq!(index.find(&addresses, 0x20000), Some(3));
        assert_eq!(index.duplicates(), 1);
    }
}

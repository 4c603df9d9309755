//! The member names the parser reads, each recognised by one multiply and one compare.

/// The member names heapdiff reads, recognised by one integer match instead of a
/// chain of byte-string compares (see `Key::of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Key {
    Address,
    Type,
    References,
    Flags,
    Class,
    Superclass,
    Default,
    ReceiverClass,
    Root,
    File,
    Line,
    Method,
    Generation,
    Memsize,
    Bytesize,
    Capacity,
    Value,
    Encoding,
    Coderange,
    Length,
    Fd,
    ShapeId,
    SlotSize,
    VariationCount,
    Name,
    RealClassName,
    Subtype,
    Mid,
    CalledId,
    Id,
    ParentId,
    Depth,
    ShapeType,
    EdgeName,
    Edges,
    /// Any other member: a boolean flag (`"frozen":true`) or a value to skip.
    Other,
}

/// Up to 15 bytes of a name and its length in one integer; longer names get `None`.
pub(super) const fn pack_key(name: &[u8]) -> Option<u128> {
    if name.len() > 15 {
        return None;
    }
    let mut packed = (name.len() as u128) << 120;
    let mut i = 0;
    while i < name.len() {
        packed |= (name[i] as u128) << (8 * i);
        i += 1;
    }
    Some(packed)
}

macro_rules! keys {
    ($($name:literal => $key:ident),* $(,)?) => {
        /// The names and their keys.
        const KEYS: &[(&[u8], Key)] = &[$(($name, Key::$key)),*];
    };
}

/// Multiplier of the perfect hash from a name to its slot in `KEY_SLOTS`: found by a
/// search; `key_slots` refuses to compile if two names ever share a slot.
const KEY_HASH: u64 = 0x3dd82d982de1babf;
const KEY_SLOT_BITS: u32 = 7;

const fn key_slot(packed: u128) -> usize {
    let first_bytes = packed as u64;
    let len = (packed >> 120) as u64;
    ((first_bytes ^ len).wrapping_mul(KEY_HASH) >> (64 - KEY_SLOT_BITS)) as usize
}

const fn key_slots() -> [(u128, Key); 1 << KEY_SLOT_BITS] {
    // u128::MAX packs no name (its length byte would be 255).
    let mut slots = [(u128::MAX, Key::Other); 1 << KEY_SLOT_BITS];
    let mut i = 0;
    while i < KEYS.len() {
        let packed = match pack_key(KEYS[i].0) {
            Some(packed) => packed,
            None => panic!("key names are at most 15 bytes"),
        };
        let slot = key_slot(packed);
        assert!(
            slots[slot].0 == u128::MAX,
            "two key names share a slot: change KEY_HASH"
        );
        slots[slot] = (packed, KEYS[i].1);
        i += 1;
    }
    slots
}

static KEY_SLOTS: [(u128, Key); 1 << KEY_SLOT_BITS] = key_slots();

impl Key {
    /// The key of a packed name: one multiply and one compare.
    #[inline]
    pub(super) fn of(packed: Option<u128>) -> Key {
        let Some(packed) = packed else {
            return Key::Other;
        };
        let (name, key) = KEY_SLOTS[key_slot(packed)];
        if name == packed {
            key
        } else {
            Key::Other
        }
    }
}

// Several names map to one key: `length`/`size`/`ivars` are all "how many", and DATA
// `struct` and IMEMO `imemo_type` both say what kind the object is.
keys! {
    b"address" => Address,
    b"type" => Type,
    b"references" => References,
    b"flags" => Flags,
    b"class" => Class,
    b"superclass" => Superclass,
    b"default" => Default,
    b"receiver_class" => ReceiverClass,
    b"root" => Root,
    b"file" => File,
    b"line" => Line,
    b"method" => Method,
    b"generation" => Generation,
    b"memsize" => Memsize,
    b"bytesize" => Bytesize,
    b"capacity" => Capacity,
    b"value" => Value,
    b"encoding" => Encoding,
    b"coderange" => Coderange,
    b"length" => Length,
    b"size" => Length,
    b"ivars" => Length,
    b"fd" => Fd,
    b"shape_id" => ShapeId,
    b"slot_size" => SlotSize,
    b"variation_count" => VariationCount,
    b"name" => Name,
    b"real_class_name" => RealClassName,
    b"struct" => Subtype,
    b"imemo_type" => Subtype,
    b"mid" => Mid,
    b"called_id" => CalledId,
    b"id" => Id,
    b"parent_id" => ParentId,
    b"depth" => Depth,
    b"shape_type" => ShapeType,
    b"edge_name" => EdgeName,
    b"edges" => Edges,
}

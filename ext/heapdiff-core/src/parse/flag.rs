//! Bit flags kept per object. The GC flags come from the `flags` member, the rest from
//! top-level boolean members.

pub const FROZEN: u32 = 1 << 0;
pub const EMBEDDED: u32 = 1 << 1;
pub const FSTRING: u32 = 1 << 2;
pub const SHARED: u32 = 1 << 3;
pub const CHILLED: u32 = 1 << 4;
pub const BROKEN: u32 = 1 << 5;
pub const SINGLETON: u32 = 1 << 6;
pub const TOO_COMPLEX_SHAPE: u32 = 1 << 7;
pub const WB_PROTECTED: u32 = 1 << 8;
pub const OLD: u32 = 1 << 9;
pub const UNCOLLECTIBLE: u32 = 1 << 10;
pub const MARKING: u32 = 1 << 11;
pub const MARKED: u32 = 1 << 12;
pub const PINNED: u32 = 1 << 13;
pub const REMEMBERED: u32 = 1 << 14;
pub const SHAREABLE: u32 = 1 << 15;

/// Names as they appear in the dump, for decoding and for showing flags back.
pub const NAMES: &[(&str, u32)] = &[
    ("frozen", FROZEN),
    ("embedded", EMBEDDED),
    ("fstring", FSTRING),
    ("shared", SHARED),
    ("chilled", CHILLED),
    ("broken", BROKEN),
    ("singleton", SINGLETON),
    ("too_complex_shape", TOO_COMPLEX_SHAPE),
    ("complex_shape", TOO_COMPLEX_SHAPE),
    ("wb_protected", WB_PROTECTED),
    ("old", OLD),
    ("uncollectible", UNCOLLECTIBLE),
    ("marking", MARKING),
    ("marked", MARKED),
    ("pinned", PINNED),
    ("remembered", REMEMBERED),
    ("shareable", SHAREABLE),
];

pub fn from_name(name: &[u8]) -> u32 {
    match name {
        b"wb_protected" => WB_PROTECTED,
        b"old" => OLD,
        b"uncollectible" => UNCOLLECTIBLE,
        b"marked" => MARKED,
        b"frozen" => FROZEN,
        b"embedded" => EMBEDDED,
        b"fstring" => FSTRING,
        _ => NAMES
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
            .map_or(0, |&(_, bit)| bit),
    }
}

//! The object types a dump names, as one byte per object.

macro_rules! object_types {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// `type` of a heap object record. ROOT and SHAPE lines are not objects and have
        /// no variant here.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum ObjectType { $($variant),* }

        impl ObjectType {
            pub fn name(self) -> &'static str {
                match self { $(ObjectType::$variant => $name),* }
            }

            pub fn from_name(name: &[u8]) -> Option<ObjectType> {
                // Every name fits in 8 bytes: an integer compare per type, not a memcmp.
                let packed = pack_name(name)?;
                $(if name.len() == $name.len() && packed == pack_name($name.as_bytes()).unwrap() {
                    return Some(ObjectType::$variant);
                })*
                None
            }
        }
    };
}

object_types! {
    Object => "OBJECT",
    Class => "CLASS",
    Module => "MODULE",
    IClass => "ICLASS",
    Float => "FLOAT",
    String => "STRING",
    Regexp => "REGEXP",
    Array => "ARRAY",
    Hash => "HASH",
    Struct => "STRUCT",
    Bignum => "BIGNUM",
    File => "FILE",
    Data => "DATA",
    Match => "MATCH",
    Symbol => "SYMBOL",
    Rational => "RATIONAL",
    Complex => "COMPLEX",
    Imemo => "IMEMO",
    Zombie => "ZOMBIE",
    None => "NONE",
    Node => "NODE",
    Moved => "MOVED",
    Unknown => "UNKNOWN",
}

/// A type name of at most 8 bytes as one integer (the constants fold at compile time).
#[inline]
const fn pack_name(name: &[u8]) -> Option<u64> {
    if name.is_empty() || name.len() > 8 {
        return None;
    }
    let mut packed = 0u64;
    let mut i = 0;
    while i < name.len() {
        packed |= (name[i] as u64) << (8 * i);
        i += 1;
    }
    Some(packed)
}

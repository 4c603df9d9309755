//! The conversions every part of the binding needs, in one place: Ruby path Strings to
//! `PathBuf`s, dump bytes to Strings, index checks that raise IndexError, and small
//! records as Hashes.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use magnus::{prelude::*, Error, RArray, RHash, RString, Ruby, Value};

/// A Ruby String's bytes, whatever its encoding: paths are bytes on Unix, and need
/// not be UTF-8 (a non-UTF-8 file name, a non-ASCII directory under LANG=C).
pub fn bytes(string: RString) -> Vec<u8> {
    // SAFETY: the bytes are copied before any Ruby call can move or free the string.
    unsafe { string.as_slice() }.to_vec()
}

/// The bytes of each String in `strings` (own paths: see `bytes`).
pub fn byte_strings(strings: RArray) -> Result<Vec<Vec<u8>>, Error> {
    strings
        .into_iter()
        .map(|s| RString::try_convert(s).map(bytes))
        .collect()
}

/// A Ruby path String as a `PathBuf`. Paths are bytes on Unix: no UTF-8 required.
pub fn path_buf(path: RString) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(bytes(path)))
}

/// Bytes from the dump as a UTF-8 tagged String (paths and names are UTF-8 in
/// practice; invalid bytes stay as they are, for Ruby to judge).
pub fn utf8(ruby: &Ruby, bytes: &[u8]) -> RString {
    ruby.enc_str_new(bytes, ruby.utf8_encoding())
}

pub fn opt_utf8(ruby: &Ruby, bytes: Option<&[u8]>) -> Option<RString> {
    bytes.map(|b| utf8(ruby, b))
}

/// Ok when `index < len`; otherwise IndexError "`what` `index` out of range (`len`)".
pub fn check_index(ruby: &Ruby, what: &str, index: usize, len: usize) -> Result<(), Error> {
    if index < len {
        Ok(())
    } else {
        Err(Error::new(
            ruby.exception_index_error(),
            format!("{what} {index} out of range ({len})"),
        ))
    }
}

/// A small record for Ruby: a Hash of Symbol keys, in the order given. Names travel
/// with the values, so that the Rust and Ruby sides cannot disagree on an order.
pub fn record(ruby: &Ruby, fields: &[(&str, Value)]) -> Result<RHash, Error> {
    let hash = ruby.hash_new();
    for &(name, value) in fields {
        hash.aset(ruby.to_symbol(name), value)?;
    }
    Ok(hash)
}

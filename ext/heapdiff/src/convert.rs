//! The conversions every part of the binding needs, in one place: Ruby path Strings to
//! `PathBuf`s, dump bytes to Strings, and index checks that raise IndexError.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use magnus::{Error, RString, Ruby};

/// A Ruby path String as a `PathBuf`. Paths are bytes on Unix: no UTF-8 required.
pub fn path_buf(path: RString) -> PathBuf {
    // SAFETY: the bytes are copied before any Ruby call can move or free the string.
    let bytes = unsafe { path.as_slice() }.to_vec();
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
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

//! Rust errors become the exception classes defined in `lib/heapdiff/errors.rb`,
//! looked up when raised so that Ruby owns their definition.

use heapdiff_core::LoadError;
use magnus::{prelude::*, Error, ExceptionClass, RModule, Ruby};

fn heapdiff_class(ruby: &Ruby, name: &str) -> ExceptionClass {
    ruby.class_object()
        .const_get::<_, RModule>("Heapdiff")
        .and_then(|m| m.const_get::<_, ExceptionClass>(name))
        .unwrap_or_else(|_| ruby.exception_runtime_error())
}

pub fn error(ruby: &Ruby, class: &str, message: String) -> Error {
    Error::new(heapdiff_class(ruby, class), message)
}

pub fn load_error(ruby: &Ruby, e: LoadError) -> Error {
    match &e {
        LoadError::NotAHeapDump { .. } => error(ruby, "ParseError", e.to_string()),
        LoadError::Io { .. } => error(ruby, "FileError", e.to_string()),
        LoadError::Cancelled => error(ruby, "Interrupted", e.to_string()),
    }
}

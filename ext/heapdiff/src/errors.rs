//! Rust errors become the exception classes defined in `lib/heapdiff/errors.rb`. Ruby
//! owns their definition; the binding looks each class up once, when the extension
//! loads (`init`), so that a name that does not resolve fails `require "heapdiff"`
//! rather than raising RuntimeError at the first error.

use std::sync::OnceLock;

use heapdiff_core::Error as CoreError;
use magnus::{prelude::*, value::Opaque, Error, ExceptionClass, RModule, Ruby};

/// The exception classes raised from Rust (all under `Heapdiff::Error`).
#[derive(Clone, Copy, Debug)]
pub enum Raise {
    /// The base class, for what fits no other (an internal error).
    Error,
    /// Not a heap dump; carries `#path` and `#line`.
    ParseError,
    /// The file could not be read.
    FileError,
    /// Long work stopped from outside.
    Interrupted,
}

struct Classes {
    error: Opaque<ExceptionClass>,
    parse_error: Opaque<ExceptionClass>,
    file_error: Opaque<ExceptionClass>,
    interrupted: Opaque<ExceptionClass>,
}

static CLASSES: OnceLock<Classes> = OnceLock::new();

/// Looks the classes up in `Heapdiff` (lib/heapdiff/errors.rb is loaded first).
pub fn init(module: RModule) -> Result<(), Error> {
    let get = |name: &str| {
        module
            .const_get::<_, ExceptionClass>(name)
            .map(Opaque::from)
    };
    let classes = Classes {
        error: get("Error")?,
        parse_error: get("ParseError")?,
        file_error: get("FileError")?,
        interrupted: get("Interrupted")?,
    };
    // A second init (the extension loaded twice) finds the same constants.
    let _ = CLASSES.set(classes);
    Ok(())
}

fn class(ruby: &Ruby, raise: Raise) -> ExceptionClass {
    let classes = CLASSES
        .get()
        .expect("errors::init runs when the extension loads");
    ruby.get_inner(match raise {
        Raise::Error => classes.error,
        Raise::ParseError => classes.parse_error,
        Raise::FileError => classes.file_error,
        Raise::Interrupted => classes.interrupted,
    })
}

pub fn error(ruby: &Ruby, raise: Raise, message: String) -> Error {
    Error::new(class(ruby, raise), message)
}

/// A `Heapdiff::ParseError` with its `#path` and `#line` (1-based; nil when the error
/// is not about one line) set from the data rather than parsed out of the message.
pub fn parse_error(ruby: &Ruby, message: String, path: String, line: Option<u64>) -> Error {
    match class(ruby, Raise::ParseError).new_instance((message.as_str(), path, line)) {
        Ok(exception) => Error::from(exception),
        // `ParseError.new` itself raised: raise that instead.
        Err(e) => e,
    }
}

/// The Ruby exception for an error of the core, by kind: a line that is no record, or
/// one too large for memory, is a `ParseError` with its path and line; an I/O error a
/// `FileError`; a stop from outside `Interrupted`. The message is the core's.
pub fn core_error(ruby: &Ruby, e: CoreError) -> Error {
    let message = e.to_string();
    match e {
        CoreError::Parse { path, line, .. } | CoreError::TooLarge { path, line, .. } => {
            let line = (line > 0).then_some(line);
            parse_error(ruby, message, path.display().to_string(), line)
        }
        CoreError::Io { .. } => error(ruby, Raise::FileError, message),
        CoreError::Cancelled => error(ruby, Raise::Interrupted, message),
    }
}

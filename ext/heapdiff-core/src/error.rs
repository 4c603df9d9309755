//! The one error type of the core. Every fallible public function returns it, so the
//! binding maps errors to Ruby's exception classes in one place, by kind.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// What went wrong, with the facts a caller needs to say where.
#[derive(Debug)]
pub enum Error {
    /// The file could not be opened, read or written (`path`: which one).
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A line that is no heap dump record: the file, the line (from 1; 0 while the
    /// parser, which sees one line alone, does not know it yet) and why.
    Parse {
        path: PathBuf,
        line: u64,
        reason: Cow<'static, str>,
    },
    /// The input needs more memory than the process can allocate: the file, the line
    /// being read (from 1) and what did not fit. Raised instead of aborting.
    TooLarge {
        path: PathBuf,
        line: u64,
        what: String,
    },
    /// Long work stopped from outside (`LoadOptions::cancel`, `cancel::scope`).
    Cancelled,
}

/// The result type of the core's fallible functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a failed allocation of `bytes` for `what` says.
pub(crate) fn out_of_memory(what: &str, bytes: usize) -> String {
    format!(
        "could not allocate {} MB for {what}",
        bytes.div_ceil(1 << 20)
    )
}

/// Why a record is refused when it is longer than `MAX_RECORD_BYTES`.
pub(crate) fn record_too_long() -> Cow<'static, str> {
    format!(
        "a record longer than {} MB, heapdiff's limit",
        crate::MAX_RECORD_BYTES >> 20
    )
    .into()
}

impl Error {
    /// An I/O error on the file at `path`.
    pub fn io(path: &Path, error: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    /// A line that is no record, from the parser: `at` adds the file and the line.
    pub(crate) fn not_a_record(reason: &'static str) -> Error {
        Error::Parse {
            path: PathBuf::new(),
            line: 0,
            reason: Cow::Borrowed(reason),
        }
    }

    pub(crate) fn parse(path: &Path, line: u64, reason: impl Into<Cow<'static, str>>) -> Error {
        Error::Parse {
            path: path.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }

    /// An allocation sized by the input failed; `what` says what it was for.
    pub(crate) fn too_large(path: &Path, line: u64, what: impl Into<String>) -> Error {
        Error::TooLarge {
            path: path.to_path_buf(),
            line,
            what: what.into(),
        }
    }

    /// `too_large` for `bytes` of `what` (a record, the index) that could not be had.
    pub(crate) fn out_of_memory(path: &Path, line: u64, what: &str, bytes: usize) -> Error {
        Error::too_large(path, line, out_of_memory(what, bytes))
    }

    /// This parse error, placed at `line` of `path`; other kinds unchanged.
    pub(crate) fn at(self, path: &Path, line: u64) -> Error {
        match self {
            Error::Parse { reason, .. } => Error::Parse {
                path: path.to_path_buf(),
                line,
                reason,
            },
            other => other,
        }
    }

    /// Why a line is no record (the parse error's reason), for messages that say it
    /// their own way.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::Parse { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// An I/O error as a person reads it: "No such file or directory", without Rust's
/// " (os error 2)" suffix (the number adds nothing to the words, and users of a Ruby
/// gem never see Rust's error codes elsewhere).
pub fn io_message(error: &std::io::Error) -> String {
    let text = error.to_string();
    match (error.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => text[..at].to_string(),
        _ => text,
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io { path, error } => write!(f, "{}: {}", path.display(), io_message(error)),
            // Not placed yet (the parser's own): no file to name.
            Error::Parse { path, reason, .. } if path.as_os_str().is_empty() => {
                write!(f, "not a heap dump record ({reason})")
            }
            Error::Parse { path, line, reason } if *line == 0 => {
                write!(f, "{}: not a heap dump record ({reason})", path.display())
            }
            Error::Parse { path, line, reason } => write!(
                f,
                "{}:{line}: not a heap dump record ({reason})",
                path.display()
            ),
            Error::TooLarge { path, line, what } => {
                write!(f, "{}:{line}: too large to load: {what}", path.display())
            }
            Error::Cancelled => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parser_error_is_placed_by_its_caller_and_names_file_and_line() {
        let error = Error::not_a_record("not a JSON object");
        assert_eq!(
            error.to_string(),
            "not a heap dump record (not a JSON object)"
        );
        let placed = error.at(Path::new("dump.json"), 7);
        assert_eq!(
            placed.to_string(),
            "dump.json:7: not a heap dump record (not a JSON object)"
        );
        assert_eq!(placed.reason(), Some("not a JSON object"));
        // Other kinds keep their own place.
        let io = Error::io(Path::new("a.json"), std::io::ErrorKind::NotFound.into());
        assert!(
            matches!(io.at(Path::new("b.json"), 1), Error::Io { path, .. } if path == Path::new("a.json"))
        );
    }

    #[test]
    fn too_large_says_what_did_not_fit_and_where() {
        let error = Error::out_of_memory(Path::new("big.json"), 3, "a record", 200 << 20);
        assert_eq!(
            error.to_string(),
            "big.json:3: too large to load: could not allocate 200 MB for a record"
        );
    }
}

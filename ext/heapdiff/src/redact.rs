//! `Heapdiff::Redactor._redact`: the core's streaming redactor on two open files,
//! without the GVL. Ruby opens the files (so that a snapshot can redact a dump whose
//! unredacted temporary has no name on disk) and passes their descriptors.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use heapdiff_core::redact::{redact, RedactOptions};
use heapdiff_core::Error as CoreError;
use magnus::{function, prelude::*, Error, RHash, RModule, RString, Ruby};

use crate::convert::path_buf;
use crate::errors::core_error;
use crate::gvl::without_gvl_serial;

pub fn init(_ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let class = module.define_module("Redactor")?;
    class.define_singleton_method("_redact", function!(redact_fds, 5))?;
    Ok(())
}

/// Our own descriptor for one of Ruby's: Ruby may close its IO while we hold ours.
fn own(fd: RawFd, name: &Path) -> Result<File, CoreError> {
    if fd < 0 {
        let ebadf = std::io::Error::from_raw_os_error(9);
        return Err(CoreError::io(name, ebadf));
    }
    // SAFETY: the descriptor is open for the duration of this call (Ruby holds the IO
    // and waits for us); it is only duplicated here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|error| CoreError::io(name, error))
}

fn redact_fds(
    ruby: &Ruby,
    input_fd: RawFd,
    input_name: RString,
    output_fd: RawFd,
    output_name: RString,
    gzip: bool,
) -> Result<RHash, Error> {
    // Names are bytes: a path need not be UTF-8.
    let (input_name, output_name) = (path_buf(input_name), path_buf(output_name));
    let result = without_gvl_serial(ruby, |cancel| {
        let mut input = own(input_fd, &input_name)?;
        let mut output = own(output_fd, &output_name)?;
        // From the start, each attempt: an interrupt that raises nothing runs it again.
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |error| CoreError::io(&path, error)
        };
        input.seek(SeekFrom::Start(0)).map_err(io(&input_name))?;
        output.set_len(0).map_err(io(&output_name))?;
        output.seek(SeekFrom::Start(0)).map_err(io(&output_name))?;
        redact(
            &input,
            &input_name,
            &output,
            &output_name,
            RedactOptions {
                gzip,
                cancel: Some(cancel),
            },
        )
    })?;
    let stats = result.map_err(|e| core_error(ruby, e))?;
    let hash = ruby.hash_new();
    hash.aset(ruby.to_symbol("lines"), stats.lines)?;
    hash.aset(ruby.to_symbol("records"), stats.records)?;
    hash.aset(ruby.to_symbol("values_removed"), stats.values_removed)?;
    hash.aset(ruby.to_symbol("rebuilt_records"), stats.rebuilt_records)?;
    hash.aset(
        ruby.to_symbol("junk_members_removed"),
        stats.junk_members_removed,
    )?;
    hash.aset(ruby.to_symbol("dropped_last_line"), stats.dropped_last_line)?;
    hash.aset(ruby.to_symbol("gzip_input"), stats.gzip_input)?;
    hash.aset(ruby.to_symbol("stream_cut_short"), stats.stream_cut_short)?;
    Ok(hash)
}

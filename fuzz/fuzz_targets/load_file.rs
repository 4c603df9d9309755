//! The whole loader (batching, parallel parse, index, reference resolution) on an
//! arbitrary file, plain or gzip: it must load or return an error, never panic. A
//! loaded heap must answer its warnings and read its values back without panicking.
//! The redactor gets the same input and must not panic either.
#![no_main]

use std::io::Write;

use heapdiff_core::redact::{redact, RedactOptions};
use heapdiff_core::{load, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    file.flush().expect("flush");
    let mut redacted = Vec::new();
    let _ = redact(
        data,
        file.path(),
        &mut redacted,
        "out".as_ref(),
        RedactOptions::default(),
    );
    if let Ok(heap) = load(file.path(), LoadOptions::default()) {
        let _ = heap.warnings();
        for i in 0..heap.len().min(64) {
            let _ = heap.referents(i).count();
            let _ = heap.class_name(i);
            let _ = heap.source.read_line(heap.columns.offset[i]);
        }
        for root in &heap.roots {
            let _ = heap.root_addresses(root);
        }
    }
});

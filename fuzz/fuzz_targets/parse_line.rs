//! The lenient line parser on arbitrary bytes: it must return a record or an error,
//! never panic, and every span it returns must lie inside the line.
#![no_main]

use heapdiff_core::parse::{parse_line, unescape, unescape_with};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let mut references = Vec::new();
    if let Ok(record) = parse_line(line, &mut references) {
        let spans = [
            record.type_name,
            record.root_name,
            record.file,
            record.method,
            record.value,
            record.encoding,
            record.name,
            record.real_class_name,
            record.subtype,
            record.shape_type,
            record.edge_name,
        ];
        for span in spans.into_iter().flatten() {
            assert!(span.start <= span.end && span.end as usize <= line.len());
            let text = span.of(line);
            unescape(text);
            unescape_with(text, true);
        }
    }
});

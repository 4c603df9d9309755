//! Hostile and broken input, each with its defined outcome: an `Error` naming the
//! file and line, or a heap whose stats and warnings say what was wrong. The quirks of
//! the format doc's "Broken output" are in tests/quirks.rs; the Ruby side of all of
//! these (and peak memory, in child processes) is in spec/bad_inputs_spec.rb.

use std::io::Write;
use std::path::Path;

use heapdiff_core::redact::{redact_file, RedactOptions};
use heapdiff_core::{load, Error, Heap, LoadOptions, ObjectType};

const ROOT: &str = r#"{"type":"ROOT", "root":"vm", "references":["0x10"]}"#;
const CLASS: &str = r#"{"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}"#;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn load_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<Heap, Error>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "dump.json", bytes);
    let result = load(&path, LoadOptions::default());
    (dir, result)
}

fn expect_not_a_dump(bytes: &[u8], line: u64, reason: &str) {
    let (dir, result) = load_bytes(bytes);
    let path = dir.path().join("dump.json");
    match result {
        Err(Error::Parse {
            path: p,
            line: l,
            reason: r,
        }) => {
            assert_eq!((p.as_path(), l, &*r), (path.as_path(), line, reason));
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn string_record(address: u64, extra: &str) -> String {
    format!(
        r#"{{"address":"{address:#x}", "type":"STRING", "class":"0x30", "bytesize":1, "value":"v", "file":"a.rb", "line":1, "memsize":40{extra}}}"#
    )
}

#[test]
fn an_empty_file_is_not_a_dump() {
    expect_not_a_dump(b"", 1, "the file is empty");
    expect_not_a_dump(b"\n\n  \n", 1, "the file holds only blank lines");
}

#[test]
fn only_root_lines_load_to_no_objects_and_warn() {
    let text = format!(
        "{ROOT}\n{}\n",
        r#"{"type":"ROOT", "root":"global_tbl", "references":["0x10", "0x20"]}"#
    );
    let (_dir, heap) = load_bytes(text.as_bytes());
    let heap = heap.unwrap();
    assert_eq!((heap.len(), heap.roots.len()), (0, 2));
    assert_eq!(heap.stats.dangling_references, 3);
    let warnings = heap.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].ends_with("3 reference(s) point to addresses with no record (objects allocated during the dump, or a partial since: dump)"));
}

#[test]
fn binary_garbage_and_html_are_not_dumps() {
    let garbage: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80)
        .collect();
    expect_not_a_dump(&garbage, 1, "does not start with '{'");
    expect_not_a_dump(
        b"<!DOCTYPE html>\n<html><body>{\"a\":1}</body></html>\n",
        1,
        "does not start with '{'",
    );
    // JSON, but not a dump record.
    expect_not_a_dump(b"{\"hello\":\"world\"}\n", 1, "no \"type\" member");
    expect_not_a_dump(b"[1, 2, 3]\n", 1, "does not start with '{'");
    // A good first record, then garbage: the error names the garbage's line.
    let text = format!("{ROOT}\n{CLASS}\n<html>\n");
    let (_dir, result) = load_bytes(text.as_bytes());
    // "<html>" starts no record, so it is junk of line 2's record: recovered.
    let heap = result.unwrap();
    assert_eq!((heap.len(), heap.stats.recovered_lines), (1, 1));
}

#[test]
fn ten_thousand_lines_of_invalid_utf8() {
    // As lines on their own: not a dump, at line 1, without reading the rest.
    let junk = b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc\n".repeat(10_000);
    expect_not_a_dump(&junk, 1, "does not start with '{'");
    // Inside records (file, value, class name): loaded byte for byte, nothing recovered.
    let mut text = format!("{ROOT}\n").into_bytes();
    for i in 0..10_000u64 {
        text.extend_from_slice(
            format!(
                r#"{{"address":"{:#x}", "type":"STRING", "class":"0x30", "bytesize":2, "value":""#,
                0x1000 + i * 40
            )
            .as_bytes(),
        );
        text.extend_from_slice(
            b"\xff\xfe\", \"file\":\"caf\xe9-\xc3\x28.rb\", \"line\":3, \"memsize\":40}\n",
        );
    }
    text.extend_from_slice(
        b"{\"address\":\"0x30\", \"type\":\"CLASS\", \"name\":\"K\xff\", \"memsize\":500}\n",
    );
    let (_dir, heap) = load_bytes(&text);
    let heap = heap.unwrap();
    assert_eq!(heap.len(), 10_001);
    assert_eq!(heap.stats.recovered_lines, 0);
    assert_eq!(heap.file(0), Some(&b"caf\xe9-\xc3\x28.rb"[..]));
    assert_eq!(heap.class_name(0).as_deref(), Some("K\u{fffd}"));
}

#[test]
fn duplicate_addresses_are_counted_and_the_last_wins() {
    let text = format!(
        "{ROOT}\n{}\n{}\n{}\n{CLASS}\n",
        string_record(0x10, r#", "generation":1"#),
        string_record(0x10, r#", "generation":2"#),
        string_record(0x10, r#", "generation":3"#)
    );
    let (_dir, heap) = load_bytes(text.as_bytes());
    let heap = heap.unwrap();
    assert_eq!(heap.len(), 4);
    assert_eq!(heap.stats.duplicate_addresses, 2);
    assert_eq!(heap.generation(heap.find(0x10).unwrap()), Some(3));
    assert!(heap.warnings().iter().any(|w| w
        .ends_with("2 record(s) repeat the address of an earlier record; lookups find the last")));
}

#[test]
fn references_to_addresses_with_no_record_are_kept_and_counted() {
    let array = r#"{"address":"0x10", "type":"ARRAY", "class":"0x30", "length":3, "references":["0x99", "0x98", "0x99"], "memsize":40}"#;
    let (_dir, heap) = load_bytes(format!("{ROOT}\n{array}\n{CLASS}\n").as_bytes());
    let heap = heap.unwrap();
    assert_eq!(heap.stats.dangling_references, 3);
    assert_eq!(heap.dangling, vec![0x99, 0x98]);
    assert_eq!(heap.reference_addresses(0), vec![0x99, 0x98, 0x99]);
    assert_eq!(heap.referents(0).count(), 0, "no object stands behind them");
}

#[test]
fn a_partial_dump_without_roots_warns_of_since() {
    let text = format!(
        "{}\n{}\n",
        string_record(0x10, r#", "references":["0x77"]"#),
        CLASS
    );
    let (_dir, heap) = load_bytes(text.as_bytes());
    let heap = heap.unwrap();
    assert_eq!((heap.len(), heap.roots.len()), (2, 0));
    assert!(heap
        .warnings()
        .iter()
        .any(|w| w.contains("1 reference(s) point to addresses with no record")));
}

#[test]
fn none_slots_of_a_full_dump_are_kept_as_none() {
    let text = format!(
        "{ROOT}\n{}\n{}\n{CLASS}\n",
        r#"{"address":"0x10", "type":"NONE", "shape_id":0, "slot_size":40, "class":"0x30"}"#,
        r#"{"address":"0x18", "type":"NONE", "slot_size":40}"#
    );
    let (_dir, heap) = load_bytes(text.as_bytes());
    let heap = heap.unwrap();
    assert_eq!(heap.len(), 3);
    let nones = heap
        .columns
        .object_type
        .iter()
        .filter(|&&t| t == ObjectType::None)
        .count();
    assert_eq!(nones, 2);
    assert!(heap.warnings().is_empty(), "{:?}", heap.warnings());
}

#[test]
fn numbers_overflowing_u64_are_left_out_and_counted() {
    let big = "184467440737095516160000";
    let line = format!(
        r#"{{"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":{big}, "line":{big}, "generation":{big}, "memsize":{big}, "flags":{{"age":{big}}}}}"#
    );
    let (_dir, heap) = load_bytes(format!("{ROOT}\n{line}\n{CLASS}\n").as_bytes());
    let heap = heap.unwrap();
    assert_eq!(heap.stats.overflowed_numbers, 5);
    assert_eq!(
        (heap.line(0), heap.generation(0), heap.bytesize(0)),
        (None, None, None)
    );
    assert_eq!(heap.columns.memsize.get(0), 0);
    assert!(heap
        .warnings()
        .iter()
        .any(|w| w.ends_with("5 number(s) do not fit in 64 bits and were left out")));
    // An address too long for 64 bits is no address: that line is no record.
    let line = r#"{"address":"0x1ffffffffffffffff", "type":"STRING", "memsize":40}"#;
    expect_not_a_dump(
        format!("{ROOT}\n{line}\n").as_bytes(),
        2,
        "no \"address\" member",
    );
}

#[test]
fn a_million_references_in_one_record() {
    let mut text = format!("{ROOT}\n").into_bytes();
    text.extend_from_slice(
        br#"{"address":"0x10", "type":"ARRAY", "class":"0x30", "length":1000000, "references":["#,
    );
    for i in 0..1_000_000u64 {
        if i > 0 {
            text.extend_from_slice(b", ");
        }
        // Every tenth reference is to an object in the dump, the rest dangle.
        write!(
            text,
            "\"{:#x}\"",
            if i % 10 == 0 { 0x30 } else { 0x100000 + i }
        )
        .unwrap();
    }
    text.extend_from_slice(b"], \"memsize\":8000040}\n");
    text.extend_from_slice(CLASS.as_bytes());
    text.push(b'\n');
    let (_dir, heap) = load_bytes(&text);
    let heap = heap.unwrap();
    assert_eq!(heap.len(), 2);
    assert_eq!(heap.stats.references, 1_000_000);
    assert_eq!(heap.reference_addresses(0).len(), 1_000_000);
    assert_eq!(heap.referents(0).count(), 100_000);
    assert_eq!(heap.stats.dangling_references, 900_000);
}

#[test]
fn a_single_100_mb_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(file, "{ROOT}").unwrap();
    let size = 100 << 20;
    let head = format!(
        r#"{{"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":{size}, "value":""#
    );
    let tail = format!(r#"", "file":"big.rb", "line":1, "memsize":{}}}"#, size + 41);
    file.write_all(head.as_bytes()).unwrap();
    let chunk = "0123456789abcdef".repeat(4096);
    for _ in 0..size / chunk.len() {
        file.write_all(chunk.as_bytes()).unwrap();
    }
    writeln!(file, "{tail}").unwrap();
    writeln!(file, "{CLASS}").unwrap();
    drop(file);
    let heap = load(&path, LoadOptions::default()).unwrap();
    assert_eq!(heap.len(), 2);
    assert_eq!(heap.bytesize(0), Some(size as u32));
    assert_eq!(heap.file(0), Some(&b"big.rb"[..]));
    assert!(heap.warnings().is_empty(), "{:?}", heap.warnings());
    let line = heap.source.read_line(heap.columns.offset[0]).unwrap();
    assert_eq!(line.len(), head.len() + size + tail.len());
    // The redactor streams it through and keeps the record minus its value.
    let output = dir.path().join("redacted.json");
    let stats = redact_file(&path, &output, RedactOptions::default()).unwrap();
    assert_eq!((stats.records, stats.values_removed), (3, 1));
    assert!(std::fs::metadata(&output).unwrap().len() < 1000);
    let redacted = load(&output, LoadOptions::default()).unwrap();
    assert_eq!(
        (redacted.len(), redacted.bytesize(0)),
        (2, Some(size as u32))
    );
}

#[test]
fn a_gzip_file_cut_in_half_keeps_its_records_and_says_so() {
    use flate2::{write::GzEncoder, Compression};
    let mut text = format!("{ROOT}\n{CLASS}\n").into_bytes();
    for i in 0..50_000u64 {
        text.extend_from_slice(string_record(0x1000 + i * 40, "").as_bytes());
        text.push(b'\n');
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&text).unwrap();
    let bytes = gz.finish().unwrap();
    let (_dir, heap) = load_bytes(&bytes[..bytes.len() / 2]);
    let heap = heap.unwrap();
    let kept = heap.stats.objects + heap.stats.root_records;
    assert!((1000..50_002).contains(&kept), "{kept}");
    assert!(heap.stats.stream_cut_short.is_some());
    let expected = format!("the {kept} records before the cut were kept");
    assert!(
        heap.warnings()
            .iter()
            .any(|w| w.contains("gzip stream ends early") && w.ends_with(&expected)),
        "{:?}",
        heap.warnings()
    );
    // Only the gzip header: nothing to keep, and an error rather than an empty heap.
    let (_dir, result) = load_bytes(&bytes[..12]);
    assert!(result.is_err(), "{:?}", result.map(|h| h.len()));
}

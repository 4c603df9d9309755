//! One hand-made dump per quirk of ../shared/docs/heap-dump-format.md ("Broken output"
//! and the version differences), loaded through the real loader.

use std::io::Write;

use heapdiff_core::parse::{parse_line, unescape_with};
use heapdiff_core::{diff, load, DiffOptions, Error, Heap, HeapGraph, LoadOptions, ObjectType};

const ROOT: &str = r#"{"type":"ROOT", "root":"vm", "references":["0x10"]}"#;
const STRING_CLASS: &str = r#"{"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}"#;

fn load_text(bytes: &[u8]) -> Result<Heap, Error> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    load(file.path(), LoadOptions::default())
}

fn lines(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(r);
        out.push(b'\n');
    }
    out
}

#[test]
fn ruby_31_junk_with_a_newline_and_brace_inside_stays_one_record() {
    // The junk of the 3.0/3.1 bug can hold "\n{": the record still ends where it ends.
    let broken = b"{\"address\":\"0x20\", \"type\":\"IMEMO\", \"imemo_type\":\"ment\", \"method\":\"\\u00ff\0\":\"re\n{\"\", \"gen\\u00ff\0\":29,\", \"generation\":29, \"file\":\"l.rb\", \"line\":179, \"memsize\":40}";
    let heap = load_text(&lines(&[ROOT.as_bytes(), broken, STRING_CLASS.as_bytes()])).unwrap();
    assert_eq!(heap.len(), 2);
    assert_eq!(heap.stats.lines, 4);
    assert_eq!(heap.stats.recovered_lines, 1);
    let i = heap.find(0x20).unwrap();
    assert_eq!(heap.generation(i), Some(29));
    assert_eq!(heap.line(i), Some(179));
    assert_eq!(heap.file(i), Some(&b"l.rb"[..]));
}

#[test]
fn never_escaped_members_with_quotes_and_backslashes() {
    // struct, real_class_name and name (until 3.3.7) are written raw.
    let data = br#"{"address":"0x20", "type":"DATA", "class":"0x30", "struct":"My"Struct\", "memsize":40}"#;
    let class = br#"{"address":"0x40", "type":"CLASS", "name":"We"ird\", "real_class_name":"We"ird\", "memsize":40}"#;
    let heap = load_text(&lines(&[
        ROOT.as_bytes(),
        data,
        class,
        STRING_CLASS.as_bytes(),
    ]))
    .unwrap();
    assert_eq!(heap.len(), 3);
    let i = heap.find(0x20).unwrap();
    assert_eq!(heap.subtype(i), Some(&br#"My"Struct\"#[..]));
    assert_eq!(heap.columns.memsize.get(i), 40);
    assert_eq!(
        heap.class_name_of_class(0x40).as_deref(),
        Some(r#"We"ird\"#)
    );
    assert_eq!(heap.stats.recovered_lines, 2);
}

#[test]
fn ruby_26_decimal_control_escapes() {
    let anon =
        br##"{"address":"0x40", "type":"CLASS", "name":"#<Class:0x000055d0>", "memsize":40}"##;
    let string =
        br#"{"address":"0x20", "type":"STRING", "class":"0x30", "value":"a\u0010b", "memsize":40}"#;
    let heap = load_text(&lines(&[
        ROOT.as_bytes(),
        anon,
        string,
        STRING_CLASS.as_bytes(),
    ]))
    .unwrap();
    assert!(heap.stats.decimal_escapes);
    assert_eq!(unescape_with(br"a\u0010b", true), b"a\nb");
    assert_eq!(unescape_with(br"a\u0010b", false), b"a\x10b");
}

#[test]
fn raw_del_and_invalid_utf8_are_kept_as_bytes() {
    let line = b"{\"address\":\"0x20\", \"type\":\"STRING\", \"class\":\"0x30\", \"file\":\"/app/\xff\xfe.rb\", \"line\":2, \"method\":\"m\x7f\", \"memsize\":40}";
    let heap = load_text(&lines(&[ROOT.as_bytes(), line, STRING_CLASS.as_bytes()])).unwrap();
    let i = heap.find(0x20).unwrap();
    assert_eq!(heap.file(i), Some(&b"/app/\xff\xfe.rb"[..]));
    assert_eq!(heap.method(i), Some(&b"m\x7f"[..]));
    assert_eq!(heap.stats.recovered_lines, 0);
}

#[test]
fn truncated_last_line_is_kept_and_reported() {
    let cut =
        &br#"{"address":"0x20", "type":"STRING", "class":"0x30", "file":"a.rb", "line":3, "memsi"#
            [..];
    let mut text = lines(&[ROOT.as_bytes(), STRING_CLASS.as_bytes()]);
    text.extend_from_slice(cut);
    let heap = load_text(&text).unwrap();
    assert_eq!(heap.len(), 2);
    assert_eq!(heap.stats.truncated_last_line, Some(3));
    assert_eq!(heap.line(heap.find(0x20).unwrap()), Some(3));
    assert!(heap
        .warnings()
        .iter()
        .any(|w| w.contains("line 3: the last line is truncated")));
}

#[test]
fn a_truncated_record_start_is_not_a_record() {
    let mut text = lines(&[ROOT.as_bytes(), STRING_CLASS.as_bytes()]);
    text.extend_from_slice(b"{\"addr");
    let heap = load_text(&text).unwrap();
    assert_eq!(heap.len(), 1);
    assert_eq!(
        heap.stats.recovered_lines, 1,
        "the cut bytes are kept with the record before"
    );
}

#[test]
fn not_a_dump_names_the_line() {
    match load_text(b"GIF89a\x00\x01binary") {
        Err(Error::Parse { line, .. }) => assert_eq!(line, 1),
        other => panic!("expected a parse error, got {other:?}"),
    }
    match load_text(b"") {
        Err(Error::Parse { reason, .. }) => assert!(reason.contains("empty")),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn shapes_are_not_objects_and_never_match_addresses() {
    // A SHAPE whose address equals an object's address in the other dump.
    let shape = br#"{"address":"0x20", "type":"SHAPE", "id":5, "parent_id":1,"edge_name":"@a", "depth":2, "shape_type":"IVAR", "edges":0, "memsize":24}"#;
    let before = load_text(&lines(&[ROOT.as_bytes(), shape, STRING_CLASS.as_bytes()])).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before.shapes.len(), 1);
    assert_eq!(before.find(0x20), None);
    let string = br#"{"address":"0x20", "type":"STRING", "class":"0x30", "file":"a.rb", "line":1, "memsize":40}"#;
    let after = load_text(&lines(&[ROOT.as_bytes(), string, STRING_CLASS.as_bytes()])).unwrap();
    let report = diff(&before, &after, None, &DiffOptions::default());
    assert_eq!(report.total_count, 1);
}

#[test]
fn none_slots_and_zombies_are_not_new_objects() {
    let none =
        br#"{"address":"0x50", "type":"NONE", "shape_id":3, "slot_size":40, "class":"0x30"}"#;
    let zombie =
        br#"{"address":"0x60", "type":"ZOMBIE", "shape_id":0, "slot_size":40, "class":"0x30"}"#;
    let before = load_text(&lines(&[ROOT.as_bytes(), STRING_CLASS.as_bytes()])).unwrap();
    let after = load_text(&lines(&[
        ROOT.as_bytes(),
        STRING_CLASS.as_bytes(),
        none,
        zombie,
    ]))
    .unwrap();
    assert_eq!(after.len(), 3);
    let report = diff(&before, &after, None, &DiffOptions::default());
    assert_eq!(
        report.total_count, 0,
        "an empty slot and garbage awaiting its finalizer"
    );
}

#[test]
fn slot_reuse_is_a_new_object() {
    // Same address, larger generation: the slot was freed and reused.
    let old = br#"{"address":"0x20", "type":"STRING", "class":"0x30", "file":"a.rb", "line":1, "generation":3, "memsize":40}"#;
    let new = br#"{"address":"0x20", "type":"STRING", "class":"0x30", "file":"a.rb", "line":1, "generation":9, "memsize":40}"#;
    let a = load_text(&lines(&[ROOT.as_bytes(), old, STRING_CLASS.as_bytes()])).unwrap();
    let b = load_text(&lines(&[ROOT.as_bytes(), new, STRING_CLASS.as_bytes()])).unwrap();
    assert_eq!(diff(&a, &b, None, &DiffOptions::default()).total_count, 1);
    // And the reverse order within the three-dump diff: gone in the later dump.
    let a_again = load_text(&lines(&[ROOT.as_bytes(), old, STRING_CLASS.as_bytes()])).unwrap();
    let report = diff(
        &a,
        &b,
        Some(&HeapGraph::new(a_again)),
        &DiffOptions::default(),
    );
    assert_eq!(report.total_count, 0);
    assert_eq!(report.freed_before_later, 1);
}

#[test]
fn compaction_between_dumps_is_reported_and_matched() {
    // Object allocated at generation 3 lives at 0x20 in dump A and at 0x80 in dump B;
    // a new object (generation 9) appears in B.
    let a_obj = br#"{"address":"0x20", "type":"STRING", "class":"0x30", "file":"a.rb", "line":1, "generation":3, "memsize":40}"#;
    let a_newest = br#"{"address":"0x28", "type":"STRING", "class":"0x30", "file":"a.rb", "line":5, "generation":7, "memsize":40}"#;
    let b_moved = br#"{"address":"0x80", "type":"STRING", "class":"0x30", "file":"a.rb", "line":1, "generation":3, "memsize":40}"#;
    let b_new = br#"{"address":"0x88", "type":"STRING", "class":"0x30", "file":"b.rb", "line":2, "generation":9, "memsize":40}"#;
    let a = load_text(&lines(&[
        ROOT.as_bytes(),
        a_obj,
        a_newest,
        STRING_CLASS.as_bytes(),
    ]))
    .unwrap();
    let b = load_text(&lines(&[
        ROOT.as_bytes(),
        b_moved,
        a_newest,
        b_new,
        STRING_CLASS.as_bytes(),
    ]))
    .unwrap();
    let report = diff(&a, &b, None, &DiffOptions::default());
    assert_eq!(report.total_count, 1, "the moved object is not new");
    assert_eq!(report.groups[0].file.as_deref(), Some(&b"b.rb"[..]));
    assert!(report.warnings[0].contains("compacted"));
    // Compaction between the second and third dump: the new object moved too.
    let c_moved = br#"{"address":"0x98", "type":"STRING", "class":"0x30", "file":"b.rb", "line":2, "generation":9, "memsize":40}"#;
    let c_newest = br#"{"address":"0xa0", "type":"STRING", "class":"0x30", "file":"c.rb", "line":2, "generation":12, "memsize":40}"#;
    let c_old_moved = br#"{"address":"0x90", "type":"STRING", "class":"0x30", "file":"a.rb", "line":1, "generation":3, "memsize":40}"#;
    // Retained means reachable: the third dump's root holds what it has.
    let c_root = br#"{"type":"ROOT", "root":"vm", "references":["0x90", "0x98", "0xa0"]}"#;
    let c = load_text(&lines(&[
        c_root,
        c_old_moved,
        c_moved,
        c_newest,
        STRING_CLASS.as_bytes(),
    ]))
    .unwrap();
    let report = diff(&a, &b, Some(&HeapGraph::new(c)), &DiffOptions::default());
    assert_eq!(
        report.total_count, 1,
        "still alive in c, at another address"
    );
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
}

#[test]
fn overflowing_numbers_are_left_out_and_counted() {
    let line = br#"{"address":"0x20", "type":"STRING", "class":"0x30", "line":99999999999, "generation":18446744073709551616, "memsize":40}"#;
    let heap = load_text(&lines(&[ROOT.as_bytes(), line, STRING_CLASS.as_bytes()])).unwrap();
    let i = heap.find(0x20).unwrap();
    assert_eq!(heap.line(i), None);
    assert_eq!(heap.generation(i), None);
    assert_eq!(heap.stats.overflowed_numbers, 2);
}

#[test]
fn flags_of_ruby_40() {
    let line = br#"{"address":"0x20", "type":"STRING", "class":"0x30", "memsize":40, "flags":{"wb_protected":true, "age":3, "shareable":true, "object_id":17}}"#;
    let mut refs = Vec::new();
    let record = parse_line(line, &mut refs).unwrap();
    assert_eq!(record.age, Some(3));
    assert_eq!(record.object_id, Some(17));
    assert!(!record.recovered);
}

#[test]
fn a_gzip_dump_cut_in_half_keeps_what_it_holds() {
    use flate2::{write::GzEncoder, Compression};
    let mut text = lines(&[ROOT.as_bytes(), STRING_CLASS.as_bytes()]);
    for i in 0..20_000 {
        text.extend_from_slice(format!("{{\"address\":\"0x{:x}\", \"type\":\"STRING\", \"class\":\"0x30\", \"value\":\"v{i}\", \"memsize\":40}}\n", 0x100000 + i * 40).as_bytes());
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&text).unwrap();
    let bytes = gz.finish().unwrap();
    let heap = load_text(&bytes[..bytes.len() / 2]).unwrap();
    assert!(heap.len() > 100 && heap.len() < 20_001, "{}", heap.len());
    assert!(heap.stats.stream_cut_short.is_some());
    assert!(heap
        .warnings()
        .iter()
        .any(|w| w.contains("gzip stream ends early")));
}

#[test]
fn extended_objects_keep_their_identity() {
    // `o.extend(M)` between dumps: the object's class becomes its singleton class.
    let object_class = br#"{"address":"0x40", "type":"CLASS", "name":"Object", "memsize":40}"#;
    let singleton = br#"{"address":"0x48", "type":"CLASS", "class":"0x40", "singleton":true, "superclass":"0x50", "memsize":40}"#;
    let iclass = br#"{"address":"0x50", "type":"ICLASS", "superclass":"0x40", "memsize":40}"#;
    let before = br#"{"address":"0x20", "type":"OBJECT", "class":"0x40", "memsize":40}"#;
    let after = br#"{"address":"0x20", "type":"OBJECT", "class":"0x48", "memsize":40}"#;
    let a = load_text(&lines(&[ROOT.as_bytes(), before, object_class])).unwrap();
    let b = load_text(&lines(&[
        ROOT.as_bytes(),
        after,
        object_class,
        singleton,
        iclass,
    ]))
    .unwrap();
    assert_eq!(
        b.class_name(b.find(0x20).unwrap()).as_deref(),
        Some("Object")
    );
    let report = diff(&a, &b, None, &DiffOptions::default());
    assert_eq!(
        report.total_count, 2,
        "only the singleton class and the ICLASS are new"
    );
    // Untraced, the object might also be a new one in the reused slot: at most an
    // uncertain count, never a certain one.
    assert!(report
        .groups
        .iter()
        .all(|g| g.object_type != ObjectType::Object || g.count == 0));
}

#[test]
fn a_class_nested_in_an_anonymous_one_is_not_ruby_26() {
    let nested = br##"{"address":"0x40", "type":"CLASS", "name":"#<Class:0x000055d0>::Inner", "memsize":40}"##;
    let heap = load_text(&lines(&[ROOT.as_bytes(), nested, STRING_CLASS.as_bytes()])).unwrap();
    assert!(!heap.stats.decimal_escapes);
}

#[test]
fn pipes_are_refused_with_a_clear_error() {
    match load("/dev/stdin".as_ref(), LoadOptions::default()) {
        Err(Error::Io { error, .. }) => assert!(
            error.to_string().contains("not a regular file")
                || error.kind() == std::io::ErrorKind::NotFound
        ),
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => panic!("a pipe loaded"),
    }
}

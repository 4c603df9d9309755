//! Redaction keeps everything a diff or a retention path uses and no string value:
//! every fixture dump, the three-dump leak, and each broken-line quirk.

mod common;
use common::shared;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use heapdiff_core::redact::{redact_file, RedactOptions, RedactStats};
use heapdiff_core::{diff, load, DiffOptions, Heap, HeapGraph, LoadOptions};

const RUBIES: [&str; 4] = ["3.1", "3.3", "3.4", "4.0"];

fn load_path(path: &Path) -> Heap {
    load(path, LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn redacted(input: &Path, dir: &Path, gzip: bool) -> (PathBuf, RedactStats) {
    let name = input.file_name().unwrap().to_string_lossy();
    let output = dir.join(format!("redacted-{name}"));
    let options = RedactOptions {
        gzip,
        ..RedactOptions::default()
    };
    let stats = redact_file(input, &output, options).unwrap_or_else(|e| panic!("{e}"));
    (output, stats)
}

fn read_all(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        bytes
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything the index holds, row by row, with interned strings resolved.
fn assert_same_heap(a: &Heap, b: &Heap, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: objects");
    let (ca, cb) = (&a.columns, &b.columns);
    assert_eq!(ca.address, cb.address, "{what}: addresses");
    assert_eq!(ca.object_type, cb.object_type, "{what}: types");
    assert_eq!(ca.flags, cb.flags, "{what}: flags");
    assert_eq!(ca.class, cb.class, "{what}: classes");
    assert_eq!(ca.line, cb.line, "{what}: lines");
    assert_eq!(ca.generation, cb.generation, "{what}: generations");
    assert_eq!(ca.memsize, cb.memsize, "{what}: memsizes");
    assert_eq!(ca.bytesize, cb.bytesize, "{what}: bytesizes");
    assert_eq!(ca.length, cb.length, "{what}: lengths");
    assert_eq!(ca.shape_id, cb.shape_id, "{what}: shape ids");
    for i in 0..a.len() {
        assert_eq!(a.file(i), b.file(i), "{what}: file of row {i}");
        // Junk (control bytes) is the one thing left out of a method name.
        let junk = a.method(i).is_some_and(|m| m.iter().any(|&c| c < 0x20));
        let method = if junk { None } else { a.method(i) };
        assert_eq!(method, b.method(i), "{what}: method of row {i}");
        assert_eq!(a.subtype(i), b.subtype(i), "{what}: subtype of row {i}");
        assert_eq!(a.class_name(i), b.class_name(i), "{what}: class of row {i}");
        assert_eq!(
            a.reference_addresses(i),
            b.reference_addresses(i),
            "{what}: references of row {i}"
        );
    }
    let roots = |h: &Heap| -> Vec<(Vec<u8>, Vec<u64>)> {
        h.roots
            .iter()
            .map(|r| (h.root_name(r).to_vec(), h.root_addresses(r)))
            .collect()
    };
    assert_eq!(roots(a), roots(b), "{what}: roots");
    let shapes = |h: &Heap| -> Vec<(u64, Option<u64>, Option<Vec<u8>>)> {
        h.shapes
            .iter()
            .map(|s| (s.id, s.parent_id, h.string(s.edge_name).map(<[u8]>::to_vec)))
            .collect()
    };
    assert_eq!(shapes(a), shapes(b), "{what}: shapes");
    let (sa, sb) = (&a.stats, &b.stats);
    assert_eq!(
        (
            sa.duplicate_addresses,
            sa.dangling_references,
            sa.references
        ),
        (
            sb.duplicate_addresses,
            sb.dangling_references,
            sb.references
        ),
        "{what}: reference counts"
    );
}

#[test]
fn every_fixture_dump_redacts_to_the_same_index_without_values() {
    let dir = tempfile::tempdir().unwrap();
    for ruby in RUBIES {
        let input = shared().join(format!("fixtures/dumps/ruby-{ruby}.jsonl"));
        let original = std::fs::read(&input).unwrap();
        let (output, stats) = redacted(&input, dir.path(), false);
        let text = std::fs::read(&output).unwrap();
        let with_value = original
            .split(|&b| b == b'\n')
            .filter(|l| contains(l, b"\"value\":"))
            .count() as u64;
        assert!(with_value > 1000, "{ruby}: the fixture has values");
        assert_eq!(stats.values_removed, with_value, "{ruby}");
        assert_eq!(stats.rebuilt_records, 0, "{ruby}: the fixtures are clean");
        assert!(!contains(&text, b"\"value\":"), "{ruby}");
        // Every line is still JSON, and only the value member went.
        for (a, b) in original
            .split(|&b| b == b'\n')
            .zip(text.split(|&b| b == b'\n'))
        {
            if a.is_empty() {
                continue;
            }
            let mut a: serde_json::Value = serde_json::from_slice(a).unwrap();
            let b: serde_json::Value = serde_json::from_slice(b).unwrap();
            a.as_object_mut().unwrap().remove("value");
            assert_eq!(a, b, "{ruby}");
        }
        let (a, b) = (load_path(&input), load_path(&output));
        assert_same_heap(&a, &b, ruby);
        assert_eq!(a.stats.lines, b.stats.lines, "{ruby}");
    }
}

#[test]
fn the_redacted_leak3_dumps_diff_and_path_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for ruby in RUBIES {
        let inputs: Vec<PathBuf> = (0..3)
            .map(|n| shared().join(format!("fixtures/leak3/ruby-{ruby}/{n}.jsonl.gz")))
            .collect();
        let subdir = dir.path().join(ruby);
        std::fs::create_dir(&subdir).unwrap();
        let outputs: Vec<PathBuf> = inputs
            .iter()
            .map(|p| {
                let (out, stats) = redacted(p, &subdir, true);
                assert!(stats.gzip_input);
                out
            })
            .collect();
        assert!(std::fs::read(&outputs[0])
            .unwrap()
            .starts_with(&[0x1f, 0x8b]));
        let before: Vec<Heap> = inputs.iter().map(|p| load_path(p)).collect();
        let after: Vec<Heap> = outputs.iter().map(|p| load_path(p)).collect();
        let summary = |mut h: Vec<Heap>| {
            let graph = HeapGraph::new(h.pop().expect("three heaps"));
            let report = diff(&h[0], &h[1], Some(&graph), &DiffOptions::default());
            let groups: Vec<_> = report
                .groups
                .iter()
                .map(|g| {
                    (
                        g.object_type,
                        g.class_name.clone(),
                        g.file.clone(),
                        g.line,
                        g.count,
                        g.memsize,
                    )
                })
                .collect();
            let path = report.groups.first().map(|g| {
                let row = g.members[0] as usize;
                let path = graph
                    .path_to_root(row, false)
                    .expect("the leak is reachable");
                (path.root.clone(), path.steps.len())
            });
            (groups, report.total_count, path)
        };
        let (a, b) = (summary(before), summary(after));
        assert_eq!(a, b, "{ruby}");
        assert!(a.1 >= 3000, "{ruby}: the leak is there");
        assert!(!contains(&read_all(&outputs[1]), b"\"value\":"), "{ruby}");
    }
}

const SECRET: &str = "hunter2-SECRET";

/// One record per broken-output quirk of the format doc, each holding the secret.
fn broken_dump() -> Vec<u8> {
    let s = SECRET;
    let mut out = Vec::new();
    let lines: Vec<Vec<u8>> = vec![
        br#"{"type":"ROOT", "root":"vm", "references":["0x10", "0x20", "0x40"]}"#.to_vec(),
        format!(r#"{{"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":14, "value":"{s}", "encoding":"UTF-8", "file":"a.rb", "line":1, "generation":5, "memsize":40, "flags":{{"wb_protected":true}}}}"#).into_bytes(),
        // 3.0/3.1 non-ASCII bug: junk (NULs, raw quotes) in `method`, with a secret in it.
        [
            &br#"{"address":"0x20", "type":"IMEMO", "imemo_type":"callcache", "method":"\u00ff"#[..],
            b"\0\0",
            s.as_bytes(),
            br#""j"unk", "file":"b.rb", "line":7, "generation":9, "references":["0x10"], "memsize":40}"#,
        ]
        .concat(),
        // An unescaped quote in a file path, and a value after it.
        format!(r#"{{"address":"0x40", "type":"STRING", "class":"0x30", "file":"/srv/we"ird.rb", "line":3, "bytesize":14, "value":"{s}", "memsize":40}}"#).into_bytes(),
        // 2.6/2.7 decimal control escapes in a value.
        format!(r#"{{"address":"0x48", "type":"STRING", "class":"0x30", "bytesize":15, "value":"\u0010{s}", "memsize":40}}"#).into_bytes(),
        // Junk with a raw newline that holds the secret.
        [
            &br#"{"address":"0x50", "type":"IMEMO", "imemo_type":"ment", "method":"\u00ff"#[..],
            b"\0\n{\"",
            s.as_bytes(),
            br#"", "generation":29, "file":"l.rb", "line":179, "memsize":40}"#,
        ]
        .concat(),
        // Invalid UTF-8 in a file path and a symbol's value.
        [
            &br#"{"address":"0x58", "type":"SYMBOL", "value":""#[..],
            s.as_bytes(),
            b"\xff\xfe\", \"file\":\"caf\xe9.rb\", \"line\":2, \"memsize\":40}",
        ]
        .concat(),
        br#"{"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}"#.to_vec(),
        // A truncated last line, cut inside the value.
        format!(r#"{{"address":"0x60", "type":"STRING", "class":"0x30", "file":"c.rb", "line":4, "bytesize":14, "value":"{}"#, &s[..8]).into_bytes(),
    ];
    for (i, line) in lines.iter().enumerate() {
        out.extend_from_slice(line);
        if i + 1 < lines.len() {
            out.push(b'\n');
        }
    }
    out
}

#[test]
fn broken_lines_lose_their_values_and_junk_and_load_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("broken.json");
    std::fs::write(&input, broken_dump()).unwrap();
    for gzip in [false, true] {
        let out_dir = dir.path().join(format!("gzip-{gzip}"));
        std::fs::create_dir(&out_dir).unwrap();
        let (output, stats) = redacted(&input, &out_dir, gzip);
        let text = read_all(&output);
        assert!(
            !contains(&text, &SECRET.as_bytes()[..8]),
            "{}",
            String::from_utf8_lossy(&text)
        );
        assert!(!contains(&text, b"\"value\":"));
        assert_eq!(stats.records, 9);
        assert_eq!(stats.values_removed, 5);
        // The junk records (3.0/3.1 bug twice) and the unescaped quote are rebuilt.
        assert_eq!(stats.rebuilt_records, 3);
        assert_eq!(stats.junk_members_removed, 2);
        assert!(
            !text.ends_with(b"\n"),
            "the truncated last line stays truncated"
        );
        let (a, b) = (load_path(&input), load_path(&output));
        assert_same_heap(&a, &b, "broken");
        assert_eq!(b.len(), 8);
        // Junk records come out clean and on one line; the quote in a path stays.
        assert_eq!((a.stats.lines, a.stats.recovered_lines), (10, 3));
        assert_eq!((b.stats.lines, b.stats.recovered_lines), (9, 1));
        assert_eq!(b.stats.truncated_last_line, Some(9));
        assert_eq!(b.file(b.find(0x40).unwrap()), Some(&b"/srv/we\"ird.rb"[..]));
        for junk in [0x20, 0x50] {
            assert!(contains(
                a.method(a.find(junk).unwrap()).unwrap(),
                b"hunter2"
            ));
            assert_eq!(b.method(b.find(junk).unwrap()), None);
        }
    }
}

#[test]
fn a_file_that_is_not_a_dump_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("page.html");
    std::fs::write(&input, "<html>\n<body>secret</body>\n").unwrap();
    let output = dir.path().join("out.json");
    let error = redact_file(&input, &output, RedactOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:1: not a heap dump record (does not start with '{{')",
            input.display()
        )
    );
}

#[test]
fn an_empty_file_or_lines_of_json_that_is_no_dump_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.json");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "\n\n").unwrap();
    let error = redact_file(&empty, &output, RedactOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:1: not a heap dump record (the file is empty)",
            empty.display()
        )
    );
    // Each line starts with `{` but no record: the first is judged at once.
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&jsonl, "{\"event\":\"login\"}\n".repeat(1000)).unwrap();
    let error = redact_file(&jsonl, &output, RedactOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:1: not a heap dump record (no \"type\" member)",
            jsonl.display()
        )
    );
}

#[test]
fn a_cut_gzip_dump_redacts_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let input = shared().join("fixtures/leak3/ruby-3.3/1.jsonl.gz");
    let bytes = std::fs::read(&input).unwrap();
    let cut = dir.path().join("cut.json.gz");
    std::fs::File::create(&cut)
        .unwrap()
        .write_all(&bytes[..bytes.len() / 2])
        .unwrap();
    let (output, stats) = redacted(&cut, dir.path(), false);
    assert!(stats.stream_cut_short.is_some());
    assert!(stats.records > 1000);
    let heap = load_path(&output);
    let loaded = heap.stats.objects + heap.stats.root_records + heap.stats.shapes;
    assert_eq!(loaded, stats.records);
    assert!(!contains(&std::fs::read(&output).unwrap(), b"\"value\":"));
}

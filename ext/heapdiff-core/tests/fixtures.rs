//! The real dumps in ../shared/fixtures: every line of every Ruby's dump is read, and
//! the three-dump leak has its known exact answer.

mod common;
use common::shared;

use std::io::Read;
use std::path::{Path, PathBuf};

use heapdiff_core::{diff, load, DiffOptions, Heap, HeapGraph, LoadOptions, ObjectType};

const RUBIES: [&str; 4] = ["3.1", "3.3", "3.4", "4.0"];

fn load_path(path: &Path) -> Heap {
    load(path, LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Counts the lines of a (possibly gzipped) dump by kind, independently of the parser.
fn count_lines(path: &Path) -> (u64, u64, u64) {
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(file)
            .read_to_end(&mut bytes)
            .unwrap();
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .unwrap();
    }
    let (mut objects, mut roots, mut shapes) = (0, 0, 0);
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let value: serde_json::Value =
            serde_json::from_slice(line).expect("fixture lines are JSON");
        match value["type"].as_str().unwrap() {
            "ROOT" => roots += 1,
            "SHAPE" => shapes += 1,
            _ => objects += 1,
        }
    }
    (objects, roots, shapes)
}

#[test]
fn every_line_of_every_fixture_dump_is_read() {
    for ruby in RUBIES {
        let path = shared().join(format!("fixtures/dumps/ruby-{ruby}.jsonl"));
        let heap = load_path(&path);
        let (objects, roots, shapes) = count_lines(&path);
        assert_eq!(heap.len() as u64, objects, "{ruby}: objects");
        assert_eq!(heap.stats.root_records, roots, "{ruby}: roots");
        assert_eq!(heap.shapes.len() as u64, shapes, "{ruby}: shapes");
        assert_eq!(heap.stats.lines, objects + roots + shapes, "{ruby}: lines");
        assert_eq!(
            heap.stats.recovered_lines, 0,
            "{ruby}: these fixtures are valid JSON"
        );
        assert!(heap.warnings().iter().all(|w| !w.contains("truncated")));
        // Every reference resolves except the few objects allocated during the dump.
        assert!(
            heap.stats.dangling_references * 100 < heap.stats.references.max(1),
            "{ruby}"
        );
    }
}

#[test]
fn fixture_fields_match_serde_json_for_every_object() {
    for ruby in RUBIES {
        let path = shared().join(format!("fixtures/dumps/ruby-{ruby}.jsonl"));
        let heap = load_path(&path);
        let text = std::fs::read(&path).unwrap();
        let mut row = 0;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let kind = v["type"].as_str().unwrap();
            if kind == "ROOT" || kind == "SHAPE" {
                continue;
            }
            let address = u64::from_str_radix(&v["address"].as_str().unwrap()[2..], 16).unwrap();
            let c = &heap.columns;
            assert_eq!(c.address[row], address);
            assert_eq!(c.object_type[row].name(), kind);
            assert_eq!(
                heap.file(row)
                    .map(|f| String::from_utf8_lossy(f).into_owned()),
                v["file"].as_str().map(String::from)
            );
            assert_eq!(heap.line(row).map(u64::from), v["line"].as_u64());
            assert_eq!(
                heap.generation(row).map(u64::from),
                v["generation"].as_u64()
            );
            assert_eq!(c.memsize.get(row), v["memsize"].as_u64().unwrap_or(0));
            let refs: Vec<u64> = v["references"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| u64::from_str_radix(&r.as_str().unwrap()[2..], 16).unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(heap.reference_addresses(row), refs, "{ruby} row {row}");
            row += 1;
        }
        assert_eq!(row, heap.len());
    }
}

#[test]
fn class_names_come_from_class_records() {
    let heap = load_path(&shared().join("fixtures/dumps/ruby-3.4.jsonl"));
    let strings: Vec<usize> = (0..heap.len())
        .filter(|&i| heap.columns.object_type[i] == ObjectType::String)
        .collect();
    assert!(strings
        .iter()
        .all(|&i| heap.class_name(i).as_deref() == Some("String")));
}

fn leak3(ruby: &str, n: u32) -> PathBuf {
    shared().join(format!("fixtures/leak3/ruby-{ruby}/{n}.jsonl.gz"))
}

#[test]
fn leak3_diff_is_exact_on_every_ruby() {
    for ruby in RUBIES {
        let mut heaps: Vec<Heap> = (0..3).map(|n| load_path(&leak3(ruby, n))).collect();
        assert!(heaps[0].stats.gzip);
        let last = HeapGraph::new(heaps.pop().expect("three heaps"));
        let report = diff(&heaps[0], &heaps[1], Some(&last), &DiffOptions::default());
        let find = |t: ObjectType, line: u32| {
            report
                .groups
                .iter()
                .find(|g| {
                    g.object_type == t
                        && g.line == Some(line)
                        && g.file.as_deref() == Some(b"leak3.rb")
                })
                .map(|g| g.count)
        };
        assert_eq!(
            find(ObjectType::Object, 28),
            Some(1000),
            "{ruby}: Leak objects"
        );
        assert_eq!(find(ObjectType::String, 27), Some(1000), "{ruby}: ids");
        assert_eq!(find(ObjectType::String, 17), Some(1000), "{ruby}: payloads");
        let leak = report.groups.iter().find(|g| g.line == Some(28)).unwrap();
        assert_eq!(leak.class_name.as_deref(), Some("Leak"));
        assert!(report.warnings.is_empty(), "{ruby}: {:?}", report.warnings);
    }
}

/// The same diff matched by address alone gets it wrong: that is the pitfall the
/// identity rule exists for (slot reuse).
#[test]
fn address_only_matching_would_miscount_leak3() {
    let mut miscounted = 0;
    for ruby in RUBIES {
        let heaps: Vec<Heap> = (0..3).map(|n| load_path(&leak3(ruby, n))).collect();
        let count = (0..heaps[1].len())
            .filter(|&i| {
                let address = heaps[1].columns.address[i];
                heaps[1].file(i) == Some(b"leak3.rb")
                    && heaps[1].line(i) == Some(17)
                    && heaps[0].find(address).is_none()
                    && heaps[2].find(address).is_some()
            })
            .count();
        if count != 1000 {
            miscounted += 1;
        }
    }
    assert!(
        miscounted >= 3,
        "address-only matching should miss on 3.3, 3.4 and 4.0"
    );
}

//! Trends across snapshots: counts per site, survivors by identity, verdicts, checked
//! on small hand-written dumps and on the known leak in ../shared/fixtures/leak3.

use std::io::Write;
use std::path::PathBuf;

use heapdiff_core::{load, trend, DiffOptions, Heap, LoadOptions, ObjectType, Verdict};

/// A STRING record at `address`, allocated at app.rb:`line` in GC generation `generation`.
fn string(address: u64, line: u32, generation: u32) -> String {
    format!(
        "{{\"address\":\"0x{address:x}\", \"type\":\"STRING\", \"class\":\"0x10\", \"bytesize\":1, \"value\":\"x\", \"file\":\"app.rb\", \"line\":{line}, \"method\":\"m\", \"generation\":{generation}, \"memsize\":40}}\n"
    )
}

fn heap(records: &[String]) -> Heap {
    let mut text = String::from("{\"type\":\"ROOT\", \"root\":\"vm\", \"references\":[]}\n");
    text += "{\"address\":\"0x10\", \"type\":\"CLASS\", \"name\":\"String\", \"memsize\":40}\n";
    for r in records {
        text += r;
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    load(file.path(), LoadOptions::default()).unwrap()
}

/// Line 1 keeps its objects and gains one per snapshot. Line 2 has two objects in
/// every snapshot, but in reused slots: same addresses, newer generations, so they
/// are new objects each time.
fn three_snapshots() -> Vec<Vec<String>> {
    vec![
        vec![
            string(0x100, 1, 1),
            string(0x200, 1, 1),
            string(0x300, 1, 1),
            string(0x400, 2, 1),
            string(0x500, 2, 1),
        ],
        vec![
            string(0x100, 1, 1),
            string(0x200, 1, 1),
            string(0x300, 1, 1),
            string(0x600, 1, 5),
            string(0x400, 2, 5),
            string(0x500, 2, 5),
        ],
        vec![
            string(0x100, 1, 1),
            string(0x200, 1, 1),
            string(0x300, 1, 1),
            string(0x600, 1, 5),
            string(0x700, 1, 9),
            string(0x400, 2, 9),
            string(0x500, 2, 9),
        ],
    ]
}

#[test]
fn survivors_are_counted_by_identity_not_by_address() {
    let dumps = three_snapshots();
    let mut loaded = Vec::new();
    let t = trend(
        dumps.len(),
        |k| {
            loaded.push(k);
            Ok::<_, ()>(heap(&dumps[k]))
        },
        &DiffOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded, vec![0, 1, 2]);
    let strings: Vec<_> = t
        .sites
        .iter()
        .filter(|s| s.object_type == ObjectType::String)
        .collect();
    assert_eq!(strings.len(), 2);

    let grows = strings[0];
    assert_eq!(
        (grows.file.as_deref(), grows.line),
        (Some(&b"app.rb"[..]), Some(1))
    );
    assert_eq!(grows.class_name.as_deref(), Some("String"));
    assert_eq!(grows.counts, vec![3, 4, 5]);
    assert_eq!(grows.memsizes, vec![120, 160, 200]);
    assert_eq!(grows.survived, vec![0, 3, 4]);
    assert_eq!(grows.verdict, Verdict::Growing);

    let churns = strings[1];
    assert_eq!(churns.line, Some(2));
    assert_eq!(churns.counts, vec![2, 2, 2]);
    assert_eq!(churns.survived, vec![0, 0, 0]);
    assert_eq!(churns.verdict, Verdict::Transient);

    // Growing sites rank first; rows point into the last snapshot.
    assert_eq!(t.sites[0].line, Some(1));
    let rows = t.rows(0, usize::MAX);
    let last = t.last.as_ref().expect("the last snapshot");
    let addresses: Vec<u64> = rows
        .iter()
        .map(|&r| last.heap().columns.address[r as usize])
        .collect();
    assert_eq!(addresses, vec![0x100, 0x200, 0x300, 0x600, 0x700]);
    assert_eq!(t.rows(0, 2).len(), 2);
    // The CLASS record is a site too (stable): totals count every live object.
    assert_eq!(
        t.snapshots.iter().map(|s| s.objects).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn a_load_error_stops_the_walk() {
    let dumps = three_snapshots();
    let result = trend(
        3,
        |k| {
            if k == 1 {
                Err("bad dump")
            } else {
                Ok(heap(&dumps[k]))
            }
        },
        &DiffOptions::default(),
    );
    assert_eq!(result.err(), Some("bad dump"));
}

fn leak3(ruby: &str, n: usize) -> PathBuf {
    let shared = std::env::var_os("HEAPDIFF_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    shared.join(format!("fixtures/leak3/ruby-{ruby}/{n}.jsonl.gz"))
}

/// leak3 keeps 1000 Leak objects (each with an id and a payload String) per phase and
/// makes garbage that the full GC before each dump frees.
/// It also holds the dumps it took so far.
#[test]
fn leak3_has_exactly_three_growing_sites() {
    for ruby in ["3.1", "3.4"] {
        let t = trend(
            3,
            |k| load(&leak3(ruby, k), LoadOptions::default()),
            &DiffOptions::default(),
        )
        .unwrap();
        let growing: Vec<_> = t
            .sites
            .iter()
            .take_while(|s| s.verdict == Verdict::Growing)
            .collect();
        let mut lines: Vec<(ObjectType, u32)> = growing
            .iter()
            .map(|s| (s.object_type, s.line.unwrap()))
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            vec![
                (ObjectType::Object, 28),
                (ObjectType::String, 17),
                (ObjectType::String, 27),
                (ObjectType::String, 34)
            ],
            "{ruby}"
        );
        for site in &growing[..3] {
            // Ruby 3.4 holds one more id String of line 27 in each dump, a different
            // object each time: identity tells it from the leaked ones.
            let extra = u64::from(ruby == "3.4" && site.line == Some(27));
            let counts: Vec<u64> = [1000, 2000, 3000].iter().map(|c| c + extra).collect();
            assert_eq!(site.counts, counts, "{ruby} line {:?}", site.line);
            assert_eq!(site.survived, vec![0, 1000, 2000], "{ruby}");
        }
        // The script keeps its earlier dumps (deflated Strings, line 34): a small leak
        // of its own, last.
        assert_eq!(growing[3].line, Some(34));
        assert_eq!(growing[3].counts, vec![0, 1, 2]);
        assert_eq!(growing[3].survived, vec![0, 0, 1]);
        // The garbage strings of `work` (line 24) were collected before each dump.
        assert!(
            !t.sites
                .iter()
                .any(|s| s.line == Some(24) && s.object_type == ObjectType::String),
            "{ruby}"
        );
    }
}

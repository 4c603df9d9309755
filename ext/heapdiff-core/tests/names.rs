//! Names from a snapshot's names sidecar: kept only where the dump agrees (the address
//! is an object of the class the process saw), and put on a path only where the edge
//! is the named one.

use std::io::Write;

use heapdiff_core::graph::NameEntry;
use heapdiff_core::{load, HeapGraph, LoadOptions};

/// ROOT vm → CLASS Object → MODULE Registry → ARRAY 0x300 (Registry::ENTRIES) → STRING;
/// ROOT global_tbl → ARRAY 0x400 → STRING; CLASS Array names the arrays' class.
const DUMP: &str = r#"{"type":"ROOT", "root":"vm", "references":["0x100"]}
{"type":"ROOT", "root":"global_tbl", "references":["0x400"]}
{"address":"0x100", "type":"CLASS", "name":"Object", "references":["0x200"], "memsize":40}
{"address":"0x200", "type":"MODULE", "name":"Registry", "references":["0x300"], "memsize":40}
{"address":"0x500", "type":"CLASS", "name":"Array", "references":[], "memsize":40}
{"address":"0x300", "type":"ARRAY", "class":"0x500", "length":1, "references":["0x310"], "memsize":40}
{"address":"0x310", "type":"STRING", "bytesize":1, "value":"a", "memsize":40}
{"address":"0x400", "type":"ARRAY", "class":"0x500", "length":1, "references":["0x410"], "memsize":40}
{"address":"0x410", "type":"STRING", "bytesize":1, "value":"b", "memsize":40}
"#;

fn graph() -> HeapGraph {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(DUMP.as_bytes()).unwrap();
    HeapGraph::new(load(file.path(), LoadOptions::default()).unwrap())
}

fn entry(address: u64, owner: Option<u64>, kind: &str, expr: &str, class: &str) -> NameEntry {
    NameEntry {
        address,
        owner,
        kind: kind.into(),
        expr: expr.into(),
        context: None,
        class_name: Some(class.into()),
    }
}

fn labels(graph: &HeapGraph, address: u64) -> Vec<Option<String>> {
    let row = graph.heap().find(address).unwrap();
    let path = graph.path_to_root(row, true).unwrap();
    path.steps.into_iter().map(|s| s.label).collect()
}

#[test]
fn names_the_edge_from_the_owner_and_the_global_from_its_root() {
    let graph = graph();
    let kept = graph.set_names(vec![
        entry(0x300, Some(0x200), "constant", "Registry::ENTRIES", "Array"),
        entry(0x400, None, "global", "$log", "Array"),
    ]);
    assert_eq!(kept, Some(2));
    assert_eq!(
        labels(&graph, 0x310),
        vec![
            None,
            None,
            Some("Registry::ENTRIES".into()),
            Some("[0]".into())
        ]
    );
    assert_eq!(
        labels(&graph, 0x410),
        vec![Some("$log".into()), Some("[0]".into())]
    );
    // Names are set once.
    assert_eq!(graph.set_names(vec![]), None);
}

#[test]
fn drops_what_the_dump_contradicts() {
    let graph = graph();
    let kept = graph.set_names(vec![
        // Another class than the dump's: the address is another object now.
        entry(0x300, Some(0x200), "constant", "Registry::ENTRIES", "Hash"),
        // No object of the dump.
        entry(0x999, Some(0x200), "constant", "Registry::GONE", "Array"),
    ]);
    assert_eq!(kept, Some(0));
    assert_eq!(graph.names().dropped, 2);
    assert_eq!(labels(&graph, 0x310)[2], None);
}

#[test]
fn a_name_whose_owner_is_off_the_path_names_the_object_not_the_edge() {
    let graph = graph();
    // Owned by Registry, but reached here from the global_tbl root.
    graph.set_names(vec![entry(
        0x400,
        Some(0x200),
        "constant",
        "Registry::OTHER",
        "Array",
    )]);
    assert_eq!(labels(&graph, 0x410), vec![None, Some("[0]".into())]);
    let row = graph.heap().find(0x400).unwrap();
    assert_eq!(graph.best_name(row).unwrap().expr, "Registry::OTHER");
}

#[test]
fn a_plain_dump_has_no_names() {
    let graph = graph();
    assert!(graph.names().is_empty());
    assert_eq!(
        labels(&graph, 0x310),
        vec![None, None, None, Some("[0]".into())]
    );
}

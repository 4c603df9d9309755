//! Loads three dumps, diffs them, finds a retention path and redacts the middle one:
//! every long-lived allocation heapdiff makes, in one small run for valgrind
//! (bin/test runs `valgrind --leak-check=full` on it with the leak3 fixture).
//! `cargo run --release --example memcheck -- 0.json 1.json 2.json`
use heapdiff_core::redact::{redact, RedactOptions};
use heapdiff_core::{diff, load, DiffOptions, HeapGraph, LoadOptions};

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    assert_eq!(paths.len(), 3, "usage: memcheck BEFORE AFTER LATER");
    let mut heaps: Vec<_> = paths
        .iter()
        .map(|p| load(p.as_ref(), LoadOptions::default()).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let graph = HeapGraph::new(heaps.pop().expect("three heaps"));
    let report = diff(&heaps[0], &heaps[1], Some(&graph), &DiffOptions::default());
    let group = report.groups.first().expect("the dumps leak");
    // Members are rows of the last heap, where the retention holds.
    let row = group.members[0] as usize;
    let path = graph.path_to_root(row, false);
    let last = graph.heap();
    let value = last.source.read_line(last.columns.offset[row]).unwrap();
    let mut redacted = Vec::new();
    let input = std::fs::File::open(&paths[1]).unwrap();
    let stats = redact(
        input,
        paths[1].as_ref(),
        &mut redacted,
        "memory".as_ref(),
        RedactOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{} objects retained in {} groups; first group {} x{}, path from {} in {} steps; record {} bytes; redacted {} records ({} values)",
        report.total_count,
        report.groups.len(),
        group.object_type.name(),
        group.count,
        path.as_ref().map_or("-", |p| p.root.as_str()),
        path.as_ref().map_or(0, |p| p.steps.len()),
        value.len(),
        stats.records,
        stats.values_removed
    );
}

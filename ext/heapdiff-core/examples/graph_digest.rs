//! Prints what the retention analyses answer for every object of a dump, one line
//! each (the category of the root of its shortest path, every 50th object's path with each step's row and label, its
//! immediate dominator and retained size), so that two builds can be compared with
//! `cmp`: `cargo run --release --example graph_digest -- dump.json [--class-edges] > out`.
use std::io::Write;

fn main() {
    let path = std::env::args().nth(1).expect("a dump");
    let class_edges = std::env::args().nth(2).as_deref() == Some("--class-edges");
    let graph = heapdiff_core::HeapGraph::new(
        heapdiff_core::load(path.as_ref(), Default::default()).expect("loads"),
    );
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for row in 0..graph.heap().len() {
        // Every object's root, and every 50th object's whole path: labelling a path
        // reads the shape chains, too slow for a million of them.
        let category = graph
            .root_category(row, class_edges)
            .map(|c| String::from_utf8_lossy(c).into_owned());
        let path = (row % 50 == 0)
            .then(|| graph.path_to_root(row, class_edges))
            .flatten()
            .map(|p| {
                let steps: Vec<_> = p.steps.iter().map(|s| (s.row, s.label.clone())).collect();
                (p.root, steps)
            });
        writeln!(
            out,
            "{row} {category:?} {path:?} {:?} {}",
            graph.dominator(row, class_edges),
            graph.retained_size(row, class_edges)
        )
        .unwrap();
    }
}

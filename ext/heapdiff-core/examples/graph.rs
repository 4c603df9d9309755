//! Times the retention analyses on one dump:
//! `cargo run --release --example graph -- dump.json [--class-edges]` (the Ruby API's
//! default follows class edges). With `HEAPDIFF_ONE_THREAD=1` every parallel pass runs
//! on the main thread, so that `valgrind --tool=callgrind --toggle-collect=...` counts
//! the passes' instructions whole (it counts per thread).
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("a dump");
    if std::env::var_os("HEAPDIFF_ONE_THREAD").is_some() {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .use_current_thread()
            .build_global()
            .expect("the first pool");
    }
    let class_edges = std::env::args().nth(2).as_deref() == Some("--class-edges");
    let t = Instant::now();
    let graph = heapdiff_core::HeapGraph::new(
        heapdiff_core::load(path.as_ref(), Default::default()).expect("loads"),
    );
    let heap = graph.heap();
    println!(
        "load: {} objects in {:.3} s",
        heap.len(),
        t.elapsed().as_secs_f64()
    );
    // The object of the first path query: HEAPDIFF_TARGET's row, else the last one.
    let target = std::env::var("HEAPDIFF_TARGET")
        .ok()
        .and_then(|row| row.parse().ok())
        .unwrap_or(heap.len() - 1);
    let t = Instant::now();
    let path = graph.path_to_root(target, class_edges);
    println!(
        "first path (builds the BFS tree): {:.1} ms, {} steps",
        t.elapsed().as_secs_f64() * 1e3,
        path.map_or(0, |p| p.steps.len())
    );
    // HEAPDIFF_PATHS=0 leaves them out, so that callgrind counts the first query alone.
    let more: usize = std::env::var("HEAPDIFF_PATHS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(1000);
    let t = Instant::now();
    let found = (0..more)
        .filter(|&i| {
            graph
                .path_to_root(i * (heap.len() / more), class_edges)
                .is_some()
        })
        .count();
    println!(
        "{more} more paths: {:.1} ms ({found} reachable)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let d = graph.dominators(class_edges);
    let reachable = d.idom.iter().filter(|&&x| x != u32::MAX).count();
    println!(
        "dominators (and the reverse graph): {:.3} s ({reachable} reachable)",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let retainers = graph.retainers(target, class_edges).len();
    println!(
        "retainers: {:.1} ms ({retainers})",
        t.elapsed().as_secs_f64() * 1e3
    );
}

//! Loads three dumps side by side, diffs them and prints where the time went:
//! `cargo run --release --example diff -- 0.json 1.json 2.json`.
use std::time::Instant;

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    assert!(paths.len() == 3, "usage: diff BEFORE AFTER LATER");
    let start = Instant::now();
    let heaps: Vec<_> = std::thread::scope(|s| {
        let loads: Vec<_> = paths
            .iter()
            .map(|p| s.spawn(move || heapdiff_core::load(p.as_ref(), Default::default())))
            .collect();
        loads
            .into_iter()
            .map(|l| l.join().unwrap().unwrap())
            .collect()
    });
    let loaded = start.elapsed().as_secs_f64();
    let hwm_loaded = peak_rss_mb();
    let objects: usize = heaps.iter().map(|h| h.len()).sum();
    let references: u64 = heaps.iter().map(|h| h.stats.references).sum();
    let options = heapdiff_core::DiffOptions::default();
    let mut heaps = heaps;
    let last = heapdiff_core::HeapGraph::new(heaps.pop().expect("three heaps"));
    let report = heapdiff_core::diff(&heaps[0], &heaps[1], Some(&last), &options);
    let total = start.elapsed().as_secs_f64();
    println!(
        "loads {loaded:.3} s, diff {:.3} s, total {total:.3} s; {} groups",
        total - loaded,
        report.groups.len()
    );
    println!(
        "{objects} objects, {references} references; peak RSS {hwm_loaded:.0} MB after the loads, {:.0} MB after the diff",
        peak_rss_mb()
    );
}

/// VmHWM of this process, in MB (Linux).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1e3)
}

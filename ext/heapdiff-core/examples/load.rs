//! Loads the dumps named on the command line and prints how long each took:
//! `cargo run --release --example load -- a.json b.json`.
fn main() {
    for path in std::env::args().skip(1) {
        let start = std::time::Instant::now();
        match heapdiff_core::load(path.as_ref(), Default::default()) {
            Ok(heap) => {
                let secs = start.elapsed().as_secs_f64();
                let mb = heap.stats.bytes as f64 / 1e6;
                println!(
                    "{path}: {} objects, {mb:.1} MB in {secs:.3} s ({:.0} MB/s)",
                    heap.len(),
                    mb / secs
                );
            }
            Err(e) => println!("{e}"),
        }
    }
}

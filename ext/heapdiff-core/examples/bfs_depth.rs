//! How much of a heap the breadth-first search from the precise roots covers by each
//! depth, and at which depth objects sit (all, and the newest generation's, which a
//! leak hunt asks about): `cargo run --release --example bfs_depth -- dump.json`.
//! It says whether a search that stops at the target could answer much sooner.

fn main() {
    let path = std::env::args().nth(1).expect("a dump");
    let heap = heapdiff_core::load(path.as_ref(), Default::default()).expect("loads");
    let n = heap.len();
    let mut depth = vec![u32::MAX; n];
    let mut frontier: Vec<usize> = Vec::new();
    for root in &heap.roots {
        if heap.root_name(root) == b"machine_context" {
            continue;
        }
        for t in &heap.root_targets[root.start as usize..root.end as usize] {
            let t = *t as usize;
            if t < n && depth[t] == u32::MAX {
                depth[t] = 0;
                frontier.push(t);
            }
        }
    }
    let mut level_sizes = Vec::new();
    let mut d = 0;
    while !frontier.is_empty() {
        level_sizes.push(frontier.len());
        let mut next = Vec::new();
        for &v in &frontier {
            for t in heap.referents(v) {
                if depth[t] == u32::MAX {
                    depth[t] = d + 1;
                    next.push(t);
                }
            }
        }
        frontier = next;
        d += 1;
    }
    let reached: usize = level_sizes.iter().sum();
    println!("{n} objects, {reached} reached from the precise roots");
    // The newest objects: the highest generation among them, and its neighbours.
    let generation = &heap.columns.generation;
    let newest = generation
        .iter()
        .copied()
        .filter(|&g| g != u32::MAX)
        .max()
        .unwrap_or(0);
    println!("depth  level  claimed by the end of it  all objects  gen >= newest-5");
    let mut cum = 0;
    for (d, size) in level_sizes.iter().enumerate() {
        cum += size;
        let young = (0..n)
            .filter(|&r| {
                depth[r] == d as u32 && generation[r] != u32::MAX && generation[r] + 5 >= newest
            })
            .count();
        println!(
            "{d:5}  {size:7}  {:5.1}%  {:5.1}%  {young}",
            100.0 * cum as f64 / n as f64,
            100.0 * *size as f64 / n as f64
        );
    }
}

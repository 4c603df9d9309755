//! Paths and dominators, checked against brute force on random graphs and against the
//! known leak in ../shared/fixtures/leak3.

// A node id indexes several tables at once (edges, reachability, distances): a range
// loop says that more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;

use heapdiff_core::graph::SUPER_ROOT;
use heapdiff_core::{load, Heap, HeapGraph, LoadOptions, ObjectType};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Graph {
    edges: Vec<Vec<usize>>,
    roots: Vec<usize>,
    memsize: Vec<u64>,
}

fn random_graph(rng: &mut Rng) -> Graph {
    let n = 2 + rng.below(14);
    let edges = (0..n)
        .map(|_| (0..rng.below(4)).map(|_| rng.below(n)).collect())
        .collect();
    let roots = (0..1 + rng.below(3)).map(|_| rng.below(n)).collect();
    let memsize = (0..n).map(|_| 1 + rng.below(100) as u64).collect();
    Graph {
        edges,
        roots,
        memsize,
    }
}

fn address(i: usize) -> String {
    format!("0x{:x}", 0x10000 + i * 0x28)
}

/// Writes the graph as a heap dump and loads it through the real loader.
fn as_heap(g: &Graph) -> Heap {
    let mut text = String::new();
    let roots: Vec<String> = g
        .roots
        .iter()
        .map(|&r| format!("\"{}\"", address(r)))
        .collect();
    text += &format!(
        "{{\"type\":\"ROOT\", \"root\":\"vm\", \"references\":[{}]}}\n",
        roots.join(", ")
    );
    for (i, targets) in g.edges.iter().enumerate() {
        let refs: Vec<String> = targets
            .iter()
            .map(|&t| format!("\"{}\"", address(t)))
            .collect();
        text += &format!(
            "{{\"address\":\"{}\", \"type\":\"ARRAY\", \"length\":{}, \"references\":[{}], \"memsize\":{}}}\n",
            address(i),
            targets.len(),
            refs.join(", "),
            g.memsize[i]
        );
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    load(file.path(), LoadOptions::default()).unwrap()
}

/// Nodes reachable from the roots without passing through `removed`.
fn reachable(g: &Graph, removed: Option<usize>) -> Vec<bool> {
    let mut seen = vec![false; g.edges.len()];
    let mut queue: VecDeque<usize> = VecDeque::new();
    for &r in &g.roots {
        if Some(r) != removed && !seen[r] {
            seen[r] = true;
            queue.push_back(r);
        }
    }
    while let Some(v) = queue.pop_front() {
        for &t in &g.edges[v] {
            if Some(t) != removed && !seen[t] {
                seen[t] = true;
                queue.push_back(t);
            }
        }
    }
    seen
}

fn bfs_distance(g: &Graph) -> Vec<Option<usize>> {
    let mut dist = vec![None; g.edges.len()];
    let mut queue = VecDeque::new();
    for &r in &g.roots {
        if dist[r].is_none() {
            dist[r] = Some(1);
            queue.push_back(r);
        }
    }
    while let Some(v) = queue.pop_front() {
        for &t in &g.edges[v] {
            if dist[t].is_none() {
                dist[t] = Some(dist[v].unwrap() + 1);
                queue.push_back(t);
            }
        }
    }
    dist
}

#[test]
fn dominators_agree_with_the_definition_on_random_graphs() {
    let mut rng = Rng(0x5eed_1234_abcd);
    for case in 0..400 {
        let g = random_graph(&mut rng);
        let graph = HeapGraph::new(as_heap(&g));
        let n = g.edges.len();
        let live = reachable(&g, None);
        for v in 0..n {
            // Strict dominators of v by definition: removing d makes v unreachable.
            let mut expected: Vec<usize> = (0..n)
                .filter(|&d| d != v && live[v] && !reachable(&g, Some(d))[v])
                .collect();
            expected.sort();
            let mut chain = Vec::new();
            let mut at = v;
            while let Some(d) = graph.dominator(at, false) {
                chain.push(d);
                at = d;
            }
            chain.sort();
            assert_eq!(chain, expected, "case {case}, node {v}: {:?}", g.edges);
            let idom = graph.dominators(false).idom[v];
            assert_eq!(
                idom == SUPER_ROOT || idom != u32::MAX,
                live[v],
                "case {case}"
            );
        }
    }
}

#[test]
fn retained_sizes_agree_with_brute_force() {
    let mut rng = Rng(0xf_eedb_eef1);
    for case in 0..400 {
        let g = random_graph(&mut rng);
        let graph = HeapGraph::new(as_heap(&g));
        let live = reachable(&g, None);
        for v in 0..g.edges.len() {
            let expected: u64 = if live[v] {
                let without = reachable(&g, Some(v));
                (0..g.edges.len())
                    .filter(|&u| live[u] && !without[u])
                    .map(|u| g.memsize[u])
                    .sum()
            } else {
                0
            };
            assert_eq!(
                graph.retained_size(v, false),
                expected,
                "case {case}, node {v}"
            );
        }
    }
}

#[test]
fn paths_are_shortest_and_follow_real_edges() {
    let mut rng = Rng(0xabc);
    for case in 0..300 {
        let g = random_graph(&mut rng);
        let graph = HeapGraph::new(as_heap(&g));
        let dist = bfs_distance(&g);
        for v in 0..g.edges.len() {
            let path = graph.path_to_root(v, false);
            assert_eq!(
                path.as_ref().map(|p| p.steps.len()),
                dist[v],
                "case {case}, node {v}"
            );
            if let Some(path) = path {
                assert!(g.roots.contains(&path.steps[0].row));
                for pair in path.steps.windows(2) {
                    assert!(g.edges[pair[0].row].contains(&pair[1].row));
                }
                assert_eq!(path.steps.last().unwrap().row, v);
                assert_eq!(path.root, "vm");
            }
            for p in graph.paths_to_root(v, 5, false) {
                assert_eq!(p.steps.last().unwrap().row, v);
                assert!(p.steps.len() >= dist[v].unwrap());
            }
        }
    }
}

fn shared() -> PathBuf {
    std::env::var("HEAPDIFF_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

#[test]
fn leak3_objects_are_held_by_the_leaks_array_on_every_ruby() {
    for ruby in ["3.1", "3.3", "3.4", "4.0"] {
        let path = shared().join(format!("fixtures/leak3/ruby-{ruby}/2.jsonl.gz"));
        let graph = HeapGraph::new(load(&path, LoadOptions::default()).unwrap());
        let heap = graph.heap();
        let leaks: Vec<usize> = (0..heap.len())
            .filter(|&i| {
                heap.columns.object_type[i] == ObjectType::Object && heap.line(i) == Some(28)
            })
            .collect();
        assert_eq!(leaks.len(), 3000, "{ruby}");
        for &leak in &leaks {
            let path = graph.path_to_root(leak, false).expect("reachable");
            let holder = path.steps[path.steps.len() - 2].row;
            assert_eq!(
                heap.columns.object_type[holder],
                ObjectType::Array,
                "{ruby}"
            );
            assert_eq!(heap.length(holder), Some(3000), "{ruby}: the LEAKS array");
            // Its dominator is the array, unless a root (a stale machine-stack slot)
            // also marks it directly: then only the roots dominate it.
            let marked_by_root = heap
                .roots
                .iter()
                .any(|r| heap.root_addresses(r).contains(&heap.columns.address[leak]));
            let expected = if marked_by_root { None } else { Some(holder) };
            assert_eq!(graph.dominator(leak, false), expected, "{ruby}");
        }
        // Ivar labels come from shapes on 3.2+: the payload is held as @payload.
        let payload = heap
            .referents(leaks[0])
            .find(|&t| heap.line(t) == Some(17))
            .unwrap();
        let label = graph.edge_label(leaks[0], payload);
        if ruby == "3.1" {
            assert_eq!(label, None, "no shapes in 3.1 dumps");
        } else {
            assert_eq!(label.as_deref(), Some("@payload"), "{ruby}");
        }
    }
}

#[test]
fn leak3_suspect_of_each_known_group_is_the_leaks_array() {
    use heapdiff_core::{diff, graph::suspects::suspects, DiffOptions};
    for ruby in ["3.1", "3.3", "3.4", "4.0"] {
        let mut heaps: Vec<Heap> = (0..3)
            .map(|n| {
                let path = shared().join(format!("fixtures/leak3/ruby-{ruby}/{n}.jsonl.gz"));
                load(&path, LoadOptions::default()).unwrap()
            })
            .collect();
        // Members are rows of the last dump, where the retention holds.
        let graph = HeapGraph::new(heaps.pop().expect("three heaps"));
        let report = diff(&heaps[0], &heaps[1], Some(&graph), &DiffOptions::default());
        let last = graph.heap();
        for line in [17, 27, 28] {
            let group = report.groups.iter().find(|g| g.line == Some(line)).unwrap();
            let suspect = suspects(&graph, &group.members, false);
            let top = &suspect.holders[0];
            let holder = top.row.expect("held by an object");
            assert_eq!(
                last.columns.object_type[holder],
                ObjectType::Array,
                "{ruby}:{line}"
            );
            assert_eq!(
                last.length(holder),
                Some(3000),
                "{ruby}:{line}: LEAKS at dump 2"
            );
            assert!(top.count >= 999, "{ruby}:{line}: {:?}", suspect.holders);
            assert!(suspect.retained_size >= group.memsize, "{ruby}:{line}");
        }
    }
}

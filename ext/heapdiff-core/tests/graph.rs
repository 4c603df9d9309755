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

/// The graph of the last leak3 dump of each Ruby.
fn leak3_last_dumps() -> impl Iterator<Item = (&'static str, HeapGraph)> {
    ["3.1", "3.3", "3.4", "4.0"].into_iter().map(|ruby| {
        let graph = HeapGraph::new(load(&path_of(ruby), LoadOptions::default()).unwrap());
        (ruby, graph)
    })
}

/// The last leak3 dump of `ruby`.
fn path_of(ruby: &str) -> PathBuf {
    shared().join(format!("fixtures/leak3/ruby-{ruby}/2.jsonl.gz"))
}

#[test]
fn leak3_objects_are_held_by_the_leaks_array_on_every_ruby() {
    for (ruby, graph) in leak3_last_dumps() {
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

/// The successors of `v` in the order the graph code follows them: references in dump
/// order, then (with `class_edges`) the object → class edge.
fn successors(heap: &Heap, v: usize, class_edges: bool) -> Vec<usize> {
    let mut out: Vec<usize> = heap.referents(v).collect();
    if class_edges {
        out.extend(heap.class_row(v));
    }
    out
}

/// A plain sequential breadth-first search in the documented phase order (precise
/// roots; with class edges, references alone first, then the class edges of everything
/// reached; the machine stack last): each row's parent, `Err(root index)` where a root
/// marks it.
fn reference_bfs(heap: &Heap, class_edges: bool) -> Vec<Option<Result<usize, usize>>> {
    let n = heap.len();
    let mut parent: Vec<Option<Result<usize, usize>>> = vec![None; n];
    let phases: &[(Option<bool>, bool)] = if class_edges {
        &[(Some(false), false), (None, true), (Some(true), true)]
    } else {
        &[(Some(false), false), (Some(true), false)]
    };
    for &(roots, follow_class) in phases {
        let mut queue = VecDeque::new();
        match roots {
            None => queue.extend((0..n).filter(|&v| parent[v].is_some())),
            Some(conservative) => {
                for (r, root) in heap.roots.iter().enumerate() {
                    if (heap.root_name(root) == b"machine_context") != conservative {
                        continue;
                    }
                    for &t in &heap.root_targets[root.start as usize..root.end as usize] {
                        let t = t as usize;
                        if t < n && parent[t].is_none() {
                            parent[t] = Some(Err(r));
                            queue.push_back(t);
                        }
                    }
                }
            }
        }
        while let Some(v) = queue.pop_front() {
            for t in successors(heap, v, follow_class) {
                if parent[t].is_none() {
                    parent[t] = Some(Ok(v));
                    queue.push_back(t);
                }
            }
        }
    }
    parent
}

/// Immediate dominators by the iterative algorithm of Cooper, Harvey and Kennedy (a
/// different algorithm from the code's Lengauer–Tarjan): `n` is the virtual root above
/// every root-marked row; None where nothing reaches the row.
fn reference_idoms(heap: &Heap, class_edges: bool) -> Vec<Option<usize>> {
    let n = heap.len();
    let succ = |v: usize| -> Vec<usize> {
        if v == n {
            heap.roots
                .iter()
                .flat_map(|r| heap.root_targets[r.start as usize..r.end as usize].iter())
                .map(|&t| t as usize)
                .filter(|&t| t < n)
                .collect()
        } else {
            successors(heap, v, class_edges)
        }
    };
    // Postorder from the virtual root, iteratively.
    let mut post = vec![usize::MAX; n + 1];
    let mut order = Vec::new();
    let mut visited = vec![false; n + 1];
    let mut stack = vec![(n, succ(n), 0)];
    visited[n] = true;
    while let Some((v, next, k)) = stack.last_mut() {
        if let Some(&t) = next.get(*k) {
            *k += 1;
            if !visited[t] {
                visited[t] = true;
                let s = succ(t);
                stack.push((t, s, 0));
            }
        } else {
            post[*v] = order.len();
            order.push(*v);
            stack.pop();
        }
    }
    let mut preds = vec![Vec::new(); n + 1];
    for &v in &order {
        for t in succ(v) {
            preds[t].push(v);
        }
    }
    let mut idom = vec![usize::MAX; n + 1];
    idom[n] = n;
    let mut changed = true;
    while changed {
        changed = false;
        for &b in order.iter().rev().skip(1) {
            let mut new = usize::MAX;
            for &p in &preds[b] {
                if idom[p] == usize::MAX {
                    continue;
                }
                if new == usize::MAX {
                    new = p;
                    continue;
                }
                let (mut x, mut y) = (p, new);
                while x != y {
                    while post[x] < post[y] {
                        x = idom[x];
                    }
                    while post[y] < post[x] {
                        y = idom[y];
                    }
                }
                new = x;
            }
            if idom[b] != new {
                idom[b] = new;
                changed = true;
            }
        }
    }
    (0..n)
        .map(|v| (idom[v] != usize::MAX).then_some(idom[v]))
        .collect()
}

#[test]
fn every_path_and_retained_size_matches_plain_algorithms_on_real_dumps() {
    for (ruby, graph) in leak3_last_dumps() {
        let heap = graph.heap();
        let n = heap.len();
        for class_edges in [false, true] {
            let parent = reference_bfs(heap, class_edges);
            // The first queries stop the search at their object and the next ones go
            // on from there: ask for reachable objects in a scrambled order first (an
            // unreachable one makes the search run to its end), on a graph of its own.
            let fresh = HeapGraph::new(load(&path_of(ruby), LoadOptions::default()).unwrap());
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let reachable: Vec<usize> = (0..n).filter(|&v| parent[v].is_some()).collect();
            let mut order: Vec<usize> = (0..200)
                .map(|_| reachable[rng.below(reachable.len())])
                .collect();
            order.extend(0..n);
            for (k, row) in order.into_iter().enumerate() {
                if k == 200 {
                    // The search stopped short of its end: the queries were answered
                    // from a part of the tree.
                    assert!(!fresh.has_root_tree(class_edges), "{ruby} {class_edges}");
                }
                let graph = if k < 200 { &fresh } else { &graph };
                let mut rows = vec![row];
                let mut root = None;
                while let Some(p) = parent[*rows.last().unwrap()] {
                    match p {
                        Ok(v) => rows.push(v),
                        Err(r) => {
                            root = Some(heap.root_name(&heap.roots[r]).to_vec());
                            break;
                        }
                    }
                }
                rows.reverse();
                let got = graph.path_to_root(row, class_edges);
                let got = got.map(|p| {
                    let rows: Vec<usize> = p.steps.iter().map(|s| s.row).collect();
                    (p.root.into_bytes(), rows)
                });
                assert_eq!(
                    got,
                    root.map(|r| (r, rows)),
                    "{ruby} row {row} {class_edges}"
                );
            }
            let idom = reference_idoms(heap, class_edges);
            let mut order: Vec<usize> = (0..n).filter(|&v| idom[v].is_some()).collect();
            // Children before their dominators: deeper rows in the dominator tree first.
            let depth = |mut v: usize| {
                let mut d = 0;
                while let Some(u) = idom[v].filter(|&u| u != n) {
                    v = u;
                    d += 1;
                }
                d
            };
            let depths: Vec<usize> = (0..n).map(depth).collect();
            order.sort_by_key(|&v| std::cmp::Reverse(depths[v]));
            let mut retained = vec![0u64; n + 1];
            for &v in &order {
                retained[v] += heap.columns.memsize.get(v);
                let d = idom[v].unwrap();
                retained[d] += retained[v];
            }
            for row in 0..n {
                let expected = match idom[row] {
                    None => None,
                    Some(d) if d == n => Some(SUPER_ROOT as usize),
                    Some(d) => Some(d),
                };
                let got = graph.dominators(class_edges).idom[row];
                let got = (got != u32::MAX).then_some(got as usize);
                assert_eq!(got, expected, "{ruby} row {row} {class_edges}");
                assert_eq!(
                    graph.retained_size(row, class_edges),
                    retained[row],
                    "{ruby} row {row} {class_edges}"
                );
            }
        }
    }
}

//! The correctness digest of the parser and the loader: one line of hex per input, and
//! a total, that must stay the same across a change meant to make them faster.
//!
//!   cargo run --release --example digest -- [--mutate N] [--lines N] FILE...
//!
//! For every line of every FILE (plain or gzip), `parse_line`'s whole output (every
//! field of the record, or the error, and its references) goes into the parse digest;
//! with `--mutate N`, N mutated copies of lines taken from the files do too (cut short,
//! stray quotes, backslashes, braces, bytes, members), from a fixed seed. `--lines N`
//! stops each file's line walk after N lines. Then each FILE is loaded and everything
//! the loaded heap holds (columns, references by row, roots, shapes, names by text,
//! class maps sorted, statistics and warnings) goes into its load digest.
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{BufRead, BufReader, Read};

use heapdiff_core::parse::parse_line;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut option = |name: &str| -> Option<usize> {
        let i = args.iter().position(|a| a == name)?;
        let value = args.remove(i + 1).parse().expect("a number");
        args.remove(i);
        Some(value)
    };
    let mutate = option("--mutate").unwrap_or(0);
    let max_lines = option("--lines").unwrap_or(usize::MAX);
    let mut total = DefaultHasher::new();
    let mut samples: Vec<Vec<u8>> = Vec::new();
    let mut lines_seen = 0usize;
    for path in &args {
        let mut parse = DefaultHasher::new();
        let file = std::fs::File::open(path).expect("open");
        let reader: Box<dyn Read> = if path.ends_with(".gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut lines = BufReader::with_capacity(1 << 20, reader);
        let mut line = Vec::new();
        let mut n = 0usize;
        while n < max_lines && lines.read_until(b'\n', &mut line).expect("read") > 0 {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            parse_one(&line, &mut parse);
            if n.is_multiple_of(97) && samples.len() < 1 << 16 {
                samples.push(line.clone());
            }
            n += 1;
            line.clear();
        }
        lines_seen += n;
        let load = load_digest(path);
        println!(
            "{path}: {n} lines, parse {:016x}, load {load}",
            parse.finish()
        );
        total.write_u64(parse.finish());
        total.write(load.as_bytes());
    }
    let mut mutated = DefaultHasher::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..mutate {
        if samples.is_empty() {
            break;
        }
        let mut line = samples[next() as usize % samples.len()].clone();
        let at = if line.is_empty() {
            0
        } else {
            next() as usize % line.len()
        };
        match next() % 7 {
            0 => line.truncate(at),
            1 => line.insert(at, b'"'),
            2 => line.insert(at, b'\\'),
            3 => line.insert(at, [b'{', b'}', b'[', b']'][next() as usize % 4]),
            4 => line.insert(at, next() as u8),
            5 => {
                let member: &[u8] = [
                    &b", \"address\":\"0x1\""[..],
                    b", \"references\":[\"0x2\"]",
                    b", \"flags\":{\"wb_protected\":true}",
                    b", \"bytesize\":99999999999999999999",
                ][next() as usize % 4];
                line.splice(at..at, member.iter().copied());
            }
            _ => {
                if at < line.len() {
                    line.remove(at);
                }
            }
        }
        parse_one(&line, &mut mutated);
    }
    total.write_u64(mutated.finish());
    println!(
        "{lines_seen} lines + {mutate} mutated ({:016x}); total {:016x}",
        mutated.finish(),
        total.finish()
    );
}

fn parse_one(line: &[u8], hasher: &mut DefaultHasher) {
    let mut refs = Vec::new();
    let result = parse_line(line, &mut refs);
    hasher.write(format!("{result:?} {refs:?}\n").as_bytes());
}

fn load_digest(path: &str) -> String {
    let heap = match heapdiff_core::load(path.as_ref(), Default::default()) {
        Ok(heap) => heap,
        Err(e) => return format!("error {e}"),
    };
    let mut h = DefaultHasher::new();
    let mut put = |text: String| h.write(text.as_bytes());
    let name = |id: u32| String::from_utf8_lossy(heap.strings.get(id).unwrap_or(b"-")).into_owned();
    let c = &heap.columns;
    for row in 0..heap.len() {
        let refs =
            &heap.ref_targets[heap.ref_start[row] as usize..heap.ref_start[row + 1] as usize];
        put(format!(
            "{:x} {:?} {} {:x} {} {} {} {} {} {} {} {} {} {} {refs:?}\n",
            c.address[row],
            c.object_type[row],
            c.flags[row],
            c.class[row],
            name(c.file[row]),
            c.line[row],
            name(c.method[row]),
            c.generation[row],
            c.memsize.get(row),
            c.bytesize[row],
            c.length[row],
            name(c.subtype[row]),
            c.shape_id[row],
            c.offset[row],
        ));
    }
    put(format!("{:?}\n", heap.dangling));
    for root in &heap.roots {
        put(format!(
            "{} {:?}\n",
            name(root.name),
            &heap.root_targets[root.start as usize..root.end as usize]
        ));
    }
    for shape in &heap.shapes {
        put(format!(
            "{:?} {} {}\n",
            shape,
            name(shape.shape_type),
            name(shape.edge_name)
        ));
    }
    let mut classes: Vec<(u64, String)> = heap
        .class_names
        .iter()
        .map(|(&a, &n)| (a, name(n)))
        .collect();
    classes.sort();
    put(format!("{classes:?}\n"));
    let mut parents: Vec<(u64, u64)> = heap.class_parents.iter().map(|(&a, &p)| (a, p)).collect();
    parents.sort();
    put(format!("{parents:?}\n"));
    put(format!("{:?}\n", heap.stats));
    format!("{:016x} ({} objects)", h.finish(), heap.len())
}

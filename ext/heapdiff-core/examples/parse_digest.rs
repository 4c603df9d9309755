// Temporary: prints a digest of parse_line's output for every line of the files given.
use std::hash::{Hash, Hasher};
use std::io::BufRead;
fn main() {
    for path in std::env::args().skip(1) {
        let f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut n = 0u64;
        let mut refs = Vec::new();
        for line in f.split(b'\n') {
            let line = line.unwrap();
            refs.clear();
            let r = heapdiff_core::record::parse_line(&line, &mut refs);
            let s = format!("{:?} {:?}", r, refs);
            s.hash(&mut h);
            n += 1;
            if std::env::var("DIGEST_VERBOSE").is_ok() {
                println!("{n} {s}");
            }
        }
        println!("{path} {n} {:x}", h.finish());
    }
}

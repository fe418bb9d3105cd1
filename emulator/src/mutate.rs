//! Seeded mutants of a file, for the project's mutation tests and fuzzing: every parser of a
//! format hsmkit reads (worlds, cards, key blobs, token records, packages) is given thousands of
//! damaged copies of a good file and must refuse each one, or read it as meaning exactly what
//! the original means (JSON whitespace, the case of hex digits).
//!
//! The mutations: single-bit flips, bytes replaced, truncations, bytes inserted, ranges deleted,
//! duplicated and swapped, hex fields made shorter or longer (length lies), and, for JSON, a
//! member deleted, a member's value swapped with another's, a member renamed, or a number changed.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng as _};

/// The kinds of mutation, by name.
pub const KINDS: &[&str] = &[
    "bit flip",
    "byte replaced",
    "truncation",
    "bytes inserted",
    "range deleted",
    "range duplicated",
    "ranges swapped",
    "hex length lie",
    "member deleted",
    "members swapped",
    "member renamed",
    "number changed",
];

fn below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    if n == 0 { 0 } else { (rng.next_u64() % n as u64) as usize }
}

/// `count` mutants of `original` (each different from it), drawn from `seed`: (kind, bytes).
pub fn mutants(original: &[u8], seed: u64, count: usize) -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let json: Option<serde_json::Value> = serde_json::from_slice(original).ok();
    let mut out = Vec::with_capacity(count);
    let mut tries = 0usize;
    while out.len() < count && tries < count * 20 {
        tries += 1;
        let kind = below(&mut rng, KINDS.len());
        let m = match kind {
            8..=11 => match &json {
                Some(v) => json_mutant(v, kind, &mut rng),
                None => None,
            },
            _ => Some(byte_mutant(original, kind, &mut rng)),
        };
        if let Some(m) = m
            && m != original
        {
            out.push((KINDS[kind], m));
        }
    }
    out
}

fn byte_mutant(original: &[u8], kind: usize, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut b = original.to_vec();
    let n = b.len();
    match kind {
        0 if n > 0 => {
            let at = below(rng, n);
            b[at] ^= 1 << below(rng, 8);
        }
        1 if n > 0 => {
            let at = below(rng, n);
            b[at] = rng.next_u32() as u8;
        }
        2 => b.truncate(below(rng, n)),
        3 => {
            let at = below(rng, n + 1);
            let len = 1 + below(rng, 8);
            let extra: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            b.splice(at..at, extra);
        }
        4 if n > 0 => {
            let at = below(rng, n);
            let len = 1 + below(rng, 16.min(n - at));
            b.drain(at..at + len);
        }
        5 if n > 0 => {
            let at = below(rng, n);
            let len = 1 + below(rng, 32.min(n - at));
            let piece = b[at..at + len].to_vec();
            let to = below(rng, n + 1);
            b.splice(to..to, piece);
        }
        6 if n > 1 => {
            let len = 1 + below(rng, 16.min(n / 2));
            let a = below(rng, n - len + 1);
            let c = below(rng, n - len + 1);
            if a + len <= c || c + len <= a {
                let (x, y) = (b[a..a + len].to_vec(), b[c..c + len].to_vec());
                b[a..a + len].copy_from_slice(&y);
                b[c..c + len].copy_from_slice(&x);
            }
        }
        7 => {
            // Two hex digits taken out of, or added to, a run of hex digits: a field whose length
            // no longer matches what it claims to be.
            let runs: Vec<usize> = (0..n.saturating_sub(1))
                .filter(|i| b[*i].is_ascii_hexdigit() && b[i + 1].is_ascii_hexdigit())
                .collect();
            if !runs.is_empty() {
                let at = runs[below(rng, runs.len())];
                if rng.next_u32() & 1 == 0 {
                    b.drain(at..at + 2);
                } else {
                    b.splice(at..at, *b"a5");
                }
            }
        }
        _ => {
            if n > 0 {
                b[0] ^= 0x20;
            }
        }
    }
    b
}

/// Paths to every object member of `v` (as key lists).
fn members(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let serde_json::Value::Object(m) = v {
        for (k, x) in m {
            path.push(k.clone());
            out.push(path.clone());
            members(x, path, out);
            path.pop();
        }
    }
}

fn parent_mut<'v>(
    v: &'v mut serde_json::Value,
    path: &[String],
) -> Option<&'v mut serde_json::Map<String, serde_json::Value>> {
    let mut cur = v;
    for k in &path[..path.len().saturating_sub(1)] {
        cur = cur.as_object_mut()?.get_mut(k)?;
    }
    cur.as_object_mut()
}

fn json_mutant(v: &serde_json::Value, kind: usize, rng: &mut ChaCha20Rng) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    members(v, &mut Vec::new(), &mut all);
    if all.is_empty() {
        return None;
    }
    let mut m = v.clone();
    let path = all[below(rng, all.len())].clone();
    let key = path.last()?.clone();
    match kind {
        8 => {
            parent_mut(&mut m, &path)?.remove(&key);
        }
        9 => {
            let other = all[below(rng, all.len())].clone();
            let a = parent_mut(&mut m, &path)?.get(&key)?.clone();
            let b = parent_mut(&mut m, &other)?.get(other.last()?)?.clone();
            if a == b {
                return None;
            }
            *parent_mut(&mut m, &path)?.get_mut(&key)? = b;
            *parent_mut(&mut m, &other)?.get_mut(other.last()?)? = a;
        }
        10 => {
            let parent = parent_mut(&mut m, &path)?;
            let value = parent.remove(&key)?;
            parent.insert(format!("{key}_"), value);
        }
        _ => {
            let target = parent_mut(&mut m, &path)?.get_mut(&key)?;
            match target {
                serde_json::Value::Number(n) => {
                    let x = n.as_u64().unwrap_or(0);
                    *target = serde_json::json!(match below(rng, 3) {
                        0 => x.wrapping_add(1),
                        1 => x.saturating_sub(1),
                        _ => u64::from(u32::MAX),
                    });
                }
                serde_json::Value::Bool(b) => *b = !*b,
                _ => return None,
            }
        }
    }
    serde_json::to_vec_pretty(&m).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_are_many_kinds_reproducible_and_never_the_original() {
        let original = br#"{"a": 1, "b": {"c": "00ff", "d": true}}"#;
        let one = mutants(original, 7, 2000);
        assert_eq!(one.len(), 2000);
        assert_eq!(one, mutants(original, 7, 2000), "seeded");
        assert!(one.iter().all(|(_, m)| m.as_slice() != original));
        for k in KINDS {
            assert!(one.iter().any(|(kind, _)| kind == k), "{k} never drawn");
        }
    }
}

/// What a fuzz target's smoke run saw ([`smoke`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Smoke {
    /// Mutants given.
    pub mutants: usize,
    /// Mutants the target read.
    pub mutants_read: usize,
    /// Random buffers given.
    pub random: usize,
    /// Random buffers the target read.
    pub random_read: usize,
}

/// A fuzz target's smoke run: `count` mutants of `seed_file` (drawn from `seed`) and `random`
/// random buffers of up to `max_random_len` bytes, each given to `target` (which says whether it
/// read its input). A panic of the target ends the caller's test.
pub fn smoke(
    target: impl Fn(&[u8]) -> bool,
    seed_file: &[u8],
    seed: u64,
    count: usize,
    random: usize,
    max_random_len: u32,
) -> Smoke {
    let all = mutants(seed_file, seed, count);
    let mutants_read = all.iter().filter(|(_, m)| target(m)).count();
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed);
    let mut random_read = 0;
    for _ in 0..random {
        let mut b = vec![0u8; (rng.next_u32() % max_random_len.max(1)) as usize];
        rng.fill_bytes(&mut b);
        random_read += usize::from(target(&b));
    }
    Smoke { mutants: all.len(), mutants_read, random, random_read }
}

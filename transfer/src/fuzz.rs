//! Entry points for fuzzing the transfer formats: each takes arbitrary bytes, runs the reader the
//! provider or the verifier runs on that file, and must return without panicking, saying whether
//! the input was read. The cargo-fuzz
//! targets in `fuzz/` call these; `transfer/tests/fuzz_smoke.rs` runs them over seed files and
//! their mutants in the test suite.

use crate::byok::TransferPackage;
use crate::formats::Format;
use crate::packages::{self, KEK_FORMAT, KekPackage, Region, WORLD_FORMAT, WorldPackage};

/// A `.byok` transfer package, as the provider reads an upload before it checks anything else.
pub fn transfer_package(data: &[u8]) -> bool {
    TransferPackage::from_bytes("fuzz.byok", data).is_ok_and(|p| p.to_bytes().is_ok_and(|b| b == data))
}

/// A KEK package.
pub fn kek_package(data: &[u8]) -> bool {
    KekPackage::from_bytes("kek", KEK_FORMAT, data).is_ok()
}

/// A Security World package.
pub fn world_package(data: &[u8]) -> bool {
    WorldPackage::from_bytes("world", WORLD_FORMAT, data).is_ok()
}

/// The verifier on a pair of packages: the input is the pinned root hash (20 bytes), the KEK
/// package's length (2 bytes, big-endian), the KEK package, then the world package.
pub fn toolset(data: &[u8]) -> bool {
    let Some((root, rest)) = data.split_first_chunk::<20>() else { return false };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else { return false };
    let at = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (kek, world) = rest.split_at(at);
    packages::verify("kek", kek, "world", world, root).is_ok()
}

/// The input [`toolset`] reads: `root`, the length of `kek`, `kek`, `world`.
pub fn toolset_input(root: &[u8; 20], kek: &[u8], world: &[u8]) -> Vec<u8> {
    let len = u16::try_from(kek.len()).unwrap_or(u16::MAX);
    [root.as_slice(), &len.to_be_bytes(), kek, world].concat()
}

/// The text arguments the transfer commands parse: a pinned root hash, a region, a format name
/// (with an AWS algorithm and a Google method).
pub fn arguments(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let _ = packages::parse_root_hash(&text);
    let _ = Region::parse(&text);
    let mut parts = text.splitn(3, ' ');
    let name = parts.next().unwrap_or("");
    let aws = parts.next();
    let gcp = parts.next().and_then(|m| m.parse::<u8>().ok());
    Format::parse(name, aws, gcp).is_ok()
}

/// A fuzz entry point: reads arbitrary bytes, says whether they were read.
pub type Target = fn(&[u8]) -> bool;

/// Every entry point by name, for the smoke test and the fuzz script.
pub const TARGETS: &[(&str, Target)] = &[
    ("transfer_package", transfer_package),
    ("kek_package", kek_package),
    ("world_package", world_package),
    ("toolset", toolset),
    ("arguments", arguments),
];

//! Entry points for fuzzing the module's file formats: each takes arbitrary bytes, runs the
//! parser the module runs on that file, and must return (never panic, never allocate without
//! bound), saying whether the input was read. The cargo-fuzz targets in `fuzz/` call these, and the test suite runs them over seed
//! files and their mutants (`emulator/tests/fuzz_smoke.rs`), so a target cannot drift from the
//! code it is meant to reach.

use std::path::Path;

use crate::acl::Acl;
use crate::card::CardFile;
use crate::generate::GenerateParams;
use crate::keyblob::KeyFile;
use crate::module::Nvram;
use crate::store::ObjectFile;
use crate::token::{RecordKey, TokenRecord};
use crate::world::World;

/// The key blob file name the fuzzed blobs are read as (a blob must carry its own name).
pub const BLOB_NAME: &str = "key_simple_fuzz";

/// A world file: parsed, its hashes and KNSO signature checked.
pub fn world(data: &[u8]) -> bool {
    World::from_bytes(data, Path::new("world")).is_ok()
}

/// An Administrator card file: parsed, its header checksum and KDF bounds checked.
pub fn card(data: &[u8]) -> bool {
    CardFile::from_bytes(data, Path::new("acs_fuzz_card1")).is_ok()
}

/// The module's NVRAM file.
pub fn nvram(data: &[u8]) -> bool {
    Nvram::from_bytes(data, Path::new("module")).is_ok()
}

/// A key blob file named [`BLOB_NAME`]: parsed and its name checked (opening needs KM).
pub fn key_blob(data: &[u8]) -> bool {
    KeyFile::from_bytes(data, Path::new(BLOB_NAME)).is_ok_and(|file| serde_json::to_vec(&file).is_ok())
}

/// An ACL as a key blob holds it: parsed, then checked as a reduction of itself and of the
/// default ACL, and turned into a PKCS#11 policy.
pub fn acl(data: &[u8]) -> bool {
    let Ok(acl) = serde_json::from_slice::<Acl>(data) else { return false };
    let default = Acl::generatekey_default(true, &[1; 20], &[2; 20], &[3; 20]);
    let _ = acl.check_reduction_of(&default);
    let _ = default.check_reduction_of(&acl);
    let _ = acl.policy();
    let _ = acl.allows_leaving(&[1; 20]);
    acl.check_reduction_of(&acl).is_ok()
}

/// The key the fuzzed token records are authenticated under.
pub const RECORD_KEY: [u8; 32] = [7; 32];

/// The PKCS#11 token record, authenticated under [`RECORD_KEY`].
pub fn token_record(data: &[u8]) -> bool {
    let key: RecordKey = zeroize::Zeroizing::new(RECORD_KEY);
    TokenRecord::parse(data, Path::new("pkcs11_token"), &key).is_ok()
}

/// A stored PKCS#11 object file (data objects and certificates).
pub fn stored_object(data: &[u8]) -> bool {
    // The file is read under the name its header gives (the name check is reached, not a wall).
    let ident = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.pointer("/header/ident").and_then(|i| i.as_str()).map(str::to_string))
        .unwrap_or_default();
    let name = format!("{}{ident}", crate::store::OBJECT_PREFIX);
    ObjectFile::parse(data, Path::new(&name)).is_ok()
}

/// `generatekey`'s `key=value` parameters: the bytes split at spaces into arguments.
pub fn generate_params(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let params: Vec<String> = text.split(' ').map(str::to_string).collect();
    GenerateParams::parse(&params).is_ok()
}

/// A fuzz entry point: reads arbitrary bytes, says whether they were read.
pub type Target = fn(&[u8]) -> bool;

/// Every entry point by name, for the smoke test and the fuzz script.
pub const TARGETS: &[(&str, Target)] = &[
    ("world", world),
    ("card", card),
    ("nvram", nvram),
    ("key_blob", key_blob),
    ("acl", acl),
    ("token_record", token_record),
    ("stored_object", stored_object),
    ("generate_params", generate_params),
];

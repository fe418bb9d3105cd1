//! Text output of `nkminfo` and `kmfile-dump`. Nothing printed here is secret.

use std::fmt::Write as _;
use std::path::Path;

use hsmkit_emulator::KeyListing;
use hsmkit_emulator::keyblob::{BlobKeyType, KeyFile, KeyHeader, Protection};
use hsmkit_emulator::module::Mode;
use hsmkit_emulator::world::World;

use crate::commands::hex;

/// A UTC date and time from milliseconds since the epoch (`2026-11-29 04:17:37`).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `nkminfo` (world information).
pub fn world_info(w: &World, esn: &str, mode: Mode) -> String {
    let b = w.body();
    let mut s = String::new();
    let _ = writeln!(s, "World");
    let _ = writeln!(s, " generation  1");
    let _ = writeln!(s, " state       Initialised Usable Recovery !PINRecovery");
    let _ = writeln!(s, " n_modules   1");
    let _ = writeln!(s, " hknso       {}", hex(w.hknso()));
    let _ = writeln!(s, " hkm         {}", hex(w.hkm()));
    let _ = writeln!(s, " hkre        {}", hex(w.hkre()));
    let _ = writeln!(s, " k-out-of-n  {}/{}", b.acs.k, b.acs.n);
    let _ = writeln!(s, " createtime  {}", utc(b.created_ms));
    let _ = writeln!(s, " ciphersuite {}", b.cipher_suite);
    let _ = writeln!(s);
    let _ = writeln!(s, "Module #1");
    let _ = writeln!(s, " state       {}", if mode == Mode::Operational { "Usable" } else { "PreInitMode" });
    let _ = writeln!(s, " mode        {}", mode.describe());
    let _ = writeln!(s, " esn         {esn}");
    let _ = writeln!(s, " hkml        {}", hex(w.hkm()));
    s
}

/// `nkminfo -k`.
pub fn key_list(keys: &[KeyListing]) -> String {
    let mut s = format!("Key list - {} key{}\n", keys.len(), if keys.len() == 1 { "" } else { "s" });
    for k in keys {
        let _ = writeln!(s, " AppName {:<12} Ident {}", k.header.appname, k.header.ident);
    }
    s
}

/// `nkminfo -k`'s list of the data and certificate objects stored through PKCS#11.
pub fn object_list(objects: &[hsmkit_emulator::store::StoredObject]) -> String {
    let n = objects.len();
    let mut s = format!("Object list - {n} object{}\n", if n == 1 { "" } else { "s" });
    for o in objects {
        let class = match o.header.class {
            0 => "data",
            1 => "certificate",
            _ => "other",
        };
        // CKA_LABEL (3); a private object's label is shown too (labels are not secret).
        let label = o.attrs.get(&3).map(|l| String::from_utf8_lossy(l).into_owned()).unwrap_or_default();
        let private = if o.header.private { " private" } else { "" };
        let _ = writeln!(s, " Class {class:<12} Ident {} Label {label:?}{private}", o.header.ident);
    }
    s
}

/// "RSA", "AES", "ECDSA P-256", …
pub fn key_type(h: &KeyHeader) -> String {
    let curve = || hsmkit_backend::EcCurve::parse_spki(&h.public).map_or("?", |(c, _)| c.name());
    match h.key_type {
        BlobKeyType::Rsa => "RSA".into(),
        BlobKeyType::Aes => "AES".into(),
        BlobKeyType::Generic => "generic secret".into(),
        BlobKeyType::Ec => format!("ECDSA {}", curve()),
        BlobKeyType::Ed25519 => "Ed25519".into(),
        BlobKeyType::Des3 => "DES3".into(),
    }
}

/// `kmfile-dump`: the blob's structure, never its secret part.
pub fn kmfile(path: &Path, f: &KeyFile) -> String {
    let h = &f.header;
    let mut s = String::new();
    let _ = writeln!(s, "{}", path.display());
    let _ = writeln!(s, " format      {} v{}", h.format, h.version);
    let _ = writeln!(s, " appname     {}", h.appname);
    let _ = writeln!(s, " ident       {}", h.ident);
    let _ = writeln!(s, " name        {}", h.name);
    if h.key_type == BlobKeyType::Rsa {
        let _ = writeln!(s, " type        RSA, {} bits, public exponent 0x{:x}", h.bits, h.pubexp);
    } else {
        let _ = writeln!(s, " type        AES, {} bits", h.bits);
    }
    let _ = match &h.protection {
        Protection::Module => writeln!(s, " protection  module"),
        Protection::CardSet { hash } => writeln!(s, " protection  Operator Card Set {}", hex(hash)),
    };
    let _ = writeln!(s, " hkm         {} (the module key the blob is sealed under)", hex(&h.hkm));
    let _ = writeln!(s, " gentime     {}", utc(h.gentime_ms));
    let _ = writeln!(s, " hash        {}", hex(&h.hash));
    if !h.public.is_empty() {
        let _ = writeln!(s, " public      SubjectPublicKeyInfo, {} bytes", h.public.len());
    }
    if h.has_private {
        let _ = writeln!(s, " privblob    AES-256-GCM under KM, {} bytes sealed (not shown)", f.privblob.ct.len());
    } else {
        let _ = writeln!(s, " privblob    none (a public key)");
    }
    let _ = match &f.archive {
        Some(a) => writeln!(s, " archive     recovery blob under KRE, {} bytes sealed (not shown)", a.blob.ct.len()),
        None => writeln!(s, " archive     none (not recoverable)"),
    };
    if let Some(c) = &h.cng {
        let who =
            if c.machine { "machine".to_string() } else { format!("user {}", c.user.clone().unwrap_or_default()) };
        let _ = writeln!(
            s,
            " cng         container '{}', {who} key, from {}/{}",
            c.container, c.source_app, c.source_ident
        );
    }
    let _ = write!(s, "{}", h.acl);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_767_225_600_000), "2026-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03");
    }
}

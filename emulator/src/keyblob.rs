//! Key blobs: the `key_<appname>_<ident>` files of kmdata ("tokenized key files").
//!
//! A blob is JSON: a readable header (names, type, size, protection, ACL, public key) and the
//! private part sealed with AES-256-GCM under a key derived from the world's module key KM, with
//! the whole header bound in as associated data. A truncated or bit-flipped file, or a header
//! edited by hand (an ACL widened in a text editor, say), fails to open and is never used.

use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use hsmkit_backend::{Error, ErrorKind, Op, Result};

use crate::acl::Acl;
use crate::fsio::{FaultHook, write_atomic};
use crate::suite::{Sealed, derive_key, open, seal};

/// File format name of a key blob.
pub const KEY_FORMAT: &str = "hsmkit-key";

/// Kind of key in a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobKeyType {
    /// An RSA key pair (or public key only).
    #[serde(rename = "RSA")]
    Rsa,
    /// An AES key.
    #[serde(rename = "AES")]
    Aes,
    /// A generic secret.
    #[serde(rename = "GenericSecret")]
    Generic,
    /// An EC key pair (or public key only) on a NIST curve, named by its SubjectPublicKeyInfo.
    #[serde(rename = "EC")]
    Ec,
    /// An Ed25519 key pair (or public key only).
    #[serde(rename = "Ed25519")]
    Ed25519,
    /// A triple-DES key (legacy).
    #[serde(rename = "DES3")]
    Des3,
}

impl BlobKeyType {
    /// The seam's key type.
    pub fn key_type(self) -> hsmkit_backend::KeyType {
        use hsmkit_backend::KeyType;
        match self {
            BlobKeyType::Rsa => KeyType::Rsa,
            BlobKeyType::Aes => KeyType::Aes,
            BlobKeyType::Generic => KeyType::GenericSecret,
            BlobKeyType::Ec => KeyType::Ec,
            BlobKeyType::Ed25519 => KeyType::EcEdwards,
            BlobKeyType::Des3 => KeyType::Des3,
        }
    }

    /// Whether keys of this type are asymmetric (a private half and a public half).
    pub fn is_asymmetric(self) -> bool {
        matches!(self, BlobKeyType::Rsa | BlobKeyType::Ec | BlobKeyType::Ed25519)
    }
}

/// How a key is protected (nShield protection levels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protection {
    /// Module-protected ("direct protection"): usable whenever the module is in the world.
    Module,
    /// Protected by an Operator Card Set whose hash is given (hex): needs the cards loaded.
    CardSet {
        /// Hash of the card set's logical token.
        #[serde(with = "hex")]
        hash: Vec<u8>,
    },
}

/// CNG metadata of a key imported with `cngimport`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CngInfo {
    /// The CNG container name.
    pub container: String,
    /// Machine key (`-M`) or per-user key.
    pub machine: bool,
    /// The user a per-user key belongs to.
    #[serde(default)]
    pub user: Option<String>,
    /// The key it was imported from: application name.
    pub source_app: String,
    /// The key it was imported from: identifier.
    pub source_ident: String,
}

/// The authenticated, readable part of a key blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyHeader {
    /// Always [`KEY_FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Application name (`simple`, `caping`, `pkcs11`, `xferacld`).
    pub appname: String,
    /// Key identifier within the application.
    pub ident: String,
    /// Human-readable name (`plainname`; `CKA_LABEL`).
    pub name: String,
    /// `CKA_ID`, hex.
    #[serde(with = "hex", default)]
    pub id: Vec<u8>,
    /// Key type.
    pub key_type: BlobKeyType,
    /// Size in bits.
    pub bits: u32,
    /// RSA public exponent.
    #[serde(default)]
    pub pubexp: u64,
    /// Whether the blob holds a private or secret part (false: a public key alone).
    pub has_private: bool,
    /// Protection.
    pub protection: Protection,
    /// Hash of the module key this blob is sealed under (hex).
    #[serde(with = "hex")]
    pub hkm: Vec<u8>,
    /// Generation time, ms since the epoch.
    pub gentime_ms: u64,
    /// The ACL.
    pub acl: Acl,
    /// `CKA_ALLOWED_MECHANISMS` as `CKM_*` values; absent means any.
    #[serde(default)]
    pub allowed_mechanisms: Option<Vec<u64>>,
    /// The public key as SubjectPublicKeyInfo DER (hex), for RSA and EC keys.
    #[serde(with = "hex", default)]
    pub public: Vec<u8>,
    /// The key's hash (the suite hash of its public key, or of the sealed blob for AES), hex.
    #[serde(with = "hex")]
    pub hash: Vec<u8>,
    /// CNG metadata, for keys made by `cngimport`.
    #[serde(default)]
    pub cng: Option<CngInfo>,
    /// The quorum's certificate for this key's ACL, when the ACL was set with the quorum.
    #[serde(default)]
    pub acl_certificate: Option<AclCertificate>,
    /// How the key came to be, when it was made through the seam; `None` (not written) for keys
    /// whose history is not recorded, which PKCS#11 then reports as neither local nor always
    /// sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<KeyOrigin>,
    /// `CKA_WRAP_WITH_TRUSTED` asked for a key that cannot be exported at all: its ACL has no
    /// Export to restrict, so the attribute is kept here (absent, not written, when false). It can
    /// only ever make the key stricter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wrap_with_trusted: bool,
    /// The public half of this private key is an object of its own (a public key blob made with
    /// it), with its own label and lifetime, as PKCS#11 pairs are; false (not written) for keys
    /// whose blob is both halves, as nShield's `generatekey` makes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public_apart: bool,
    /// `CKA_PRIVATE` false on a private or secret key: a public object, used without the user's
    /// login (false, not written, for every key made otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public_object: bool,
    /// `CKA_START_DATE`: `YYYYMMDD`, or empty (not written) when unset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start_date: String,
    /// `CKA_END_DATE`: `YYYYMMDD`, or empty (not written) when unset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub end_date: String,
    /// `CKA_ALWAYS_AUTHENTICATE`: every use of the private key needs the user's PIN again
    /// (PKCS#11's context-specific login).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always_authenticate: bool,
}

/// A key's history, for `CKA_LOCAL`, `CKA_ALWAYS_SENSITIVE` and `CKA_NEVER_EXTRACTABLE`: set when the
/// key is made and carried unchanged by copies (which may only narrow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyOrigin {
    /// Generated inside the module (not imported or unwrapped).
    pub local: bool,
    /// Sensitive since it was made.
    pub always_sensitive: bool,
    /// Never extractable since it was made.
    pub never_extractable: bool,
}

impl KeyOrigin {
    /// A key generated in the module with `policy`.
    pub fn generated(policy: &hsmkit_backend::KeyPolicy) -> KeyOrigin {
        KeyOrigin { local: true, always_sensitive: policy.sensitive, never_extractable: !policy.extractable }
    }

    /// A key derived from a base key whose history was `base` (`C_DeriveKey`, PKCS#11 §4.9):
    /// not local; always sensitive and never extractable only if the base key was too.
    pub fn derived(base: Option<KeyOrigin>, policy: &hsmkit_backend::KeyPolicy) -> KeyOrigin {
        let base = base.unwrap_or(KeyOrigin::IMPORTED);
        KeyOrigin {
            local: false,
            always_sensitive: base.always_sensitive && policy.sensitive,
            never_extractable: base.never_extractable && !policy.extractable,
        }
    }

    /// A key that came from outside (import or unwrap).
    pub const IMPORTED: KeyOrigin = KeyOrigin { local: false, always_sensitive: false, never_extractable: false };
}

/// The Administrator Card Set quorum's certificate over a key's ACL: KNSO's DSA signature over
/// `hsmkit ChangeACL v1\n || key hash || ACL JSON`, with what is needed to check it anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclCertificate {
    /// The certifying world's cipher suite.
    pub cipher_suite: crate::suite::CipherSuite,
    /// The world's KNSO public value (hex).
    #[serde(with = "hex")]
    pub knso_pub: Vec<u8>,
    /// KNSO's signature (hex, `r || s`).
    #[serde(with = "hex")]
    pub signature: Vec<u8>,
}

impl AclCertificate {
    /// The statement a certificate signs for key `key_hash` and ACL `acl`.
    pub fn statement(key_hash: &[u8], acl: &Acl) -> Result<Vec<u8>> {
        let mut s = b"hsmkit ChangeACL v1\n".to_vec();
        s.extend_from_slice(key_hash);
        s.extend(
            serde_json::to_vec(acl).map_err(|e| Error::new(ErrorKind::Device, Op::ChangeAcl).detail(e.to_string()))?,
        );
        Ok(s)
    }

    /// Whether this certifies `acl` for the key `key_hash`; returns the certifying world's
    /// hknso when it does.
    pub fn verify(&self, key_hash: &[u8], acl: &Acl) -> Option<Vec<u8>> {
        let suite = self.cipher_suite;
        let knso = suite.dl_public(&self.knso_pub).ok()?;
        knso.verify(&Self::statement(key_hash, acl).ok()?, &self.signature)
            .then(|| suite.hash(&[b"hsmkit KNSO", &self.knso_pub]))
    }
}

/// A recovery (archive) blob: the private part encrypted to the world's recovery key KRE with
/// discrete-log IES (an ephemeral Diffie-Hellman key, HKDF, AES-256-GCM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveBlob {
    /// The ephemeral public value (hex).
    #[serde(with = "hex")]
    pub eph: Vec<u8>,
    /// The sealed private part.
    pub blob: Sealed,
}

impl ArchiveBlob {
    /// Recovers the private part with the recovery key KRE (re-created from the ACS quorum).
    /// `key_hash` is the key's hash, bound into the blob.
    pub fn open(
        &self,
        suite: crate::suite::CipherSuite,
        kre: &crate::suite::DlKey,
        key_hash: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let corrupt = || {
            Error::new(ErrorKind::Corrupt, Op::LoadKey).detail("the recovery blob does not open under this world's KRE")
        };
        let eph = suite.dl_public(&self.eph).map_err(|_| corrupt())?;
        let shared = kre.agree(&eph);
        let k = derive_key(&shared, "hsmkit archive blob")?;
        open(k.as_ref(), key_hash, &self.blob).ok_or_else(corrupt)
    }
}

/// A key blob file.
///
/// Version 2 binds everything: the private part is sealed with the header and, for a recoverable
/// key, the hash of its recovery blob as associated data, so no byte of the file can change (or
/// the recovery blob go missing) without the blob failing to open. Version 1 blobs bound the
/// header only; they are still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The authenticated header.
    pub header: KeyHeader,
    /// The private part, sealed under KM (an empty plaintext for a public key: the seal still
    /// authenticates the header).
    pub privblob: Sealed,
    /// The recovery blob, for recoverable keys.
    #[serde(default)]
    pub archive: Option<ArchiveBlob>,
}

fn header_bytes(h: &KeyHeader) -> Result<Vec<u8>> {
    serde_json::to_vec(h).map_err(|e| Error::new(ErrorKind::Device, Op::SaveKey).detail(e.to_string()))
}

/// The associated data the private part is sealed with: the header, and (version 2) the
/// SHA-256 of the recovery blob, or a marker that there is none.
fn sealed_aad(header: &KeyHeader, archive: Option<&ArchiveBlob>) -> Result<Vec<u8>> {
    use sha2::Digest as _;
    let mut aad = header_bytes(header)?;
    if header.version >= 2 {
        match archive {
            Some(a) => {
                let json = serde_json::to_vec(a)
                    .map_err(|e| Error::new(ErrorKind::Device, Op::SaveKey).detail(e.to_string()))?;
                aad.extend_from_slice(b"\narchive ");
                aad.extend_from_slice(&sha2::Sha256::digest(&json));
            }
            None => aad.extend_from_slice(b"\nno archive"),
        }
    }
    Ok(aad)
}

impl KeyFile {
    /// Seals `private` (PKCS#8 DER or AES bytes; empty for a public key) under `km`, with its
    /// recovery blob (made beforehand from the header's key hash) bound in.
    pub fn seal(
        mut header: KeyHeader,
        km: &[u8],
        nonce: [u8; 12],
        private: &[u8],
        archive: Option<ArchiveBlob>,
    ) -> Result<KeyFile> {
        header.version = header.version.max(2);
        let key = derive_key(km, "hsmkit key blob")?;
        let privblob = seal(key.as_ref(), nonce, &sealed_aad(&header, archive.as_ref())?, private)?;
        Ok(KeyFile { header, privblob, archive })
    }

    /// Opens the private part under `km`, checking that nothing in the file was changed.
    pub fn open(&self, km: &[u8], path: &Path) -> Result<Zeroizing<Vec<u8>>> {
        let key = derive_key(km, "hsmkit key blob")?;
        open(key.as_ref(), &sealed_aad(&self.header, self.archive.as_ref())?, &self.privblob).ok_or_else(|| {
            Error::new(ErrorKind::Corrupt, Op::LoadKey)
                .detail(format!(
                    "the key blob {} failed its integrity check: its ACL or metadata was edited, or the file is damaged",
                    path.display()
                ))
                .hint("restore the key file from your backup; a blob cannot be repaired by hand")
        })
    }

    /// Reads and parses a key blob (without opening it). The file's name must be the one its
    /// header names (`key_<appname>_<ident>`): a renamed copy is not another key.
    pub fn read(path: &Path) -> Result<KeyFile> {
        let bytes = crate::fsio::read_bounded(path, MAX_BLOB_BYTES).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
            Error::new(kind, Op::LoadKey).detail(format!("cannot read key blob {}: {e}", path.display()))
        })?;
        KeyFile::from_bytes(&bytes, path)
    }

    /// Parses a key blob's bytes (without opening it); the name `path` ends in must be the one
    /// the header names.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<KeyFile> {
        let file: KeyFile = serde_json::from_slice(bytes).map_err(|_| {
            Error::new(ErrorKind::Corrupt, Op::LoadKey)
                .detail(format!("{} is not a readable hsmkit key blob (truncated or damaged)", path.display()))
                .hint("restore the key file from your backup")
        })?;
        if file.header.format != KEY_FORMAT || !matches!(file.header.version, 1 | 2) {
            return Err(Error::new(ErrorKind::Corrupt, Op::LoadKey)
                .detail(format!("{} is not an hsmkit key blob of a known version", path.display())));
        }
        let named = key_file_name(&file.header.appname, &file.header.ident);
        if path.file_name().is_none_or(|n| n.to_string_lossy() != named) {
            return Err(Error::new(ErrorKind::Corrupt, Op::LoadKey)
                .detail(format!("{} holds key {named}: a blob's file name is the key's name", path.display()))
                .hint(format!("rename it back to {named}, or restore the right file from your backup")));
        }
        Ok(file)
    }

    /// Writes a new blob crash-safely; refuses to replace a file made meanwhile.
    pub fn write_new(&self, path: &Path, hook: &FaultHook) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Device, Op::SaveKey).detail(e.to_string()))?;
        crate::fsio::write_atomic_new(path, &bytes, hook).map_err(|e| {
            let kind =
                if e.kind() == std::io::ErrorKind::AlreadyExists { ErrorKind::AlreadyExists } else { ErrorKind::Io };
            Error::new(kind, Op::SaveKey)
                .detail(format!("cannot write key blob {}: {e}", path.display()))
                .hint("check that the kmdata folder exists and is writable, and that no key of that name exists")
        })
    }

    /// Writes the blob crash-safely.
    pub fn write(&self, path: &Path, hook: &FaultHook) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Device, Op::SaveKey).detail(e.to_string()))?;
        write_atomic(path, &bytes, hook).map_err(|e| {
            Error::new(ErrorKind::Io, Op::SaveKey)
                .detail(format!("cannot write key blob {}: {e}", path.display()))
                .hint("check that the kmdata folder exists and is writable")
        })
    }
}

/// The largest key blob read (a 4096-bit RSA blob is about 12 KiB).
pub const MAX_BLOB_BYTES: u64 = 1024 * 1024;

/// The file name of key `ident` of application `appname`.
pub fn key_file_name(appname: &str, ident: &str) -> String {
    format!("key_{appname}_{ident}")
}

/// Checks an application name: lowercase letters and digits, 1 to 32 of them.
pub fn check_appname(appname: &str, op: Op) -> Result<()> {
    if appname.is_empty()
        || appname.len() > 32
        || !appname.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(Error::new(ErrorKind::ArgumentsBad, op)
            .detail(format!("invalid application name '{appname}'"))
            .hint("use lowercase letters and digits only, for example `simple`"));
    }
    Ok(())
}

/// Checks a key identifier as the nShield tools require: digits, dashes and lowercase letters only,
/// 1 to 64 of them.
pub fn check_ident(ident: &str, op: Op) -> Result<()> {
    if ident.is_empty()
        || ident.len() > 64
        || !ident.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Error::new(ErrorKind::ArgumentsBad, op).detail(format!("invalid key identifier '{ident}'")).hint(
            "an ident may contain only digits, dashes and lowercase letters (1 to 64), for example `contosokey`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_follow_the_nshield_rule() {
        for ok in ["contosokey", "key-1", "0"] {
            assert!(check_ident(ok, Op::GenerateKeyPair).is_ok(), "{ok}");
        }
        for bad in ["ContosoKey", "contoso key", "contoso_key", "", "../etc", "k\u{e9}y", &"a".repeat(65)] {
            let e = check_ident(bad, Op::GenerateKeyPair).expect_err(bad);
            assert_eq!(e.kind(), &ErrorKind::ArgumentsBad);
        }
        assert!(check_appname("simple", Op::GenerateKeyPair).is_ok());
        assert!(check_appname("sim_ple", Op::GenerateKeyPair).is_err());
    }
}

//! The provider's two packages of the BYOK toolset and their verification.
//!
//! `BYOK-KEK-pkg-<REGION>-<N>` carries the Key Exchange Key's public half and the provider module's
//! statement that the KEK was generated in it and cannot be exported; `BYOK-SecurityWorld-pkg-…`
//! carries the hashes of the provider's security world. Each is signed by the provider module's
//! signing key, whose certificate is signed by the vendor root; the verifier pins the root's hash
//! (SHA-1 of its SubjectPublicKeyInfo, printed as five groups of eight hex digits, as the
//! article prints the Thales root hash). The format is specified in `docs/formats.md`.
//!
//! A package file must be exactly the canonical serialisation of what it holds, so every byte is
//! authenticated: an edit that would still parse (a space turned into a tab) is refused too.

use std::fmt;

use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha1::Digest;

use hsmkit_backend::{Error, ErrorKind, HashAlg, KeyHandle, Mechanism, Op, Result, Session};

/// The provider's regions (the article's three toolsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Region {
    /// North America.
    NA,
    /// Europe.
    EU,
    /// Asia Pacific.
    AP,
}

impl Region {
    /// Parses `NA`, `EU` or `AP`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "NA" => Ok(Region::NA),
            "EU" => Ok(Region::EU),
            "AP" => Ok(Region::AP),
            _ => Err(Error::new(ErrorKind::ArgumentsBad, Op::Info)
                .detail(format!("unknown region '{s}'"))
                .hint("use NA, EU or AP")),
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The file names of a region's packages.
pub fn package_names(region: Region, generation: u32) -> (String, String) {
    (format!("BYOK-KEK-pkg-{region}-{generation}"), format!("BYOK-SecurityWorld-pkg-{region}-{generation}"))
}

/// Hash of a root key: SHA-1 of its SubjectPublicKeyInfo DER.
pub fn root_hash(spki: &[u8]) -> [u8; 20] {
    sha1::Sha1::digest(spki).into()
}

/// Five groups of eight hex digits (`59178a47 de508c3f 291277ee 184f46c4 f1d9c639`).
pub fn format_root_hash(hash: &[u8; 20]) -> String {
    hash.chunks(4).map(hex::encode).collect::<Vec<_>>().join(" ")
}

/// Parses a root hash written as `format_root_hash` prints it (spaces optional).
pub fn parse_root_hash(s: &str) -> Result<[u8; 20]> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = hex::decode(&compact).ok().filter(|b| b.len() == 20).ok_or_else(|| {
        Error::new(ErrorKind::ArgumentsBad, Op::Info)
            .detail(format!("'{s}' is not a root hash"))
            .hint("write 40 hex digits, in groups of 8 or not")
    })?;
    let mut out = [0u8; 20];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// The vendor's root signing key: a software RSA-2048 key kept by the vendor.
pub struct VendorRoot {
    key: rsa::PrivateKey,
}

impl fmt::Debug for VendorRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VendorRoot({})", format_root_hash(&root_hash(&self.spki())))
    }
}

impl VendorRoot {
    /// A new root from `rng`.
    pub fn generate(rng: &mut rand_chacha::ChaCha20Rng) -> Result<Self> {
        let key = rsa::PrivateKey::new(rng, 2048).map_err(|e| internal(format!("root key generation: {e}")))?;
        Ok(VendorRoot { key })
    }

    /// The root from its PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        use rsa::pkcs8::DecodePrivateKey;
        let key = rsa::PrivateKey::from_pkcs8_der(der)
            .map_err(|_| Error::new(ErrorKind::Corrupt, Op::LoadKey).detail("the vendor root key file is damaged"))?;
        Ok(VendorRoot { key })
    }

    /// The root as PKCS#8 DER (zeroized on drop).
    pub fn to_pkcs8(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        use rsa::pkcs8::EncodePrivateKey;
        let der = self.key.to_pkcs8_der().map_err(|e| internal(e.to_string()))?;
        Ok(zeroize::Zeroizing::new(der.as_bytes().to_vec()))
    }

    /// The root's SubjectPublicKeyInfo DER.
    pub fn spki(&self) -> Vec<u8> {
        self.key.to_public_key().to_public_key_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// Certifies a module's signing key.
    pub fn certify(&self, body: ModuleCertBody) -> Result<ModuleCert> {
        let bytes = canonical(&body)?;
        let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(self.key.clone())
            .try_sign(&bytes)
            .map_err(|e| internal(e.to_string()))?;
        Ok(ModuleCert { body, signature: sig.to_vec() })
    }
}

fn internal(what: String) -> Error {
    Error::new(ErrorKind::FunctionFailed, Op::Sign).detail(what)
}

fn canonical<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| internal(e.to_string()))
}

/// What the root certifies about a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleCertBody {
    /// The module's serial number.
    pub esn: String,
    /// The module signing key's SubjectPublicKeyInfo (hex).
    #[serde(with = "hex")]
    pub spki: Vec<u8>,
}

/// A module certificate: the body signed by the root (RSASSA-PKCS1-v1_5, SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleCert {
    /// What is certified.
    pub body: ModuleCertBody,
    /// The root's signature over the body's JSON (hex).
    #[serde(with = "hex")]
    pub signature: Vec<u8>,
}

/// The KEK as the provider module describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekInfo {
    /// The KEK's SubjectPublicKeyInfo (hex).
    #[serde(with = "hex")]
    pub spki: Vec<u8>,
    /// Modulus size.
    pub bits: u32,
    /// Whether the KEK's ACL lets it leave the module in any form (export, recovery, ACL expansion).
    pub exportable: bool,
    /// The module it was generated in.
    pub generated_in: String,
}

/// The signed part of a KEK package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekBody {
    /// Region.
    pub region: Region,
    /// Package generation (the `1` of `BYOK-KEK-pkg-NA-1`).
    pub generation: u32,
    /// The KEK.
    pub kek: KekInfo,
    /// The provider world the KEK belongs to: its hknso (hex).
    #[serde(with = "hex")]
    pub world_hknso: Vec<u8>,
}

/// The signed part of a Security World package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldBody {
    /// Region.
    pub region: Region,
    /// Package generation.
    pub generation: u32,
    /// The world's cipher suite.
    pub cipher_suite: String,
    /// Hash of the world's KNSO (hex): its identity.
    #[serde(with = "hex")]
    pub hknso: Vec<u8>,
    /// Hash of the world's module key (hex): what a key bound to this world names in MakeBlob.
    #[serde(with = "hex")]
    pub hkm: Vec<u8>,
}

/// A signed package: a body, the module certificate, the root's public key, the module's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package<B> {
    /// `hsmkit-byok-kek-package` or `hsmkit-byok-world-package`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// What the module states.
    pub body: B,
    /// The module's certificate, signed by the root.
    pub module_cert: ModuleCert,
    /// The root's SubjectPublicKeyInfo (hex); trusted only if its hash is the pinned one.
    #[serde(with = "hex")]
    pub root_spki: Vec<u8>,
    /// The module signing key's signature over the body's JSON (hex, RSASSA-PKCS1-v1_5 SHA-256).
    #[serde(with = "hex")]
    pub signature: Vec<u8>,
}

/// A KEK package.
pub type KekPackage = Package<KekBody>;
/// A Security World package.
pub type WorldPackage = Package<WorldBody>;

/// Format name of a KEK package.
pub const KEK_FORMAT: &str = "hsmkit-byok-kek-package";
/// Format name of a Security World package.
pub const WORLD_FORMAT: &str = "hsmkit-byok-world-package";

impl<B: Serialize + DeserializeOwned> Package<B> {
    /// Signs `body` with the module signing key `key` of `session` (RSASSA-PKCS1-v1_5, SHA-256).
    pub fn sign(
        format: &str,
        body: B,
        cert: ModuleCert,
        root_spki: Vec<u8>,
        session: &dyn Session,
        key: KeyHandle,
    ) -> Result<Self> {
        let signature = session.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, key, &canonical(&body)?)?;
        Ok(Package { format: format.into(), version: 1, body, module_cert: cert, root_spki, signature })
    }

    /// The package file's bytes: its canonical serialisation.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(self).map_err(|e| internal(e.to_string()))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Parses a package file, refusing anything but the canonical serialisation of a package of
    /// `format`.
    pub fn from_bytes(name: &str, format: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::new(ErrorKind::DataInvalid, Op::Verify).detail(format!("{name}: {why}"));
        let p: Self =
            serde_json::from_slice(bytes).map_err(|_| bad("not a readable package (truncated or damaged)"))?;
        if p.format != format {
            return Err(bad(&format!("is a '{}', not a '{format}'", p.format)));
        }
        if p.version != 1 {
            return Err(bad(&format!("has format version {}, this verifier reads version 1", p.version)));
        }
        if p.to_bytes()? != bytes {
            return Err(bad("is not byte for byte the package that was signed (the file was edited)"));
        }
        Ok(p)
    }
}

/// One check of the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The root's hash is the pinned one.
    RootPinned,
    /// The module certificate verifies under the root.
    ModuleCertificate,
    /// The package's signature verifies under the certified module key.
    PackageSignature,
    /// The KEK cannot leave the module.
    KekNotExportable,
    /// The two packages belong together (region, generation, module, world).
    PackagesMatch,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::RootPinned => "the signer chain ends at the pinned root",
            Check::ModuleCertificate => "the module's certificate is signed by the root",
            Check::PackageSignature => "the package is signed by the certified module",
            Check::KekNotExportable => "the KEK is not exportable",
            Check::PackagesMatch => "the KEK and world packages belong together",
        })
    }
}

fn failed(check: Check, what: impl fmt::Display) -> Error {
    Error::new(ErrorKind::SignatureInvalid, Op::Verify).detail(format!("check failed: {check}: {what}"))
}

fn verify_rsa(spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = rsa::PublicKey::from_public_key_der(spki) else { return false };
    let Ok(sig) = rsa::pkcs1v15::Signature::try_from(signature) else { return false };
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key).verify(message, &sig).is_ok()
}

fn verify_chain<B: Serialize>(name: &str, p: &Package<B>, pinned: &[u8; 20]) -> Result<()> {
    let got = root_hash(&p.root_spki);
    if &got != pinned {
        return Err(failed(
            Check::RootPinned,
            format!(
                "{name} is signed under root {}, not the pinned {}",
                format_root_hash(&got),
                format_root_hash(pinned)
            ),
        ));
    }
    if !verify_rsa(&p.root_spki, &canonical(&p.module_cert.body)?, &p.module_cert.signature) {
        return Err(failed(
            Check::ModuleCertificate,
            format!("{name}'s module certificate does not verify under the root"),
        ));
    }
    if !verify_rsa(&p.module_cert.body.spki, &canonical(&p.body)?, &p.signature) {
        return Err(failed(
            Check::PackageSignature,
            format!("{name}'s signature does not verify under module {}", p.module_cert.body.esn),
        ));
    }
    Ok(())
}

/// A package file named like the toolset's (`BYOK-…-pkg-<REGION>-<N>`) must carry that region and
/// generation: a renamed package is refused.
fn named_as(kek_name: &str, world_name: &str, region: Region, generation: u32) -> std::result::Result<(), String> {
    let (kek_expected, world_expected) = package_names(region, generation);
    for (name, expected, prefix) in
        [(kek_name, kek_expected, "BYOK-KEK-pkg-"), (world_name, world_expected, "BYOK-SecurityWorld-pkg-")]
    {
        let file = std::path::Path::new(name).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if file.starts_with(prefix) && file != expected {
            return Err(format!("{file} holds the package {expected}: the file was renamed"));
        }
    }
    Ok(())
}

/// What a successful verification establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The KEK package.
    pub kek: KekPackage,
    /// The world package.
    pub world: WorldPackage,
    /// The checks passed, in order.
    pub checks: Vec<Check>,
}

/// Verifies a KEK package and a Security World package (`verifykeypackage.py -k … -w …`).
pub fn verify(
    kek_name: &str,
    kek_bytes: &[u8],
    world_name: &str,
    world_bytes: &[u8],
    pinned_root: &[u8; 20],
) -> Result<Verified> {
    let kek = KekPackage::from_bytes(kek_name, KEK_FORMAT, kek_bytes)?;
    let world = WorldPackage::from_bytes(world_name, WORLD_FORMAT, world_bytes)?;
    verify_chain(kek_name, &kek, pinned_root)?;
    verify_chain(world_name, &world, pinned_root)?;
    if kek.body.kek.exportable {
        return Err(failed(Check::KekNotExportable, format!("{kek_name} says its KEK can leave the module")));
    }
    let (k, w) = (&kek.body, &world.body);
    let mismatch = if k.region != w.region {
        Some(format!("the KEK package is for region {}, the world package for {}", k.region, w.region))
    } else if k.generation != w.generation {
        Some(format!("generations differ: {} and {}", k.generation, w.generation))
    } else if kek.module_cert != world.module_cert {
        Some("they were signed by different modules".to_string())
    } else if k.world_hknso != w.hknso {
        Some("the KEK belongs to another security world".to_string())
    } else if k.kek.generated_in != kek.module_cert.body.esn {
        Some(format!(
            "the KEK says it was generated in module {}, but module {} signed it",
            k.kek.generated_in, kek.module_cert.body.esn
        ))
    } else {
        named_as(kek_name, world_name, k.region, k.generation).err()
    };
    if let Some(why) = mismatch {
        return Err(failed(Check::PackagesMatch, why));
    }
    Ok(Verified {
        kek,
        world,
        checks: vec![
            Check::RootPinned,
            Check::ModuleCertificate,
            Check::PackageSignature,
            Check::KekNotExportable,
            Check::PackagesMatch,
        ],
    })
}

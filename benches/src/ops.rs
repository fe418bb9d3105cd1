//! What is measured: the operations of the wrap and sign paths, each prepared on a backend's
//! session (through the seam only, so it runs the same on every backend) or, for the reference
//! row, directly on AWS-LC.

use std::fmt;

use hsmkit_backend::{
    Backend, EcCurve, Error, ErrorKind, HashAlg, KeyFilter, KeyHandle, KeyMaterial, KeyPairSpec, KeyPolicy, KeyType,
    Mechanism, MechanismKind, Op, Pin, Result, Session, TransferTarget, Usage,
};
use hsmkit_transfer::engine::{self, Engine, KeyRef, Officer};
use hsmkit_transfer::packages::{Region, Verified};
use zeroize::Zeroizing;

/// One measured operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BenchOp {
    /// RSA PKCS#1 v1.5 SHA-256 signature (`CKM_SHA256_RSA_PKCS`) of a short message.
    SignPkcs1(u32),
    /// RSA-PSS SHA-256 signature (`CKM_SHA256_RSA_PKCS_PSS`).
    SignPss(u32),
    /// RSA PKCS#1 v1.5 SHA-256 verification, RSA-2048.
    Verify2048,
    /// RSA-OAEP (SHA-1, as Key Vault's packages use) decryption of a 32-byte secret, RSA-2048.
    OaepDecrypt2048,
    /// `CKM_RSA_AES_KEY_WRAP` (AES-256, OAEP SHA-1) of an RSA-2048 private key under an RSA KEK
    /// of this size: the package step's wrap, native or composed from the backend's mechanisms.
    WrapRsaAes(u32),
    /// The unwrap of such a package under the KEK's private half (the unwrapped key destroyed).
    UnwrapRsaAes2048,
    /// RFC 5649 AES key wrap with padding of an RSA-2048 private key under an AES-256 key alone.
    WrapAesKwp,
    /// RSA key pair generation (session objects, destroyed).
    KeygenRsa(u32),
    /// ECDSA P-256 signature of a SHA-256 digest (`CKM_ECDSA`, which every module with EC keys
    /// has; SoftHSM2 has no `CKM_ECDSA_SHA256`).
    SignEcdsaP256,
    /// AES-256-GCM encryption of 4 KiB (a fresh 96-bit IV each call, 128-bit tag).
    EncryptAesGcm4k,
    /// The transfer engine's package step (`KeyTransferRemote -Package`) of an RSA-2048 tenant
    /// key narrowed for a provider's toolset (an RSA-2048 KEK): find the narrowed copy, wrap it
    /// with `CKM_RSA_AES_KEY_WRAP` and sign the package with the key, through
    /// `Engine::package`, the same function on every backend. Needs the security officer (or
    /// the world's cards) once, to narrow.
    Package,
    /// Nothing: the harness's own cost per call (reference row only).
    Noop,
}

impl BenchOp {
    /// Every operation, in report order.
    pub const ALL: &'static [BenchOp] = &[
        BenchOp::SignPkcs1(2048),
        BenchOp::SignPkcs1(3072),
        BenchOp::SignPkcs1(4096),
        BenchOp::SignPss(2048),
        BenchOp::SignPss(3072),
        BenchOp::SignPss(4096),
        BenchOp::Verify2048,
        BenchOp::OaepDecrypt2048,
        BenchOp::WrapRsaAes(2048),
        BenchOp::WrapRsaAes(4096),
        BenchOp::UnwrapRsaAes2048,
        BenchOp::WrapAesKwp,
        BenchOp::KeygenRsa(2048),
        BenchOp::KeygenRsa(3072),
        BenchOp::SignEcdsaP256,
        BenchOp::EncryptAesGcm4k,
        BenchOp::Package,
        BenchOp::Noop,
    ];

    /// What `hsmkit bench` measures when no `--op` is given: one of each path.
    pub const DEFAULT: &'static [BenchOp] = &[
        BenchOp::SignPkcs1(2048),
        BenchOp::SignPss(2048),
        BenchOp::Verify2048,
        BenchOp::OaepDecrypt2048,
        BenchOp::WrapRsaAes(2048),
        BenchOp::UnwrapRsaAes2048,
        BenchOp::WrapAesKwp,
        BenchOp::KeygenRsa(2048),
        BenchOp::SignEcdsaP256,
        BenchOp::Package,
    ];

    /// The operation's name on the command line and in reports (`sign-pkcs1-2048`).
    pub fn name(self) -> String {
        match self {
            BenchOp::SignPkcs1(b) => format!("sign-pkcs1-{b}"),
            BenchOp::SignPss(b) => format!("sign-pss-{b}"),
            BenchOp::Verify2048 => "verify-pkcs1-2048".into(),
            BenchOp::OaepDecrypt2048 => "decrypt-oaep-2048".into(),
            BenchOp::WrapRsaAes(b) => format!("wrap-rsa-aes-kek{b}"),
            BenchOp::UnwrapRsaAes2048 => "unwrap-rsa-aes-kek2048".into(),
            BenchOp::WrapAesKwp => "wrap-aes-kwp".into(),
            BenchOp::KeygenRsa(b) => format!("keygen-rsa-{b}"),
            BenchOp::SignEcdsaP256 => "sign-ecdsa-p256".into(),
            BenchOp::EncryptAesGcm4k => "encrypt-aes-gcm-4k".into(),
            BenchOp::Package => "package-rsa-2048".into(),
            BenchOp::Noop => "noop".into(),
        }
    }

    /// The operation named `name`, or an error listing the names.
    pub fn parse(name: &str) -> Result<BenchOp> {
        BenchOp::ALL.iter().copied().find(|o| o.name() == name).ok_or_else(|| {
            let names: Vec<String> = BenchOp::ALL.iter().map(|o| o.name()).collect();
            Error::new(ErrorKind::ArgumentsBad, Op::Info)
                .detail(format!("unknown operation '{name}'"))
                .hint(format!("the operations: {}", names.join(", ")))
        })
    }

    /// The RSA key sizes the operation's material needs.
    fn rsa_bits(self) -> &'static [u32] {
        match self {
            BenchOp::SignPkcs1(2048) | BenchOp::SignPss(2048) => &[2048],
            BenchOp::SignPkcs1(3072) | BenchOp::SignPss(3072) => &[3072],
            BenchOp::SignPkcs1(_) | BenchOp::SignPss(_) => &[4096],
            BenchOp::Verify2048 | BenchOp::OaepDecrypt2048 | BenchOp::UnwrapRsaAes2048 | BenchOp::WrapAesKwp => &[2048],
            BenchOp::WrapRsaAes(4096) => &[2048, 4096],
            BenchOp::WrapRsaAes(_) => &[2048],
            BenchOp::KeygenRsa(_)
            | BenchOp::SignEcdsaP256
            | BenchOp::EncryptAesGcm4k
            | BenchOp::Package
            | BenchOp::Noop => &[],
        }
    }
}

impl fmt::Display for BenchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The message every signature is over.
pub const MESSAGE: &[u8] = b"hsmkit bench: a short message, as a TLS handshake or a JWT signs";

/// SHA-256 of [`MESSAGE`], which `CKM_ECDSA` signs.
fn message_sha256() -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, MESSAGE).as_ref().to_vec()
}

/// The package step's wrap: `CKM_RSA_AES_KEY_WRAP` with AES-256 and OAEP SHA-1 (Key Vault's).
pub const RSA_AES: Mechanism = Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 };

/// Key material shared by every row, made once per run (RustCrypto, seeded: every run measures
/// the same keys): RSA private keys as PKCS#8 and their public halves as SPKI, an AES key, and
/// the inputs of the verify, decrypt and unwrap operations (made with AWS-LC).
pub struct Material {
    rsa: Vec<(u32, Zeroizing<Vec<u8>>, Vec<u8>)>,
    aes: Zeroizing<Vec<u8>>,
    signature_2048: Vec<u8>,
    oaep_ciphertext_2048: Vec<u8>,
    rsa_aes_blob_2048: Vec<u8>,
    toolset: Option<Verified>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits: Vec<u32> = self.rsa.iter().map(|r| r.0).collect();
        f.debug_struct("Material").field("rsa_bits", &bits).finish_non_exhaustive()
    }
}

fn failed(what: &str) -> Error {
    Error::new(ErrorKind::FunctionFailed, Op::Info).detail(format!("bench set-up: {what}"))
}

impl Material {
    /// The material `ops` need.
    pub fn for_ops(ops: &[BenchOp]) -> Result<Material> {
        use rand_core::SeedableRng as _;
        use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
        let mut bits: Vec<u32> = ops.iter().flat_map(|o| o.rsa_bits().iter().copied()).collect();
        bits.push(2048);
        bits.sort_unstable();
        bits.dedup();
        let mut rsa_keys = Vec::new();
        for b in bits {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(b));
            let k = rsa::PrivateKey::new(&mut rng, b as usize).map_err(|_| failed("RSA key generation"))?;
            let der = Zeroizing::new(k.to_pkcs8_der().map_err(|_| failed("PKCS#8"))?.as_bytes().to_vec());
            let spki = k.to_public_key().to_public_key_der().map_err(|_| failed("SPKI"))?.as_bytes().to_vec();
            rsa_keys.push((b, der, spki));
        }
        let aes = Zeroizing::new((0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect::<Vec<u8>>());
        let (_, der, spki) = rsa_keys.iter().find(|r| r.0 == 2048).ok_or_else(|| failed("RSA-2048"))?;
        let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(der).map_err(|_| failed("AWS-LC RSA key"))?;
        let mut signature_2048 = vec![0u8; kp.public_modulus_len()];
        kp.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            MESSAGE,
            &mut signature_2048,
        )
        .map_err(|_| failed("signature"))?;
        let oaep_ciphertext_2048 = reference::oaep_encrypt(spki, &aes)?;
        let rsa_aes_blob_2048 = reference::rsa_aes_wrap(spki, der)?;
        let toolset = if ops.contains(&BenchOp::Package) { Some(mint_toolset()?) } else { None };
        Ok(Material { rsa: rsa_keys, aes, signature_2048, oaep_ciphertext_2048, rsa_aes_blob_2048, toolset })
    }

    fn toolset(&self) -> Result<&Verified> {
        self.toolset.as_ref().ok_or_else(|| failed("no provider toolset made"))
    }

    fn rsa(&self, bits: u32) -> Result<(&[u8], &[u8])> {
        self.rsa
            .iter()
            .find(|r| r.0 == bits)
            .map(|r| (r.1.as_slice(), r.2.as_slice()))
            .ok_or_else(|| failed(&format!("no RSA-{bits} key made")))
    }
}

/// A provider's toolset, as a tenant has verified it: minted by an emulated provider in a
/// temporary folder (removed again: only the packages are kept).
fn mint_toolset() -> Result<Verified> {
    let dir = tempfile::tempdir().map_err(|e| failed(&format!("a temporary folder: {e}")))?;
    let toolset = hsmkit_provider::mint(dir.path(), &hsmkit_provider::Options::new(Region::NA))?;
    toolset.verify()
}

/// One thread's prepared operation: call it to run the operation once.
pub type Worker<'a> = Box<dyn FnMut() -> Result<()> + Send + 'a>;

fn session_policy(usage: Usage) -> KeyPolicy {
    let mut p = KeyPolicy::new(usage);
    p.token = false;
    p
}

fn import_private(s: &dyn Session, der: &[u8], usage: Usage, extractable: bool) -> Result<KeyHandle> {
    let material = KeyMaterial::RsaPrivatePkcs8(Zeroizing::new(der.to_vec()));
    s.import_key(&material, &session_policy(usage).extractable(extractable))
}

fn import_public(s: &dyn Session, spki: &[u8], usage: Usage) -> Result<KeyHandle> {
    s.import_key(&KeyMaterial::RsaPublicSpki(spki.to_vec()), &session_policy(usage))
}

/// How the backend does `op`: "native" or "composed" for the RSA-AES wrap and unwrap (a
/// backend without `CKM_RSA_AES_KEY_WRAP` has the client compose it from its own mechanisms).
pub fn how(backend: &dyn Backend, op: BenchOp) -> Option<&'static str> {
    match op {
        BenchOp::WrapRsaAes(_) | BenchOp::UnwrapRsaAes2048 => {
            let caps = backend.capabilities().ok()?;
            let m = caps.mechanism(MechanismKind::RsaAesKeyWrap)?;
            Some(if m.composed { "composed" } else { "native" })
        }
        _ => None,
    }
}

/// What a worker may use besides its session: the backend (its capabilities) and the
/// credentials of the one operation that changes token objects, the package step.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    /// The backend the session belongs to.
    pub backend: &'a dyn Backend,
    /// The user PIN, for a backend whose private keys need a login (the session is logged in).
    pub user: Option<&'a Pin>,
    /// Who approves a narrowing: the world's cards, or the PKCS#11 security officer.
    pub officer: Option<&'a Officer>,
}

/// The tenant of the bench's packages.
const TENANT: &str = "00000000-0000-4000-8000-00000000b3c4";

/// The package step's token objects (the tenant key, its narrowed copy, the trusted KEK this
/// worker imported), destroyed when the worker is dropped, so the token is left as found.
struct PackageCell<'a> {
    s: Box<dyn Session + 'a>,
    labels: Vec<String>,
}

impl Drop for PackageCell<'_> {
    fn drop(&mut self) {
        for label in &self.labels {
            let filter = KeyFilter { label: Some(label.clone()), ..KeyFilter::default() };
            for h in self.s.find_keys(&filter).unwrap_or_default() {
                let _ = self.s.destroy(h);
            }
        }
    }
}

/// A label no other worker or run uses.
fn unique_label() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut nonce = [0u8; 4];
    aws_lc_rs::rand::fill(&mut nonce).unwrap_or_default();
    format!(
        "hsmkit-bench-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        u32::from_le_bytes(nonce)
    )
}

/// Prepares the package step: a transfer key generated on the token, narrowed for the toolset,
/// then packaged on every call.
fn prepare_package<'a>(s: Box<dyn Session + 'a>, access: &Access<'_>, toolset: &Verified) -> Result<Worker<'a>> {
    let officer = access.officer.ok_or_else(|| {
        Error::new(ErrorKind::ArgumentsBad, Op::CopyKey)
            .detail("the package step narrows a key first, which the security officer (or the world's cards) approves")
            .hint("give the security officer's PIN (hsmkit bench --so-pin-file FILE)")
    })?;
    let caps = access.backend.capabilities()?;
    let label = unique_label();
    let target = TransferTarget {
        kek_spki: toolset.kek.body.kek.spki.clone(),
        provider_hkm: Some(toolset.world.body.hkm.clone()),
        label: None,
    };
    let kek = engine::kek_label(&target.kek_spki);
    let mut cell = PackageCell { s, labels: vec![label.clone()] };
    let key = KeyRef::Label(label.clone());
    {
        let engine = Engine::with_capabilities(&caps, cell.s.as_ref());
        engine.generate(&label, None, &KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 })?;
        let kek_before = cell.s.find_keys(&KeyFilter { label: Some(kek.clone()), ..KeyFilter::default() })?;
        if access.user.is_some() {
            // The narrowing logs the security officer in, which needs the user logged out; it
            // logs the user in again afterwards.
            cell.s.logout()?;
        }
        let narrowed = engine.narrow(&key, &target, officer, access.user)?;
        cell.labels.push(narrowed.label);
        if kek_before.is_empty() {
            cell.labels.push(kek);
        }
    }
    let toolset = toolset.clone();
    Ok(Box::new(move || {
        Engine::with_capabilities(&caps, cell.s.as_ref()).package(&key, &toolset, TENANT, "bench").map(drop)
    }))
}

/// Prepares `op` on `session` (its keys imported or generated as session objects; the package
/// step's token objects are removed again when the worker is dropped).
pub fn prepare<'a>(
    session: Box<dyn Session + 'a>,
    access: &Access<'_>,
    op: BenchOp,
    m: &Material,
) -> Result<Worker<'a>> {
    let s = session;
    Ok(match op {
        BenchOp::Package => prepare_package(s, access, m.toolset()?)?,
        BenchOp::EncryptAesGcm4k => {
            let key = s.import_key(&KeyMaterial::Aes(m.aes.clone()), &session_policy(Usage::ENCRYPT))?;
            let block = vec![0x5a_u8; 4096];
            let mut counter = 0u64;
            Box::new(move || {
                counter += 1;
                let mut iv = vec![0u8; 4];
                iv.extend_from_slice(&counter.to_be_bytes());
                s.encrypt(&Mechanism::AesGcm { iv, aad: Vec::new(), tag_bits: 128 }, key, &block).map(drop)
            })
        }
        BenchOp::SignPkcs1(bits) | BenchOp::SignPss(bits) => {
            let key = import_private(s.as_ref(), m.rsa(bits)?.0, Usage::SIGN, false)?;
            let mech = match op {
                BenchOp::SignPkcs1(_) => Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 },
                _ => Mechanism::RsaPss { hash: HashAlg::Sha256 },
            };
            Box::new(move || s.sign(&mech, key, MESSAGE).map(drop))
        }
        BenchOp::Verify2048 => {
            let key = import_public(s.as_ref(), m.rsa(2048)?.1, Usage::VERIFY)?;
            let sig = m.signature_2048.clone();
            let mech = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 };
            Box::new(move || s.verify(&mech, key, MESSAGE, &sig))
        }
        BenchOp::OaepDecrypt2048 => {
            let key = import_private(s.as_ref(), m.rsa(2048)?.0, Usage::DECRYPT, false)?;
            let ct = m.oaep_ciphertext_2048.clone();
            let mech = Mechanism::RsaOaep { hash: HashAlg::Sha1 };
            Box::new(move || s.decrypt(&mech, key, &ct).map(drop))
        }
        BenchOp::WrapRsaAes(kek_bits) => {
            let kek = import_public(s.as_ref(), m.rsa(kek_bits)?.1, Usage::WRAP | Usage::ENCRYPT)?;
            let target = import_private(s.as_ref(), m.rsa(2048)?.0, Usage::SIGN, true)?;
            Box::new(move || s.wrap_key(&RSA_AES, kek, target).map(drop))
        }
        BenchOp::UnwrapRsaAes2048 => {
            let kek = import_private(s.as_ref(), m.rsa(2048)?.0, Usage::UNWRAP | Usage::DECRYPT, false)?;
            let blob = m.rsa_aes_blob_2048.clone();
            Box::new(move || {
                let k = s.unwrap_key(&RSA_AES, kek, &blob, KeyType::Rsa, &session_policy(Usage::SIGN))?;
                s.destroy(k)
            })
        }
        BenchOp::WrapAesKwp => {
            let aes = s.import_key(&KeyMaterial::Aes(m.aes.clone()), &session_policy(Usage::WRAP | Usage::UNWRAP))?;
            let target = import_private(s.as_ref(), m.rsa(2048)?.0, Usage::SIGN, true)?;
            Box::new(move || s.wrap_key(&Mechanism::AesKeyWrapPad, aes, target).map(drop))
        }
        BenchOp::KeygenRsa(bits) => {
            let spec = KeyPairSpec::Rsa { bits, public_exponent: 65537 };
            Box::new(move || {
                let (public, private) = s.generate_key_pair(&spec, &session_policy(Usage::SIGN | Usage::VERIFY))?;
                s.destroy(private)?;
                s.destroy(public)
            })
        }
        BenchOp::SignEcdsaP256 => {
            let spec = KeyPairSpec::Ec { curve: EcCurve::P256 };
            let (_, key) = s.generate_key_pair(&spec, &session_policy(Usage::SIGN | Usage::VERIFY))?;
            let mech = Mechanism::Ecdsa { hash: None };
            let digest = message_sha256();
            Box::new(move || s.sign(&mech, key, &digest).map(drop))
        }
        BenchOp::Noop => Box::new(move || {
            let _ = &s;
            Ok(())
        }),
    })
}

/// The reference row: each operation computed directly with AWS-LC, the fastest library on the
/// machine, which no module calling it can beat.
pub mod reference {
    use super::*;
    use aws_lc_rs::rsa::{
        OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
        PublicEncryptingKey,
    };

    fn lc(what: &str) -> Error {
        failed(&format!("AWS-LC: {what}"))
    }

    /// RSA-OAEP (SHA-1) encryption of `plain` under `spki`.
    pub fn oaep_encrypt(spki: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        let key = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(spki).map_err(|_| lc("public key"))?)
            .map_err(|_| lc("OAEP key"))?;
        let mut out = vec![0u8; key.ciphertext_size()];
        let n = key.encrypt(&OAEP_SHA1_MGF1SHA1, plain, &mut out, None).map_err(|_| lc("OAEP"))?.len();
        out.truncate(n);
        Ok(out)
    }

    /// `CKM_RSA_AES_KEY_WRAP` of `pkcs8` under `spki`: a fresh AES-256 key, OAEP, then RFC 5649.
    pub fn rsa_aes_wrap(spki: &[u8], pkcs8: &[u8]) -> Result<Vec<u8>> {
        let mut aes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(aes.as_mut()).map_err(|_| lc("random"))?;
        let mut out = oaep_encrypt(spki, aes.as_ref())?;
        out.extend_from_slice(&kwp_wrap(aes.as_ref(), pkcs8)?);
        Ok(out)
    }

    fn kwp_wrap(key: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
        let kek = AesKek::new(&AES_256, key).map_err(|_| lc("AES key"))?;
        let mut out = vec![0u8; plain.len() + 16];
        let n = kek.wrap_with_padding(plain, &mut out).map_err(|_| lc("KWP"))?.len();
        out.truncate(n);
        Ok(out)
    }

    fn kwp_unwrap(key: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
        let kek = AesKek::new(&AES_256, key).map_err(|_| lc("AES key"))?;
        let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
        let n = kek.unwrap_with_padding(wrapped, &mut out).map_err(|_| lc("KWP unwrap"))?.len();
        out.truncate(n);
        Ok(out)
    }

    /// Prepares `op` on AWS-LC.
    pub fn prepare(op: BenchOp, m: &Material) -> Result<Worker<'static>> {
        use aws_lc_rs::signature::{self as sig, KeyPair as _};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        Ok(match op {
            BenchOp::SignPkcs1(bits) | BenchOp::SignPss(bits) => {
                let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(m.rsa(bits)?.0).map_err(|_| lc("RSA key"))?;
                let enc: &'static dyn sig::RsaEncoding =
                    if matches!(op, BenchOp::SignPkcs1(_)) { &sig::RSA_PKCS1_SHA256 } else { &sig::RSA_PSS_SHA256 };
                let mut out = vec![0u8; kp.public_modulus_len()];
                Box::new(move || kp.sign(enc, &rng, MESSAGE, &mut out).map_err(|_| lc("sign")))
            }
            BenchOp::Verify2048 => {
                let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(m.rsa(2048)?.0).map_err(|_| lc("RSA key"))?;
                let public = kp.public_key().as_ref().to_vec();
                let s = m.signature_2048.clone();
                Box::new(move || {
                    sig::UnparsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, &public)
                        .verify(MESSAGE, &s)
                        .map_err(|_| lc("verify"))
                })
            }
            BenchOp::OaepDecrypt2048 | BenchOp::UnwrapRsaAes2048 => {
                let key = OaepPrivateDecryptingKey::new(
                    PrivateDecryptingKey::from_pkcs8(m.rsa(2048)?.0).map_err(|_| lc("RSA key"))?,
                )
                .map_err(|_| lc("OAEP key"))?;
                let unwrap = op == BenchOp::UnwrapRsaAes2048;
                let input = if unwrap { m.rsa_aes_blob_2048.clone() } else { m.oaep_ciphertext_2048.clone() };
                let k = key.key_size_bytes();
                let mut out = Zeroizing::new(vec![0u8; k]);
                Box::new(move || {
                    let (head, tail) = input.split_at(if unwrap { k } else { input.len() });
                    let secret = key.decrypt(&OAEP_SHA1_MGF1SHA1, head, &mut out, None).map_err(|_| lc("OAEP"))?;
                    if unwrap {
                        kwp_unwrap(secret, tail)?;
                    }
                    Ok(())
                })
            }
            BenchOp::WrapRsaAes(kek_bits) => {
                let spki = m.rsa(kek_bits)?.1.to_vec();
                let target = Zeroizing::new(m.rsa(2048)?.0.to_vec());
                Box::new(move || rsa_aes_wrap(&spki, &target).map(drop))
            }
            BenchOp::WrapAesKwp => {
                let (key, target) = (m.aes.clone(), Zeroizing::new(m.rsa(2048)?.0.to_vec()));
                Box::new(move || kwp_wrap(&key, &target).map(drop))
            }
            BenchOp::KeygenRsa(bits) => {
                let size = match bits {
                    2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                    3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                    4096 => aws_lc_rs::rsa::KeySize::Rsa4096,
                    _ => return Err(lc("key size")),
                };
                Box::new(move || aws_lc_rs::rsa::KeyPair::generate(size).map(drop).map_err(|_| lc("keygen")))
            }
            BenchOp::SignEcdsaP256 => {
                let kp = sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_ASN1_SIGNING).map_err(|_| lc("EC key"))?;
                Box::new(move || kp.sign(&rng, MESSAGE).map(drop).map_err(|_| lc("ECDSA")))
            }
            BenchOp::EncryptAesGcm4k => {
                use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
                let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &m.aes).map_err(|_| lc("AES key"))?);
                let mut block = vec![0x5a_u8; 4096];
                let mut counter = 0u64;
                Box::new(move || {
                    counter += 1;
                    let mut iv = [0u8; 12];
                    iv[4..].copy_from_slice(&counter.to_be_bytes());
                    block.truncate(4096);
                    let tag = key
                        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut block)
                        .map_err(|_| lc("AES-GCM"))?;
                    let _ = std::hint::black_box(tag);
                    Ok(())
                })
            }
            BenchOp::Package => return Err(lc("the package step is a backend's (the reference row has no module)")),
            BenchOp::Noop => Box::new(|| Ok(())),
        })
    }
}

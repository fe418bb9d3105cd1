//! The `mechanisms` profile's sweep: every mechanism the kit knows, for each function its
//! `CKF_*` flags can claim and each key size of the standard ladder, one case each
//! (`sweep-<mechanism>-<function>-<bits>`).
//!
//! A cell runs only when the backend lists the mechanism with that flag and a range that holds
//! the size; otherwise it is skipped with the reason. So a listed mechanism is exercised for what
//! its row claims, and a listed mechanism that fails is reported against the row. Every result is
//! checked with RustCrypto (or a published known answer), never with the module itself.
//!
//! Listed pairs the sweep leaves to other profiles (the hashed RSA signatures and OAEP encryption
//! of the `rsa` profile, HKDF and the SP 800-108 KDF of their known-answer cases) are in
//! `ELSEWHERE`; `uncovered` names any listed pair that neither covers.

use hsmkit_backend::{
    AttrKind, Capabilities, EcCurve, ErrorKind, HashAlg, KeyHandle, KeyMaterial, KeyPairSpec, KeyPolicy, KeySpec,
    KeyType, Mechanism, MechanismFlags, MechanismInfo, MechanismKind, Session, Usage,
};
use rsa::traits::PublicKeyParts as _;
use zeroize::Zeroizing;

use super::derive::{readable, value_of};
use super::ec::{bytes_of, digest, point_of, rc_verify};
use super::rsa_sweep::{import_private, import_public, private};
use super::{R, ensure, err, expect_kind, import_aes, policy, public_of, seeded_rng};
use crate::{Case, Ctx, Profile};

/// A function a mechanism's row can claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `CKF_GENERATE` (`C_GenerateKey`).
    Generate,
    /// `CKF_GENERATE_KEY_PAIR` (`C_GenerateKeyPair`).
    GenerateKeyPair,
    /// `CKF_ENCRYPT` (`C_Encrypt`).
    Encrypt,
    /// `CKF_DECRYPT` (`C_Decrypt`).
    Decrypt,
    /// `CKF_SIGN` (`C_Sign`).
    Sign,
    /// `CKF_VERIFY` (`C_Verify`).
    Verify,
    /// `CKF_WRAP` (`C_WrapKey`).
    Wrap,
    /// `CKF_UNWRAP` (`C_UnwrapKey`).
    Unwrap,
    /// `CKF_DERIVE` (`C_DeriveKey`).
    Derive,
}

impl Func {
    const ALL: [Func; 9] = [
        Func::Generate,
        Func::GenerateKeyPair,
        Func::Encrypt,
        Func::Decrypt,
        Func::Sign,
        Func::Verify,
        Func::Wrap,
        Func::Unwrap,
        Func::Derive,
    ];

    fn flag(self) -> MechanismFlags {
        match self {
            Func::Generate => MechanismFlags::GENERATE,
            Func::GenerateKeyPair => MechanismFlags::GENERATE_KEY_PAIR,
            Func::Encrypt => MechanismFlags::ENCRYPT,
            Func::Decrypt => MechanismFlags::DECRYPT,
            Func::Sign => MechanismFlags::SIGN,
            Func::Verify => MechanismFlags::VERIFY,
            Func::Wrap => MechanismFlags::WRAP,
            Func::Unwrap => MechanismFlags::UNWRAP,
            Func::Derive => MechanismFlags::DERIVE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Func::Generate => "generate",
            Func::GenerateKeyPair => "generate-pair",
            Func::Encrypt => "encrypt",
            Func::Decrypt => "decrypt",
            Func::Sign => "sign",
            Func::Verify => "verify",
            Func::Wrap => "wrap",
            Func::Unwrap => "unwrap",
            Func::Derive => "derive",
        }
    }

    fn call(self) -> &'static str {
        match self {
            Func::Generate => "C_GenerateKey",
            Func::GenerateKeyPair => "C_GenerateKeyPair",
            Func::Encrypt => "C_Encrypt",
            Func::Decrypt => "C_Decrypt",
            Func::Sign => "C_Sign",
            Func::Verify => "C_Verify",
            Func::Wrap => "C_WrapKey",
            Func::Unwrap => "C_UnwrapKey",
            Func::Derive => "C_DeriveKey",
        }
    }

    fn ckf(self) -> &'static str {
        match self {
            Func::Generate => "CKF_GENERATE",
            Func::GenerateKeyPair => "CKF_GENERATE_KEY_PAIR",
            Func::Encrypt => "CKF_ENCRYPT",
            Func::Decrypt => "CKF_DECRYPT",
            Func::Sign => "CKF_SIGN",
            Func::Verify => "CKF_VERIFY",
            Func::Wrap => "CKF_WRAP",
            Func::Unwrap => "CKF_UNWRAP",
            Func::Derive => "CKF_DERIVE",
        }
    }
}

/// One cell of the sweep: a mechanism, a function, a key size in bits.
#[derive(Debug, Clone, Copy)]
struct Cell {
    kind: MechanismKind,
    func: Func,
    bits: u32,
}

const AES: &[u32] = &[128, 192, 256];
const RSA: &[u32] = &[2048, 3072, 4096];
const EC: &[u32] = &[256, 384, 521];
const HASHES: [HashAlg; 5] = [HashAlg::Sha1, HashAlg::Sha224, HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];

/// Listed pairs other profiles exercise (at every size they sweep), and the cases that do.
pub const ELSEWHERE: &[(MechanismKind, MechanismFlags, &str)] = {
    use MechanismKind as K;
    const SV: MechanismFlags = MechanismFlags::SIGN.union(MechanismFlags::VERIFY);
    &[
        (K::Sha1RsaPkcs, SV, "rsa-*-sign-pkcs1-sha1, rsa-*-verify-sha1"),
        (K::Sha224RsaPkcs, SV, "rsa-*-sign-pkcs1-sha224, rsa-*-verify-sha224"),
        (K::Sha256RsaPkcs, SV, "rsa-*-sign-pkcs1-sha256, rsa-*-verify-sha256"),
        (K::Sha384RsaPkcs, SV, "rsa-*-sign-pkcs1-sha384, rsa-*-verify-sha384"),
        (K::Sha512RsaPkcs, SV, "rsa-*-sign-pkcs1-sha512, rsa-*-verify-sha512"),
        (K::Sha1RsaPkcsPss, SV, "rsa-*-sign-pss-sha1, rsa-*-verify-sha1"),
        (K::Sha224RsaPkcsPss, SV, "rsa-*-sign-pss-sha224, rsa-*-verify-sha224"),
        (K::Sha256RsaPkcsPss, SV, "rsa-*-sign-pss-sha256, rsa-*-verify-sha256"),
        (K::Sha384RsaPkcsPss, SV, "rsa-*-sign-pss-sha384, rsa-*-verify-sha384"),
        (K::Sha512RsaPkcsPss, SV, "rsa-*-sign-pss-sha512, rsa-*-verify-sha512"),
        (
            K::RsaPkcsOaep,
            MechanismFlags::ENCRYPT.union(MechanismFlags::DECRYPT),
            "rsa-*-oaep-encrypt-*, rsa-*-oaep-decrypt-*",
        ),
        (K::HkdfDerive, MechanismFlags::DERIVE, "hkdf"),
        (K::Sp800108CounterKdf, MechanismFlags::DERIVE, "sp800-108-counter"),
    ]
};

/// The sweep's cells, in run order.
fn cells() -> Vec<Cell> {
    use Func::*;
    use MechanismKind as K;
    let mut out = Vec::new();
    let mut add = |kinds: &[MechanismKind], funcs: &[Func], sizes: &[u32]| {
        for &kind in kinds {
            for &func in funcs {
                for &bits in sizes {
                    out.push(Cell { kind, func, bits });
                }
            }
        }
    };
    add(&[K::AesKeyGen], &[Generate], AES);
    add(&[K::GenericSecretKeyGen], &[Generate], &[128, 256, 512]);
    add(&[K::Des3KeyGen], &[Generate], &[192]);
    add(&[K::RsaPkcsKeyPairGen], &[GenerateKeyPair], RSA);
    add(&[K::EcKeyPairGen], &[GenerateKeyPair], EC);
    add(&[K::EcEdwardsKeyPairGen], &[GenerateKeyPair], &[255]);
    add(&[K::RsaPkcs], &[Encrypt, Decrypt, Sign, Verify, Wrap, Unwrap], RSA);
    add(&[K::RsaX509], &[Encrypt, Decrypt, Sign, Verify], RSA);
    add(&[K::RsaPkcsPss], &[Sign, Verify], RSA);
    add(&[K::RsaPkcsOaep, K::RsaAesKeyWrap], &[Wrap, Unwrap], RSA);
    add(&[K::Ecdsa, K::EcdsaSha1, K::EcdsaSha224, K::EcdsaSha256, K::EcdsaSha384, K::EcdsaSha512], &[Sign, Verify], EC);
    add(&[K::Eddsa], &[Sign, Verify], &[255]);
    add(&[K::Ecdh1Derive], &[Derive], EC);
    for hash in HASHES {
        add(&[hmac_kind(hash)], &[Sign, Verify], &[hmac_key_bits(hash)]);
    }
    add(&[K::AesEcb, K::AesCbc, K::AesCbcPad, K::AesCtr, K::AesGcm], &[Encrypt, Decrypt], AES);
    add(&[K::AesEcb, K::AesCbc, K::AesCbcPad], &[Wrap, Unwrap], AES);
    add(&[K::AesCmac], &[Sign, Verify], AES);
    add(&[K::AesKeyWrap, K::AesKeyWrapPad, K::AesKeyWrapKwp], &[Wrap, Unwrap], AES);
    add(&[K::AesCbcEncryptData], &[Derive], AES);
    add(&[K::Des3Ecb, K::Des3Cbc, K::Des3CbcPad], &[Encrypt, Decrypt, Wrap, Unwrap], &[192]);
    out
}

fn hmac_kind(hash: HashAlg) -> MechanismKind {
    match hash {
        HashAlg::Sha1 => MechanismKind::Sha1Hmac,
        HashAlg::Sha224 => MechanismKind::Sha224Hmac,
        HashAlg::Sha256 => MechanismKind::Sha256Hmac,
        HashAlg::Sha384 => MechanismKind::Sha384Hmac,
        HashAlg::Sha512 => MechanismKind::Sha512Hmac,
    }
}

/// An HMAC key as long as the hash's output, and at least 256 bits (RFC 2104 §3; the smallest
/// key SoftHSM2 and others list is the output's length).
fn hmac_key_bits(hash: HashAlg) -> u32 {
    (hash.output_len() as u32 * 8).max(256)
}

/// `CKM_…` of a kind.
fn ckm(kind: MechanismKind) -> String {
    format!("CKM_{}", kind.name().replace('-', "_"))
}

/// Whether a row's range holds `bits`. The specification counts some ranges in bytes (AES, DES
/// and HMAC keys) and others in bits, and modules differ (SoftHSM2 lists AES as 16..32 and
/// Ed25519 as 256..456): a symmetric size is in range in either reading, an Edwards size as 255
/// or 256 bits. A row without a range (0..0) is taken at its word.
fn size_listed(row: &MechanismInfo, bits: u32) -> bool {
    if row.max_bits == 0 {
        return true;
    }
    use MechanismKind as K;
    let range = row.min_bits..=row.max_bits;
    let symmetric = matches!(
        row.kind,
        K::AesKeyGen
            | K::GenericSecretKeyGen
            | K::Des3KeyGen
            | K::AesEcb
            | K::AesCbc
            | K::AesCbcPad
            | K::AesCtr
            | K::AesGcm
            | K::AesCmac
            | K::AesKeyWrap
            | K::AesKeyWrapPad
            | K::AesKeyWrapKwp
            | K::AesCbcEncryptData
            | K::Des3Ecb
            | K::Des3Cbc
            | K::Des3CbcPad
            | K::Sha1Hmac
            | K::Sha224Hmac
            | K::Sha256Hmac
            | K::Sha384Hmac
            | K::Sha512Hmac
            | K::HkdfDerive
            | K::Sp800108CounterKdf
    );
    let edwards = matches!(row.kind, K::Eddsa | K::EcEdwardsKeyPairGen);
    range.contains(&bits) || (symmetric && range.contains(&(bits / 8))) || (edwards && range.contains(&(bits + 1)))
}

/// Skips the cell unless the backend's row claims it.
fn claimed(ctx: &Ctx<'_>, cell: Cell) -> R {
    let caps = ctx.backend.capabilities().map_err(err("read the mechanism list"))?;
    let name = ckm(cell.kind);
    let Some(row) = caps.mechanism(cell.kind) else { return Err(crate::not_listed(&name)) };
    if !row.flags.contains(cell.func.flag()) {
        return Err(crate::skipped(&format!("the backend lists {name} without {}", cell.func.ckf())));
    }
    if !size_listed(row, cell.bits) {
        return Err(crate::skipped(&format!(
            "the backend lists {name} for key sizes {}..{}, not {} bits",
            row.min_bits, row.max_bits, cell.bits
        )));
    }
    Ok(())
}

/// Listed (mechanism, function) pairs of `caps` that no case of the kit exercises: empty when
/// the sweep and `ELSEWHERE` cover the list.
pub fn uncovered(caps: &Capabilities) -> Vec<String> {
    let cells = cells();
    let mut out = Vec::new();
    for row in &caps.mechanisms {
        for func in Func::ALL {
            if !row.flags.contains(func.flag()) {
                continue;
            }
            let swept = cells.iter().any(|c| c.kind == row.kind && c.func == func);
            let elsewhere = ELSEWHERE.iter().any(|(k, f, _)| *k == row.kind && f.contains(func.flag()));
            if !swept && !elsewhere {
                out.push(format!("{} with {}", ckm(row.kind), func.ckf()));
            }
        }
    }
    out
}

/// The sweep's cases, and the case that checks the sweep covers the backend's list.
pub fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = cells()
        .into_iter()
        .map(|cell| {
            let id = format!("sweep-{}-{}-{}", cell.kind.name().to_ascii_lowercase(), cell.func.name(), cell.bits);
            let clause = format!(
                "PKCS#11 3.1 §5.2 C_GetMechanismInfo: {} lists {} for a {}-bit key, so {} works (checked with RustCrypto)",
                ckm(cell.kind),
                cell.func.ckf(),
                cell.bits,
                cell.func.call()
            );
            Case::seam(Profile::Mechanisms, id, clause, move |ctx| {
                claimed(ctx, cell)?;
                run(ctx, cell)
            })
        })
        .collect();
    out.push(Case::seam(
        Profile::Mechanisms,
        "sweep-covers-the-list",
        "hsmkit conformance kit: every listed mechanism and function has a case",
        |ctx| {
            let caps = ctx.backend.capabilities().map_err(err("read the mechanism list"))?;
            let gaps = uncovered(&caps);
            if gaps.is_empty() {
                Ok(())
            } else {
                Err(crate::skipped(&format!("the kit has no case yet for {}", gaps.join(", "))))
            }
        },
    ));
    out
}

fn run(ctx: &Ctx<'_>, cell: Cell) -> R {
    use MechanismKind as K;
    let s = ctx.session()?;
    let s = s.as_ref();
    match cell.kind {
        K::AesKeyGen | K::GenericSecretKeyGen | K::Des3KeyGen => secret_keygen(ctx, s, cell),
        K::RsaPkcsKeyPairGen => rsa_keygen(ctx, s, cell.bits),
        K::EcKeyPairGen => ec_keygen(s, curve(cell.bits)?),
        K::EcEdwardsKeyPairGen => edwards_keygen(s),
        K::RsaPkcs | K::RsaX509 | K::RsaPkcsPss | K::RsaPkcsOaep | K::RsaAesKeyWrap => rsa_cell(s, cell),
        K::Eddsa => eddsa(s, cell.func),
        K::Ecdh1Derive => ecdh(s, curve(cell.bits)?),
        K::Ecdsa | K::EcdsaSha1 | K::EcdsaSha224 | K::EcdsaSha256 | K::EcdsaSha384 | K::EcdsaSha512 => {
            ecdsa(s, cell.kind, cell.func, curve(cell.bits)?)
        }
        K::Sha1Hmac | K::Sha224Hmac | K::Sha256Hmac | K::Sha384Hmac | K::Sha512Hmac => hmac(s, cell),
        K::AesCmac => cmac_cell(s, cell),
        K::AesKeyWrap | K::AesKeyWrapPad | K::AesKeyWrapKwp => key_wrap(s, cell),
        K::AesCbcEncryptData => cbc_encrypt_data(s, cell.bits),
        _ => block_cell(s, cell),
    }
}

fn curve(bits: u32) -> Result<EcCurve, String> {
    match bits {
        256 => Ok(EcCurve::P256),
        384 => Ok(EcCurve::P384),
        521 => Ok(EcCurve::P521),
        other => Err(format!("no curve of {other} bits in the sweep")),
    }
}

/// The curve's own hash (FIPS 186-5's pairing).
fn curve_hash(curve: EcCurve) -> HashAlg {
    match curve {
        EcCurve::P384 => HashAlg::Sha384,
        EcCurve::P521 => HashAlg::Sha512,
        _ => HashAlg::Sha256,
    }
}

fn listed(s_ctx: &Ctx<'_>, kind: MechanismKind) -> Result<bool, String> {
    Ok(s_ctx.backend.capabilities().map_err(err("read the mechanism list"))?.mechanism(kind).is_some())
}

// ---- Block ciphers in software (RustCrypto's block functions; the modes written out here) ----

/// A block cipher under a known key, in RustCrypto.
enum Soft {
    A128(aes::Aes128),
    A192(aes::Aes192),
    A256(aes::Aes256),
    Tdes(des::TdesEde3),
}

impl Soft {
    fn aes(key: &[u8]) -> Result<Soft, String> {
        use aes::cipher::KeyInit as _;
        let bad = |_| "an AES key of that length".to_string();
        Ok(match key.len() {
            16 => Soft::A128(aes::Aes128::new_from_slice(key).map_err(bad)?),
            24 => Soft::A192(aes::Aes192::new_from_slice(key).map_err(bad)?),
            _ => Soft::A256(aes::Aes256::new_from_slice(key).map_err(bad)?),
        })
    }

    fn des3(key: &[u8]) -> Result<Soft, String> {
        use des::cipher::KeyInit as _;
        Ok(Soft::Tdes(des::TdesEde3::new_from_slice(key).map_err(|_| "a DES3 key".to_string())?))
    }

    fn block(&self) -> usize {
        if matches!(self, Soft::Tdes(_)) { 8 } else { 16 }
    }

    fn apply(&self, b: &mut [u8], encrypt: bool) {
        use aes::cipher::{
            Array,
            consts::{U8, U16},
        };
        use aes::cipher::{BlockCipherDecrypt as _, BlockCipherEncrypt as _};
        if let Soft::Tdes(c) = self {
            let mut a = Array::<u8, U8>::default();
            a.copy_from_slice(b);
            if encrypt {
                c.encrypt_block(&mut a)
            } else {
                c.decrypt_block(&mut a)
            }
            b.copy_from_slice(&a);
            return;
        }
        let mut a = Array::<u8, U16>::default();
        a.copy_from_slice(b);
        match (self, encrypt) {
            (Soft::A128(c), true) => c.encrypt_block(&mut a),
            (Soft::A128(c), false) => c.decrypt_block(&mut a),
            (Soft::A192(c), true) => c.encrypt_block(&mut a),
            (Soft::A192(c), false) => c.decrypt_block(&mut a),
            (Soft::A256(c), true) => c.encrypt_block(&mut a),
            (Soft::A256(c), false) => c.decrypt_block(&mut a),
            (Soft::Tdes(_), _) => {}
        }
        b.copy_from_slice(&a);
    }

    fn ecb(&self, data: &[u8], encrypt: bool) -> Vec<u8> {
        let mut out = data.to_vec();
        out.chunks_mut(self.block()).for_each(|b| self.apply(b, encrypt));
        out
    }

    fn cbc(&self, iv: &[u8], data: &[u8], encrypt: bool) -> Vec<u8> {
        let mut chain = iv.to_vec();
        let mut out = Vec::with_capacity(data.len());
        for block in data.chunks(self.block()) {
            let mut b = block.to_vec();
            if encrypt {
                b.iter_mut().zip(&chain).for_each(|(x, c)| *x ^= c);
                self.apply(&mut b, true);
                chain.copy_from_slice(&b);
            } else {
                self.apply(&mut b, false);
                b.iter_mut().zip(&chain).for_each(|(x, c)| *x ^= c);
                chain.copy_from_slice(block);
            }
            out.extend_from_slice(&b);
        }
        out
    }

    /// PKCS #7 padding to the block size.
    fn pad(&self, data: &[u8]) -> Vec<u8> {
        let n = self.block() - data.len() % self.block();
        let mut out = data.to_vec();
        out.extend(std::iter::repeat_n(n as u8, n));
        out
    }

    /// CTR with the whole block as the counter (`ulCounterBits` = 128).
    fn ctr(&self, counter: &[u8; 16], data: &[u8]) -> Vec<u8> {
        let mut ctr = u128::from_be_bytes(*counter);
        let mut out = Vec::with_capacity(data.len());
        for chunk in data.chunks(16) {
            let mut ks = ctr.to_be_bytes();
            self.apply(&mut ks, true);
            out.extend(chunk.iter().zip(ks).map(|(d, k)| d ^ k));
            ctr = ctr.wrapping_add(1);
        }
        out
    }

    /// CMAC (SP 800-38B, RFC 4493) over AES.
    fn cmac(&self, data: &[u8]) -> Vec<u8> {
        let dbl = |b: &[u8]| -> Vec<u8> {
            let v = u128::from_be_bytes(b.try_into().unwrap_or([0; 16]));
            let r = (v << 1) ^ if v >> 127 == 1 { 0x87 } else { 0 };
            r.to_be_bytes().to_vec()
        };
        let mut l = [0u8; 16];
        self.apply(&mut l, true);
        let k1 = dbl(&l);
        let k2 = dbl(&k1);
        let n = data.len().div_ceil(16).max(1);
        let complete = !data.is_empty() && data.len().is_multiple_of(16);
        let mut last = data[(n - 1) * 16..].to_vec();
        if complete {
            last.iter_mut().zip(&k1).for_each(|(x, k)| *x ^= k);
        } else {
            last.push(0x80);
            last.resize(16, 0);
            last.iter_mut().zip(&k2).for_each(|(x, k)| *x ^= k);
        }
        let mut x = vec![0u8; 16];
        for block in data[..(n - 1) * 16].chunks(16).chain(std::iter::once(&last[..])) {
            x.iter_mut().zip(block).for_each(|(a, b)| *a ^= b);
            self.apply(&mut x, true);
        }
        x
    }
}

/// AES-GCM in RustCrypto: ciphertext and 128-bit tag.
fn soft_gcm(key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, String> {
    use aes_gcm::aead::consts::U12;
    use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
    let payload = Payload { msg: pt, aad };
    let nonce = aes_gcm::Nonce::<U12>::try_from(iv).map_err(|_| "a 12-byte IV".to_string())?;
    macro_rules! gcm {
        ($c:ty) => {
            aes_gcm::AesGcm::<$c, U12>::new_from_slice(key)
                .map_err(|_| "the GCM key".to_string())?
                .encrypt(&nonce, payload)
                .map_err(|_| "RustCrypto's GCM".to_string())
        };
    }
    match key.len() {
        16 => gcm!(aes::Aes128),
        24 => gcm!(aes::Aes192),
        _ => gcm!(aes::Aes256),
    }
}

/// A key of `bytes` bytes with a recognisable pattern (never weak for DES: distinct halves).
fn key_bytes(bytes: usize, seed: u8) -> Zeroizing<Vec<u8>> {
    Zeroizing::new((0..bytes).map(|i| seed.wrapping_add((i as u8).wrapping_mul(29))).collect())
}

fn import_block_key(s: &dyn Session, des: bool, value: &[u8], usage: Usage) -> Result<KeyHandle, String> {
    let material = if des {
        KeyMaterial::Des3(Zeroizing::new(value.to_vec()))
    } else {
        KeyMaterial::Aes(Zeroizing::new(value.to_vec()))
    };
    s.import_key(&material, &policy(usage)).map_err(err("import the cell's key"))
}

/// AES and DES3 encryption modes: the module's output against RustCrypto's, both ways; the
/// same modes wrapping an AES-128 key, and unwrapping one RustCrypto wrapped.
fn block_cell(s: &dyn Session, cell: Cell) -> R {
    use MechanismKind as K;
    let des = matches!(cell.kind, K::Des3Ecb | K::Des3Cbc | K::Des3CbcPad);
    let value = key_bytes(cell.bits as usize / 8, 0x41);
    let soft = if des { Soft::des3(&value)? } else { Soft::aes(&value)? };
    let iv16 = [0x0fu8; 16];
    let iv8 = [0x0fu8; 8];
    let counter: [u8; 16] = core::array::from_fn(|i| if i < 12 { 0xf0 + i as u8 } else { 0 });
    let aad = b"sweep additional data".to_vec();
    let mech = match cell.kind {
        K::AesEcb => Mechanism::AesEcb,
        K::AesCbc => Mechanism::AesCbc { iv: iv16 },
        K::AesCbcPad => Mechanism::AesCbcPad { iv: iv16 },
        K::AesCtr => Mechanism::AesCtr { counter, counter_bits: 128 },
        K::AesGcm => Mechanism::AesGcm { iv: iv16[..12].to_vec(), aad: aad.clone(), tag_bits: 128 },
        K::Des3Ecb => Mechanism::Des3Ecb,
        K::Des3Cbc => Mechanism::Des3Cbc { iv: iv8 },
        K::Des3CbcPad => Mechanism::Des3CbcPad { iv: iv8 },
        other => return Err(format!("{} is not a block mode", ckm(other))),
    };
    let iv: &[u8] = if des { &iv8 } else { &iv16 };
    // What RustCrypto makes of `pt` under this mode.
    let expect = |pt: &[u8]| -> Result<Vec<u8>, String> {
        Ok(match cell.kind {
            K::AesEcb | K::Des3Ecb => soft.ecb(pt, true),
            K::AesCbc | K::Des3Cbc => soft.cbc(iv, pt, true),
            K::AesCbcPad | K::Des3CbcPad => soft.cbc(iv, &soft.pad(pt), true),
            K::AesCtr => soft.ctr(&counter, pt),
            _ => soft_gcm(&value, &iv16[..12], &aad, pt)?,
        })
    };
    let padded = matches!(cell.kind, K::AesCbcPad | K::Des3CbcPad | K::AesCtr | K::AesGcm);
    // Whole blocks for the modes without padding; an odd length for the others.
    let pt: Vec<u8> = (0..if padded { 37 } else { 48 }).map(|i| (i * 3 + 1) as u8).collect();
    match cell.func {
        Func::Encrypt => {
            let key = import_block_key(s, des, &value, Usage::ENCRYPT)?;
            let ct = s.encrypt(&mech, key, &pt).map_err(err("encrypt"))?;
            ensure(ct == expect(&pt)?, &format!("{} differs from RustCrypto's", mech.describe()))
        }
        Func::Decrypt => {
            let key = import_block_key(s, des, &value, Usage::DECRYPT)?;
            let ct = expect(&pt)?;
            let back = s.decrypt(&mech, key, &ct).map_err(err("decrypt RustCrypto's ciphertext"))?;
            ensure(back == pt, &format!("{} decrypts RustCrypto's ciphertext to other bytes", mech.describe()))?;
            if cell.kind == K::AesGcm {
                let mut bad = ct.clone();
                bad[0] ^= 1;
                expect_kind(s.decrypt(&mech, key, &bad), &[ErrorKind::EncryptedDataInvalid], "a changed byte")?;
            }
            Ok(())
        }
        Func::Wrap => {
            let key = import_block_key(s, des, &value, Usage::WRAP)?;
            let target_value = key_bytes(16, 0x77);
            let target = import_aes(s, &target_value, &policy(Usage::ENCRYPT).extractable(true))?;
            let wrapped = s.wrap_key(&mech, key, target).map_err(err("wrap an AES-128 key"))?;
            let want = expect(&target_value)?;
            ensure(
                wrapped == want,
                &format!(
                    "{} wraps a 16-byte key to other bytes than RustCrypto ({} bytes, RustCrypto's {})",
                    mech.describe(),
                    wrapped.len(),
                    want.len()
                ),
            )
        }
        Func::Unwrap => {
            let key = import_block_key(s, des, &value, Usage::UNWRAP)?;
            let target_value = key_bytes(16, 0x78);
            let wrapped = expect(&target_value)?;
            let got = s.unwrap_key(&mech, key, &wrapped, KeyType::Aes, &readable()).map_err(err("unwrap"))?;
            ensure(
                value_of(s, got)?.as_slice() == target_value.as_slice(),
                &format!("{} unwraps RustCrypto's wrapping to another key", mech.describe()),
            )
        }
        other => Err(format!("no {} cell for a block mode", other.name())),
    }
}

/// AES-CMAC at each key size against CMAC written here over RustCrypto's AES.
fn cmac_cell(s: &dyn Session, cell: Cell) -> R {
    let value = key_bytes(cell.bits as usize / 8, 0x2b);
    let soft = Soft::aes(&value)?;
    let key = import_aes(s, &value, &policy(Usage::SIGN | Usage::VERIFY))?;
    let message: Vec<u8> = (0..40u8).collect();
    let want = soft.cmac(&message);
    match cell.func {
        Func::Sign => {
            let tag = s.sign(&Mechanism::AesCmac, key, &message).map_err(err("CMAC"))?;
            ensure(tag == want, "AES-CMAC differs from RustCrypto's")
        }
        _ => {
            s.verify(&Mechanism::AesCmac, key, &message, &want).map_err(err("verify RustCrypto's CMAC"))?;
            let mut bad = want.clone();
            bad[3] ^= 1;
            expect_kind(
                s.verify(&Mechanism::AesCmac, key, &message, &bad),
                &[ErrorKind::SignatureInvalid],
                "a wrong tag",
            )
        }
    }
}

/// RFC 3394 and RFC 5649 against RustCrypto's `aes-kw`. The RFC 3394 cells wrap an AES-256 key;
/// the RFC 5649 cells (`_PAD` as SoftHSM2 and nShield define it, and `_KWP`) a 20-byte secret.
fn key_wrap(s: &dyn Session, cell: Cell) -> R {
    use aes_kw::KeyInit as _;
    let kek_value = key_bytes(cell.bits as usize / 8, 0x19);
    let kwp = cell.kind != MechanismKind::AesKeyWrap;
    let target_value = key_bytes(if kwp { 20 } else { 32 }, 0x61);
    // RFC 5649 under either number: `_PAD` as SoftHSM2 and nShield define it, `_KWP` as
    // PKCS#11 3.0 does.
    let mech = match cell.kind {
        MechanismKind::AesKeyWrapKwp => Mechanism::AesKeyWrapKwp,
        MechanismKind::AesKeyWrapPad => Mechanism::AesKeyWrapPad,
        _ => Mechanism::AesKeyWrap,
    };
    let soft_wrap = |data: &[u8]| -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; data.len() + 16];
        macro_rules! wrap {
            ($t:ty) => {
                <$t>::new_from_slice(&kek_value)
                    .map_err(|_| "RustCrypto's KEK".to_string())?
                    .wrap_key(data, &mut buf)
                    .map_err(|_| "RustCrypto's key wrap".to_string())?
                    .to_vec()
            };
        }
        Ok(match (kwp, kek_value.len()) {
            (false, 16) => wrap!(aes_kw::KwAes128),
            (false, 24) => wrap!(aes_kw::KwAes192),
            (false, _) => wrap!(aes_kw::KwAes256),
            (true, 16) => wrap!(aes_kw::KwpAes128),
            (true, 24) => wrap!(aes_kw::KwpAes192),
            (true, _) => wrap!(aes_kw::KwpAes256),
        })
    };
    let key_type = if kwp { KeyType::GenericSecret } else { KeyType::Aes };
    let material = |v: &[u8]| {
        if kwp {
            KeyMaterial::GenericSecret(Zeroizing::new(v.to_vec()))
        } else {
            KeyMaterial::Aes(Zeroizing::new(v.to_vec()))
        }
    };
    match cell.func {
        Func::Wrap => {
            let kek = import_aes(s, &kek_value, &policy(Usage::WRAP))?;
            let target = s
                .import_key(&material(&target_value), &policy(Usage::SIGN).extractable(true))
                .map_err(err("import the key to wrap"))?;
            let wrapped = s.wrap_key(&mech, kek, target).map_err(err("wrap"))?;
            let want = soft_wrap(&target_value)?;
            ensure(
                wrapped == want,
                &format!(
                    "{} of a {}-byte key differs from RustCrypto's ({} bytes, RustCrypto's {})",
                    ckm(cell.kind),
                    target_value.len(),
                    wrapped.len(),
                    want.len()
                ),
            )
        }
        _ => {
            let kek = import_aes(s, &kek_value, &policy(Usage::UNWRAP))?;
            let wrapped = soft_wrap(&target_value)?;
            let got = s.unwrap_key(&mech, kek, &wrapped, key_type, &readable()).map_err(err("unwrap"))?;
            ensure(
                value_of(s, got)?.as_slice() == target_value.as_slice(),
                &format!("{} unwraps RustCrypto's wrapping to another key", ckm(cell.kind)),
            )?;
            let mut bad = wrapped.clone();
            bad[5] ^= 1;
            expect_kind(
                s.unwrap_key(&mech, kek, &bad, key_type, &readable()),
                &[ErrorKind::WrappedKeyInvalid, ErrorKind::EncryptedDataInvalid],
                "a damaged wrapping",
            )
        }
    }
}

/// `CKM_AES_CBC_ENCRYPT_DATA`: the derived key is the AES-CBC encryption of the data under the
/// base key.
fn cbc_encrypt_data(s: &dyn Session, bits: u32) -> R {
    let value = key_bytes(bits as usize / 8, 0x3d);
    let soft = Soft::aes(&value)?;
    let base = import_aes(s, &value, &policy(Usage::DERIVE))?;
    let iv = [0x24u8; 16];
    let data: Vec<u8> = (0..32u8).map(|i| i ^ 0x5c).collect();
    let mech = Mechanism::AesCbcEncryptData { iv, data: data.clone() };
    let got = s.derive_key(&mech, base, &KeySpec::Aes { bits: 256 }, &readable()).map_err(err("derive"))?;
    ensure(
        value_of(s, got)?.as_slice() == soft.cbc(&iv, &data, true).as_slice(),
        "the derived key is not AES-CBC of the data under the base key",
    )
}

/// HMAC with a key as long as the hash's output, against RustCrypto's `hmac`.
fn hmac(s: &dyn Session, cell: Cell) -> R {
    use hmac::{KeyInit as _, Mac as _};
    let hash = HASHES.into_iter().find(|h| hmac_kind(*h) == cell.kind).ok_or("not an HMAC")?;
    let value = key_bytes(cell.bits as usize / 8, 0x0b);
    let key = s
        .import_key(&KeyMaterial::GenericSecret(value.clone()), &policy(Usage::SIGN | Usage::VERIFY))
        .map_err(err("import the HMAC key"))?;
    let message = b"the sweep's HMAC message";
    macro_rules! tag {
        ($h:ty) => {{
            let mut m = hmac::Hmac::<$h>::new_from_slice(&value).map_err(|_| "RustCrypto's HMAC key".to_string())?;
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }};
    }
    let want = match hash {
        HashAlg::Sha1 => tag!(sha1::Sha1),
        HashAlg::Sha224 => tag!(sha2::Sha224),
        HashAlg::Sha256 => tag!(sha2::Sha256),
        HashAlg::Sha384 => tag!(sha2::Sha384),
        HashAlg::Sha512 => tag!(sha2::Sha512),
    };
    let mech = Mechanism::Hmac { hash };
    if cell.func == Func::Sign {
        let tag = s.sign(&mech, key, message).map_err(err("HMAC"))?;
        return ensure(tag == want, &format!("HMAC-{} differs from RustCrypto's", hash.name()));
    }
    s.verify(&mech, key, message, &want).map_err(err("verify RustCrypto's tag"))?;
    let mut bad = want;
    bad[0] ^= 0x80;
    expect_kind(s.verify(&mech, key, message, &bad), &[ErrorKind::SignatureInvalid], "a wrong tag")
}

// ---- Key generation ----

/// A generated secret key, made readable so its value can be checked: its length, DES parity,
/// and one operation the module lists, against RustCrypto under the value read back.
fn secret_keygen(ctx: &Ctx<'_>, s: &dyn Session, cell: Cell) -> R {
    use MechanismKind as K;
    let bytes = cell.bits as usize / 8;
    let (spec, usage) = match cell.kind {
        K::AesKeyGen => (KeySpec::Aes { bits: cell.bits }, Usage::ENCRYPT | Usage::DECRYPT),
        K::GenericSecretKeyGen => (KeySpec::GenericSecret { bytes: bytes as u32 }, Usage::SIGN | Usage::VERIFY),
        _ => (KeySpec::Des3, Usage::ENCRYPT | Usage::DECRYPT),
    };
    let p = KeyPolicy { sensitive: false, extractable: true, ..policy(usage) };
    let key = s.generate_key(&spec, &p).map_err(err("generate"))?;
    let value = value_of(s, key)?;
    ensure(value.len() == bytes, &format!("the generated key has {} bytes, not {bytes}", value.len()))?;
    ensure(value.iter().any(|b| *b != 0), "the generated key is all zeros")?;
    let block: Vec<u8> = (0..16u8).collect();
    match cell.kind {
        K::AesKeyGen if listed(ctx, K::AesEcb)? => {
            let ct = s.encrypt(&Mechanism::AesEcb, key, &block).map_err(err("encrypt with the new key"))?;
            ensure(ct == Soft::aes(&value)?.ecb(&block, true), "the new key encrypts otherwise than its value does")
        }
        K::Des3KeyGen => {
            ensure(value.iter().all(|b| b.count_ones() % 2 == 1), "a generated DES3 key has odd parity")?;
            if !listed(ctx, K::Des3Ecb)? {
                return Ok(());
            }
            let ct = s.encrypt(&Mechanism::Des3Ecb, key, &block).map_err(err("encrypt with the new key"))?;
            ensure(ct == Soft::des3(&value)?.ecb(&block, true), "the new key encrypts otherwise than its value does")
        }
        // Checked with HMAC where the key is long enough for SHA-256 (RFC 2104 §3: at least the
        // output's length; SoftHSM2 lists SHA-256 HMAC from 32 bytes).
        K::GenericSecretKeyGen if cell.bits >= 256 && listed(ctx, K::Sha256Hmac)? => {
            use hmac::{KeyInit as _, Mac as _};
            let tag = s.sign(&Mechanism::Hmac { hash: HashAlg::Sha256 }, key, &block).map_err(err("HMAC"))?;
            let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&value).map_err(|_| "HMAC key".to_string())?;
            m.update(&block);
            ensure(tag == m.finalize().into_bytes().to_vec(), "the new key's HMAC differs from its value's")
        }
        _ => Ok(()),
    }
}

/// A generated RSA pair: the modulus as long as asked, e = 65537, and a PKCS#1 v1.5 signature
/// RustCrypto accepts.
fn rsa_keygen(ctx: &Ctx<'_>, s: &dyn Session, bits: u32) -> R {
    use rsa::signature::Verifier as _;
    let (public, private) = s
        .generate_key_pair(&KeyPairSpec::Rsa { bits, public_exponent: 65537 }, &policy(Usage::SIGN | Usage::VERIFY))
        .map_err(err(&format!("generate RSA-{bits}")))?;
    let key = public_of(s, public)?;
    ensure(key.n().bit_width() == bits, &format!("the modulus has {} bits, not {bits}", key.n().bit_width()))?;
    ensure(key.e().to_be_bytes_trimmed_vartime().as_ref() == [1, 0, 1], "the public exponent is not 65537")?;
    if !listed(ctx, MechanismKind::Sha256RsaPkcs)? {
        return Ok(());
    }
    let sig = s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, private, b"new key").map_err(err("sign"))?;
    let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).map_err(err("the signature"))?;
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key)
        .verify(b"new key", &sig)
        .map_err(|_| "RustCrypto refuses the new key's signature".to_string())
}

/// A generated EC pair: its attributes as the specification encodes them, and an ECDSA signature
/// RustCrypto accepts.
fn ec_keygen(s: &dyn Session, curve: EcCurve) -> R {
    let (public, private) = s
        .generate_key_pair(&KeyPairSpec::Ec { curve }, &policy(Usage::SIGN | Usage::VERIFY))
        .map_err(err(&format!("generate a {} pair", curve.name())))?;
    let point = point_of(s, public, curve)?;
    let prehash = digest(curve_hash(curve), b"new key");
    let sig = s.sign(&Mechanism::Ecdsa { hash: None }, private, &prehash).map_err(err("ECDSA"))?;
    rc_verify(curve, &point, &prehash, &sig)
}

/// A generated Ed25519 pair: `CKA_EC_POINT` holds a 32-byte key, and the module verifies what it
/// signed and refuses it for other data (RustCrypto has no Ed25519 in the kit: the `eddsa`
/// cells hold the module to RFC 8032's known answers).
fn edwards_keygen(s: &dyn Session) -> R {
    let (public, private) = s
        .generate_key_pair(&KeyPairSpec::Ec { curve: EcCurve::Ed25519 }, &policy(Usage::SIGN | Usage::VERIFY))
        .map_err(err("generate an Ed25519 pair"))?;
    let point = bytes_of(s, public, AttrKind::EcPoint)?;
    ensure(
        EcCurve::Ed25519.point_from_attribute(&point).is_some_and(|p| p.len() == 32),
        "CKA_EC_POINT does not hold a 32-byte Ed25519 key",
    )?;
    let sig = s.sign(&Mechanism::Eddsa, private, b"new key").map_err(err("sign"))?;
    ensure(sig.len() == 64, "an Ed25519 signature is 64 bytes")?;
    s.verify(&Mechanism::Eddsa, public, b"new key", &sig).map_err(err("verify"))?;
    expect_kind(s.verify(&Mechanism::Eddsa, public, b"other", &sig), &[ErrorKind::SignatureInvalid], "other data")
}

// ---- RSA ----

/// The DER `DigestInfo` of SHA-256 over `m` (RFC 8017 §9.2).
fn digest_info(m: &[u8]) -> Vec<u8> {
    let mut info = super::unhex("3031300d060960864801650304020105000420");
    info.extend(digest(HashAlg::Sha256, m));
    info
}

fn rsa_cell(s: &dyn Session, cell: Cell) -> R {
    use MechanismKind as K;
    let bits = cell.bits;
    let key = private(bits)?;
    let public_key = key.to_public_key();
    let k = key.size();
    let mut rng = seeded_rng(u64::from(bits) ^ 0x5eed);
    let message = b"the sweep signs and encrypts this";
    match (cell.kind, cell.func) {
        (K::RsaPkcs, Func::Encrypt) => {
            let h = import_public(s, &key, Usage::ENCRYPT)?;
            let ct = s.encrypt(&Mechanism::RsaPkcs1v15Raw, h, message).map_err(err("encrypt"))?;
            let pt = key.decrypt(rsa::Pkcs1v15Encrypt, &ct).map_err(|_| "RustCrypto cannot decrypt it".to_string())?;
            ensure(pt == message, "RustCrypto decrypts the module's ciphertext to other bytes")
        }
        (K::RsaPkcs, Func::Decrypt) => {
            let h = import_private(s, bits, Usage::DECRYPT)?;
            let ct = public_key.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, message).map_err(err("RustCrypto"))?;
            let pt = s.decrypt(&Mechanism::RsaPkcs1v15Raw, h, &ct).map_err(err("decrypt"))?;
            ensure(pt == message, "the module decrypts RustCrypto's ciphertext to other bytes")
        }
        (K::RsaPkcs, Func::Sign) => {
            let h = import_private(s, bits, Usage::SIGN)?;
            let sig = s.sign(&Mechanism::RsaPkcs1v15Raw, h, &digest_info(message)).map_err(err("sign"))?;
            public_key
                .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest(HashAlg::Sha256, message), &sig)
                .map_err(|_| "RustCrypto refuses the signature".to_string())
        }
        (K::RsaPkcs, Func::Verify) => {
            let h = import_public(s, &key, Usage::VERIFY)?;
            let sig = key
                .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest(HashAlg::Sha256, message))
                .map_err(err("RustCrypto signs"))?;
            s.verify(&Mechanism::RsaPkcs1v15Raw, h, &digest_info(message), &sig)
                .map_err(err("verify RustCrypto's signature"))?;
            let mut bad = sig;
            bad[k / 2] ^= 1;
            expect_kind(
                s.verify(&Mechanism::RsaPkcs1v15Raw, h, &digest_info(message), &bad),
                &[ErrorKind::SignatureInvalid],
                "a flipped bit",
            )
        }
        (K::RsaX509, Func::Encrypt | Func::Verify) => {
            // Raw RSA is deterministic: m^e mod n, as RustCrypto computes it.
            let usage = if cell.func == Func::Encrypt { Usage::ENCRYPT } else { Usage::VERIFY };
            let h = import_public(s, &key, usage)?;
            let m: Vec<u8> = (0..k).map(|i| if i == 0 { 0 } else { (i * 11 + 5) as u8 }).collect();
            let m_n = rsa::BoxedUint::from_be_slice(&m, key.n().as_ref().bits_precision()).map_err(err("m"))?;
            let c = rsa::hazmat::rsa_encrypt(&public_key, &m_n).map_err(err("RustCrypto raw RSA"))?;
            let mut c = c.to_be_bytes_trimmed_vartime().to_vec();
            while c.len() < k {
                c.insert(0, 0);
            }
            if cell.func == Func::Encrypt {
                let got = s.encrypt(&Mechanism::RsaX509, h, &m).map_err(err("raw encrypt"))?;
                return ensure(got == c, "the module's raw RSA differs from m^e mod n");
            }
            // As a signature: `m` signs the data `c`, because m^e = c.
            s.verify(&Mechanism::RsaX509, h, &c, &m).map_err(err("verify a raw signature s of s^e"))?;
            let mut bad = m.clone();
            bad[k - 1] ^= 1;
            expect_kind(s.verify(&Mechanism::RsaX509, h, &c, &bad), &[ErrorKind::SignatureInvalid], "a flipped bit")
        }
        (K::RsaX509, Func::Decrypt | Func::Sign) => {
            let usage = if cell.func == Func::Decrypt { Usage::DECRYPT } else { Usage::SIGN };
            let h = import_private(s, bits, usage)?;
            let m: Vec<u8> = (0..k).map(|i| if i == 0 { 0 } else { (i * 13 + 7) as u8 }).collect();
            let out = if cell.func == Func::Decrypt {
                s.decrypt(&Mechanism::RsaX509, h, &m).map_err(err("raw decrypt"))?
            } else {
                s.sign(&Mechanism::RsaX509, h, &m).map_err(err("raw sign"))?
            };
            ensure(out.len() == k, "a raw RSA output is as long as the modulus")?;
            let out_n =
                rsa::BoxedUint::from_be_slice(&out, key.n().as_ref().bits_precision()).map_err(err("output"))?;
            let back = rsa::hazmat::rsa_encrypt(&public_key, &out_n).map_err(err("RustCrypto raw RSA"))?;
            ensure(back.to_be_bytes_trimmed_vartime().as_ref() == &m[1..], "the output raised to e is not the input")
        }
        (K::RsaPkcsPss, Func::Sign) => {
            use rsa::signature::Verifier as _;
            let h = import_private(s, bits, Usage::SIGN)?;
            let sig = s
                .sign(&Mechanism::RsaPssRaw { hash: HashAlg::Sha256 }, h, &digest(HashAlg::Sha256, message))
                .map_err(err("PSS over a digest"))?;
            let sig = rsa::pss::Signature::try_from(sig.as_slice()).map_err(err("the signature"))?;
            rsa::pss::VerifyingKey::<sha2::Sha256>::new(public_key)
                .verify(message, &sig)
                .map_err(|_| "RustCrypto refuses the PSS signature".to_string())
        }
        (K::RsaPkcsPss, _) => {
            use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
            let h = import_public(s, &key, Usage::VERIFY)?;
            let sig = rsa::pss::SigningKey::<sha2::Sha256>::new(key.clone()).sign_with_rng(&mut rng, message).to_vec();
            let mech = Mechanism::RsaPssRaw { hash: HashAlg::Sha256 };
            let d = digest(HashAlg::Sha256, message);
            s.verify(&mech, h, &d, &sig).map_err(err("verify RustCrypto's PSS"))?;
            expect_kind(
                s.verify(&mech, h, &digest(HashAlg::Sha256, b"x"), &sig),
                &[ErrorKind::SignatureInvalid],
                "another digest",
            )
        }
        (K::RsaPkcs | K::RsaPkcsOaep, Func::Wrap) => {
            let oaep = cell.kind == K::RsaPkcsOaep;
            let h = import_public(s, &key, Usage::WRAP)?;
            let target_value = key_bytes(16, 0x6a);
            let target = import_aes(s, &target_value, &policy(Usage::ENCRYPT).extractable(true))?;
            let mech = if oaep { Mechanism::RsaOaep { hash: HashAlg::Sha1 } } else { Mechanism::RsaPkcs1v15Raw };
            let wrapped = s.wrap_key(&mech, h, target).map_err(err("wrap an AES-128 key"))?;
            let got = if oaep {
                key.decrypt(rsa::Oaep::<sha1::Sha1>::new(), &wrapped)
            } else {
                key.decrypt(rsa::Pkcs1v15Encrypt, &wrapped)
            }
            .map_err(|_| "RustCrypto cannot decrypt the wrapped key".to_string())?;
            ensure(got.as_slice() == target_value.as_slice(), "the wrapped key is not the key")
        }
        (K::RsaPkcs | K::RsaPkcsOaep, _) => {
            let oaep = cell.kind == K::RsaPkcsOaep;
            let h = import_private(s, bits, Usage::UNWRAP)?;
            let target_value = key_bytes(16, 0x6b);
            let wrapped = if oaep {
                public_key.encrypt(&mut rng, rsa::Oaep::<sha1::Sha1>::new(), &target_value)
            } else {
                public_key.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, &target_value)
            }
            .map_err(err("RustCrypto wraps"))?;
            let mech = if oaep { Mechanism::RsaOaep { hash: HashAlg::Sha1 } } else { Mechanism::RsaPkcs1v15Raw };
            let got = s.unwrap_key(&mech, h, &wrapped, KeyType::Aes, &readable()).map_err(err("unwrap"))?;
            ensure(value_of(s, got)?.as_slice() == target_value.as_slice(), "the unwrapped key is not the key wrapped")
        }
        (K::RsaAesKeyWrap, Func::Wrap) => {
            use aes_kw::KeyInit as _;
            let h = import_public(s, &key, Usage::WRAP)?;
            let target_value = key_bytes(32, 0x6c);
            let target = import_aes(s, &target_value, &policy(Usage::ENCRYPT).extractable(true))?;
            let mech = Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 };
            let blob = s.wrap_key(&mech, h, target).map_err(err("wrap"))?;
            ensure(blob.len() > k, "the blob is shorter than the modulus")?;
            let (head, tail) = blob.split_at(k);
            let eph = key
                .decrypt(rsa::Oaep::<sha1::Sha1>::new(), head)
                .map_err(|_| "the first part is not OAEP(SHA-1) to the key".to_string())?;
            let mut buf = vec![0u8; tail.len()];
            let kwp =
                aes_kw::KwpAes256::new_from_slice(&eph).map_err(|_| "the ephemeral key is not AES-256".to_string())?;
            let got = kwp
                .unwrap_key(tail, &mut buf)
                .map_err(|_| "the second part is not RFC 5649 under the ephemeral key".to_string())?;
            ensure(got == target_value.as_slice(), "the blob holds another key")
        }
        (K::RsaAesKeyWrap, _) => {
            use aes_kw::KeyInit as _;
            let h = import_private(s, bits, Usage::UNWRAP)?;
            let target_value = key_bytes(32, 0x6d);
            let eph = key_bytes(32, 0x33);
            let mut blob =
                public_key.encrypt(&mut rng, rsa::Oaep::<sha1::Sha1>::new(), &eph).map_err(err("RustCrypto OAEP"))?;
            let mut buf = vec![0u8; 48];
            let kwp = aes_kw::KwpAes256::new_from_slice(&eph).map_err(|_| "AES-256".to_string())?;
            blob.extend_from_slice(kwp.wrap_key(&target_value, &mut buf).map_err(|_| "KWP".to_string())?);
            let mech = Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 };
            let got = s.unwrap_key(&mech, h, &blob, KeyType::Aes, &readable()).map_err(err("unwrap"))?;
            ensure(value_of(s, got)?.as_slice() == target_value.as_slice(), "the unwrapped key is not the key wrapped")
        }
        (other, func) => Err(format!("no {} cell for {}", func.name(), ckm(other))),
    }
}

// ---- Elliptic curves ----

/// A RustCrypto key on `curve` with a fixed scalar: its uncompressed point, and a signer of
/// prehashes (`r || s`).
fn soft_ec(curve: EcCurve, prehash: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    use signature::hazmat::PrehashSigner as _;
    // As rc_verify: a digest shorter than the field is the same integer with zeros in front.
    let mut padded = vec![0u8; (curve.bits() as usize / 8).saturating_sub(prehash.len())];
    padded.extend_from_slice(prehash);
    macro_rules! sign {
        ($m:ident, $len:expr) => {{
            let sk = $m::ecdsa::SigningKey::from_slice(&[0x01; $len]).map_err(err("RustCrypto's key"))?;
            let sig: $m::ecdsa::Signature = sk.sign_prehash(&padded).map_err(err("RustCrypto signs"))?;
            (sk.verifying_key().to_sec1_point(false).as_bytes().to_vec(), sig.to_bytes().to_vec())
        }};
    }
    Ok(match curve {
        EcCurve::P256 => sign!(p256, 32),
        EcCurve::P384 => sign!(p384, 48),
        EcCurve::P521 => sign!(p521, 66),
        EcCurve::Ed25519 => return Err("not an ECDSA curve".into()),
    })
}

fn ecdsa(s: &dyn Session, kind: MechanismKind, func: Func, curve: EcCurve) -> R {
    use MechanismKind as K;
    let hash = match kind {
        K::EcdsaSha1 => Some(HashAlg::Sha1),
        K::EcdsaSha224 => Some(HashAlg::Sha224),
        K::EcdsaSha256 => Some(HashAlg::Sha256),
        K::EcdsaSha384 => Some(HashAlg::Sha384),
        K::EcdsaSha512 => Some(HashAlg::Sha512),
        _ => None,
    };
    let message = b"the sweep's ECDSA message";
    let prehash = digest(hash.unwrap_or(curve_hash(curve)), message);
    // CKM_ECDSA takes the digest; the hashing mechanisms take the message.
    let input: &[u8] = if hash.is_some() { message } else { &prehash };
    let mech = Mechanism::Ecdsa { hash };
    if func == Func::Sign {
        let (public, private) = s
            .generate_key_pair(&KeyPairSpec::Ec { curve }, &policy(Usage::SIGN | Usage::VERIFY))
            .map_err(err(&format!("generate a {} pair", curve.name())))?;
        let point = point_of(s, public, curve)?;
        let sig = s.sign(&mech, private, input).map_err(err("sign"))?;
        return rc_verify(curve, &point, &prehash, &sig);
    }
    let (point, sig) = soft_ec(curve, &prehash)?;
    let public = s
        .import_key(&KeyMaterial::EcPublicSpki(curve.spki(&point)), &policy(Usage::VERIFY))
        .map_err(err("import RustCrypto's public key"))?;
    s.verify(&mech, public, input, &sig).map_err(err("verify RustCrypto's signature"))?;
    let mut bad = sig;
    bad[3] ^= 1;
    expect_kind(s.verify(&mech, public, input, &bad), &[ErrorKind::SignatureInvalid], "a flipped bit")
}

/// Ed25519 against RFC 8032 §7.1's test 2.
fn eddsa(s: &dyn Session, func: Func) -> R {
    use super::unhex;
    let seed = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    let public = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    let message = unhex("72");
    let want = unhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    );
    if func == Func::Sign {
        let mut pkcs8 = Zeroizing::new(unhex("302e020100300506032b657004220420"));
        pkcs8.extend(unhex(seed));
        let key =
            s.import_key(&KeyMaterial::EcPrivatePkcs8(pkcs8), &policy(Usage::SIGN)).map_err(err("import the key"))?;
        let sig = s.sign(&Mechanism::Eddsa, key, &message).map_err(err("sign"))?;
        return ensure(sig == want, "Ed25519 differs from RFC 8032's known answer");
    }
    let pk = s
        .import_key(&KeyMaterial::EcPublicSpki(EcCurve::Ed25519.spki(&unhex(public))), &policy(Usage::VERIFY))
        .map_err(err("import the public key"))?;
    s.verify(&Mechanism::Eddsa, pk, &message, &want).map_err(err("verify the known answer"))?;
    let mut bad = want;
    bad[40] ^= 1;
    expect_kind(s.verify(&Mechanism::Eddsa, pk, &message, &bad), &[ErrorKind::SignatureInvalid], "a flipped bit")
}

/// ECDH without a KDF on `curve`: the module's secret is RustCrypto's.
fn ecdh(s: &dyn Session, curve: EcCurve) -> R {
    let (public, private) = s
        .generate_key_pair(&KeyPairSpec::Ec { curve }, &policy(Usage::DERIVE | Usage::VERIFY))
        .map_err(err(&format!("generate a {} pair with CKA_DERIVE", curve.name())))?;
    let point = point_of(s, public, curve)?;
    macro_rules! agree {
        ($m:ident, $len:expr) => {{
            // 0x0102…02: below every order (P-521's starts 0x01ff).
            let mut scalar = vec![0x02; $len];
            scalar[0] = 0x01;
            let theirs = $m::SecretKey::from_slice(&scalar).map_err(err("RustCrypto's key"))?;
            let their_point =
                $m::ecdsa::VerifyingKey::from(theirs.public_key()).to_sec1_point(false).as_bytes().to_vec();
            let module_public = $m::PublicKey::from_sec1_bytes(&point).map_err(err("the module's point"))?;
            let z = $m::ecdh::diffie_hellman(theirs.to_nonzero_scalar(), module_public.as_affine());
            (z.raw_secret_bytes().to_vec(), their_point)
        }};
    }
    let (z, their_point) = match curve {
        EcCurve::P256 => agree!(p256, 32),
        EcCurve::P384 => agree!(p384, 48),
        _ => agree!(p521, 66),
    };
    let mech = Mechanism::Ecdh1Derive { kdf: None, shared_data: Vec::new(), public: their_point };
    let k = s
        .derive_key(&mech, private, &KeySpec::GenericSecret { bytes: z.len() as u32 }, &readable())
        .map_err(err("ECDH"))?;
    ensure(value_of(s, k)?.as_slice() == z.as_slice(), "the module's ECDH secret differs from RustCrypto's")
}

#[cfg(test)]
mod tests {
    use super::super::{SP800_38A_IV, SP800_38A_KEY, SP800_38A_PT, unhex};
    use super::*;

    /// The software reference every AES cell is judged against, on the published answers
    /// (NIST SP 800-38A F.1.1, F.2.1, F.5.1; RFC 4493 §4 examples 1 and 2).
    #[test]
    fn the_software_reference_gives_the_published_answers() {
        let soft = Soft::aes(&unhex(SP800_38A_KEY)).expect("AES-128");
        let pt = unhex(SP800_38A_PT);
        let ecb = unhex(
            "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4",
        );
        let cbc = unhex(
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
        );
        let ctr = unhex(
            "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee",
        );
        assert_eq!(soft.ecb(&pt, true), ecb);
        assert_eq!(soft.ecb(&ecb, false), pt);
        assert_eq!(soft.cbc(&SP800_38A_IV, &pt, true), cbc);
        assert_eq!(soft.cbc(&SP800_38A_IV, &cbc, false), pt);
        let counter: [u8; 16] = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").try_into().expect("16 bytes");
        assert_eq!(soft.ctr(&counter, &pt), ctr);
        assert_eq!(soft.cmac(b""), unhex("bb1d6929e95937287fa37d129b756746"));
        assert_eq!(soft.cmac(&pt[..16]), unhex("070a16b46b4d4144f79bdd9dd04a287c"));
    }

    fn row(kind: MechanismKind, min_bits: u32, max_bits: u32, flags: MechanismFlags) -> MechanismInfo {
        MechanismInfo { kind, min_bits, max_bits, flags, composed: false }
    }

    #[test]
    fn ranges_are_read_in_bytes_or_bits_by_family() {
        let sv = MechanismFlags::SIGN | MechanismFlags::VERIFY;
        // SoftHSM2 counts AES in bytes, the emulator in bits: 192 bits is in both.
        assert!(size_listed(&row(MechanismKind::AesCbc, 16, 32, MechanismFlags::ENCRYPT), 192));
        assert!(size_listed(&row(MechanismKind::AesCbc, 128, 256, MechanismFlags::ENCRYPT), 192));
        assert!(!size_listed(&row(MechanismKind::AesCbc, 16, 16, MechanismFlags::ENCRYPT), 256));
        // RSA is always bits: a 512-bit key range does not hold a 4096-bit key read as bytes.
        assert!(!size_listed(&row(MechanismKind::RsaPkcs, 1024, 2048, sv), 4096));
        assert!(!size_listed(&row(MechanismKind::RsaPkcs, 256, 512, sv), 4096));
        assert!(size_listed(&row(MechanismKind::RsaPkcs, 512, 16384, sv), 4096));
        // Ed25519 as 255 or 256 bits; no range at all is taken at its word.
        assert!(size_listed(&row(MechanismKind::Eddsa, 256, 456, sv), 255));
        assert!(size_listed(&row(MechanismKind::Ecdsa, 0, 0, sv), 521));
    }

    #[test]
    fn a_listed_pair_without_a_case_is_named() {
        let caps = Capabilities {
            mechanisms: vec![
                row(MechanismKind::AesCtr, 128, 256, MechanismFlags::ENCRYPT | MechanismFlags::WRAP),
                row(MechanismKind::Sha256RsaPkcs, 1024, 4096, MechanismFlags::SIGN),
            ],
        };
        assert_eq!(uncovered(&caps), vec!["CKM_AES_CTR with CKF_WRAP".to_string()]);
    }

    #[test]
    fn cells_are_distinct() {
        let ids: Vec<String> = cases().into_iter().map(|c| c.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert!(ids.len() > 150, "{} sweep cases", ids.len());
    }
}

//! Keys loaded in the module and the cryptography they do.
//!
//! Private-key operations (sign, decrypt, unwrap) run on AWS-LC, parsed once when the key is
//! loaded; this is the hot path. Public-key operations that need randomness (OAEP encryption,
//! the ephemeral key of RSA-AES wrap) take the module's injected RNG and run on RustCrypto's
//! `rsa`, so a seeded module gives byte-identical output. Sizes AWS-LC does not take (RSA-1024)
//! and hashes it does not sign with (SHA-1) fall back to `rsa`.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::key_wrap::{AES_128, AES_256, KeyEncryptionKey, KeyWrap, KeyWrapPadded};
use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{self as lcsig, RsaKeyPair};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use signature::{RandomizedSigner, SignatureEncoding, Signer, Verifier};
use zeroize::Zeroizing;

use hsmkit_backend::{Error, ErrorKind, HashAlg, Mechanism, Op, Result};

use crate::rng::HsmRng;

/// An RSA private key, parsed for both engines.
pub struct RsaPrivate {
    /// AWS-LC's forms of the key, each parsed (and checked, which costs about a private-key
    /// operation) when first used: an unwrapped or imported key pays only for what it does.
    lc_sign: std::sync::OnceLock<Option<RsaKeyPair>>,
    lc_oaep: std::sync::OnceLock<Option<OaepPrivateDecryptingKey>>,
    rc: rsa::PrivateKey,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl RsaPrivate {
    /// Parses PKCS#8 `PrivateKeyInfo` DER.
    ///
    /// Up to seven zero bytes after the DER element are tolerated and dropped: SoftHSM2 pads the
    /// PKCS#8 it wraps with `CKM_AES_KEY_WRAP_PAD` to a multiple of eight bytes, and such keys must
    /// import. Anything else after the element is refused.
    pub fn from_pkcs8(der: &[u8], op: Op) -> Result<Self> {
        let der = strip_block_padding(der);
        let rc = rsa::PrivateKey::from_pkcs8_der(der).map_err(|_| {
            Error::new(ErrorKind::DataInvalid, op).detail("the key material is not an RSA PKCS#8 private key")
        })?;
        Ok(RsaPrivate {
            lc_sign: std::sync::OnceLock::new(),
            lc_oaep: std::sync::OnceLock::new(),
            rc,
            pkcs8: Zeroizing::new(der.to_vec()),
        })
    }

    fn lc_sign(&self) -> Option<&RsaKeyPair> {
        self.lc_sign.get_or_init(|| RsaKeyPair::from_pkcs8(&self.pkcs8).ok()).as_ref()
    }

    fn lc_oaep(&self) -> Option<&OaepPrivateDecryptingKey> {
        self.lc_oaep
            .get_or_init(|| {
                PrivateDecryptingKey::from_pkcs8(&self.pkcs8).ok().and_then(|k| OaepPrivateDecryptingKey::new(k).ok())
            })
            .as_ref()
    }

    /// The key as PKCS#8 DER.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    pub fn public(&self) -> rsa::PublicKey {
        self.rc.to_public_key()
    }

    /// Signs `data` with `mech` on AWS-LC when it has the mechanism (PKCS#1 v1.5 and PSS with
    /// SHA-256/384/512): no module randomness is needed, so the caller holds no lock across the
    /// private-key operation. `None` for the other mechanisms ([`Self::sign`]).
    pub fn sign_fast(&self, mech: &Mechanism, data: &[u8]) -> Option<Result<Vec<u8>>> {
        let enc = Self::lc_encoding(mech)?;
        let kp = self.lc_sign()?;
        let mut sig = vec![0u8; kp.public_modulus_len()];
        Some(
            kp.sign(enc, &aws_lc_rs::rand::SystemRandom::new(), data, &mut sig).map(|()| sig).map_err(|_| {
                Error::new(ErrorKind::FunctionFailed, Op::Sign).detail("the signature could not be computed")
            }),
        )
    }

    fn lc_encoding(mech: &Mechanism) -> Option<&'static dyn lcsig::RsaEncoding> {
        match mech {
            Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 } => Some(&lcsig::RSA_PKCS1_SHA256),
            Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha384 } => Some(&lcsig::RSA_PKCS1_SHA384),
            Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha512 } => Some(&lcsig::RSA_PKCS1_SHA512),
            Mechanism::RsaPss { hash: HashAlg::Sha256 } => Some(&lcsig::RSA_PSS_SHA256),
            Mechanism::RsaPss { hash: HashAlg::Sha384 } => Some(&lcsig::RSA_PSS_SHA384),
            Mechanism::RsaPss { hash: HashAlg::Sha512 } => Some(&lcsig::RSA_PSS_SHA512),
            _ => None,
        }
    }

    /// Signs `data` with `mech`.
    pub fn sign(&self, mech: &Mechanism, data: &[u8], rng: &mut HsmRng) -> Result<Vec<u8>> {
        if let Some(done) = self.sign_fast(mech, data) {
            return done;
        }
        let fail = || Error::new(ErrorKind::FunctionFailed, Op::Sign).detail("the signature could not be computed");
        macro_rules! pkcs1 {
            ($d:ty) => {
                rsa::pkcs1v15::SigningKey::<$d>::new(self.rc.clone()).try_sign(data).map(|s| s.to_vec())
            };
        }
        macro_rules! pss {
            ($d:ty) => {
                rsa::pss::SigningKey::<$d>::new(self.rc.clone())
                    .try_sign_with_rng(rng.as_rng(), data)
                    .map(|s| s.to_vec())
            };
        }
        match mech {
            Mechanism::RsaPkcs1v15Raw => {
                // Blinded private operation; the input must fit the padding (k - 11 bytes).
                if data.len() + 11 > self.rc.size() {
                    return Err(Error::new(ErrorKind::DataLenRange, Op::Sign).detail(format!(
                        "CKM_RSA_PKCS signs at most {} bytes with this key, not {}",
                        self.rc.size().saturating_sub(11),
                        data.len()
                    )));
                }
                return self
                    .rc
                    .sign_with_rng(rng.as_rng(), rsa::pkcs1v15::Pkcs1v15Sign::new_unprefixed(), data)
                    .map_err(|_| fail());
            }
            Mechanism::RsaPkcs1v15 { hash } => match hash {
                HashAlg::Sha1 => pkcs1!(sha1::Sha1),
                HashAlg::Sha224 => pkcs1!(sha2::Sha224),
                HashAlg::Sha256 => pkcs1!(sha2::Sha256),
                HashAlg::Sha384 => pkcs1!(sha2::Sha384),
                HashAlg::Sha512 => pkcs1!(sha2::Sha512),
            },
            Mechanism::RsaPss { hash } => match hash {
                HashAlg::Sha1 => pss!(sha1::Sha1),
                HashAlg::Sha224 => pss!(sha2::Sha224),
                HashAlg::Sha256 => pss!(sha2::Sha256),
                HashAlg::Sha384 => pss!(sha2::Sha384),
                HashAlg::Sha512 => pss!(sha2::Sha512),
            },
            Mechanism::RsaPssRaw { hash } => {
                check_digest(*hash, data, Op::Sign)?;
                macro_rules! raw_pss {
                    ($d:ty) => {
                        self.rc.sign_with_rng(rng.as_rng(), rsa::pss::Pss::<$d>::new(), data)
                    };
                }
                return match hash {
                    HashAlg::Sha1 => raw_pss!(sha1::Sha1),
                    HashAlg::Sha224 => raw_pss!(sha2::Sha224),
                    HashAlg::Sha256 => raw_pss!(sha2::Sha256),
                    HashAlg::Sha384 => raw_pss!(sha2::Sha384),
                    HashAlg::Sha512 => raw_pss!(sha2::Sha512),
                }
                .map_err(|_| fail());
            }
            Mechanism::RsaX509 => return self.raw_private(data, rng, Op::Sign),
            other => return Err(mechanism_invalid(other, Op::Sign, "an RSA private key")),
        }
        .map_err(|_| fail())
    }

    /// Raw RSA with the private key (`CKM_RSA_X_509` signing and decryption): blinded, with the
    /// CRT result checked; the output is as long as the modulus.
    fn raw_private(&self, data: &[u8], rng: &mut HsmRng, op: Op) -> Result<Vec<u8>> {
        use rsa::traits::PublicKeyParts;
        let m = raw_input(self.rc.n().as_ref(), self.rc.size(), data, op)?;
        let out = rsa::hazmat::rsa_decrypt_and_check(&self.rc, Some(rng.as_rng()), &m).map_err(|_| {
            if op == Op::Decrypt { opaque_failure(op) } else { Error::new(ErrorKind::FunctionFailed, op) }
        })?;
        Ok(left_pad(&out.to_be_bytes_trimmed_vartime(), self.rc.size()))
    }

    /// RSAES-PKCS1-v1_5 decryption (`CKM_RSA_PKCS`). Every failure is the same opaque error, and
    /// the padding check runs in constant time (RustCrypto's), so neither the return code nor its
    /// timing tells a padding error from another.
    pub fn decrypt_pkcs1(&self, ct: &[u8], op: Op) -> Result<Zeroizing<Vec<u8>>> {
        self.rc.decrypt(rsa::Pkcs1v15Encrypt, ct).map(Zeroizing::new).map_err(|_| opaque_failure(op))
    }

    /// Raw RSA decryption (`CKM_RSA_X_509`).
    pub fn decrypt_raw(&self, ct: &[u8], rng: &mut HsmRng, op: Op) -> Result<Zeroizing<Vec<u8>>> {
        self.raw_private(ct, rng, op).map(Zeroizing::new)
    }

    /// Whether `ct` decrypts (raw, blinded) to an encoded message whose first octet is zero, as
    /// RSA-OAEP's decoding requires. The octet is read without a branch on secret data and the
    /// decrypted block is wiped; a ciphertext of the wrong length or above the modulus is left to
    /// the decoding to refuse. Without a random source for the blinding the answer is no, and the
    /// decryption fails (opaquely) rather than run unblinded.
    fn oaep_first_octet_is_zero(&self, ct: &[u8]) -> bool {
        use rsa::traits::PublicKeyParts as _;
        let k = self.rc.size();
        let n_bits = self.rc.n().as_ref().bits_precision();
        let Ok(c) = rsa::BoxedUint::from_be_slice(ct, n_bits) else { return true };
        let Ok(mut rng) = crate::rng::HsmRng::from_os() else { return false };
        match rsa::hazmat::rsa_decrypt_and_check(&self.rc, Some(rng.as_rng()), &c) {
            Ok(m) => {
                let em = Zeroizing::new(m.to_be_bytes());
                // The block is as wide as the modulus' precision: every octet before the last k,
                // and the first of those k (the encoded message's first octet), must be zero.
                let lead = em.len().saturating_sub(k);
                em[..=lead.min(em.len().saturating_sub(1))].iter().fold(0u8, |acc, b| acc | b) == 0
            }
            Err(_) => true,
        }
    }

    /// RSA-OAEP decryption. Failures are opaque.
    pub fn decrypt_oaep(&self, hash: HashAlg, ct: &[u8], op: Op) -> Result<Zeroizing<Vec<u8>>> {
        self.decrypt_oaep_label(hash, &[], ct, op)
    }

    /// RSA-OAEP decryption with a label (empty: none). Failures are opaque.
    pub fn decrypt_oaep_label(&self, hash: HashAlg, label: &[u8], ct: &[u8], op: Op) -> Result<Zeroizing<Vec<u8>>> {
        let opaque = || opaque_failure(op);
        // AWS-LC has no OAEP with SHA-224: RustCrypto decrypts it.
        let lc_alg = match hash {
            HashAlg::Sha1 => Some(&OAEP_SHA1_MGF1SHA1),
            HashAlg::Sha224 => None,
            HashAlg::Sha256 => Some(&OAEP_SHA256_MGF1SHA256),
            HashAlg::Sha384 => Some(&aws_lc_rs::rsa::OAEP_SHA384_MGF1SHA384),
            HashAlg::Sha512 => Some(&aws_lc_rs::rsa::OAEP_SHA512_MGF1SHA512),
        };
        if let (Some(lc_alg), Some(k)) = (lc_alg, self.lc_oaep()) {
            let mut out = Zeroizing::new(vec![0u8; k.min_output_size()]);
            let label = (!label.is_empty()).then_some(label);
            let len = k.decrypt(lc_alg, ct, &mut out, label).map_err(|_| opaque())?.len();
            out.truncate(len);
            return Ok(out);
        }
        // RFC 8017 §7.1.2 step 3g: the encoded message's first octet must be zero. RustCrypto's
        // OAEP decoding (rsa 0.10.0) does not check it (Wycheproof's "First byte is 1" tests
        // found it), so it is checked with a blinded raw decryption. Both run whatever the first
        // says, and their verdicts are joined at the end: a first octet that is not zero costs
        // the same time as any other decoding failure (Manger's attack reads that difference).
        let first_octet_zero = self.oaep_first_octet_is_zero(ct);
        let l = || label.to_vec();
        let pt = match hash {
            HashAlg::Sha1 => self.rc.decrypt(rsa::Oaep::<sha1::Sha1>::new_with_label(l()), ct),
            HashAlg::Sha224 => self.rc.decrypt(rsa::Oaep::<sha2::Sha224>::new_with_label(l()), ct),
            HashAlg::Sha256 => self.rc.decrypt(rsa::Oaep::<sha2::Sha256>::new_with_label(l()), ct),
            HashAlg::Sha384 => self.rc.decrypt(rsa::Oaep::<sha2::Sha384>::new_with_label(l()), ct),
            HashAlg::Sha512 => self.rc.decrypt(rsa::Oaep::<sha2::Sha512>::new_with_label(l()), ct),
        };
        // A plaintext refused for its first octet is wiped as it drops.
        match pt.map(Zeroizing::new) {
            Ok(pt) if first_octet_zero => Ok(pt),
            _ => Err(opaque()),
        }
    }
}

/// An AES key of any size, as a block cipher (RustCrypto `aes`; checked against NIST SP 800-38A's
/// known answers by the conformance suite).
enum AesBlock {
    A128(aes::Aes128),
    A192(aes::Aes192),
    A256(aes::Aes256),
}

impl AesBlock {
    fn new(key: &[u8], op: Op) -> Result<AesBlock> {
        use aes::cipher::KeyInit as _;
        let bad = || Error::new(ErrorKind::KeySizeRange, op).detail("AES keys are 16, 24 or 32 bytes");
        Ok(match key.len() {
            16 => AesBlock::A128(aes::Aes128::new_from_slice(key).map_err(|_| bad())?),
            24 => AesBlock::A192(aes::Aes192::new_from_slice(key).map_err(|_| bad())?),
            32 => AesBlock::A256(aes::Aes256::new_from_slice(key).map_err(|_| bad())?),
            _ => return Err(bad()),
        })
    }

    fn encrypt(&self, block: &mut [u8; 16]) {
        use aes::cipher::BlockCipherEncrypt as _;
        let mut b = aes::cipher::Array::from(*block);
        match self {
            AesBlock::A128(c) => c.encrypt_block(&mut b),
            AesBlock::A192(c) => c.encrypt_block(&mut b),
            AesBlock::A256(c) => c.encrypt_block(&mut b),
        }
        block.copy_from_slice(&b);
        zeroize::Zeroize::zeroize(b.as_mut_slice());
    }

    fn decrypt(&self, block: &mut [u8; 16]) {
        use aes::cipher::BlockCipherDecrypt as _;
        let mut b = aes::cipher::Array::from(*block);
        match self {
            AesBlock::A128(c) => c.decrypt_block(&mut b),
            AesBlock::A192(c) => c.decrypt_block(&mut b),
            AesBlock::A256(c) => c.decrypt_block(&mut b),
        }
        block.copy_from_slice(&b);
        zeroize::Zeroize::zeroize(b.as_mut_slice());
    }
}

/// A block cipher as the ECB and CBC modes use it.
trait Blocks {
    /// The block size in bytes.
    fn size(&self) -> usize;
    /// Encrypts one block in place.
    fn encrypt_in_place(&self, block: &mut [u8]);
    /// Decrypts one block in place.
    fn decrypt_in_place(&self, block: &mut [u8]);
}

impl Blocks for AesBlock {
    fn size(&self) -> usize {
        16
    }
    fn encrypt_in_place(&self, block: &mut [u8]) {
        let mut b = [0u8; 16];
        b.copy_from_slice(block);
        self.encrypt(&mut b);
        block.copy_from_slice(&b);
        zeroize::Zeroize::zeroize(&mut b);
    }
    fn decrypt_in_place(&self, block: &mut [u8]) {
        let mut b = [0u8; 16];
        b.copy_from_slice(block);
        self.decrypt(&mut b);
        block.copy_from_slice(&b);
        zeroize::Zeroize::zeroize(&mut b);
    }
}

/// A triple-DES key (RustCrypto `des`; checked against SP 800-67's example by the conformance
/// suite). Legacy.
struct Des3Block(des::TdesEde3);

impl Des3Block {
    fn new(key: &[u8], op: Op) -> Result<Des3Block> {
        use des::cipher::KeyInit as _;
        check_des3(key, op)?;
        des::TdesEde3::new_from_slice(key)
            .map(Des3Block)
            .map_err(|_| Error::new(ErrorKind::KeySizeRange, op).detail("DES3 keys are 24 bytes"))
    }
}

/// Refuses a triple-DES key that is not 24 bytes or whose first two or last two DES keys are equal
/// (it would be single DES, SP 800-67 §3.3).
pub fn check_des3(key: &[u8], op: Op) -> Result<()> {
    if key.len() != 24 {
        return Err(
            Error::new(ErrorKind::KeySizeRange, op).detail(format!("DES3 keys are 24 bytes, not {}", key.len()))
        );
    }
    let strip = |k: &[u8]| k.iter().map(|b| b & 0xfe).collect::<Vec<u8>>();
    let (k1, k2, k3) = (strip(&key[..8]), strip(&key[8..16]), strip(&key[16..]));
    if k1 == k2 || k2 == k3 {
        return Err(Error::new(ErrorKind::AttributeValueInvalid, op)
            .detail("the DES3 key's first and second (or second and third) DES keys are equal: that is single DES"));
    }
    Ok(())
}

/// Sets each byte of a DES key to odd parity (the low bit of each byte is the parity bit).
pub fn des_odd_parity(key: &mut [u8]) {
    for b in key.iter_mut() {
        let ones = (*b & 0xfe).count_ones();
        *b = (*b & 0xfe) | u8::from(ones % 2 == 0);
    }
}

impl Blocks for Des3Block {
    fn size(&self) -> usize {
        8
    }
    fn encrypt_in_place(&self, block: &mut [u8]) {
        use des::cipher::BlockCipherEncrypt as _;
        let mut b = des::cipher::Array::<u8, des::cipher::consts::U8>::default();
        b.copy_from_slice(block);
        self.0.encrypt_block(&mut b);
        block.copy_from_slice(&b);
        zeroize::Zeroize::zeroize(b.as_mut_slice());
    }
    fn decrypt_in_place(&self, block: &mut [u8]) {
        use des::cipher::BlockCipherDecrypt as _;
        let mut b = des::cipher::Array::<u8, des::cipher::consts::U8>::default();
        b.copy_from_slice(block);
        self.0.decrypt_block(&mut b);
        block.copy_from_slice(&b);
        zeroize::Zeroize::zeroize(b.as_mut_slice());
    }
}

/// DES3 encryption or decryption in ECB, CBC or CBC-PAD mode (legacy), as [`aes_crypt`] does AES.
pub fn des3_crypt(key: &[u8], mech: &Mechanism, input: &[u8], encrypt: bool) -> Result<Zeroizing<Vec<u8>>> {
    let op = if encrypt { Op::Encrypt } else { Op::Decrypt };
    let cipher = Des3Block::new(key, op)?;
    let (chain, pad) = match mech {
        Mechanism::Des3Ecb => (None, false),
        Mechanism::Des3Cbc { iv } => (Some(iv.to_vec()), false),
        Mechanism::Des3CbcPad { iv } => (Some(iv.to_vec()), true),
        other => return Err(mechanism_invalid(other, op, "a DES3 key")),
    };
    block_modes(&cipher, chain, pad, mech, input, encrypt)
}

/// A block-cipher mode with a secret key: the AES modes, or the DES3 modes (legacy).
pub fn secret_crypt(key: &[u8], mech: &Mechanism, input: &[u8], encrypt: bool) -> Result<Zeroizing<Vec<u8>>> {
    match mech {
        Mechanism::Des3Ecb | Mechanism::Des3Cbc { .. } | Mechanism::Des3CbcPad { .. } => {
            des3_crypt(key, mech, input, encrypt)
        }
        _ => aes_crypt(key, mech, input, encrypt),
    }
}

/// AES encryption or decryption in ECB, CBC or CBC-PAD (PKCS #7) mode. Without padding the input
/// must be whole blocks (`CKR_DATA_LEN_RANGE`, or `CKR_ENCRYPTED_DATA_LEN_RANGE` to decrypt); a bad
/// pad is `CKR_ENCRYPTED_DATA_INVALID`.
pub fn aes_crypt(key: &[u8], mech: &Mechanism, input: &[u8], encrypt: bool) -> Result<Zeroizing<Vec<u8>>> {
    let op = if encrypt { Op::Encrypt } else { Op::Decrypt };
    match mech {
        Mechanism::AesGcm { iv, aad, tag_bits } => return aes_gcm(key, iv, aad, *tag_bits, input, encrypt),
        Mechanism::AesCtr { counter, counter_bits } => return aes_ctr(key, counter, *counter_bits, input, op),
        _ => {}
    }
    let cipher = AesBlock::new(key, op)?;
    let (chain, pad) = match mech {
        Mechanism::AesEcb => (None, false),
        Mechanism::AesCbc { iv } => (Some(iv.to_vec()), false),
        Mechanism::AesCbcPad { iv } => (Some(iv.to_vec()), true),
        other => return Err(mechanism_invalid(other, op, "an AES key here")),
    };
    block_modes(&cipher, chain, pad, mech, input, encrypt)
}

/// ECB (no `chain`) or CBC (`chain` the IV), with PKCS #7 padding when `pad`.
fn block_modes(
    cipher: &dyn Blocks,
    mut chain: Option<Vec<u8>>,
    pad: bool,
    mech: &Mechanism,
    input: &[u8],
    encrypt: bool,
) -> Result<Zeroizing<Vec<u8>>> {
    let op = if encrypt { Op::Encrypt } else { Op::Decrypt };
    let size = cipher.size();
    let mut data = Zeroizing::new(input.to_vec());
    if encrypt && pad {
        let n = size - data.len() % size;
        data.extend(std::iter::repeat_n(n as u8, n));
    }
    if !data.len().is_multiple_of(size) || (!encrypt && pad && data.is_empty()) {
        let kind = if encrypt { ErrorKind::DataLenRange } else { ErrorKind::EncryptedDataLenRange };
        return Err(Error::new(kind, op).detail(format!(
            "{} takes whole {size}-byte blocks, not {} bytes",
            mech.describe(),
            input.len()
        )));
    }
    for chunk in data.chunks_exact_mut(size) {
        if encrypt {
            if let Some(c) = &chain {
                chunk.iter_mut().zip(c).for_each(|(b, x)| *b ^= x);
            }
            cipher.encrypt_in_place(chunk);
            if let Some(c) = chain.as_mut() {
                c.copy_from_slice(chunk);
            }
        } else {
            let ciphertext = Zeroizing::new(chunk.to_vec());
            cipher.decrypt_in_place(chunk);
            if let Some(c) = chain.as_mut() {
                chunk.iter_mut().zip(c.iter()).for_each(|(b, x)| *b ^= x);
                c.copy_from_slice(&ciphertext);
            }
        }
    }
    if !encrypt && pad {
        let n = usize::from(*data.last().unwrap_or(&0));
        let ok = (1..=size).contains(&n) && data[data.len() - n..].iter().all(|b| usize::from(*b) == n);
        if !ok {
            return Err(Error::new(ErrorKind::EncryptedDataInvalid, op));
        }
        let keep = data.len() - n;
        data.truncate(keep);
    }
    Ok(data)
}

/// AES-CTR: the low `bits` bits of the counter block count up (big-endian) for each block; more
/// blocks than the counter can number are refused.
fn aes_ctr(key: &[u8], counter: &[u8; 16], bits: u8, input: &[u8], op: Op) -> Result<Zeroizing<Vec<u8>>> {
    if !(1..=128).contains(&bits) {
        return Err(Error::new(ErrorKind::MechanismParamInvalid, op).detail("the counter is 1 to 128 bits"));
    }
    let blocks = input.len().div_ceil(16) as u128;
    if bits < 128 && blocks > (1u128 << bits) {
        return Err(Error::new(ErrorKind::DataLenRange, op)
            .detail(format!("a {bits}-bit counter numbers {} blocks, not {blocks}", 1u128 << bits)));
    }
    let cipher = AesBlock::new(key, op)?;
    let mask: u128 = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    let start = u128::from_be_bytes(*counter);
    let mut out = Zeroizing::new(input.to_vec());
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let low = (start & mask).wrapping_add(i as u128) & mask;
        let mut block = ((start & !mask) | low).to_be_bytes();
        cipher.encrypt(&mut block);
        chunk.iter_mut().zip(block).for_each(|(b, k)| *b ^= k);
    }
    Ok(out)
}

/// The IV lengths (1 to 256 bytes) and tag lengths (SP 800-38D §5.2.1.2: 128, 120, 112, 104 or 96
/// bits, and 64 or 32 for the applications that need them) AES-GCM takes.
fn check_gcm_params(iv: &[u8], tag_bits: u16, op: Op) -> Result<()> {
    if !(1..=256).contains(&iv.len()) || !matches!(tag_bits, 32 | 64 | 96 | 104 | 112 | 120 | 128) {
        return Err(Error::new(ErrorKind::MechanismParamInvalid, op).detail(format!(
            "AES-GCM takes an IV of 1 to 256 bytes and a tag of 128, 120, 112, 104, 96, 64 or 32 bits, not {} bytes and {tag_bits} bits",
            iv.len()
        )));
    }
    Ok(())
}

/// AES-GCM for any IV and tag length SP 800-38D allows (§7.1): the counter block `J0` from the
/// IV (GHASH of it when it is not 96 bits), GCTR from `inc32(J0)`, and the tag `MSB_t(E(J0) ^
/// GHASH(A, C))`, compared in constant time when decrypting (nothing is returned on a mismatch).
fn gcm_general(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_len: usize,
    input: &[u8],
    encrypt: bool,
) -> Result<Zeroizing<Vec<u8>>> {
    use ghash::universal_hash::UniversalHash as _;
    let op = if encrypt { Op::Encrypt } else { Op::Decrypt };
    let cipher = AesBlock::new(key, op)?;
    let mut h = Zeroizing::new([0u8; 16]);
    cipher.encrypt(&mut h);
    let ghash = |parts: &[&[u8]]| -> [u8; 16] {
        let mut g = ghash::GHash::new(&ghash::Key::from(*h));
        let mut lens = [0u8; 16];
        for p in parts {
            g.update_padded(p);
        }
        lens[..8].copy_from_slice(&((parts[0].len() as u64) * 8).to_be_bytes());
        lens[8..].copy_from_slice(&((parts.get(1).map_or(0, |p| p.len()) as u64) * 8).to_be_bytes());
        g.update_padded(&lens);
        g.finalize().into()
    };
    let j0: [u8; 16] = if iv.len() == 12 {
        let mut j = [0u8; 16];
        j[..12].copy_from_slice(iv);
        j[15] = 1;
        j
    } else {
        // GHASH(IV || 0^(s+64) || [len(IV)]_64): the IV, padded, then a block of its bit length.
        let mut g = ghash::GHash::new(&ghash::Key::from(*h));
        g.update_padded(iv);
        let mut lens = [0u8; 16];
        lens[8..].copy_from_slice(&((iv.len() as u64) * 8).to_be_bytes());
        g.update_padded(&lens);
        g.finalize().into()
    };
    let gctr = |data: &mut [u8]| {
        let mut counter = j0;
        for chunk in data.chunks_mut(16) {
            let low = u32::from_be_bytes([counter[12], counter[13], counter[14], counter[15]]).wrapping_add(1);
            counter[12..].copy_from_slice(&low.to_be_bytes());
            let mut block = counter;
            cipher.encrypt(&mut block);
            chunk.iter_mut().zip(block).for_each(|(b, k)| *b ^= k);
        }
    };
    let tag_of = |ct: &[u8]| -> [u8; 16] {
        let s = ghash(&[aad, ct]);
        let mut t = j0;
        cipher.encrypt(&mut t);
        t.iter_mut().zip(s).for_each(|(a, b)| *a ^= b);
        t
    };
    if encrypt {
        let mut out = Zeroizing::new(input.to_vec());
        gctr(&mut out);
        let tag = tag_of(&out);
        out.extend_from_slice(&tag[..tag_len]);
        return Ok(out);
    }
    if input.len() < tag_len {
        return Err(Error::new(ErrorKind::EncryptedDataLenRange, op).detail("shorter than the tag"));
    }
    let (ct, tag) = input.split_at(input.len() - tag_len);
    let want = tag_of(ct);
    let same = want[..tag_len].iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return Err(Error::new(ErrorKind::EncryptedDataInvalid, op));
    }
    let mut out = Zeroizing::new(ct.to_vec());
    gctr(&mut out);
    Ok(out)
}

/// AES-GCM (AWS-LC): a 96-bit IV and a 128-bit tag, appended when encrypting and checked (all or
/// nothing) when decrypting.
fn aes_gcm(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_bits: u16,
    input: &[u8],
    encrypt: bool,
) -> Result<Zeroizing<Vec<u8>>> {
    use aws_lc_rs::aead;
    let op = if encrypt { Op::Encrypt } else { Op::Decrypt };
    check_gcm_params(iv, tag_bits, op)?;
    if iv.len() != 12 || tag_bits != 128 {
        return gcm_general(key, iv, aad, usize::from(tag_bits / 8), input, encrypt);
    }
    let alg = match key.len() {
        16 => &aead::AES_128_GCM,
        24 => &aead::AES_192_GCM,
        32 => &aead::AES_256_GCM,
        _ => return Err(Error::new(ErrorKind::KeySizeRange, op).detail("AES keys are 16, 24 or 32 bytes")),
    };
    let k =
        aead::LessSafeKey::new(aead::UnboundKey::new(alg, key).map_err(|_| Error::new(ErrorKind::KeySizeRange, op))?);
    let nonce =
        || aead::Nonce::try_assume_unique_for_key(iv).map_err(|_| Error::new(ErrorKind::MechanismParamInvalid, op));
    let mut data = Zeroizing::new(input.to_vec());
    if encrypt {
        k.seal_in_place_append_tag(nonce()?, aead::Aad::from(aad), &mut *data)
            .map_err(|_| Error::new(ErrorKind::FunctionFailed, op))?;
        Ok(data)
    } else {
        if input.len() < 16 {
            return Err(Error::new(ErrorKind::EncryptedDataLenRange, op).detail("shorter than the tag"));
        }
        let n = k
            .open_in_place(nonce()?, aead::Aad::from(aad), &mut data[..])
            .map_err(|_| Error::new(ErrorKind::EncryptedDataInvalid, op))?
            .len();
        data.truncate(n);
        Ok(data)
    }
}

/// AES-CMAC of `data` under `key` (AWS-LC; RFC 4493).
pub fn cmac_sign(key: &[u8], data: &[u8], op: Op) -> Result<Vec<u8>> {
    let k = cmac_key(key, op)?;
    aws_lc_rs::cmac::sign(&k, data).map(|t| t.as_ref().to_vec()).map_err(|_| Error::new(ErrorKind::FunctionFailed, op))
}

/// Checks an AES-CMAC tag in constant time.
pub fn cmac_verify(key: &[u8], data: &[u8], tag: &[u8]) -> Result<()> {
    if tag.len() != 16 {
        return Err(Error::new(ErrorKind::SignatureLenRange, Op::Verify)
            .detail(format!("an AES-CMAC tag is 16 bytes, not {}", tag.len())));
    }
    let k = cmac_key(key, Op::Verify)?;
    aws_lc_rs::cmac::verify(&k, data, tag).map_err(|_| Error::new(ErrorKind::SignatureInvalid, Op::Verify))
}

pub(crate) fn cmac_key(key: &[u8], op: Op) -> Result<aws_lc_rs::cmac::Key> {
    let alg = match key.len() {
        16 => aws_lc_rs::cmac::AES_128,
        24 => aws_lc_rs::cmac::AES_192,
        32 => aws_lc_rs::cmac::AES_256,
        _ => return Err(Error::new(ErrorKind::KeySizeRange, op).detail("AES keys are 16, 24 or 32 bytes")),
    };
    aws_lc_rs::cmac::Key::new(alg, key).map_err(|_| Error::new(ErrorKind::KeySizeRange, op))
}

/// HMAC of `data` under `key` (AWS-LC).
pub fn hmac_sign(hash: HashAlg, key: &[u8], data: &[u8]) -> Vec<u8> {
    aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(hmac_alg(hash), key), data).as_ref().to_vec()
}

/// Checks an HMAC tag in constant time.
pub fn hmac_verify(hash: HashAlg, key: &[u8], data: &[u8], tag: &[u8]) -> Result<()> {
    if tag.len() != hash.output_len() {
        return Err(Error::new(ErrorKind::SignatureLenRange, Op::Verify).detail(format!(
            "an HMAC-{} tag is {} bytes, not {}",
            hash.name(),
            hash.output_len(),
            tag.len()
        )));
    }
    aws_lc_rs::hmac::verify(&aws_lc_rs::hmac::Key::new(hmac_alg(hash), key), data, tag)
        .map_err(|_| Error::new(ErrorKind::SignatureInvalid, Op::Verify))
}

pub(crate) fn hmac_alg(hash: HashAlg) -> aws_lc_rs::hmac::Algorithm {
    match hash {
        HashAlg::Sha1 => aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha224 => aws_lc_rs::hmac::HMAC_SHA224,
        HashAlg::Sha256 => aws_lc_rs::hmac::HMAC_SHA256,
        HashAlg::Sha384 => aws_lc_rs::hmac::HMAC_SHA384,
        HashAlg::Sha512 => aws_lc_rs::hmac::HMAC_SHA512,
    }
}

/// A digest of `hash`'s length, as raw PSS signs and verifies.
fn check_digest(hash: HashAlg, digest: &[u8], op: Op) -> Result<()> {
    if digest.len() != hash.output_len() {
        return Err(Error::new(ErrorKind::DataLenRange, op).detail(format!(
            "CKM_RSA_PKCS_PSS with {} takes a {}-byte digest, not {} bytes",
            hash.name(),
            hash.output_len(),
            digest.len()
        )));
    }
    Ok(())
}

/// `bytes` left-padded with zeros to `k` bytes.
fn left_pad(bytes: &[u8], k: usize) -> Vec<u8> {
    let mut out = vec![0u8; k.saturating_sub(bytes.len())];
    out.extend_from_slice(bytes);
    out
}

/// Raw RSA's input: at most `k` bytes, read as a number below the modulus `n`.
fn raw_input(n: &rsa::BoxedUint, k: usize, data: &[u8], op: Op) -> Result<rsa::BoxedUint> {
    let kind = if op == Op::Decrypt { ErrorKind::EncryptedDataLenRange } else { ErrorKind::DataLenRange };
    if data.len() > k {
        return Err(Error::new(kind, op).detail(format!("raw RSA takes at most {k} bytes, not {}", data.len())));
    }
    let m = rsa::BoxedUint::from_be_slice(&left_pad(data, k), n.bits_precision())
        .map_err(|_| Error::new(kind.clone(), op).detail("the input does not fit the modulus"))?;
    if m >= *n {
        let kind = if op == Op::Decrypt { ErrorKind::EncryptedDataInvalid } else { ErrorKind::DataInvalid };
        return Err(Error::new(kind, op).detail("the input is not below the modulus"));
    }
    Ok(m)
}

/// Raw RSA with a public key (`CKM_RSA_X_509` encryption and verification).
fn raw_public(public: &rsa::PublicKey, data: &[u8], op: Op) -> Result<Vec<u8>> {
    use rsa::traits::PublicKeyParts;
    let m = raw_input(public.n().as_ref(), public.size(), data, op)?;
    let c = rsa::hazmat::rsa_encrypt(public, &m).map_err(|_| Error::new(ErrorKind::FunctionFailed, op))?;
    Ok(left_pad(&c.to_be_bytes_trimmed_vartime(), public.size()))
}

/// `der` without the zero bytes (at most seven) that follow its outer DER element, if that is
/// all that follows it; otherwise `der` unchanged (the parser then refuses what follows).
pub(crate) fn strip_block_padding(der: &[u8]) -> &[u8] {
    let len = match der {
        [0x30, n, ..] if *n < 0x80 => 2 + usize::from(*n),
        [0x30, 0x81, n, ..] => 3 + usize::from(*n),
        [0x30, 0x82, hi, lo, ..] => 4 + (usize::from(*hi) << 8 | usize::from(*lo)),
        _ => return der,
    };
    match der.get(len..) {
        Some(rest) if !rest.is_empty() && rest.len() < 8 && rest.iter().all(|b| *b == 0) => &der[..len],
        _ => der,
    }
}

/// RSA public-key operations.
pub fn verify(public: &rsa::PublicKey, mech: &Mechanism, data: &[u8], sig: &[u8]) -> Result<()> {
    let bad = || Error::new(ErrorKind::SignatureInvalid, Op::Verify);
    if sig.len() != public.size() {
        return Err(Error::new(ErrorKind::SignatureLenRange, Op::Verify).detail(format!(
            "a signature by this key is {} bytes, not {}",
            public.size(),
            sig.len()
        )));
    }
    // The common mechanisms are checked on AWS-LC first; only what it does not accept (a key
    // below 2048 bits, an unusual exponent, or a bad signature) gets RustCrypto's verdict, so
    // both libraries must refuse a signature for it to be refused.
    if let Some(alg) = lc_verify_alg(mech)
        && public.size() >= 256
        && let Ok(der) = rsa::pkcs1::EncodeRsaPublicKey::to_pkcs1_der(public)
        && aws_lc_rs::signature::UnparsedPublicKey::new(alg, der.as_bytes()).verify(data, sig).is_ok()
    {
        return Ok(());
    }
    macro_rules! check {
        ($m:ident, $d:ty) => {{
            let s = rsa::$m::Signature::try_from(sig).map_err(|_| bad())?;
            rsa::$m::VerifyingKey::<$d>::new(public.clone()).verify(data, &s).map_err(|_| bad())
        }};
    }
    match mech {
        Mechanism::RsaPkcs1v15Raw => {
            public.verify(rsa::pkcs1v15::Pkcs1v15Sign::new_unprefixed(), data, sig).map_err(|_| bad())
        }
        Mechanism::RsaPkcs1v15 { hash } => match hash {
            HashAlg::Sha1 => check!(pkcs1v15, sha1::Sha1),
            HashAlg::Sha224 => check!(pkcs1v15, sha2::Sha224),
            HashAlg::Sha256 => check!(pkcs1v15, sha2::Sha256),
            HashAlg::Sha384 => check!(pkcs1v15, sha2::Sha384),
            HashAlg::Sha512 => check!(pkcs1v15, sha2::Sha512),
        },
        Mechanism::RsaPss { hash } => match hash {
            HashAlg::Sha1 => check!(pss, sha1::Sha1),
            HashAlg::Sha224 => check!(pss, sha2::Sha224),
            HashAlg::Sha256 => check!(pss, sha2::Sha256),
            HashAlg::Sha384 => check!(pss, sha2::Sha384),
            HashAlg::Sha512 => check!(pss, sha2::Sha512),
        },
        Mechanism::RsaPssRaw { hash } => {
            check_digest(*hash, data, Op::Verify)?;
            macro_rules! raw_pss {
                ($d:ty) => {
                    public.verify(rsa::pss::Pss::<$d>::new(), data, sig)
                };
            }
            match hash {
                HashAlg::Sha1 => raw_pss!(sha1::Sha1),
                HashAlg::Sha224 => raw_pss!(sha2::Sha224),
                HashAlg::Sha256 => raw_pss!(sha2::Sha256),
                HashAlg::Sha384 => raw_pss!(sha2::Sha384),
                HashAlg::Sha512 => raw_pss!(sha2::Sha512),
            }
            .map_err(|_| bad())
        }
        Mechanism::RsaX509 => {
            // The signature raised to e must be the data, left-padded to the modulus' length.
            let recovered = raw_public(public, sig, Op::Verify).map_err(|_| bad())?;
            if data.len() > public.size() || recovered != left_pad(data, public.size()) {
                return Err(bad());
            }
            Ok(())
        }
        other => Err(mechanism_invalid(other, Op::Verify, "an RSA public key")),
    }
}

/// RSA encryption (`CKM_RSA_PKCS`, `CKM_RSA_X_509`, `CKM_RSA_PKCS_OAEP`) with the module's RNG.
pub fn encrypt(public: &rsa::PublicKey, mech: &Mechanism, pt: &[u8], rng: &mut HsmRng, op: Op) -> Result<Vec<u8>> {
    match mech {
        Mechanism::RsaOaep { hash } => encrypt_oaep(public, *hash, pt, rng, op),
        Mechanism::RsaOaepLabel { hash, label } => encrypt_oaep_label(public, *hash, label, pt, rng, op),
        Mechanism::RsaPkcs1v15Raw => {
            let max = public.size().saturating_sub(11);
            if pt.len() > max {
                return Err(Error::new(ErrorKind::DataLenRange, op).detail(format!(
                    "CKM_RSA_PKCS with a {}-bit key encrypts at most {max} bytes, not {}",
                    public.size() * 8,
                    pt.len()
                )));
            }
            public
                .encrypt(rng.as_rng(), rsa::Pkcs1v15Encrypt, pt)
                .map_err(|_| Error::new(ErrorKind::FunctionFailed, op).detail("PKCS#1 v1.5 encryption failed"))
        }
        Mechanism::RsaX509 => raw_public(public, pt, op),
        other => Err(mechanism_invalid(other, op, "an RSA public key")),
    }
}

/// RSA-OAEP encryption with the module's RNG.
pub fn encrypt_oaep(public: &rsa::PublicKey, hash: HashAlg, pt: &[u8], rng: &mut HsmRng, op: Op) -> Result<Vec<u8>> {
    encrypt_oaep_label(public, hash, &[], pt, rng, op)
}

/// RSA-OAEP encryption with a label (empty: none).
pub fn encrypt_oaep_label(
    public: &rsa::PublicKey,
    hash: HashAlg,
    label: &[u8],
    pt: &[u8],
    rng: &mut HsmRng,
    op: Op,
) -> Result<Vec<u8>> {
    let max = public.size().saturating_sub(2 * hash.output_len() + 2);
    if pt.len() > max {
        return Err(Error::new(ErrorKind::DataLenRange, op).detail(format!(
            "RSA-OAEP({}) with a {}-bit key takes at most {max} bytes, not {}",
            hash.name(),
            public.size() * 8,
            pt.len()
        )));
    }
    let r = match hash {
        HashAlg::Sha1 => public.encrypt(rng.as_rng(), rsa::Oaep::<sha1::Sha1>::new_with_label(label.to_vec()), pt),
        HashAlg::Sha224 => public.encrypt(rng.as_rng(), rsa::Oaep::<sha2::Sha224>::new_with_label(label.to_vec()), pt),
        HashAlg::Sha256 => public.encrypt(rng.as_rng(), rsa::Oaep::<sha2::Sha256>::new_with_label(label.to_vec()), pt),
        HashAlg::Sha384 => public.encrypt(rng.as_rng(), rsa::Oaep::<sha2::Sha384>::new_with_label(label.to_vec()), pt),
        HashAlg::Sha512 => public.encrypt(rng.as_rng(), rsa::Oaep::<sha2::Sha512>::new_with_label(label.to_vec()), pt),
    };
    r.map_err(|_| Error::new(ErrorKind::FunctionFailed, op).detail("RSA-OAEP encryption failed"))
}

fn kek_size(key: &[u8], op: Op) -> Result<()> {
    match key.len() {
        16 | 24 | 32 => Ok(()),
        n => Err(Error::new(ErrorKind::KeySizeRange, op)
            .detail(format!("AES key wrap takes 128-, 192- or 256-bit keys, not {} bits", n * 8))),
    }
}

/// AES key wrap: RFC 3394 (`pad = false`, input a multiple of 8 bytes, at least 16) or RFC 5649.
/// AWS-LC wraps under 128- and 256-bit keys, RustCrypto's `aes-kw` under 192-bit ones.
pub fn aes_wrap(kek: &[u8], pad: bool, input: &[u8]) -> Result<Vec<u8>> {
    kek_size(kek, Op::WrapKey)?;
    let fail = |why: &str| Error::new(ErrorKind::KeyNotWrappable, Op::WrapKey).detail(why.to_string());
    if !pad && (input.len() < 16 || !input.len().is_multiple_of(8)) {
        return Err(fail(
            "RFC 3394 wraps only keys of 16 bytes or more, in multiples of 8; use AES key wrap with padding",
        ));
    }
    let mut out = vec![0u8; input.len() + 16];
    let len = if kek.len() == 24 {
        use aes_kw::KeyInit as _;
        let bad = |_| fail("bad wrapping key");
        if pad {
            aes_kw::KwpAes192::new_from_slice(kek)
                .map_err(bad)?
                .wrap_key(input, &mut out)
                .map_err(|_| fail("RFC 5649 wrap failed"))?
                .len()
        } else {
            aes_kw::KwAes192::new_from_slice(kek)
                .map_err(bad)?
                .wrap_key(input, &mut out)
                .map_err(|_| fail("RFC 3394 wrap failed"))?
                .len()
        }
    } else {
        let cipher = if kek.len() == 16 { &AES_128 } else { &AES_256 };
        let k = KeyEncryptionKey::new(cipher, kek).map_err(|_| fail("bad wrapping key"))?;
        if pad {
            k.wrap_with_padding(input, &mut out).map_err(|_| fail("RFC 5649 wrap failed"))?.len()
        } else {
            k.wrap(input, &mut out).map_err(|_| fail("RFC 3394 wrap failed"))?.len()
        }
    };
    out.truncate(len);
    Ok(out)
}

/// AES key unwrap (RFC 3394 or RFC 5649). Failures are opaque.
pub fn aes_unwrap(kek: &[u8], pad: bool, input: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    kek_size(kek, Op::UnwrapKey)?;
    // RFC 3394 wraps at least two 64-bit blocks (as `aes_wrap` does): a shorter input is refused
    // whichever library would unwrap it (RustCrypto's takes one block).
    if !pad && (input.len() < 24 || !input.len().is_multiple_of(8)) {
        return Err(opaque_failure(Op::UnwrapKey));
    }
    let mut out = Zeroizing::new(vec![0u8; input.len()]);
    let len = if kek.len() == 24 {
        use aes_kw::KeyInit as _;
        if pad {
            aes_kw::KwpAes192::new_from_slice(kek)
                .map_err(|_| opaque_failure(Op::UnwrapKey))?
                .unwrap_key(input, &mut out)
                .map_err(|_| opaque_failure(Op::UnwrapKey))?
                .len()
        } else {
            aes_kw::KwAes192::new_from_slice(kek)
                .map_err(|_| opaque_failure(Op::UnwrapKey))?
                .unwrap_key(input, &mut out)
                .map_err(|_| opaque_failure(Op::UnwrapKey))?
                .len()
        }
    } else {
        let cipher = if kek.len() == 16 { &AES_128 } else { &AES_256 };
        let k = KeyEncryptionKey::new(cipher, kek).map_err(|_| opaque_failure(Op::UnwrapKey))?;
        if pad { k.unwrap_with_padding(input, &mut out) } else { k.unwrap(input, &mut out) }
            .map_err(|_| opaque_failure(Op::UnwrapKey))?
            .len()
    };
    out.truncate(len);
    Ok(out)
}

/// `CKM_RSA_AES_KEY_WRAP`: OAEP(ephemeral AES key) || KWP(target) with a fresh AES key.
pub fn rsa_aes_wrap(
    public: &rsa::PublicKey,
    aes_bits: u16,
    hash: HashAlg,
    target: &[u8],
    rng: &mut HsmRng,
) -> Result<Vec<u8>> {
    let len = match aes_bits {
        128 => 16,
        256 => 32,
        other => {
            return Err(Error::new(ErrorKind::MechanismParamInvalid, Op::WrapKey)
                .detail(format!("RSA-AES key wrap with a {other}-bit AES key is not supported; use 128 or 256")));
        }
    };
    let mut eph = Zeroizing::new(vec![0u8; len]);
    rng.fill(&mut eph);
    let mut out = encrypt_oaep(public, hash, &eph, rng, Op::WrapKey)?;
    out.extend(aes_wrap(&eph, true, target)?);
    Ok(out)
}

/// Unwraps `CKM_RSA_AES_KEY_WRAP` output. Failures are opaque.
pub fn rsa_aes_unwrap(private: &RsaPrivate, hash: HashAlg, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let n = private.rc.size();
    if wrapped.len() <= n {
        return Err(opaque_failure(Op::UnwrapKey));
    }
    let (head, tail) = wrapped.split_at(n);
    let eph = private.decrypt_oaep(hash, head, Op::UnwrapKey)?;
    aes_unwrap(&eph, true, tail)
}

/// Parses an RSA SubjectPublicKeyInfo.
pub fn public_from_spki(spki: &[u8], op: Op) -> Result<rsa::PublicKey> {
    if let Ok(k) = rsa::PublicKey::from_public_key_der(spki) {
        return Ok(k);
    }
    legacy_public(spki).ok_or_else(|| Error::new(ErrorKind::DataInvalid, op).detail("not an RSA SubjectPublicKeyInfo"))
}

/// The smallest RSA public key the module takes: 512 bits, to verify legacy signatures. Keys under
/// [`MIN_RSA_BITS`] do nothing else (no encryption, no wrapping).
pub const MIN_VERIFY_BITS: u32 = 512;
/// The smallest RSA key for anything but verification.
pub const MIN_RSA_BITS: u32 = 1024;

/// A legacy RSA public key of 512 to 1023 bits (which the strict decoder refuses).
fn legacy_public(spki: &[u8]) -> Option<rsa::PublicKey> {
    use rsa::pkcs1::der::Decode as _;
    let info = rsa::pkcs8::spki::SubjectPublicKeyInfoRef::from_der(spki).ok()?;
    if info.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
        return None;
    }
    let key: rsa::pkcs1::RsaPublicKey<rsa::pkcs1::UintRef<'_>> =
        rsa::pkcs1::RsaPublicKey::from_der(info.subject_public_key.as_bytes()?).ok()?;
    let (n, e) = (key.modulus.as_bytes(), key.public_exponent.as_bytes());
    let e_ok = (1..=4).contains(&e.len()) && e.last().is_some_and(|b| b & 1 == 1) && e != [1];
    let n = rsa::BoxedUint::from_be_slice_vartime(n);
    let e = rsa::BoxedUint::from_be_slice_vartime(e);
    let bits = n.bit_width_vartime();
    ((MIN_VERIFY_BITS..MIN_RSA_BITS).contains(&bits) && e_ok).then(|| rsa::PublicKey::new_unchecked(n, e))
}

/// Refuses a public key too small for anything but verification.
pub fn strong_enough(key: &rsa::PublicKey, op: Op) -> Result<&rsa::PublicKey> {
    use rsa::traits::PublicKeyParts;
    let bits = key.n().bit_width_vartime();
    if bits < MIN_RSA_BITS {
        return Err(Error::new(ErrorKind::KeySizeRange, op)
            .detail(format!("an RSA-{bits} key only verifies legacy signatures; it encrypts and wraps nothing")));
    }
    Ok(key)
}

fn opaque_failure(op: Op) -> Error {
    let kind = if op == Op::Decrypt { ErrorKind::EncryptedDataInvalid } else { ErrorKind::WrappedKeyInvalid };
    Error::new(kind, op)
}

/// The error for a mechanism a key cannot do.
pub fn mechanism_invalid(mech: &Mechanism, op: Op, key: &str) -> Error {
    Error::new(ErrorKind::MechanismInvalid, op).detail(format!("{} cannot be used with {key}", mech.describe()))
}

/// Per-group use counters of a loaded key (`UseLim_Global`).
#[derive(Debug, Default)]
pub struct UseCounters(pub Vec<AtomicU64>);

impl UseCounters {
    /// Counters for `n` groups.
    pub fn new(n: usize) -> Self {
        UseCounters((0..n).map(|_| AtomicU64::new(0)).collect())
    }

    /// Uses so far of group `i`.
    pub fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Takes one use of group `i` if fewer than `max` were taken, atomically (so concurrent
    /// callers can never exceed the limit together). Returns whether a use was taken.
    pub fn take(&self, i: usize, max: u64) -> bool {
        self.0.get(i).is_some_and(|c| {
            c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
        })
    }
}

#[cfg(test)]
mod padding_tests {
    use super::*;

    #[test]
    fn zero_block_padding_after_pkcs8_is_dropped_and_nothing_else_is() {
        use rsa::pkcs8::EncodePrivateKey;
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(1);
        let key = rsa::PrivateKey::new(&mut rng, 1024).expect("key");
        let der = key.to_pkcs8_der().expect("der").as_bytes().to_vec();
        let mut padded = der.clone();
        padded.extend([0u8; 5]);
        assert_eq!(RsaPrivate::from_pkcs8(&padded, Op::ImportKey).expect("padded").pkcs8(), der.as_slice());
        let mut junk = der.clone();
        junk.extend([0u8, 1]);
        assert!(RsaPrivate::from_pkcs8(&junk, Op::ImportKey).is_err(), "non-zero bytes after the key");
        let mut long = der.clone();
        long.extend([0u8; 8]);
        assert!(RsaPrivate::from_pkcs8(&long, Op::ImportKey).is_err(), "more than a block of padding");
        assert!(RsaPrivate::from_pkcs8(&der[..der.len() - 1], Op::ImportKey).is_err(), "truncated");
    }
}

#[cfg(test)]
mod gcm_tests {
    use super::*;

    #[test]
    fn the_general_gcm_is_aws_lcs_for_a_96_bit_iv_and_a_full_tag() {
        for (key_len, pt_len, aad_len) in [(16, 0, 0), (16, 1, 3), (24, 33, 17), (32, 64, 0), (32, 100, 100)] {
            let key = vec![0x42u8; key_len];
            let iv = [9u8; 12];
            let aad = vec![0x17u8; aad_len];
            let pt: Vec<u8> = (0..pt_len).map(|i| i as u8).collect();
            let fast = aes_gcm(&key, &iv, &aad, 128, &pt, true).expect("AWS-LC");
            let general = gcm_general(&key, &iv, &aad, 16, &pt, true).expect("general");
            assert_eq!(fast.as_slice(), general.as_slice(), "{key_len} {pt_len} {aad_len}");
            assert_eq!(gcm_general(&key, &iv, &aad, 16, &fast, false).expect("open").as_slice(), pt.as_slice());
            // A truncated tag is the full tag's left part.
            let short = gcm_general(&key, &iv, &aad, 12, &pt, true).expect("96-bit tag");
            assert_eq!(short.as_slice(), &fast[..fast.len() - 4]);
            let mut bad = short.to_vec();
            *bad.last_mut().expect("tag") ^= 1;
            assert!(gcm_general(&key, &iv, &aad, 12, &bad, false).is_err());
        }
    }
}

/// The DER prefix of a PKCS#1 v1.5 `DigestInfo` for `hash` (RFC 8017 §9.2, note 1): the
/// `AlgorithmIdentifier` with NULL parameters and the OCTET STRING header of the digest.
pub fn digest_info_prefix(hash: HashAlg) -> &'static [u8] {
    match hash {
        HashAlg::Sha1 => &[0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14],
        HashAlg::Sha224 => &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04,
            0x1c,
        ],
        HashAlg::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
            0x20,
        ],
        HashAlg::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04,
            0x30,
        ],
        HashAlg::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04,
            0x40,
        ],
    }
}

/// AWS-LC's verification algorithm for `mech`, where it has one.
fn lc_verify_alg(mech: &Mechanism) -> Option<&'static dyn aws_lc_rs::signature::VerificationAlgorithm> {
    use aws_lc_rs::signature as s;
    Some(match mech {
        Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 } => &s::RSA_PKCS1_2048_8192_SHA256,
        Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha384 } => &s::RSA_PKCS1_2048_8192_SHA384,
        Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha512 } => &s::RSA_PKCS1_2048_8192_SHA512,
        Mechanism::RsaPss { hash: HashAlg::Sha256 } => &s::RSA_PSS_2048_8192_SHA256,
        Mechanism::RsaPss { hash: HashAlg::Sha384 } => &s::RSA_PSS_2048_8192_SHA384,
        Mechanism::RsaPss { hash: HashAlg::Sha512 } => &s::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

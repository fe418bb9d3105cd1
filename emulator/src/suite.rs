//! Security-world cipher suites and the primitives they name.
//!
//! A suite name such as `DLf3072s256mAEScSP800131Ar1` reads: discrete-log (DSA) keys over a
//! 3072-bit field for the world's signing keys (KNSO), SHA-256 for hashes and signatures, and an
//! AES module key KM; `cSP800131Ar1` marks SP 800-131A Rev. 1 conformance. `DLf1024s160mRijndael`
//! (the article's, legacy) has a 1024-bit field with 160-bit subgroup and SHA-1.

use std::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use dsa::{Components, SigningKey, VerifyingKey};
use rsa::BoxedUint;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use zeroize::Zeroizing;

use hsmkit_backend::{Error, ErrorKind, Op, Result};

use crate::dl_params;

/// A security world's cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CipherSuite {
    /// Legacy (before 12.50), 80-bit strength; the suite of the 2016 BYOK article.
    #[serde(rename = "DLf1024s160mRijndael")]
    DLf1024s160mRijndael,
    /// Today's default, 128-bit strength, FIPS 140 Level 3.
    #[serde(rename = "DLf3072s256mAEScSP800131Ar1")]
    DLf3072s256mAEScSP800131Ar1,
}

impl CipherSuite {
    /// Every suite the emulator knows.
    pub const ALL: [CipherSuite; 2] = [CipherSuite::DLf1024s160mRijndael, CipherSuite::DLf3072s256mAEScSP800131Ar1];

    /// The suite's name as `new-world --cipher-suite` takes it.
    pub fn name(self) -> &'static str {
        match self {
            CipherSuite::DLf1024s160mRijndael => "DLf1024s160mRijndael",
            CipherSuite::DLf3072s256mAEScSP800131Ar1 => "DLf3072s256mAEScSP800131Ar1",
        }
    }

    /// Parses a suite name; the error lists the suites that exist.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
            Error::new(ErrorKind::ArgumentsBad, Op::CreateWorld)
                .detail(format!("unknown cipher suite '{name}'"))
                .hint(format!("use one of: {}", known.join(", ")))
        })
    }

    /// Security strength in bits.
    pub fn strength(self) -> u32 {
        match self {
            CipherSuite::DLf1024s160mRijndael => 80,
            CipherSuite::DLf3072s256mAEScSP800131Ar1 => 128,
        }
    }

    /// The suite's hash of `parts`, concatenated: SHA-1 (s160) or SHA-256 (s256).
    pub fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            CipherSuite::DLf1024s160mRijndael => {
                let mut h = sha1::Sha1::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
            CipherSuite::DLf3072s256mAEScSP800131Ar1 => {
                let mut h = sha2::Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
        }
    }

    fn components(self) -> Result<Components> {
        let (p, q, g) = match self {
            CipherSuite::DLf1024s160mRijndael => dl_params::DL1024_160,
            CipherSuite::DLf3072s256mAEScSP800131Ar1 => dl_params::DL3072_256,
        };
        let num = |h: &str| -> Result<BoxedUint> {
            let bytes = hex::decode(h).map_err(|_| internal("domain parameters are not hex"))?;
            Ok(BoxedUint::from_be_slice_vartime(&bytes))
        };
        Components::from_components(num(p)?, num(q)?, num(g)?).map_err(|_| internal("domain parameters rejected"))
    }

    /// Derives a discrete-log key pair (KNSO, KRE) deterministically from `seed` (itself derived
    /// from the ACS secret), so that the quorum can re-create the private half at any time.
    pub fn dl_key_from_seed(self, seed: &[u8]) -> Result<DlKey> {
        use rand_core::SeedableRng;
        let mut s = Zeroizing::new([0u8; 32]);
        s.copy_from_slice(&sha2::Sha256::digest(seed));
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(*s);
        let key = SigningKey::try_generate_from_rng_with_components(&mut rng, self.components()?)
            .map_err(|_| internal("discrete-log key generation failed"))?;
        Ok(DlKey { suite: self, key })
    }

    /// The public half of a discrete-log key from its encoding ([`DlKey::public_bytes`]).
    pub fn dl_public(self, y: &[u8]) -> Result<DlPublic> {
        let components = self.components()?;
        let precision = components.p().bits_precision();
        let y = BoxedUint::from_be_slice(y, precision).map_err(|_| corrupt_key())?;
        let key = VerifyingKey::from_components(components, y).map_err(|_| corrupt_key())?;
        Ok(DlPublic { suite: self, key })
    }
}

impl fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn internal(what: &str) -> Error {
    Error::new(ErrorKind::Device, Op::Module).detail(what.to_string())
}

fn corrupt_key() -> Error {
    Error::new(ErrorKind::Corrupt, Op::LoadWorld).detail("a world public key is malformed")
}

/// A discrete-log private key of a world (KNSO, KRE). Its scalar is zeroized by `dsa` on drop.
pub struct DlKey {
    suite: CipherSuite,
    key: SigningKey,
}

impl DlKey {
    /// The public value `y`, big-endian, padded to the size of `p`.
    pub fn public_bytes(&self) -> Vec<u8> {
        self.key.verifying_key().y().to_be_bytes().to_vec()
    }

    /// The public half.
    pub fn public(&self) -> DlPublic {
        DlPublic { suite: self.suite, key: self.key.verifying_key().clone() }
    }

    /// A DSA signature (RFC 6979 nonces) over the suite hash of `message`, as `r || s` (each the
    /// size of `q`).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let digest = self.suite.hash(&[message]);
        let sig = match self.suite {
            CipherSuite::DLf1024s160mRijndael => self.key.sign_prehashed_rfc6979::<sha1::Sha1>(&digest),
            CipherSuite::DLf3072s256mAEScSP800131Ar1 => self.key.sign_prehashed_rfc6979::<sha2::Sha256>(&digest),
        }
        .map_err(|_| internal("DSA signing failed"))?;
        let qlen = self.suite.q_len();
        let mut out = pad(&sig.r().to_be_bytes_trimmed_vartime(), qlen);
        out.extend(pad(&sig.s().to_be_bytes_trimmed_vartime(), qlen));
        Ok(out)
    }

    /// The private scalar as bytes (for Diffie-Hellman); zeroized on drop.
    fn scalar(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.x().to_be_bytes().to_vec())
    }

    /// Diffie-Hellman: `peer^x mod p`, padded to the size of `p`.
    pub fn agree(&self, peer: &DlPublic) -> Zeroizing<Vec<u8>> {
        peer.pow(&self.scalar())
    }
}

impl fmt::Debug for DlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DlKey(<redacted>)")
    }
}

fn pad(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len.saturating_sub(bytes.len())];
    out.extend_from_slice(bytes);
    out
}

impl CipherSuite {
    fn q_len(self) -> usize {
        match self {
            CipherSuite::DLf1024s160mRijndael => 20,
            CipherSuite::DLf3072s256mAEScSP800131Ar1 => 32,
        }
    }
}

/// The public half of a world's discrete-log key.
#[derive(Clone, Debug)]
pub struct DlPublic {
    suite: CipherSuite,
    key: VerifyingKey,
}

impl DlPublic {
    /// Whether `signature` (`r || s`) is this key's DSA signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use signature::hazmat::PrehashVerifier;
        let qlen = self.suite.q_len();
        if signature.len() != 2 * qlen {
            return false;
        }
        let (r, s) = signature.split_at(qlen);
        let Some(sig) =
            dsa::Signature::from_components(BoxedUint::from_be_slice_vartime(r), BoxedUint::from_be_slice_vartime(s))
        else {
            return false;
        };
        let digest = self.suite.hash(&[message]);
        self.key.verify_prehash(&digest, &sig).is_ok()
    }

    /// `y` as bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.key.y().to_be_bytes().to_vec()
    }

    fn pow(&self, exponent: &[u8]) -> Zeroizing<Vec<u8>> {
        pow_mod(self.key.components().p(), self.key.y(), exponent)
    }
}

/// `base^exponent mod p`, big-endian at the precision of `p`.
fn pow_mod(p: &crypto_bigint::Odd<BoxedUint>, base: &BoxedUint, exponent: &[u8]) -> Zeroizing<Vec<u8>> {
    use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
    let params = BoxedMontyParams::new(p.clone());
    let form = BoxedMontyForm::new(base.clone(), &params);
    // The exponent is a private scalar: parsed in constant time and wiped after use.
    let bits = u32::try_from(exponent.len().saturating_mul(8)).unwrap_or(u32::MAX).max(64).next_multiple_of(64);
    let mut e = BoxedUint::from_be_slice(exponent, bits).unwrap_or_else(|_| BoxedUint::zero_with_precision(bits));
    let out = Zeroizing::new(form.pow(&e).retrieve().to_be_bytes().to_vec());
    zeroize::Zeroize::zeroize(&mut e);
    out
}

/// A 256-bit AES-GCM sealed box: `nonce || ciphertext || tag` fields kept apart in files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// The 96-bit nonce, hex.
    #[serde(with = "hex")]
    pub nonce: Vec<u8>,
    /// Ciphertext and tag, hex.
    #[serde(with = "hex")]
    pub ct: Vec<u8>,
}

/// Encrypts and authenticates `plaintext` under the 256-bit `key`, binding `aad`.
///
/// The nonce is synthetic: HMAC-SHA-256 under `key` of the caller's random `nonce_input`, `aad` and
/// `plaintext`, cut to 96 bits. Two different messages never share a nonce under one key, even when
/// the random input repeats (a seeded run restarts its generator in every process); the same
/// message with the same input gives the same box, which reveals only that it is the same.
pub fn seal(key: &[u8], nonce_input: [u8; 12], aad: &[u8], plaintext: &[u8]) -> Result<Sealed> {
    let k = LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, key).map_err(|_| internal("bad AEAD key"))?);
    let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&mac_key);
    ctx.update(b"hsmkit seal nonce\0");
    ctx.update(&nonce_input);
    ctx.update(&(aad.len() as u64).to_be_bytes());
    ctx.update(aad);
    ctx.update(plaintext);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&ctx.sign().as_ref()[..12]);
    let mut buf = plaintext.to_vec();
    k.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
        .map_err(|_| internal("AEAD seal failed"))?;
    Ok(Sealed { nonce: nonce.to_vec(), ct: buf })
}

/// Opens a [`Sealed`] box; `None` if the key, the data or the bound `aad` is not the one sealed.
pub fn open(key: &[u8], aad: &[u8], sealed: &Sealed) -> Option<Zeroizing<Vec<u8>>> {
    let k = LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(&sealed.nonce).ok()?;
    let mut buf = Zeroizing::new(sealed.ct.clone());
    let len = k.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?.len();
    buf.truncate(len);
    Some(buf)
}

/// HKDF-SHA-256 of `secret` for the purpose `info`: a 32-byte key.
pub fn derive_key(secret: &[u8], info: &str) -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, b"hsmkit").extract(secret);
    let info = [info.as_bytes()];
    // Expanding 32 bytes from SHA-256 HKDF does not fail (the limit is 255 * 32); if it ever
    // did, the caller gets an error, never a key of zeros.
    prk.expand(&info, aws_lc_rs::hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(out.as_mut()))
        .map_err(|_| internal("HKDF failed to derive a key"))?;
    Ok(out)
}

#[cfg(test)]
mod seal_tests {
    use super::*;

    #[test]
    fn one_random_input_never_gives_two_messages_one_nonce() {
        let key = [5u8; 32];
        let input = [1u8; 12];
        let a = seal(&key, input, b"aad", b"first message").expect("seal");
        let b = seal(&key, input, b"aad", b"second message").expect("seal");
        let c = seal(&key, input, b"other aad", b"first message").expect("seal");
        assert_ne!(a.nonce, b.nonce, "different plaintexts");
        assert_ne!(a.nonce, c.nonce, "different associated data");
        assert_eq!(seal(&key, input, b"aad", b"first message").expect("seal"), a, "the same message, the same box");
        assert_eq!(open(&key, b"aad", &a).expect("open").as_slice(), b"first message");
        assert!(open(&key, b"other aad", &a).is_none());
    }
}

//! Elliptic-curve keys: ECDSA on P-256, P-384 and P-521, and Ed25519.
//!
//! Signing runs on AWS-LC, parsed once when the key is loaded (the hot path): the caller's digest
//! is signed as it is when it is as long as the curve's own hash (SHA-256 for P-256, SHA-384 for
//! P-384, SHA-512 for P-521), which covers `CKM_ECDSA` as OpenSSL and pkcs11-tool use it.
//! Digests of other lengths (which ECDSA truncates or pads as FIPS 186-5 says) are signed with
//! RustCrypto's `p256`/`p384`/`p521`. Key generation draws from the module's RNG, so a seeded
//! module makes the same keys. Verification uses RustCrypto.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self as lcsig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use zeroize::Zeroizing;

use hsmkit_backend::{EcCurve, Error, ErrorKind, HashAlg, Mechanism, Op, Result};

use crate::keys::mechanism_invalid;
use crate::rng::HsmRng;

/// A NIST-curve private key in RustCrypto's form, for the digests AWS-LC does not sign as given.
enum RcSigning {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

enum Inner {
    Nist { lc: EcdsaKeyPair, rc: Box<RcSigning> },
    Ed25519(Ed25519KeyPair),
}

/// An EC or Ed25519 private key.
pub struct EcPrivate {
    curve: EcCurve,
    inner: Inner,
    pkcs8: Zeroizing<Vec<u8>>,
    public: EcPublic,
}

/// An EC or Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcPublic {
    /// The curve.
    pub curve: EcCurve,
    /// The encoded point (uncompressed SEC 1, or Ed25519's 32 bytes).
    pub point: Vec<u8>,
}

fn invalid(op: Op) -> Error {
    Error::new(ErrorKind::DataInvalid, op).detail("the key material is not an EC or Ed25519 PKCS#8 private key")
}

/// The AWS-LC signing algorithm whose hash is the curve's own.
fn native(curve: EcCurve) -> (&'static lcsig::EcdsaSigningAlgorithm, &'static digest::Algorithm) {
    match curve {
        EcCurve::P384 => (&lcsig::ECDSA_P384_SHA384_FIXED_SIGNING, &digest::SHA384),
        EcCurve::P521 => (&lcsig::ECDSA_P521_SHA512_FIXED_SIGNING, &digest::SHA512),
        _ => (&lcsig::ECDSA_P256_SHA256_FIXED_SIGNING, &digest::SHA256),
    }
}

impl EcPrivate {
    /// Parses PKCS#8 `PrivateKeyInfo` DER (RFC 5915 inside for NIST curves, RFC 8410 for Ed25519).
    /// The key is kept re-encoded in one canonical form (with its public key), whatever optional
    /// parts the input had.
    pub fn from_pkcs8(der: &[u8], op: Op) -> Result<EcPrivate> {
        use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
        // SoftHSM2 pads what it wraps with AES key wrap with padding to whole blocks.
        let der = crate::keys::strip_block_padding(der);
        let curve = EcCurve::of_pkcs8(der).ok_or_else(|| invalid(op))?;
        macro_rules! nist {
            ($m:ident, $variant:ident) => {{
                let secret = $m::SecretKey::from_pkcs8_der(der).map_err(|_| invalid(op))?;
                let canonical = Zeroizing::new(secret.to_pkcs8_der().map_err(|_| invalid(op))?.as_bytes().to_vec());
                let point = $m::ecdsa::VerifyingKey::from(secret.public_key()).to_sec1_point(false).as_bytes().to_vec();
                (RcSigning::$variant($m::ecdsa::SigningKey::from(&secret)), canonical, point)
            }};
        }
        let (inner, pkcs8, point) = match curve {
            EcCurve::Ed25519 => {
                let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| invalid(op))?;
                let canonical = Zeroizing::new(kp.to_pkcs8v1().map_err(|_| invalid(op))?.as_ref().to_vec());
                let point = kp.public_key().as_ref().to_vec();
                (Inner::Ed25519(kp), canonical, point)
            }
            _ => {
                let (rc, canonical, point) = match curve {
                    EcCurve::P256 => nist!(p256, P256),
                    EcCurve::P384 => nist!(p384, P384),
                    _ => nist!(p521, P521),
                };
                let lc = EcdsaKeyPair::from_pkcs8(native(curve).0, &canonical).map_err(|_| invalid(op))?;
                (Inner::Nist { lc, rc: Box::new(rc) }, canonical, point)
            }
        };
        Ok(EcPrivate { curve, inner, pkcs8, public: EcPublic { curve, point } })
    }

    /// A new key on `curve`, drawn from the module's RNG.
    pub fn generate(curve: EcCurve, rng: &mut HsmRng) -> Result<Zeroizing<Vec<u8>>> {
        use p256::elliptic_curve::Generate as _;
        use p256::pkcs8::EncodePrivateKey as _;
        let fail = || Error::new(ErrorKind::FunctionFailed, Op::GenerateKeyPair).detail("EC key generation failed");
        let mut child = rng.fork();
        let der = match curve {
            EcCurve::P256 => p256::SecretKey::generate_from_rng(&mut child).to_pkcs8_der().map_err(|_| fail())?,
            EcCurve::P384 => p384::SecretKey::generate_from_rng(&mut child).to_pkcs8_der().map_err(|_| fail())?,
            EcCurve::P521 => p521::SecretKey::generate_from_rng(&mut child).to_pkcs8_der().map_err(|_| fail())?,
            EcCurve::Ed25519 => {
                let seed = Zeroizing::new(rng.array::<32>());
                let kp = Ed25519KeyPair::from_seed_unchecked(&seed[..]).map_err(|_| fail())?;
                return Ok(Zeroizing::new(kp.to_pkcs8v1().map_err(|_| fail())?.as_ref().to_vec()));
            }
        };
        Ok(Zeroizing::new(der.as_bytes().to_vec()))
    }

    /// The PKCS#8 form of the private value PKCS#11 carries in `CKA_VALUE`: an EC scalar (big
    /// endian, at most the field's length) or an Ed25519 seed (32 bytes). A value out of range
    /// (zero, or not below the curve's order) is refused.
    pub fn pkcs8_from_value(curve: EcCurve, value: &[u8], op: Op) -> Result<Zeroizing<Vec<u8>>> {
        use p256::pkcs8::EncodePrivateKey as _;
        let bad = || {
            Error::new(ErrorKind::AttributeValueInvalid, op)
                .detail(format!("CKA_VALUE is not a private value on {}", curve.name()))
        };
        if value.is_empty() || value.len() > curve.field_len() {
            return Err(bad());
        }
        let mut full = Zeroizing::new(vec![0u8; curve.field_len() - value.len()]);
        full.extend_from_slice(value);
        let der = match curve {
            EcCurve::P256 => p256::SecretKey::from_slice(&full).map_err(|_| bad())?.to_pkcs8_der(),
            EcCurve::P384 => p384::SecretKey::from_slice(&full).map_err(|_| bad())?.to_pkcs8_der(),
            EcCurve::P521 => p521::SecretKey::from_slice(&full).map_err(|_| bad())?.to_pkcs8_der(),
            EcCurve::Ed25519 => {
                let kp = Ed25519KeyPair::from_seed_unchecked(&full).map_err(|_| bad())?;
                return Ok(Zeroizing::new(kp.to_pkcs8v1().map_err(|_| bad())?.as_ref().to_vec()));
            }
        };
        Ok(Zeroizing::new(der.map_err(|_| bad())?.as_bytes().to_vec()))
    }

    /// The curve.
    pub fn curve(&self) -> EcCurve {
        self.curve
    }

    /// The key as PKCS#8 DER.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    pub fn public(&self) -> &EcPublic {
        &self.public
    }

    /// Signs `data` with `mech` (`CKM_ECDSA*` for NIST curves, `CKM_EDDSA` for Ed25519).
    pub fn sign(&self, mech: &Mechanism, data: &[u8]) -> Result<Vec<u8>> {
        let fail = || Error::new(ErrorKind::FunctionFailed, Op::Sign).detail("the signature could not be computed");
        match (&self.inner, mech) {
            (Inner::Ed25519(kp), Mechanism::Eddsa) => Ok(kp.sign(data).as_ref().to_vec()),
            (Inner::Nist { lc, rc }, Mechanism::Ecdsa { hash }) => {
                let hashed;
                let prehash = match hash {
                    Some(h) => {
                        hashed = hash_of(*h, data);
                        &hashed[..]
                    }
                    None => data,
                };
                let (_, native_digest) = native(self.curve);
                let n = native_digest.output_len();
                // ECDSA reads the digest as an integer of the order's length (FIPS 186-5 §6.4.1):
                // a shorter digest is that integer as it is (zeros in front change nothing), a
                // longer one loses its right-hand bits (on P-256 and P-384, whole bytes). Either
                // way AWS-LC signs the same integer in the curve's own digest length.
                let fitted: Option<Vec<u8>> = match prehash.len() {
                    len if len == n => Some(prehash.to_vec()),
                    len if len < n => Some(left_pad(prehash, n)),
                    _ if self.curve != EcCurve::P521 => Some(prehash[..n].to_vec()),
                    _ => None,
                };
                if let Some(fitted) = fitted {
                    let d = digest::Digest::import_less_safe(&fitted, native_digest).map_err(|_| fail())?;
                    return Ok(lc.sign_digest(&d).map_err(|_| fail())?.as_ref().to_vec());
                }
                use signature::hazmat::PrehashSigner as _;
                match rc.as_ref() {
                    RcSigning::P256(k) => k.sign_prehash(prehash).map(|s: p256::ecdsa::Signature| s.to_vec()),
                    RcSigning::P384(k) => k.sign_prehash(prehash).map(|s: p384::ecdsa::Signature| s.to_vec()),
                    RcSigning::P521(k) => k.sign_prehash(prehash).map(|s: p521::ecdsa::Signature| s.to_vec()),
                }
                .map_err(|_| fail())
            }
            (Inner::Ed25519(_), other) => Err(mechanism_invalid(other, Op::Sign, "an Ed25519 key")),
            (Inner::Nist { .. }, other) => Err(mechanism_invalid(other, Op::Sign, "an EC key")),
        }
    }
}

fn left_pad(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len.saturating_sub(bytes.len())];
    out.extend_from_slice(bytes);
    out
}

fn hash_of(hash: HashAlg, data: &[u8]) -> Vec<u8> {
    let alg = match hash {
        HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha224 => &digest::SHA224,
        HashAlg::Sha256 => &digest::SHA256,
        HashAlg::Sha384 => &digest::SHA384,
        HashAlg::Sha512 => &digest::SHA512,
    };
    digest::digest(alg, data).as_ref().to_vec()
}

impl EcPublic {
    /// Parses an EC or Ed25519 SubjectPublicKeyInfo; the point must be on the curve.
    pub fn from_spki(spki: &[u8], op: Op) -> Result<EcPublic> {
        let bad = || Error::new(ErrorKind::DataInvalid, op).detail("not an EC or Ed25519 SubjectPublicKeyInfo");
        let (curve, point) = EcCurve::parse_spki(spki).ok_or_else(bad)?;
        let on_curve = match curve {
            EcCurve::P256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
            EcCurve::P384 => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
            EcCurve::P521 => p521::PublicKey::from_sec1_bytes(&point).is_ok(),
            EcCurve::Ed25519 => true,
        };
        if !on_curve {
            return Err(Error::new(ErrorKind::DataInvalid, op).detail(format!("the point is not on {}", curve.name())));
        }
        Ok(EcPublic { curve, point })
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki(&self) -> Vec<u8> {
        self.curve.spki(&self.point)
    }

    /// Verifies `sig` over `data` with `mech`.
    pub fn verify(&self, mech: &Mechanism, data: &[u8], sig: &[u8]) -> Result<()> {
        let bad = || Error::new(ErrorKind::SignatureInvalid, Op::Verify);
        if sig.len() != self.curve.signature_len() {
            return Err(Error::new(ErrorKind::SignatureLenRange, Op::Verify).detail(format!(
                "a signature on {} is {} bytes, not {}",
                self.curve.name(),
                self.curve.signature_len(),
                sig.len()
            )));
        }
        match (self.curve, mech) {
            (EcCurve::Ed25519, Mechanism::Eddsa) => {
                lcsig::UnparsedPublicKey::new(&lcsig::ED25519, &self.point).verify(data, sig).map_err(|_| bad())
            }
            (EcCurve::Ed25519, other) => Err(mechanism_invalid(other, Op::Verify, "an Ed25519 key")),
            (curve, Mechanism::Ecdsa { hash }) => {
                let prehash = match hash {
                    Some(h) => hash_of(*h, data),
                    None => data.to_vec(),
                };
                // A digest shorter than the order is the same integer with zeros in front (up to
                // whole bytes within the order's length).
                let whole = curve.bits() as usize / 8;
                let prehash = if prehash.len() < whole { left_pad(&prehash, whole) } else { prehash };
                use signature::hazmat::PrehashVerifier as _;
                macro_rules! check {
                    ($m:ident) => {{
                        let key = $m::ecdsa::VerifyingKey::from_sec1_bytes(&self.point).map_err(|_| bad())?;
                        let s = $m::ecdsa::Signature::from_slice(sig).map_err(|_| bad())?;
                        key.verify_prehash(&prehash, &s).map_err(|_| bad())
                    }};
                }
                match curve {
                    EcCurve::P256 => check!(p256),
                    EcCurve::P384 => check!(p384),
                    _ => check!(p521),
                }
            }
            (_, other) => Err(mechanism_invalid(other, Op::Verify, "an EC key")),
        }
    }
}

//! Mechanisms the module offers, their parameters, and the state of multi-step operations.

use cryptoki_sys as ck;
use cryptoki_sys::{CK_FLAGS, CK_MECHANISM_TYPE, CK_ULONG};
use sha2::Digest as _;
use zeroize::Zeroizing;

use hsmkit_backend::{HashAlg, KeyHandle, Mechanism};

use crate::ffi::{Result, rv};

/// One row of the mechanism list: type, key sizes (bits for RSA, bytes for AES as PKCS#11 says),
/// flags.
pub struct MechRow {
    /// `CKM_*`.
    pub ty: CK_MECHANISM_TYPE,
    /// `ulMinKeySize`.
    pub min: CK_ULONG,
    /// `ulMaxKeySize`.
    pub max: CK_ULONG,
    /// `CKF_*`.
    pub flags: CK_FLAGS,
}

/// The digests the module computes itself (they need no key, so the emulator does not list them).
const DIGESTS: [CK_MECHANISM_TYPE; 5] = [ck::CKM_SHA_1, ck::CKM_SHA224, ck::CKM_SHA256, ck::CKM_SHA384, ck::CKM_SHA512];

/// The mechanism list (`C_GetMechanismList`, `C_GetMechanismInfo`): the emulator's capabilities,
/// with AES key sizes in bytes as PKCS#11 gives them, then the digests. Every mechanism runs inside
/// the (emulated) device: `CKF_HW`.
pub fn mechanisms(emu: &hsmkit_emulator::Emulator) -> Result<Vec<MechRow>> {
    use hsmkit_backend::{Backend as _, MechanismKind as K};
    let caps = emu.capabilities().map_err(crate::emu_err)?;
    let mut rows: Vec<MechRow> = caps
        .mechanisms
        .iter()
        .map(|m| {
            let aes = matches!(
                m.kind,
                K::AesKeyGen
                    | K::AesKeyWrap
                    | K::AesKeyWrapPad
                    | K::AesKeyWrapKwp
                    | K::AesEcb
                    | K::AesCbc
                    | K::AesCbcPad
                    | K::AesCtr
                    | K::AesGcm
                    | K::AesCmac
                    | K::AesCbcEncryptData
            );
            let unit = if aes { 8 } else { 1 };
            MechRow {
                ty: m.kind.ckm(),
                min: CK_ULONG::from(m.min_bits / unit),
                max: CK_ULONG::from(m.max_bits / unit),
                flags: m.flags.ckf() | ck::CKF_HW,
            }
        })
        .collect();
    rows.extend(DIGESTS.map(|ty| MechRow { ty, min: 0, max: 0, flags: ck::CKF_DIGEST | ck::CKF_HW }));
    Ok(rows)
}

/// OAEP parameters as the caller gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OaepIn {
    /// `hashAlg`.
    pub hash: CK_MECHANISM_TYPE,
    /// `mgf`.
    pub mgf: CK_ULONG,
    /// `source`.
    pub source: CK_ULONG,
    /// The label (`pSourceData`).
    pub label: Vec<u8>,
}

/// A mechanism's parameter as the caller gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// No parameter.
    None,
    /// Opaque bytes (an IV).
    Bytes(Vec<u8>),
    /// `CK_RSA_PKCS_OAEP_PARAMS`.
    Oaep(OaepIn),
    /// `CK_RSA_PKCS_PSS_PARAMS`: hash, MGF, salt length.
    Pss(CK_MECHANISM_TYPE, CK_ULONG, CK_ULONG),
    /// `CK_RSA_AES_KEY_WRAP_PARAMS`.
    RsaAes(CK_ULONG, OaepIn),
    /// `CK_AES_CTR_PARAMS`: counter bits, counter block.
    Ctr(CK_ULONG, [u8; 16]),
    /// `CK_GCM_PARAMS`: IV, additional authenticated data, tag bits.
    Gcm(Vec<u8>, Vec<u8>, CK_ULONG),
    /// `CK_EDDSA_PARAMS`: pre-hash flag, context.
    Eddsa(bool, Vec<u8>),
    /// A derivation mechanism's parameters, read whole into the seam's mechanism.
    Ready(Mechanism),
}

/// A mechanism as the caller gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MechIn {
    /// `CKM_*`.
    pub ty: CK_MECHANISM_TYPE,
    /// Its parameter.
    pub param: Param,
}

fn hash_of(ckm: CK_MECHANISM_TYPE) -> Option<(HashAlg, CK_ULONG)> {
    match ckm {
        ck::CKM_SHA_1 => Some((HashAlg::Sha1, ck::CKG_MGF1_SHA1)),
        ck::CKM_SHA224 => Some((HashAlg::Sha224, ck::CKG_MGF1_SHA224)),
        ck::CKM_SHA256 => Some((HashAlg::Sha256, ck::CKG_MGF1_SHA256)),
        ck::CKM_SHA384 => Some((HashAlg::Sha384, ck::CKG_MGF1_SHA384)),
        ck::CKM_SHA512 => Some((HashAlg::Sha512, ck::CKG_MGF1_SHA512)),
        _ => None,
    }
}

fn oaep(p: &OaepIn) -> Result<HashAlg> {
    let (hash, mgf) = hash_of(p.hash).ok_or(rv::MECHANISM_PARAM_INVALID)?;
    // The emulator's OAEP uses MGF1 with the same hash. An empty label may come with source 0
    // (callers such as pkcs11-tool leave it unset); a label comes with CKZ_DATA_SPECIFIED.
    if p.mgf != mgf || !matches!(p.source, 0 | ck::CKZ_DATA_SPECIFIED) || (!p.label.is_empty() && p.source == 0) {
        crate::log(&format!("OAEP takes MGF1 with its own hash (hash 0x{:x}, MGF 0x{:x} given)", p.hash, p.mgf));
        return Err(rv::MECHANISM_PARAM_INVALID);
    }
    Ok(hash)
}

/// The seam's mechanism for a caller's sign, verify, encrypt, decrypt, wrap or unwrap mechanism.
pub fn mechanism(m: &MechIn) -> Result<Mechanism> {
    let r = mechanism_of(m);
    if r.is_err() {
        let param = match &m.param {
            Param::None => "no parameter".to_string(),
            Param::Bytes(b) => format!("a {}-byte parameter", b.len()),
            Param::Oaep(_) => "OAEP parameters".into(),
            Param::Pss(..) => "PSS parameters".into(),
            Param::RsaAes(..) => "RSA-AES key wrap parameters".into(),
            Param::Ctr(..) => "AES-CTR parameters".into(),
            Param::Gcm(iv, _, tag) => format!("GCM parameters ({}-byte IV, {tag}-bit tag)", iv.len()),
            Param::Eddsa(ph, ctx) => format!("EdDSA parameters (pre-hash {ph}, {}-byte context)", ctx.len()),
            Param::Ready(m) => m.describe(),
        };
        crate::log(&format!("mechanism 0x{:x} with {param} is not supported", m.ty));
    }
    r
}

fn mechanism_of(m: &MechIn) -> Result<Mechanism> {
    let pkcs1 = |hash| match &m.param {
        Param::None => Ok(Mechanism::RsaPkcs1v15 { hash }),
        _ => Err(rv::MECHANISM_PARAM_INVALID),
    };
    // PSS takes its parameters (hash, MGF, salt length) from the caller: none is
    // CKR_MECHANISM_PARAM_INVALID (PKCS#11 §2.1.14).
    let pss = |hash: HashAlg| match m.param {
        Param::Pss(h, mgf, salt)
            if hash_of(h) == Some((hash, mgf)) && usize::try_from(salt).ok() == Some(hash.output_len()) =>
        {
            Ok(Mechanism::RsaPss { hash })
        }
        _ => Err(rv::MECHANISM_PARAM_INVALID),
    };
    match m.ty {
        ck::CKM_RSA_PKCS => match &m.param {
            Param::None => Ok(Mechanism::RsaPkcs1v15Raw),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_SHA1_RSA_PKCS => pkcs1(HashAlg::Sha1),
        ck::CKM_SHA224_RSA_PKCS => pkcs1(HashAlg::Sha224),
        ck::CKM_SHA256_RSA_PKCS => pkcs1(HashAlg::Sha256),
        ck::CKM_SHA384_RSA_PKCS => pkcs1(HashAlg::Sha384),
        ck::CKM_SHA512_RSA_PKCS => pkcs1(HashAlg::Sha512),
        ck::CKM_RSA_X_509 => match &m.param {
            Param::None => Ok(Mechanism::RsaX509),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        // PSS over the caller's digest: the parameters name its hash (MGF1 with the same hash,
        // a salt as long as the hash).
        ck::CKM_RSA_PKCS_PSS => match m.param {
            Param::Pss(h, mgf, salt) => match hash_of(h) {
                Some((hash, want_mgf)) if mgf == want_mgf && usize::try_from(salt).ok() == Some(hash.output_len()) => {
                    Ok(Mechanism::RsaPssRaw { hash })
                }
                _ => Err(rv::MECHANISM_PARAM_INVALID),
            },
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_SHA_1_HMAC | ck::CKM_SHA224_HMAC | ck::CKM_SHA256_HMAC | ck::CKM_SHA384_HMAC | ck::CKM_SHA512_HMAC => {
            match &m.param {
                Param::None => {
                    let hash = match m.ty {
                        ck::CKM_SHA_1_HMAC => HashAlg::Sha1,
                        ck::CKM_SHA224_HMAC => HashAlg::Sha224,
                        ck::CKM_SHA256_HMAC => HashAlg::Sha256,
                        ck::CKM_SHA384_HMAC => HashAlg::Sha384,
                        _ => HashAlg::Sha512,
                    };
                    Ok(Mechanism::Hmac { hash })
                }
                _ => Err(rv::MECHANISM_PARAM_INVALID),
            }
        }
        ck::CKM_SHA1_RSA_PKCS_PSS => pss(HashAlg::Sha1),
        ck::CKM_SHA224_RSA_PKCS_PSS => pss(HashAlg::Sha224),
        ck::CKM_SHA256_RSA_PKCS_PSS => pss(HashAlg::Sha256),
        ck::CKM_SHA384_RSA_PKCS_PSS => pss(HashAlg::Sha384),
        ck::CKM_SHA512_RSA_PKCS_PSS => pss(HashAlg::Sha512),
        ck::CKM_RSA_PKCS_OAEP => match &m.param {
            Param::Oaep(p) if p.label.is_empty() => Ok(Mechanism::RsaOaep { hash: oaep(p)? }),
            Param::Oaep(p) => Ok(Mechanism::RsaOaepLabel { hash: oaep(p)?, label: p.label.clone() }),
            // No parameter: PKCS #1's default parameters (SHA-1, MGF1 with SHA-1, no label), as
            // callers such as `pkcs11-tool --wrap` expect.
            Param::None => Ok(Mechanism::RsaOaep { hash: HashAlg::Sha1 }),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_AES_CMAC => match &m.param {
            Param::None => Ok(Mechanism::AesCmac),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_AES_ECB => match &m.param {
            Param::None => Ok(Mechanism::AesEcb),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_AES_CBC | ck::CKM_AES_CBC_PAD => match &m.param {
            Param::Bytes(iv) if iv.len() == 16 => {
                let mut v = [0u8; 16];
                v.copy_from_slice(iv);
                Ok(if m.ty == ck::CKM_AES_CBC { Mechanism::AesCbc { iv: v } } else { Mechanism::AesCbcPad { iv: v } })
            }
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_DES3_ECB => match &m.param {
            Param::None => Ok(Mechanism::Des3Ecb),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_DES3_CBC | ck::CKM_DES3_CBC_PAD => match &m.param {
            Param::Bytes(iv) if iv.len() == 8 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(iv);
                Ok(if m.ty == ck::CKM_DES3_CBC {
                    Mechanism::Des3Cbc { iv: v }
                } else {
                    Mechanism::Des3CbcPad { iv: v }
                })
            }
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_AES_CTR => match &m.param {
            Param::Ctr(bits @ 1..=128, cb) => Ok(Mechanism::AesCtr { counter: *cb, counter_bits: *bits as u8 }),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_AES_GCM => match &m.param {
            // The IV and tag lengths are the emulator's to check (it says which it takes).
            Param::Gcm(iv, aad, tag) if *tag <= 128 => {
                Ok(Mechanism::AesGcm { iv: iv.clone(), aad: aad.clone(), tag_bits: *tag as u16 })
            }
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_AES_KEY_WRAP => match &m.param {
            Param::None => Ok(Mechanism::AesKeyWrap),
            Param::Bytes(iv) if iv.is_empty() || iv[..] == [0xA6; 8] => Ok(Mechanism::AesKeyWrap),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_AES_KEY_WRAP_PAD | ck::CKM_AES_KEY_WRAP_KWP => {
            let kwp =
                if m.ty == ck::CKM_AES_KEY_WRAP_KWP { Mechanism::AesKeyWrapKwp } else { Mechanism::AesKeyWrapPad };
            match &m.param {
                Param::None => Ok(kwp),
                Param::Bytes(iv) if iv.is_empty() || iv[..] == [0xA6, 0x59, 0x59, 0xA6] => Ok(kwp),
                _ => Err(rv::MECHANISM_PARAM_INVALID),
            }
        }
        ck::CKM_ECDH1_DERIVE | ck::CKM_HKDF_DERIVE | ck::CKM_SP800_108_COUNTER_KDF | ck::CKM_AES_CBC_ENCRYPT_DATA => {
            match &m.param {
                Param::Ready(mech) if mech.kind().ckm() == m.ty => Ok(mech.clone()),
                _ => Err(rv::MECHANISM_PARAM_INVALID),
            }
        }
        ck::CKM_ECDSA
        | ck::CKM_ECDSA_SHA1
        | ck::CKM_ECDSA_SHA224
        | ck::CKM_ECDSA_SHA256
        | ck::CKM_ECDSA_SHA384
        | ck::CKM_ECDSA_SHA512 => match &m.param {
            Param::None => Ok(Mechanism::Ecdsa {
                hash: match m.ty {
                    ck::CKM_ECDSA_SHA1 => Some(HashAlg::Sha1),
                    ck::CKM_ECDSA_SHA224 => Some(HashAlg::Sha224),
                    ck::CKM_ECDSA_SHA256 => Some(HashAlg::Sha256),
                    ck::CKM_ECDSA_SHA384 => Some(HashAlg::Sha384),
                    ck::CKM_ECDSA_SHA512 => Some(HashAlg::Sha512),
                    _ => None,
                },
            }),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        // Pure Ed25519; Ed25519ctx and Ed25519ph (a context or the pre-hash flag) are not offered.
        ck::CKM_EDDSA => match &m.param {
            Param::None => Ok(Mechanism::Eddsa),
            Param::Eddsa(false, ctx) if ctx.is_empty() => Ok(Mechanism::Eddsa),
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        ck::CKM_RSA_AES_KEY_WRAP => match &m.param {
            Param::RsaAes(_, p) if !p.label.is_empty() => {
                crate::log("CKM_RSA_AES_KEY_WRAP's OAEP takes no label here");
                Err(rv::MECHANISM_PARAM_INVALID)
            }
            Param::RsaAes(bits @ (128 | 192 | 256), p) => {
                Ok(Mechanism::RsaAesKeyWrap { aes_bits: *bits as u16, hash: oaep(p)? })
            }
            _ => Err(rv::MECHANISM_PARAM_INVALID),
        },
        _ => Err(rv::MECHANISM_INVALID),
    }
}

/// A running digest.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-224.
    Sha224(sha2::Sha224),
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A digest for `m` (`CKM_SHA_1`, `CKM_SHA256`, …), which takes no parameter.
    pub fn new(m: &MechIn) -> Result<Hasher> {
        if m.param != Param::None {
            return Err(rv::MECHANISM_PARAM_INVALID);
        }
        Ok(match m.ty {
            ck::CKM_SHA_1 => Hasher::Sha1(Default::default()),
            ck::CKM_SHA224 => Hasher::Sha224(Default::default()),
            ck::CKM_SHA256 => Hasher::Sha256(Default::default()),
            ck::CKM_SHA384 => Hasher::Sha384(Default::default()),
            ck::CKM_SHA512 => Hasher::Sha512(Default::default()),
            _ => return Err(rv::MECHANISM_INVALID),
        })
    }

    /// A running hash of `alg`.
    pub fn for_alg(alg: hsmkit_backend::HashAlg) -> Hasher {
        use hsmkit_backend::HashAlg;
        match alg {
            HashAlg::Sha1 => Hasher::Sha1(Default::default()),
            HashAlg::Sha224 => Hasher::Sha224(Default::default()),
            HashAlg::Sha256 => Hasher::Sha256(Default::default()),
            HashAlg::Sha384 => Hasher::Sha384(Default::default()),
            HashAlg::Sha512 => Hasher::Sha512(Default::default()),
        }
    }

    /// Adds data.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// A sign or verify operation. A hash-and-sign mechanism hashes the parts as they arrive and
/// signs the digest at the end, HMAC and AES-CMAC run their MAC as the parts arrive; the others
/// (EdDSA, which reads its message twice, and the raw mechanisms, whose input is one block)
/// gather their input, bounded by [`crate::ffi::MAX_INPUT`].
pub struct SignOp {
    /// The mechanism.
    pub mech: Mechanism,
    /// The key.
    pub key: KeyHandle,
    /// The running hash of the parts, for a hash-and-sign mechanism.
    pub hasher: Option<Hasher>,
    /// The running MAC of the parts, for HMAC and AES-CMAC (begun at the first part).
    pub mac: Option<hsmkit_emulator::MacStream>,
    /// The parts so far, for the other mechanisms.
    pub data: Zeroizing<Vec<u8>>,
    /// Whether `C_SignUpdate` was called (then `C_Sign` may not be).
    pub multipart: bool,
    /// Whether `C_Sign` was called (a length query): then only `C_Sign` may finish it.
    pub single: bool,
    /// For a key with `CKA_ALWAYS_AUTHENTICATE`: whether the context-specific login is still
    /// owed (`Some(false)`) or was given (`Some(true)`).
    pub reauth: Option<bool>,
    /// A signature computed for a length query, handed out on the next call.
    pub result: Option<Vec<u8>>,
}

/// An encrypt or decrypt operation (single-part mechanisms only).
pub struct CipherOp {
    /// The mechanism.
    pub mech: Mechanism,
    /// The key.
    pub key: KeyHandle,
    /// Output computed for a length query, handed out on the next call.
    pub result: Option<Zeroizing<Vec<u8>>>,
    /// As [`SignOp::reauth`].
    pub reauth: Option<bool>,
    /// The input gathered by `C_EncryptUpdate`/`C_DecryptUpdate` (AES modes), processed at the end.
    pub data: Zeroizing<Vec<u8>>,
    /// Whether an update was called (then `C_Encrypt`/`C_Decrypt` may not be).
    pub multipart: bool,
    /// Whether `C_Encrypt`/`C_Decrypt` was called (then only it may finish the operation).
    pub single: bool,
}

/// A digest operation.
pub struct DigestOp {
    /// The running hash.
    pub hasher: Hasher,
    /// Whether `C_DigestUpdate` was called.
    pub multipart: bool,
    /// Whether `C_Digest` was called (a length query): then only `C_Digest` may finish it.
    pub single: bool,
}

/// A search.
pub struct FindOp {
    /// The handles found, in order.
    pub found: Vec<u64>,
    /// How many were handed out.
    pub next: usize,
}

/// The active operations of a session, one of each kind at most.
#[derive(Default)]
pub struct Ops {
    /// `C_FindObjects*`.
    pub find: Option<FindOp>,
    /// `C_Sign*`.
    pub sign: Option<SignOp>,
    /// `C_Verify*`.
    pub verify: Option<SignOp>,
    /// `C_Encrypt*`.
    pub encrypt: Option<CipherOp>,
    /// `C_Decrypt*`.
    pub decrypt: Option<CipherOp>,
    /// `C_Digest*`.
    pub digest: Option<DigestOp>,
}

//! Plain data types of the seam.

use std::fmt;

use zeroize::Zeroizing;

use crate::ec::EcCurve;
use crate::mechanism::{MechanismInfo, MechanismKind};
use crate::policy::KeyPolicy;

/// A slot (PKCS#11 `CK_SLOT_ID`; the emulator has one slot per module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub u64);

/// A key object inside a session (PKCS#11 `CK_OBJECT_HANDLE`; an nShield `M_KeyID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHandle(pub u64);

/// Read-only or read-write session (`CKF_RW_SESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// Objects can be used but not created or destroyed on the token.
    ReadOnly,
    /// Objects can be created and destroyed.
    ReadWrite,
}

/// Who logs in (`CKU_USER`, `CKU_SO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKind {
    /// The normal user.
    User,
    /// The security officer; on an nShield world, the Administrator Card Set quorum.
    SecurityOfficer,
}

/// Who made the backend and what it is (`C_GetInfo`, `C_GetTokenInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// Manufacturer.
    pub vendor: String,
    /// Model or library description.
    pub model: String,
    /// Firmware or library version.
    pub firmware: String,
    /// Serial number (the nShield ESN).
    pub serial: String,
    /// Whether private keys need the user's login (`CKF_LOGIN_REQUIRED`; on the emulator, whether
    /// the token has a user PIN).
    pub login_required: bool,
}

/// What a backend can do; drives skips in the kit and the composed RSA-AES wrap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// The mechanism list.
    pub mechanisms: Vec<MechanismInfo>,
}

impl Capabilities {
    /// The row for `kind`, if listed.
    pub fn mechanism(&self, kind: MechanismKind) -> Option<&MechanismInfo> {
        self.mechanisms.iter().find(|m| m.kind == kind)
    }
}

/// Kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// RSA (`CKK_RSA`).
    Rsa,
    /// AES (`CKK_AES`).
    Aes,
    /// A generic secret (`CKK_GENERIC_SECRET`): bytes of any length, to be wrapped and unwrapped.
    GenericSecret,
    /// An elliptic-curve key on a NIST curve (`CKK_EC`): ECDSA and ECDH.
    Ec,
    /// An Edwards-curve key (`CKK_EC_EDWARDS`): Ed25519 signatures.
    EcEdwards,
    /// A triple-DES key (`CKK_DES3`, 24 bytes): legacy, for the older applications and test suites
    /// that still use it.
    Des3,
}

/// Object class (`CKO_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectClass {
    /// `CKO_PRIVATE_KEY`.
    PrivateKey,
    /// `CKO_PUBLIC_KEY`.
    PublicKey,
    /// `CKO_SECRET_KEY`.
    SecretKey,
}

/// A secret key to generate (`C_GenerateKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySpec {
    /// An AES key of 128, 192 or 256 bits.
    Aes {
        /// Key size in bits.
        bits: u32,
    },
    /// A generic secret of 1 to 512 bytes (`CKM_GENERIC_SECRET_KEY_GEN`).
    GenericSecret {
        /// Length in bytes (`CKA_VALUE_LEN`).
        bytes: u32,
    },
    /// A triple-DES key (`CKM_DES3_KEY_GEN`): three independent DES keys, odd parity. Legacy.
    Des3,
}

/// A key pair to generate (`C_GenerateKeyPair`; nShield `generatekey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPairSpec {
    /// An RSA key pair.
    Rsa {
        /// Modulus size in bits.
        bits: u32,
        /// Public exponent (65537 unless there is a reason).
        public_exponent: u64,
    },
    /// An elliptic-curve key pair (`CKM_EC_KEY_PAIR_GEN`, or `CKM_EC_EDWARDS_KEY_PAIR_GEN` for
    /// Ed25519; nShield `generatekey type=ECDSA curve=NISTP256`).
    Ec {
        /// The curve.
        curve: EcCurve,
    },
}

/// Key material to import (`C_CreateObject`). Secret material is zeroized on drop and never printed.
#[non_exhaustive]
pub enum KeyMaterial {
    /// An RSA private key as PKCS#8 `PrivateKeyInfo` DER.
    RsaPrivatePkcs8(Zeroizing<Vec<u8>>),
    /// An RSA public key as X.509 `SubjectPublicKeyInfo` DER.
    RsaPublicSpki(Vec<u8>),
    /// An AES key's raw bytes.
    Aes(Zeroizing<Vec<u8>>),
    /// A generic secret's bytes.
    GenericSecret(Zeroizing<Vec<u8>>),
    /// A triple-DES key's 24 bytes (legacy).
    Des3(Zeroizing<Vec<u8>>),
    /// An EC or Ed25519 private key as PKCS#8 `PrivateKeyInfo` DER (RFC 5915 inside for NIST
    /// curves, RFC 8410 for Ed25519).
    EcPrivatePkcs8(Zeroizing<Vec<u8>>),
    /// An EC or Ed25519 public key as X.509 `SubjectPublicKeyInfo` DER.
    EcPublicSpki(Vec<u8>),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::RsaPrivatePkcs8(_) => f.write_str("RsaPrivatePkcs8(<redacted>)"),
            KeyMaterial::RsaPublicSpki(d) => write!(f, "RsaPublicSpki({} bytes)", d.len()),
            KeyMaterial::Aes(k) => write!(f, "Aes(<{} bits redacted>)", k.len() * 8),
            KeyMaterial::GenericSecret(k) => write!(f, "GenericSecret(<{} bytes redacted>)", k.len()),
            KeyMaterial::EcPrivatePkcs8(_) => f.write_str("EcPrivatePkcs8(<redacted>)"),
            KeyMaterial::Des3(_) => f.write_str("Des3(<redacted>)"),
            KeyMaterial::EcPublicSpki(d) => write!(f, "EcPublicSpki({} bytes)", d.len()),
        }
    }
}

/// Which keys to find (`C_FindObjectsInit` template). Empty fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    /// `CKA_CLASS`.
    pub class: Option<ObjectClass>,
    /// `CKA_KEY_TYPE`.
    pub key_type: Option<KeyType>,
    /// `CKA_LABEL`.
    pub label: Option<String>,
    /// `CKA_ID`.
    pub id: Option<Vec<u8>>,
}

/// An attribute to read (`CKA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttrKind {
    /// `CKA_CLASS`.
    Class,
    /// `CKA_KEY_TYPE`.
    KeyType,
    /// `CKA_LABEL`.
    Label,
    /// `CKA_ID`.
    Id,
    /// `CKA_MODULUS_BITS` (RSA), `CKA_VALUE_LEN` × 8 (AES), or the curve's size (EC).
    Bits,
    /// `CKA_MODULUS`.
    Modulus,
    /// `CKA_PUBLIC_EXPONENT`.
    PublicExponent,
    /// `CKA_PUBLIC_KEY_INFO`: SubjectPublicKeyInfo DER.
    PublicKeyInfo,
    /// `CKA_EC_PARAMS`: the DER of the curve's object identifier (EC and Ed25519 keys).
    EcParams,
    /// `CKA_EC_POINT`: the public point as a DER OCTET STRING (EC and Ed25519 public keys).
    EcPoint,
    /// `CKA_VALUE` (secret key bytes, or the private exponent): sensitive unless the policy allows.
    Value,
    /// The key's policy (`CKA_SIGN` … `CKA_ALLOWED_MECHANISMS`), read as one value.
    Policy,
}

/// An attribute's value.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttrValue {
    /// An object class.
    Class(ObjectClass),
    /// A key type.
    KeyType(KeyType),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// Secret bytes (zeroized on drop, redacted in `Debug`).
    Secret(Zeroizing<Vec<u8>>),
    /// A number.
    Number(u64),
    /// A policy.
    Policy(KeyPolicy),
}

impl fmt::Debug for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Class(c) => write!(f, "Class({c:?})"),
            AttrValue::KeyType(k) => write!(f, "KeyType({k:?})"),
            AttrValue::Text(t) => write!(f, "Text({t:?})"),
            AttrValue::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            AttrValue::Secret(_) => f.write_str("Secret(<redacted>)"),
            AttrValue::Number(n) => write!(f, "Number({n})"),
            AttrValue::Policy(p) => write!(f, "Policy({p:?})"),
        }
    }
}

/// One attribute read: its value, or why it has none. A sensitive or absent attribute does not
/// abort the whole read (PKCS#11 §5.7 `C_GetAttributeValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    /// The attribute and its value.
    Value(AttrKind, AttrValue),
    /// The attribute exists but is sensitive or unextractable.
    Sensitive(AttrKind),
    /// The object has no such attribute.
    Invalid(AttrKind),
}

//! Mechanisms: what an operation does ([`Mechanism`]) and its PKCS#11 identity ([`MechanismKind`]).

use cryptoki_sys as ck;

/// A hash function used by a signature or OAEP mechanism (and, for PSS and OAEP, by MGF1 too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1 (FIPS 180-4): legacy, still the hash of RSA-OAEP in the Azure and GCP formats.
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// Conventional name (`SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "SHA-1",
            HashAlg::Sha224 => "SHA-224",
            HashAlg::Sha256 => "SHA-256",
            HashAlg::Sha384 => "SHA-384",
            HashAlg::Sha512 => "SHA-512",
        }
    }

    /// PKCS#11 `CKM_SHA*` value (the `hashAlg` of OAEP and PSS parameters).
    pub fn ckm(self) -> ck::CK_MECHANISM_TYPE {
        match self {
            HashAlg::Sha1 => ck::CKM_SHA_1,
            HashAlg::Sha224 => ck::CKM_SHA224,
            HashAlg::Sha256 => ck::CKM_SHA256,
            HashAlg::Sha384 => ck::CKM_SHA384,
            HashAlg::Sha512 => ck::CKM_SHA512,
        }
    }
}

/// The pseudo-random function of an SP 800-108 KDF (`prfType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KdfPrf {
    /// HMAC with a hash (`CKM_SHA256_HMAC` and kin), keyed with a generic secret.
    Hmac(HashAlg),
    /// AES-CMAC (`CKM_AES_CMAC`), keyed with an AES key.
    AesCmac,
}

/// One element of an SP 800-108 KDF's fixed input (`CK_PRF_DATA_PARAM`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KdfParam {
    /// The iteration counter `i` (`CK_SP800_108_ITERATION_VARIABLE` in counter mode), encoded in
    /// `bits` bits (8, 16, 24 or 32).
    Counter {
        /// Little-endian rather than big-endian.
        little_endian: bool,
        /// Width in bits.
        bits: u8,
    },
    /// The derived keying material's length `L` in bits (`CK_SP800_108_DKM_LENGTH`).
    DkmLength {
        /// Little-endian rather than big-endian.
        little_endian: bool,
        /// Width in bits (8 to 64, whole bytes).
        bits: u8,
    },
    /// Fixed bytes (`CK_SP800_108_BYTE_ARRAY`): the label, the separator, the context.
    Bytes(Vec<u8>),
}

/// An operation's mechanism with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// `CKM_RSA_PKCS`: RSASSA-PKCS1-v1_5 padding of data the caller prepared (signing: the DER
    /// `DigestInfo` of a hash computed outside, as OpenSSL's PKCS#11 engine sends it), and
    /// RSAES-PKCS1-v1_5 encryption and decryption (RFC 8017 §7.2; decryption failures opaque).
    RsaPkcs1v15Raw,
    /// RSASSA-PKCS1-v1_5 with the data hashed inside (`CKM_SHA256_RSA_PKCS` and kin; RFC 8017 §8.2).
    RsaPkcs1v15 {
        /// Digest applied to the data.
        hash: HashAlg,
    },
    /// RSASSA-PSS with the data hashed inside (`CKM_SHA256_RSA_PKCS_PSS` and kin; RFC 8017 §8.1),
    /// MGF1 with the same hash and a salt as long as the hash.
    RsaPss {
        /// Digest applied to the data, and MGF1's hash.
        hash: HashAlg,
    },
    /// RSASSA-PSS over a digest the caller computed (`CKM_RSA_PKCS_PSS`): MGF1 with the same hash
    /// and a salt as long as the hash; the input is the digest.
    RsaPssRaw {
        /// The digest's hash, and MGF1's.
        hash: HashAlg,
    },
    /// Raw RSA (`CKM_RSA_X_509`): no padding; the input, as a number below the modulus, is raised
    /// to the key's exponent. Sign and decrypt with the private key, verify and encrypt with the
    /// public one.
    RsaX509,
    /// RSAES-OAEP with a label (`CKM_RSA_PKCS_OAEP` with `CKZ_DATA_SPECIFIED` data), MGF1 with the
    /// same hash.
    RsaOaepLabel {
        /// OAEP hash and MGF1 hash.
        hash: HashAlg,
        /// The label.
        label: Vec<u8>,
    },
    /// HMAC (`CKM_SHA256_HMAC` and kin; RFC 2104) with a generic secret key: sign makes the full
    /// tag, verify checks it in constant time.
    Hmac {
        /// The hash.
        hash: HashAlg,
    },
    /// AES-CMAC (`CKM_AES_CMAC`; RFC 4493, SP 800-38B): a full 16-byte tag with an AES key.
    AesCmac,
    /// ECDSA (FIPS 186-5) with an EC key; the signature is `r || s`, each as long as the curve's
    /// field, as PKCS#11 gives it. Without a hash (`CKM_ECDSA`) the input is a digest the caller
    /// computed; with one (`CKM_ECDSA_SHA256` and kin) the data is hashed inside.
    Ecdsa {
        /// The hash applied to the data; `None`: the data is the digest.
        hash: Option<HashAlg>,
    },
    /// Pure Ed25519 (`CKM_EDDSA` without parameters; RFC 8032) with an Edwards-curve key.
    Eddsa,
    /// ECDH key agreement (`CKM_ECDH1_DERIVE`; SP 800-56A): the x-coordinate of the shared
    /// point, through the ANSI X9.63 KDF with `kdf`'s hash, or as it is (`CKD_NULL`, the key
    /// taking the secret's trailing bytes as PKCS#11 truncates).
    Ecdh1Derive {
        /// `CKD_SHA*_KDF` (ANSI X9.63) with this hash; `None`: `CKD_NULL`.
        kdf: Option<HashAlg>,
        /// The KDF's shared info (`pSharedData`; empty with `CKD_NULL`).
        shared_data: Vec<u8>,
        /// The other party's public point (uncompressed, as `pPublicData` carries it).
        public: Vec<u8>,
    },
    /// HKDF (`CKM_HKDF_DERIVE`; RFC 5869) with a generic secret as input keying material.
    HkdfDerive {
        /// The HMAC hash.
        hash: HashAlg,
        /// Run the extract step (`bExtract`).
        extract: bool,
        /// Run the expand step (`bExpand`).
        expand: bool,
        /// The salt (`CKF_HKDF_SALT_DATA`; empty: `CKF_HKDF_SALT_NULL`, a hash-length of zeros).
        salt: Vec<u8>,
        /// The expand step's info.
        info: Vec<u8>,
    },
    /// The SP 800-108 KDF in counter mode (`CKM_SP800_108_COUNTER_KDF`), one derived key.
    Sp800108Counter {
        /// The pseudo-random function.
        prf: KdfPrf,
        /// The fixed input, in order (`CK_PRF_DATA_PARAM`s).
        params: Vec<KdfParam>,
    },
    /// `CKM_AES_CBC_ENCRYPT_DATA`: the new key's value is the AES-CBC encryption (no padding) of
    /// `data` under the base key.
    AesCbcEncryptData {
        /// The IV.
        iv: [u8; 16],
        /// The data, whole blocks.
        data: Vec<u8>,
    },
    /// RSAES-OAEP (`CKM_RSA_PKCS_OAEP`; RFC 8017 §7.1), MGF1 with the same hash, empty label.
    RsaOaep {
        /// OAEP hash and MGF1 hash.
        hash: HashAlg,
    },
    /// AES in ECB mode (`CKM_AES_ECB`; SP 800-38A): whole blocks, no IV.
    AesEcb,
    /// AES in CBC mode (`CKM_AES_CBC`; SP 800-38A): whole blocks.
    AesCbc {
        /// The initialisation vector.
        iv: [u8; 16],
    },
    /// AES in CBC mode with PKCS #7 padding (`CKM_AES_CBC_PAD`).
    AesCbcPad {
        /// The initialisation vector.
        iv: [u8; 16],
    },
    /// AES in counter mode (`CKM_AES_CTR`; SP 800-38A): the low `counter_bits` bits of the counter
    /// block count up, big-endian.
    AesCtr {
        /// The initial counter block.
        counter: [u8; 16],
        /// How many low bits of it are the counter (1 to 128).
        counter_bits: u8,
    },
    /// AES-GCM (`CKM_AES_GCM`; SP 800-38D): a 96-bit IV, additional authenticated data, and a
    /// 128-bit tag appended to the ciphertext.
    AesGcm {
        /// The IV (12 bytes).
        iv: Vec<u8>,
        /// Additional authenticated data.
        aad: Vec<u8>,
        /// The tag length in bits (128).
        tag_bits: u16,
    },
    /// Triple DES in ECB mode (`CKM_DES3_ECB`; SP 800-67): whole 8-byte blocks. Legacy.
    Des3Ecb,
    /// Triple DES in CBC mode (`CKM_DES3_CBC`): whole blocks. Legacy.
    Des3Cbc {
        /// The initialisation vector.
        iv: [u8; 8],
    },
    /// Triple DES in CBC mode with PKCS #7 padding (`CKM_DES3_CBC_PAD`). Legacy.
    Des3CbcPad {
        /// The initialisation vector.
        iv: [u8; 8],
    },
    /// AES key wrap (`CKM_AES_KEY_WRAP`; RFC 3394, SP 800-38F KW).
    AesKeyWrap,
    /// AES key wrap with padding as RFC 5649 (SP 800-38F KWP), called as `CKM_AES_KEY_WRAP_PAD`,
    /// the number SoftHSM2 and nShield give it. (PKCS#11 2.40 leaves `_PAD` loosely defined, and
    /// NSS means PKCS #7 padding then RFC 3394 by it: the conformance kit names the difference.)
    AesKeyWrapPad,
    /// AES key wrap with padding as RFC 5649, called as `CKM_AES_KEY_WRAP_KWP` (PKCS#11 3.0).
    AesKeyWrapKwp,
    /// `CKM_RSA_AES_KEY_WRAP` (PKCS#11 2.40 §2.1.21): an ephemeral AES key wrapped with RSA-OAEP,
    /// then the target wrapped with AES-KWP under it; the two are concatenated.
    RsaAesKeyWrap {
        /// Size of the ephemeral AES key: 128, 192 or 256.
        aes_bits: u16,
        /// OAEP hash (and MGF1 hash) for the ephemeral key.
        hash: HashAlg,
    },
}

impl Mechanism {
    /// The PKCS#11 identity of this mechanism.
    pub fn kind(&self) -> MechanismKind {
        use HashAlg::*;
        match *self {
            Mechanism::RsaPkcs1v15Raw => MechanismKind::RsaPkcs,
            Mechanism::RsaPkcs1v15 { hash: Sha1 } => MechanismKind::Sha1RsaPkcs,
            Mechanism::RsaPkcs1v15 { hash: Sha224 } => MechanismKind::Sha224RsaPkcs,
            Mechanism::RsaPkcs1v15 { hash: Sha256 } => MechanismKind::Sha256RsaPkcs,
            Mechanism::RsaPkcs1v15 { hash: Sha384 } => MechanismKind::Sha384RsaPkcs,
            Mechanism::RsaPkcs1v15 { hash: Sha512 } => MechanismKind::Sha512RsaPkcs,
            Mechanism::RsaPss { hash: Sha1 } => MechanismKind::Sha1RsaPkcsPss,
            Mechanism::RsaPss { hash: Sha224 } => MechanismKind::Sha224RsaPkcsPss,
            Mechanism::RsaPss { hash: Sha256 } => MechanismKind::Sha256RsaPkcsPss,
            Mechanism::RsaPss { hash: Sha384 } => MechanismKind::Sha384RsaPkcsPss,
            Mechanism::RsaPss { hash: Sha512 } => MechanismKind::Sha512RsaPkcsPss,
            Mechanism::RsaPssRaw { .. } => MechanismKind::RsaPkcsPss,
            Mechanism::RsaX509 => MechanismKind::RsaX509,
            Mechanism::Hmac { hash: Sha1 } => MechanismKind::Sha1Hmac,
            Mechanism::Hmac { hash: Sha224 } => MechanismKind::Sha224Hmac,
            Mechanism::Hmac { hash: Sha256 } => MechanismKind::Sha256Hmac,
            Mechanism::Hmac { hash: Sha384 } => MechanismKind::Sha384Hmac,
            Mechanism::Hmac { hash: Sha512 } => MechanismKind::Sha512Hmac,
            Mechanism::RsaOaep { .. } | Mechanism::RsaOaepLabel { .. } => MechanismKind::RsaPkcsOaep,
            Mechanism::AesCmac => MechanismKind::AesCmac,
            Mechanism::Ecdsa { hash: None } => MechanismKind::Ecdsa,
            Mechanism::Ecdsa { hash: Some(Sha1) } => MechanismKind::EcdsaSha1,
            Mechanism::Ecdsa { hash: Some(Sha224) } => MechanismKind::EcdsaSha224,
            Mechanism::Ecdsa { hash: Some(Sha256) } => MechanismKind::EcdsaSha256,
            Mechanism::Ecdsa { hash: Some(Sha384) } => MechanismKind::EcdsaSha384,
            Mechanism::Ecdsa { hash: Some(Sha512) } => MechanismKind::EcdsaSha512,
            Mechanism::Eddsa => MechanismKind::Eddsa,
            Mechanism::Ecdh1Derive { .. } => MechanismKind::Ecdh1Derive,
            Mechanism::HkdfDerive { .. } => MechanismKind::HkdfDerive,
            Mechanism::Sp800108Counter { .. } => MechanismKind::Sp800108CounterKdf,
            Mechanism::AesCbcEncryptData { .. } => MechanismKind::AesCbcEncryptData,
            Mechanism::AesEcb => MechanismKind::AesEcb,
            Mechanism::AesCbc { .. } => MechanismKind::AesCbc,
            Mechanism::AesCbcPad { .. } => MechanismKind::AesCbcPad,
            Mechanism::AesCtr { .. } => MechanismKind::AesCtr,
            Mechanism::AesGcm { .. } => MechanismKind::AesGcm,
            Mechanism::Des3Ecb => MechanismKind::Des3Ecb,
            Mechanism::Des3Cbc { .. } => MechanismKind::Des3Cbc,
            Mechanism::Des3CbcPad { .. } => MechanismKind::Des3CbcPad,
            Mechanism::AesKeyWrap => MechanismKind::AesKeyWrap,
            Mechanism::AesKeyWrapPad => MechanismKind::AesKeyWrapPad,
            Mechanism::AesKeyWrapKwp => MechanismKind::AesKeyWrapKwp,
            Mechanism::RsaAesKeyWrap { .. } => MechanismKind::RsaAesKeyWrap,
        }
    }

    /// The type of key this mechanism works with (for a wrap, the wrapping key's).
    pub fn key_type(&self) -> crate::types::KeyType {
        use crate::types::KeyType;
        match self {
            Mechanism::Hmac { .. } | Mechanism::HkdfDerive { .. } => KeyType::GenericSecret,
            Mechanism::Sp800108Counter { prf: KdfPrf::Hmac(_), .. } => KeyType::GenericSecret,
            Mechanism::Sp800108Counter { prf: KdfPrf::AesCmac, .. } | Mechanism::AesCbcEncryptData { .. } => {
                KeyType::Aes
            }
            Mechanism::Ecdh1Derive { .. } => KeyType::Ec,
            Mechanism::Des3Ecb | Mechanism::Des3Cbc { .. } | Mechanism::Des3CbcPad { .. } => KeyType::Des3,
            Mechanism::AesCmac
            | Mechanism::AesEcb
            | Mechanism::AesCbc { .. }
            | Mechanism::AesCbcPad { .. }
            | Mechanism::AesCtr { .. }
            | Mechanism::AesGcm { .. }
            | Mechanism::AesKeyWrap
            | Mechanism::AesKeyWrapPad
            | Mechanism::AesKeyWrapKwp => KeyType::Aes,
            Mechanism::Ecdsa { .. } => KeyType::Ec,
            Mechanism::Eddsa => KeyType::EcEdwards,
            Mechanism::RsaPkcs1v15Raw
            | Mechanism::RsaPkcs1v15 { .. }
            | Mechanism::RsaPss { .. }
            | Mechanism::RsaPssRaw { .. }
            | Mechanism::RsaX509
            | Mechanism::RsaOaep { .. }
            | Mechanism::RsaOaepLabel { .. }
            | Mechanism::RsaAesKeyWrap { .. } => KeyType::Rsa,
        }
    }

    /// What this mechanism does: the functions it may start (`CKF_SIGN`, `CKF_ENCRYPT`, …), the
    /// one table the PKCS#11 module checks an operation's mechanism against.
    pub fn functions(&self) -> MechanismFlags {
        let sv = MechanismFlags::SIGN | MechanismFlags::VERIFY;
        let ed = MechanismFlags::ENCRYPT | MechanismFlags::DECRYPT;
        let wu = MechanismFlags::WRAP | MechanismFlags::UNWRAP;
        match self {
            Mechanism::RsaPkcs1v15Raw | Mechanism::RsaX509 => sv | ed,
            Mechanism::RsaPkcs1v15 { .. }
            | Mechanism::RsaPss { .. }
            | Mechanism::RsaPssRaw { .. }
            | Mechanism::Hmac { .. }
            | Mechanism::AesCmac
            | Mechanism::Ecdsa { .. }
            | Mechanism::Eddsa => sv,
            Mechanism::RsaOaep { .. } => ed | wu,
            Mechanism::RsaOaepLabel { .. } => ed,
            Mechanism::AesEcb
            | Mechanism::AesCbc { .. }
            | Mechanism::AesCbcPad { .. }
            | Mechanism::AesCtr { .. }
            | Mechanism::AesGcm { .. }
            | Mechanism::Des3Ecb
            | Mechanism::Des3Cbc { .. }
            | Mechanism::Des3CbcPad { .. } => ed,
            Mechanism::AesKeyWrap
            | Mechanism::AesKeyWrapPad
            | Mechanism::AesKeyWrapKwp
            | Mechanism::RsaAesKeyWrap { .. } => wu,
            Mechanism::Ecdh1Derive { .. }
            | Mechanism::HkdfDerive { .. }
            | Mechanism::Sp800108Counter { .. }
            | Mechanism::AesCbcEncryptData { .. } => MechanismFlags::DERIVE,
        }
    }

    /// Whether this is a block-cipher encryption mode with a secret key (AES ECB, CBC, CBC-PAD,
    /// CTR, GCM; DES3 ECB, CBC, CBC-PAD) rather than a key wrap.
    pub fn is_secret_cipher(&self) -> bool {
        matches!(
            self,
            Mechanism::AesEcb
                | Mechanism::AesCbc { .. }
                | Mechanism::AesCbcPad { .. }
                | Mechanism::AesCtr { .. }
                | Mechanism::AesGcm { .. }
                | Mechanism::Des3Ecb
                | Mechanism::Des3Cbc { .. }
                | Mechanism::Des3CbcPad { .. }
        )
    }

    /// A readable name with parameters, for messages (`RSA-OAEP(SHA-256)`).
    pub fn describe(&self) -> String {
        match self {
            Mechanism::RsaOaep { hash } => format!("RSA-OAEP({})", hash.name()),
            Mechanism::RsaOaepLabel { hash, label } => format!("RSA-OAEP({}, {}-byte label)", hash.name(), label.len()),
            Mechanism::RsaPssRaw { hash } => format!("RSA-PKCS-PSS({})", hash.name()),
            Mechanism::Ecdsa { hash: Some(hash) } => format!("ECDSA({})", hash.name()),
            Mechanism::Ecdh1Derive { kdf: Some(hash), .. } => format!("ECDH1-DERIVE(X9.63 KDF, {})", hash.name()),
            Mechanism::HkdfDerive { hash, .. } => format!("HKDF-DERIVE({})", hash.name()),
            Mechanism::RsaAesKeyWrap { aes_bits, hash } => {
                format!("RSA-AES-KEY-WRAP(AES-{aes_bits}, OAEP {})", hash.name())
            }
            other => other.kind().name().to_string(),
        }
    }
}

/// Defines [`MechanismKind`] with its `CKM_*` value and name in one table.
macro_rules! mechanism_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $ckm:ident, $name:literal; )*) => {
        /// A mechanism's identity, as PKCS#11 numbers it (used in capability lists and policies).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum MechanismKind { $( $(#[$doc])* $variant, )* }

        impl MechanismKind {
            /// Every kind in the table.
            pub const ALL: &'static [MechanismKind] = &[$(MechanismKind::$variant),*];

            /// The `CKM_*` value.
            pub fn ckm(self) -> ck::CK_MECHANISM_TYPE {
                match self { $( MechanismKind::$variant => ck::$ckm, )* }
            }

            /// The kind of a `CKM_*` value, if hsmkit knows it.
            pub fn from_ckm(ckm: ck::CK_MECHANISM_TYPE) -> Option<Self> {
                $( if ckm == ck::$ckm { return Some(MechanismKind::$variant); } )*
                None
            }

            /// The `CKM_*` constant's name without the prefix, as `pkcs11-tool -M` prints it.
            pub fn name(self) -> &'static str {
                match self { $( MechanismKind::$variant => $name, )* }
            }
        }
    };
}

mechanism_kinds! {
    /// `CKM_RSA_PKCS_KEY_PAIR_GEN`.
    RsaPkcsKeyPairGen => CKM_RSA_PKCS_KEY_PAIR_GEN, "RSA-PKCS-KEY-PAIR-GEN";
    /// `CKM_EC_KEY_PAIR_GEN`.
    EcKeyPairGen => CKM_EC_KEY_PAIR_GEN, "EC-KEY-PAIR-GEN";
    /// `CKM_EC_EDWARDS_KEY_PAIR_GEN`.
    EcEdwardsKeyPairGen => CKM_EC_EDWARDS_KEY_PAIR_GEN, "EC-EDWARDS-KEY-PAIR-GEN";
    /// `CKM_AES_KEY_GEN`.
    AesKeyGen => CKM_AES_KEY_GEN, "AES-KEY-GEN";
    /// `CKM_GENERIC_SECRET_KEY_GEN`.
    GenericSecretKeyGen => CKM_GENERIC_SECRET_KEY_GEN, "GENERIC-SECRET-KEY-GEN";
    /// `CKM_RSA_PKCS`: PKCS#1 v1.5 signing of a caller's `DigestInfo`, and encryption.
    RsaPkcs => CKM_RSA_PKCS, "RSA-PKCS";
    /// `CKM_RSA_X_509`: raw RSA.
    RsaX509 => CKM_RSA_X_509, "RSA-X-509";
    /// `CKM_RSA_PKCS_PSS`: PSS over a caller's digest.
    RsaPkcsPss => CKM_RSA_PKCS_PSS, "RSA-PKCS-PSS";
    /// `CKM_SHA1_RSA_PKCS`.
    Sha1RsaPkcs => CKM_SHA1_RSA_PKCS, "SHA1-RSA-PKCS";
    /// `CKM_SHA224_RSA_PKCS`.
    Sha224RsaPkcs => CKM_SHA224_RSA_PKCS, "SHA224-RSA-PKCS";
    /// `CKM_SHA256_RSA_PKCS`.
    Sha256RsaPkcs => CKM_SHA256_RSA_PKCS, "SHA256-RSA-PKCS";
    /// `CKM_SHA384_RSA_PKCS`.
    Sha384RsaPkcs => CKM_SHA384_RSA_PKCS, "SHA384-RSA-PKCS";
    /// `CKM_SHA512_RSA_PKCS`.
    Sha512RsaPkcs => CKM_SHA512_RSA_PKCS, "SHA512-RSA-PKCS";
    /// `CKM_SHA1_RSA_PKCS_PSS`.
    Sha1RsaPkcsPss => CKM_SHA1_RSA_PKCS_PSS, "SHA1-RSA-PKCS-PSS";
    /// `CKM_SHA224_RSA_PKCS_PSS`.
    Sha224RsaPkcsPss => CKM_SHA224_RSA_PKCS_PSS, "SHA224-RSA-PKCS-PSS";
    /// `CKM_SHA256_RSA_PKCS_PSS`.
    Sha256RsaPkcsPss => CKM_SHA256_RSA_PKCS_PSS, "SHA256-RSA-PKCS-PSS";
    /// `CKM_SHA384_RSA_PKCS_PSS`.
    Sha384RsaPkcsPss => CKM_SHA384_RSA_PKCS_PSS, "SHA384-RSA-PKCS-PSS";
    /// `CKM_SHA512_RSA_PKCS_PSS`.
    Sha512RsaPkcsPss => CKM_SHA512_RSA_PKCS_PSS, "SHA512-RSA-PKCS-PSS";
    /// `CKM_RSA_PKCS_OAEP`.
    RsaPkcsOaep => CKM_RSA_PKCS_OAEP, "RSA-PKCS-OAEP";
    /// `CKM_ECDSA`: ECDSA over a caller's digest.
    Ecdsa => CKM_ECDSA, "ECDSA";
    /// `CKM_ECDSA_SHA1`.
    EcdsaSha1 => CKM_ECDSA_SHA1, "ECDSA-SHA1";
    /// `CKM_ECDSA_SHA224`.
    EcdsaSha224 => CKM_ECDSA_SHA224, "ECDSA-SHA224";
    /// `CKM_ECDSA_SHA256`.
    EcdsaSha256 => CKM_ECDSA_SHA256, "ECDSA-SHA256";
    /// `CKM_ECDSA_SHA384`.
    EcdsaSha384 => CKM_ECDSA_SHA384, "ECDSA-SHA384";
    /// `CKM_ECDSA_SHA512`.
    EcdsaSha512 => CKM_ECDSA_SHA512, "ECDSA-SHA512";
    /// `CKM_EDDSA`: Ed25519.
    Eddsa => CKM_EDDSA, "EDDSA";
    /// `CKM_ECDH1_DERIVE`.
    Ecdh1Derive => CKM_ECDH1_DERIVE, "ECDH1-DERIVE";
    /// `CKM_HKDF_DERIVE`.
    HkdfDerive => CKM_HKDF_DERIVE, "HKDF-DERIVE";
    /// `CKM_SP800_108_COUNTER_KDF`.
    Sp800108CounterKdf => CKM_SP800_108_COUNTER_KDF, "SP800-108-COUNTER-KDF";
    /// `CKM_AES_CBC_ENCRYPT_DATA`.
    AesCbcEncryptData => CKM_AES_CBC_ENCRYPT_DATA, "AES-CBC-ENCRYPT-DATA";
    /// `CKM_SHA_1_HMAC`.
    Sha1Hmac => CKM_SHA_1_HMAC, "SHA-1-HMAC";
    /// `CKM_SHA224_HMAC`.
    Sha224Hmac => CKM_SHA224_HMAC, "SHA224-HMAC";
    /// `CKM_SHA256_HMAC`.
    Sha256Hmac => CKM_SHA256_HMAC, "SHA256-HMAC";
    /// `CKM_SHA384_HMAC`.
    Sha384Hmac => CKM_SHA384_HMAC, "SHA384-HMAC";
    /// `CKM_SHA512_HMAC`.
    Sha512Hmac => CKM_SHA512_HMAC, "SHA512-HMAC";
    /// `CKM_AES_ECB`.
    AesEcb => CKM_AES_ECB, "AES-ECB";
    /// `CKM_AES_CBC`.
    AesCbc => CKM_AES_CBC, "AES-CBC";
    /// `CKM_AES_CBC_PAD`.
    AesCbcPad => CKM_AES_CBC_PAD, "AES-CBC-PAD";
    /// `CKM_AES_CTR`.
    AesCtr => CKM_AES_CTR, "AES-CTR";
    /// `CKM_AES_CMAC`.
    AesCmac => CKM_AES_CMAC, "AES-CMAC";
    /// `CKM_AES_GCM`.
    AesGcm => CKM_AES_GCM, "AES-GCM";
    /// `CKM_DES3_KEY_GEN` (legacy).
    Des3KeyGen => CKM_DES3_KEY_GEN, "DES3-KEY-GEN";
    /// `CKM_DES3_ECB` (legacy).
    Des3Ecb => CKM_DES3_ECB, "DES3-ECB";
    /// `CKM_DES3_CBC` (legacy).
    Des3Cbc => CKM_DES3_CBC, "DES3-CBC";
    /// `CKM_DES3_CBC_PAD` (legacy).
    Des3CbcPad => CKM_DES3_CBC_PAD, "DES3-CBC-PAD";
    /// `CKM_AES_KEY_WRAP` (RFC 3394).
    AesKeyWrap => CKM_AES_KEY_WRAP, "AES-KEY-WRAP";
    /// `CKM_AES_KEY_WRAP_PAD` (RFC 5649 in SoftHSM2 and nShield).
    AesKeyWrapPad => CKM_AES_KEY_WRAP_PAD, "AES-KEY-WRAP-PAD";
    /// `CKM_AES_KEY_WRAP_KWP` (RFC 5649, PKCS#11 3.0).
    AesKeyWrapKwp => CKM_AES_KEY_WRAP_KWP, "AES-KEY-WRAP-KWP";
    /// `CKM_RSA_AES_KEY_WRAP`.
    RsaAesKeyWrap => CKM_RSA_AES_KEY_WRAP, "RSA-AES-KEY-WRAP";
}

bitflags::bitflags! {
    /// What a mechanism can do on a backend (`CKF_*` of `CK_MECHANISM_INFO`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MechanismFlags: u32 {
        /// `CKF_ENCRYPT`.
        const ENCRYPT = 1 << 0;
        /// `CKF_DECRYPT`.
        const DECRYPT = 1 << 1;
        /// `CKF_SIGN`.
        const SIGN = 1 << 2;
        /// `CKF_VERIFY`.
        const VERIFY = 1 << 3;
        /// `CKF_GENERATE`.
        const GENERATE = 1 << 4;
        /// `CKF_GENERATE_KEY_PAIR`.
        const GENERATE_KEY_PAIR = 1 << 5;
        /// `CKF_WRAP`.
        const WRAP = 1 << 6;
        /// `CKF_UNWRAP`.
        const UNWRAP = 1 << 7;
        /// `CKF_DERIVE`.
        const DERIVE = 1 << 8;
    }
}

impl MechanismFlags {
    /// Each flag and its `CKF_*`: the one table both PKCS#11 edges read.
    pub const CKF: &'static [(MechanismFlags, ck::CK_FLAGS)] = &[
        (MechanismFlags::ENCRYPT, ck::CKF_ENCRYPT),
        (MechanismFlags::DECRYPT, ck::CKF_DECRYPT),
        (MechanismFlags::SIGN, ck::CKF_SIGN),
        (MechanismFlags::VERIFY, ck::CKF_VERIFY),
        (MechanismFlags::GENERATE, ck::CKF_GENERATE),
        (MechanismFlags::GENERATE_KEY_PAIR, ck::CKF_GENERATE_KEY_PAIR),
        (MechanismFlags::WRAP, ck::CKF_WRAP),
        (MechanismFlags::UNWRAP, ck::CKF_UNWRAP),
        (MechanismFlags::DERIVE, ck::CKF_DERIVE),
    ];

    /// The flags set in a `CK_MECHANISM_INFO.flags`.
    pub fn from_ckf(ckf: ck::CK_FLAGS) -> MechanismFlags {
        Self::CKF.iter().filter(|(_, c)| ckf & c != 0).fold(MechanismFlags::empty(), |acc, (f, _)| acc | *f)
    }

    /// These flags as `CKF_*`.
    pub fn ckf(self) -> ck::CK_FLAGS {
        Self::CKF.iter().filter(|(f, _)| self.contains(*f)).fold(0, |acc, (_, c)| acc | c)
    }
}

/// One row of a backend's mechanism list (`C_GetMechanismInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MechanismInfo {
    /// The mechanism.
    pub kind: MechanismKind,
    /// Smallest key size in bits.
    pub min_bits: u32,
    /// Largest key size in bits.
    pub max_bits: u32,
    /// What it can do.
    pub flags: MechanismFlags,
    /// The backend composes this mechanism from others the module has (for example
    /// `CKM_RSA_AES_KEY_WRAP` from RSA-OAEP and RFC 5649 wrap) rather than calling it natively.
    pub composed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_ckm() {
        for &k in MechanismKind::ALL {
            assert_eq!(MechanismKind::from_ckm(k.ckm()), Some(k), "{}", k.name());
        }
        assert_eq!(MechanismKind::RsaAesKeyWrap.ckm(), 0x1054);
        assert_eq!(MechanismKind::AesKeyWrapKwp.ckm(), 0x210B);
        assert_eq!(MechanismKind::from_ckm(0xFFFF_0000), None);
    }

    #[test]
    fn parameterised_mechanisms_map_to_their_kind() {
        let m = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha384 };
        assert_eq!(m.kind(), MechanismKind::Sha384RsaPkcs);
        let m = Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 };
        assert_eq!(m.describe(), "RSA-AES-KEY-WRAP(AES-256, OAEP SHA-1)");
    }
}

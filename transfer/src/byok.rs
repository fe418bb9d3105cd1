//! The hsmkit transfer package, `TransferPackage-<FriendlyName>.byok` (`KeyTransferRemote -Package`).
//!
//! It carries the tenant, the friendly name, the KEK and provider world it is made for, the key's
//! public half and narrowed ACL with the source world's quorum certificate over that ACL, and the
//! key wrapped as `CKM_RSA_AES_KEY_WRAP` does it (RSA-OAEP(SHA-1) of an ephemeral AES-256 key, then
//! RFC 5649 of the PKCS#8 key). The body is signed with the transferred key itself (proof that the
//! source module holds it); the file must be the canonical serialisation, so every byte counts.
//! Specified in `docs/formats.md`.

use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde::{Deserialize, Serialize};

use hsmkit_backend::{Error, ErrorKind, HashAlg, KeyHandle, Mechanism, Op, Result, Session};

/// Format name of a transfer package.
pub const BYOK_FORMAT: &str = "hsmkit-byok-transfer-package";

/// The mechanism the key is wrapped with.
pub const WRAP: Mechanism = Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 };

/// What the package is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    /// The tenant (the article's BPOS id, a GUID).
    pub tenant: String,
    /// The friendly name (the file's name).
    pub friendly_name: String,
    /// SHA-256 of the KEK's SubjectPublicKeyInfo (hex).
    #[serde(with = "hex")]
    pub kek_spki_sha256: Vec<u8>,
    /// The provider world's hknso (hex).
    #[serde(with = "hex")]
    pub world_hknso: Vec<u8>,
    /// The provider world's module key hash (hex): the key may be saved only under it.
    #[serde(with = "hex")]
    pub world_hkm: Vec<u8>,
    /// The key's public half, SubjectPublicKeyInfo (hex).
    #[serde(with = "hex")]
    pub public: Vec<u8>,
    /// The key's hash in its source world (hex), as the ACL certificate names it.
    #[serde(with = "hex")]
    pub key_hash: Vec<u8>,
    /// The narrowed ACL, as the source module holds it.
    pub acl: serde_json::Value,
    /// The source world's quorum certificate over the key hash and ACL.
    pub acl_certificate: serde_json::Value,
    /// `CKM_RSA_AES_KEY_WRAP`.
    pub wrap_mechanism: String,
    /// The wrapped key (hex): OAEP part as long as the KEK modulus, then the RFC 5649 part.
    #[serde(with = "hex")]
    pub wrapped: Vec<u8>,
}

/// A transfer package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferPackage {
    /// Always [`BYOK_FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The package.
    pub body: TransferBody,
    /// RSASSA-PKCS1-v1_5 SHA-256 by the transferred key over the body's compact JSON (hex).
    #[serde(with = "hex")]
    pub signature: Vec<u8>,
}

fn json<T: Serialize>(v: &T, op: Op) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::new(ErrorKind::Device, op).detail(e.to_string()))
}

/// The file name for a friendly name: `TransferPackage-<name>.byok`; the name may hold letters,
/// digits, `-` and `_` (1 to 64).
pub fn file_name(friendly_name: &str) -> Result<String> {
    if friendly_name.is_empty()
        || friendly_name.len() > 64
        || !friendly_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::new(ErrorKind::ArgumentsBad, Op::WrapKey)
            .detail(format!("invalid friendly name '{friendly_name}'"))
            .hint("use letters, digits, - and _ only, for example ContosoFirstkey"));
    }
    Ok(format!("TransferPackage-{friendly_name}.byok"))
}

/// Checks a tenant id: a GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub fn check_tenant(tenant: &str) -> Result<()> {
    let groups: Vec<&str> = tenant.split('-').collect();
    let ok = groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::ArgumentsBad, Op::WrapKey)
            .detail(format!("'{tenant}' is not a tenant id (a GUID)"))
            .hint("give the BPOSId GUID of your tenant, for example 01234567-89ab-cdef-0123-456789abcdef"))
    }
}

impl TransferPackage {
    /// Signs `body` with the transferred key `key` of `session`.
    pub fn sign(body: TransferBody, session: &dyn Session, key: KeyHandle) -> Result<Self> {
        let signature =
            session.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, key, &json(&body, Op::Sign)?)?;
        Ok(TransferPackage { format: BYOK_FORMAT.into(), version: 1, body, signature })
    }

    /// The file's bytes: the canonical serialisation.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Device, Op::WrapKey).detail(e.to_string()))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Parses a package, refusing anything but a canonical, version-1 package whose signature
    /// verifies under the key it carries.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::new(ErrorKind::DataInvalid, Op::UnwrapKey).detail(format!("{name}: {why}"));
        let p: TransferPackage =
            serde_json::from_slice(bytes).map_err(|_| bad("not a readable transfer package (truncated or damaged)"))?;
        if p.format != BYOK_FORMAT || p.version != 1 {
            return Err(bad("not an hsmkit transfer package of version 1"));
        }
        if p.to_bytes()? != bytes {
            return Err(bad("is not byte for byte the package that was signed (the file was edited)"));
        }
        let key =
            rsa::PublicKey::from_public_key_der(&p.body.public).map_err(|_| bad("its public key is not an RSA key"))?;
        let sig = rsa::pkcs1v15::Signature::try_from(p.signature.as_slice())
            .map_err(|_| bad("its signature is malformed"))?;
        rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key)
            .verify(&json(&p.body, Op::UnwrapKey)?, &sig)
            .map_err(|_| bad("its signature does not verify under the key it carries"))?;
        if p.body.wrap_mechanism != "CKM_RSA_AES_KEY_WRAP" {
            return Err(bad(&format!("uses {}, not CKM_RSA_AES_KEY_WRAP", p.body.wrap_mechanism)));
        }
        Ok(p)
    }
}

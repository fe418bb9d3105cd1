//! Backend-held RSA keys behind the `signature` traits, so callers treat them like software keys.

use std::marker::PhantomData;

use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{AssociatedOid, DecodePublicKey};
use sha2::Digest;
use signature::{Keypair, Signer};

use crate::error::{Error, ErrorKind, Op, Result};
use crate::mechanism::{HashAlg, Mechanism};
use crate::session::Session;
use crate::types::{Attr, AttrKind, AttrValue, KeyHandle};

/// A digest type that a backend can be asked to use.
pub trait SignerHash: Digest + AssociatedOid {
    /// The backend's name for it.
    const ALG: HashAlg;
}

impl SignerHash for sha1::Sha1 {
    const ALG: HashAlg = HashAlg::Sha1;
}
impl SignerHash for sha2::Sha256 {
    const ALG: HashAlg = HashAlg::Sha256;
}
impl SignerHash for sha2::Sha384 {
    const ALG: HashAlg = HashAlg::Sha384;
}
impl SignerHash for sha2::Sha512 {
    const ALG: HashAlg = HashAlg::Sha512;
}

/// An RSA private key held by a backend, signing RSASSA-PKCS1-v1_5 with digest `D`.
///
/// Implements [`signature::Signer`] and [`signature::Keypair`]; the verifying key is a software
/// `rsa` key, so signatures can be checked without the backend.
pub struct RsaSigner<'s, D: SignerHash> {
    session: &'s dyn Session,
    key: KeyHandle,
    verifying: VerifyingKey<D>,
    _digest: PhantomData<D>,
}

impl<'s, D: SignerHash> RsaSigner<'s, D> {
    /// Wraps private key `key` of `session`, reading its public half from `CKA_PUBLIC_KEY_INFO`.
    pub fn new(session: &'s dyn Session, key: KeyHandle) -> Result<Self> {
        let spki = match session.attributes(key, &[AttrKind::PublicKeyInfo])?.pop() {
            Some(Attr::Value(_, AttrValue::Bytes(b))) => b,
            _ => {
                return Err(Error::new(ErrorKind::AttributeTypeInvalid, Op::GetAttributes)
                    .detail("the key has no CKA_PUBLIC_KEY_INFO"));
            }
        };
        Self::with_public_key(session, key, &spki)
    }

    /// Wraps private key `key` of `session` whose public half is the SPKI DER `spki`.
    pub fn with_public_key(session: &'s dyn Session, key: KeyHandle, spki: &[u8]) -> Result<Self> {
        let public = rsa::PublicKey::from_public_key_der(spki).map_err(|e| {
            Error::new(ErrorKind::AttributeValueInvalid, Op::GetAttributes)
                .detail(format!("the public key is not an RSA SubjectPublicKeyInfo: {e}"))
        })?;
        Ok(RsaSigner { session, key, verifying: VerifyingKey::new(public), _digest: PhantomData })
    }
}

impl<D: SignerHash> Signer<Signature> for RsaSigner<'_, D> {
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, signature::Error> {
        let raw = self
            .session
            .sign(&Mechanism::RsaPkcs1v15 { hash: D::ALG }, self.key, msg)
            .map_err(signature::Error::from_source)?;
        Signature::try_from(raw.as_slice())
    }
}

impl<D: SignerHash> Keypair for RsaSigner<'_, D> {
    type VerifyingKey = VerifyingKey<D>;

    fn verifying_key(&self) -> VerifyingKey<D> {
        self.verifying.clone()
    }
}

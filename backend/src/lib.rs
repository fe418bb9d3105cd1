//! The hsmkit seam.
//!
//! Every backend (the in-process nShield-style emulator, any PKCS#11 module loaded at run time)
//! implements [`Backend`] and hands out [`Session`]s. The transfer engine, the conformance kit and
//! the benches are written against these traits only, so they run unchanged on every backend.
//!
//! - [`Error`] carries a semantic [`ErrorKind`] and the [`Op`] that failed; raw `CKR_*` values
//!   appear only at the ABI edges, through the one table in [`ErrorKind::ckr`] /
//!   [`ErrorKind::from_ckr`].
//! - [`Mechanism`] names what an operation does (RSA PKCS#1 v1.5 and PSS, RSA-OAEP, AES key wrap
//!   RFC 3394 and RFC 5649, RSA-AES key wrap); [`MechanismKind`] is its PKCS#11 identity.
//! - [`KeyPolicy`] is the common denominator of an nShield ACL and the PKCS#11 key attributes.
//! - [`RsaSigner`] makes a backend-held RSA key usable through the `signature` traits.

pub mod crash;
mod ec;
mod error;
mod mechanism;
mod policy;
mod session;
mod signer;
mod types;

pub use ec::EcCurve;
pub use error::{Error, ErrorKind, Op, Result};
pub use mechanism::{HashAlg, KdfParam, KdfPrf, Mechanism, MechanismFlags, MechanismInfo, MechanismKind};
pub use policy::{KeyPolicy, Usage};
pub use session::{Attestation, Attested, Backend, Session, TransferTarget, WorldAuthority, WorldLab, WorldSummary};
pub use signer::{RsaSigner, SignerHash};
pub use types::{
    Attr, AttrKind, AttrValue, BackendInfo, Capabilities, KeyFilter, KeyHandle, KeyMaterial, KeyPairSpec, KeySpec,
    KeyType, ObjectClass, SessionMode, SlotId, UserKind,
};

/// A PIN or passphrase: zeroized on drop, never printed.
pub type Pin = secrecy::SecretString;

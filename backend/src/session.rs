//! The [`Backend`] and [`Session`] traits: the one seam every backend implements.

use std::fmt;

use crate::Pin;
use crate::error::Result;
use crate::mechanism::Mechanism;
use crate::policy::KeyPolicy;
use crate::types::{
    Attr, AttrKind, BackendInfo, Capabilities, KeyFilter, KeyHandle, KeyMaterial, KeyPairSpec, KeySpec, KeyType,
    SessionMode, SlotId, UserKind,
};

/// A cryptographic module: the emulator, or a PKCS#11 library loaded at run time.
///
/// Object safe, so the CLI can choose one at run time from a spec string.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Who made it and what it is (`C_GetInfo` / `C_GetTokenInfo`; nShield `enquiry`).
    fn info(&self) -> Result<BackendInfo>;
    /// Mechanisms and their key-size ranges (`C_GetMechanismList` / `C_GetMechanismInfo`).
    fn capabilities(&self) -> Result<Capabilities>;
    /// Slots with a token present (`C_GetSlotList(CK_TRUE)`).
    fn slots(&self) -> Result<Vec<SlotId>>;
    /// Opens a session on `slot` (`C_OpenSession`). It closes when dropped.
    fn open_session(&self, slot: SlotId, mode: SessionMode) -> Result<Box<dyn Session + '_>>;
    /// nShield-only administration (worlds, cards, quorum), where the backend has it.
    fn world_admin(&self) -> Option<&dyn WorldAdmin> {
        None
    }
}

/// A session with a module: the operations the transfer engine, the kit and the benches need.
///
/// `Send` but not `Sync` (the PKCS#11 threading rule: one thread at a time per session);
/// it closes on drop. Keys named by a [`KeyHandle`] belong to the session that returned them.
pub trait Session: Send + fmt::Debug {
    /// `C_Login`. On an nShield world the security officer is the ACS quorum.
    fn login(&self, user: UserKind, pin: &Pin) -> Result<()>;
    /// `C_Logout`.
    fn logout(&self) -> Result<()>;
    /// `C_GenerateKey`: a secret key.
    fn generate_key(&self, spec: &KeySpec, policy: &KeyPolicy) -> Result<KeyHandle>;
    /// `C_GenerateKeyPair`: returns (public, private). The policy's usages are split between the
    /// halves ([`crate::Usage::PUBLIC_SIDE`], [`crate::Usage::PRIVATE_SIDE`]).
    fn generate_key_pair(&self, spec: &KeyPairSpec, policy: &KeyPolicy) -> Result<(KeyHandle, KeyHandle)>;
    /// `C_CreateObject` with key material.
    fn import_key(&self, material: &KeyMaterial, policy: &KeyPolicy) -> Result<KeyHandle>;
    /// `C_FindObjects`.
    fn find_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyHandle>>;
    /// `C_GetAttributeValue`: one [`Attr`] per requested kind, in order; sensitive or absent
    /// attributes are reported as such, not as an error.
    fn attributes(&self, key: KeyHandle, which: &[AttrKind]) -> Result<Vec<Attr>>;
    /// `C_CopyObject` with a narrower policy; nShield ReduceACL. Widening is refused.
    fn copy_narrowed(&self, key: KeyHandle, policy: &KeyPolicy) -> Result<KeyHandle>;
    /// `C_DestroyObject`.
    fn destroy(&self, key: KeyHandle) -> Result<()>;
    /// `C_Sign`.
    fn sign(&self, mech: &Mechanism, key: KeyHandle, data: &[u8]) -> Result<Vec<u8>>;
    /// `C_Verify`: `Ok(())` only when the signature verifies.
    fn verify(&self, mech: &Mechanism, key: KeyHandle, data: &[u8], signature: &[u8]) -> Result<()>;
    /// `C_Encrypt`.
    fn encrypt(&self, mech: &Mechanism, key: KeyHandle, plaintext: &[u8]) -> Result<Vec<u8>>;
    /// `C_Decrypt`. Failures are opaque ([`crate::ErrorKind::EncryptedDataInvalid`]).
    fn decrypt(&self, mech: &Mechanism, key: KeyHandle, ciphertext: &[u8]) -> Result<Vec<u8>>;
    /// `C_WrapKey`: `target` wrapped under `wrapping`.
    fn wrap_key(&self, mech: &Mechanism, wrapping: KeyHandle, target: KeyHandle) -> Result<Vec<u8>>;
    /// `C_UnwrapKey`: a key of type `key_type` (RSA keys travel as PKCS#8, AES keys as their
    /// bytes). Failures are opaque ([`crate::ErrorKind::WrappedKeyInvalid`]).
    fn unwrap_key(
        &self,
        mech: &Mechanism,
        unwrapping: KeyHandle,
        wrapped: &[u8],
        key_type: KeyType,
        policy: &KeyPolicy,
    ) -> Result<KeyHandle>;
    /// `C_GenerateRandom`.
    fn random(&self, out: &mut [u8]) -> Result<()>;
}

/// A summary of a security world, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldSummary {
    /// The cipher suite name (`DLf3072s256mAEScSP800131Ar1`).
    pub cipher_suite: String,
    /// Administrator Card Set quorum: k of n.
    pub quorum: (u8, u8),
    /// Hash of the security officer's key KNSO, in hex: the world's identity.
    pub hknso: String,
    /// Hash of the module key KM, in hex.
    pub hkm: String,
}

/// nShield-only administration, reached through [`Backend::world_admin`].
///
/// The full API (creating worlds, presenting cards, narrowing ACLs with the quorum) lives on the
/// emulator's own types; this trait exposes what a generic caller can use.
pub trait WorldAdmin: Send + Sync {
    /// The loaded world.
    fn world_summary(&self) -> Result<WorldSummary>;
}

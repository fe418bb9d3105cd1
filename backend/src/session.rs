//! The [`Backend`] and [`Session`] traits: the one seam every backend implements.

use std::fmt;

use crate::Pin;
use crate::error::{Error, ErrorKind, Op, Result};
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
    /// Throwaway security worlds of this backend's kind, where it models worlds (the emulator);
    /// `None` elsewhere.
    fn world_lab(&self) -> Option<&dyn WorldLab> {
        None
    }
}

/// A backend that makes throwaway security worlds of its own kind: the conformance kit's `world`
/// profile checks card lockout and cross-world binding there, never on the user's world, whose
/// cards and keys it must leave as it found them.
pub trait WorldLab {
    /// A new world of `quorum` (k of n) Administrator cards with `pins` (one per card, in order),
    /// under the same cipher suite as this backend's world, in a folder of its own that is
    /// removed when the returned backend is dropped.
    fn scratch_world(&self, quorum: (u8, u8), pins: &[Pin]) -> Result<Box<dyn Backend>>;
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
    /// `C_InitPIN`: the security officer, logged in, sets the user PIN (and unlocks it).
    fn init_pin(&self, pin: &Pin) -> Result<()> {
        let _ = pin;
        Err(Error::new(ErrorKind::Unsupported, Op::Login).detail("this backend cannot set the user PIN"))
    }
    /// `C_SetPIN`: the user changes the user PIN.
    fn set_pin(&self, old: &Pin, new: &Pin) -> Result<()> {
        let _ = (old, new);
        Err(Error::new(ErrorKind::Unsupported, Op::Login).detail("this backend cannot change the user PIN"))
    }
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
    /// `C_DeriveKey`: a secret key made from `base` with a derivation mechanism (ECDH, HKDF,
    /// SP 800-108, AES-CBC encryption of data). The base key needs the derive usage
    /// (`CKA_DERIVE`).
    fn derive_key(&self, mech: &Mechanism, base: KeyHandle, spec: &KeySpec, policy: &KeyPolicy) -> Result<KeyHandle> {
        let _ = (base, spec, policy);
        Err(Error::new(ErrorKind::Unsupported, Op::DeriveKey)
            .detail(format!("this backend derives no keys ({} asked)", mech.describe())))
    }
    /// `C_GenerateRandom`.
    fn random(&self, out: &mut [u8]) -> Result<()>;
    /// The security world's authority over this session's keys, where the backend models one
    /// (the nShield-style emulator); `None` on a plain PKCS#11 module, whose security officer acts
    /// through [`Session::login`], `CKA_TRUSTED` and `CKA_WRAP_WITH_TRUSTED` instead.
    fn world_authority(&self) -> Option<&dyn WorldAuthority> {
        None
    }
}

/// A summary of a security world, for status displays and for the provider's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldSummary {
    /// The cipher suite name (`DLf3072s256mAEScSP800131Ar1`).
    pub cipher_suite: String,
    /// Administrator Card Set quorum: k of n.
    pub quorum: (u8, u8),
    /// Hash of the security officer's key KNSO: the world's identity.
    pub hknso: Vec<u8>,
    /// Hash of the module key KM: what a key bound to this world names in `MakeBlob`.
    pub hkm: Vec<u8>,
}

/// Where a key narrowed for transfer may go (nShield `KeyTransferRemote -ModifyAcls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferTarget {
    /// The Key Exchange Key's SubjectPublicKeyInfo (DER): the copy may leave the module only
    /// wrapped under it.
    pub kek_spki: Vec<u8>,
    /// The provider world's module-key hash: the copy may be saved only under it. `None`: this
    /// module's own world (the copy stays here until it is wrapped).
    pub provider_hkm: Option<Vec<u8>>,
    /// The copy's label (`CKA_LABEL`) on a world; `None` keeps the source key's name. The transfer
    /// engine sets it to `xferacld-<source label>` for a key chosen by label or id, the name it
    /// gives copies on a PKCS#11 token too, and the name it looks for.
    pub label: Option<String>,
}

/// A security world's quorum certificate over a narrowed key's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The key's identity as the certificate names it: the hash of its SubjectPublicKeyInfo under
    /// the world's cipher suite (SHA-1 or SHA-256).
    pub key_hash: Vec<u8>,
    /// The certified rights: the nShield ACL, as JSON.
    pub rights: String,
    /// The quorum's certificate (the world's KNSO signature), as JSON.
    pub certificate: String,
}

/// What a verified [`Attestation`] establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The identity (`hknso`) of the world whose quorum certified the rights.
    pub source_world: Vec<u8>,
    /// The usages the certified rights allow.
    pub usage: crate::Usage,
}

/// The capability a generic PKCS#11 module lacks: proving that a security world's Administrator
/// Card Set quorum approved narrowing a key for transfer, and checking such proofs.
///
/// Reached through [`Session::world_authority`]; it acts on that session's handles. On a PKCS#11
/// module the same step is the security officer's login, a `CKA_TRUSTED` KEK and a
/// `CKA_WRAP_WITH_TRUSTED` copy, which prove nothing to a third party.
pub trait WorldAuthority {
    /// The loaded world.
    fn world(&self) -> Result<WorldSummary>;
    /// Presents Administrator cards by number with their PINs; once they make the quorum, the
    /// session holds the quorum's authority until [`Session::logout`]. (`login(SecurityOfficer)`
    /// presents cards 1 to k, their PINs joined by commas.)
    fn present_cards(&self, cards: &[(u8, Pin)]) -> Result<()>;
    /// The key named `app`/`ident` (nShield's naming: `key_<app>_<ident>`), loaded: its private
    /// (or secret) half.
    fn find_named(&self, app: &str, ident: &str) -> Result<KeyHandle>;
    /// With the quorum's authority, makes a copy of `key` that can only be used, saved under the
    /// target world's module key, and exported wrapped under the target KEK (no recovery, no ACL
    /// change), certified by the quorum. Returns the copy's private half; the original is
    /// untouched.
    fn narrow_for_transfer(&self, key: KeyHandle, target: &TransferTarget) -> Result<KeyHandle>;
    /// The narrowed copy of `key` made by [`Self::narrow_for_transfer`], if there is one.
    fn transfer_copy(&self, key: KeyHandle) -> Result<Option<KeyHandle>>;
    /// The quorum's certificate of `copy`, after checking that its rights are narrowed for
    /// `target`; an error names what is missing.
    fn attestation(&self, copy: KeyHandle, target: &TransferTarget) -> Result<Attestation>;
    /// As the provider's module: checks that `attestation` certifies rights for the key whose
    /// SubjectPublicKeyInfo is `public` that bind it to this world and to the KEK `kek_spki`.
    fn check_attestation(&self, public: &[u8], attestation: &Attestation, kek_spki: &[u8]) -> Result<Attested>;
}

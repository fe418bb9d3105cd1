//! The emulator behind the seam: [`Backend`] for [`Emulator`] and its [`Session`].
//!
//! Keys made through the seam belong to application `pkcs11` (as nShield's PKCS#11 library
//! names them), with an ident `ua<16 hex digits>`; token keys are saved in kmdata, session keys
//! live only in memory. Every operation goes through the key's ACL.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::Arc;

use zeroize::Zeroizing;

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, Backend, BackendInfo, Capabilities, Error, ErrorKind, HashAlg, KeyFilter, KeyHandle,
    KeyMaterial, KeyPairSpec, KeyPolicy, KeySpec, KeyType, Mechanism, MechanismFlags, MechanismInfo, MechanismKind,
    ObjectClass, Op, Pin, Result, Session, SessionMode, SlotId, Usage, UserKind,
};

use crate::acl::{Acl, DeriveRole, Need, OpPerms};
use crate::emulator::{Emulator, LoadedKey, Material, Object, PublicKey};
use crate::keyblob::{BlobKeyType, KEY_FORMAT, KeyHeader, KeyOrigin, Protection};
use crate::keys::{self, mechanism_invalid};
use crate::world::World;

mod authority;
pub use authority::TRANSFER_APP;

/// A key's PKCS#11 details that are not policy ([`EmulatorSession::details`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDetails {
    /// `CKA_UNIQUE_ID`.
    pub unique_id: String,
    /// `CKA_START_DATE` (`YYYYMMDD`, or empty).
    pub start_date: Vec<u8>,
    /// `CKA_END_DATE`.
    pub end_date: Vec<u8>,
    /// `CKA_ALWAYS_AUTHENTICATE` (private keys).
    pub always_authenticate: bool,
}

/// The longest generic secret, in bytes.
pub const MAX_GENERIC_SECRET: usize = 512;

/// The emulator's one slot: module 1.
pub const SLOT: SlotId = SlotId(1);

impl Backend for Emulator {
    fn info(&self) -> Result<BackendInfo> {
        Ok(BackendInfo {
            vendor: "hsmkit".into(),
            model: "nShield-style module emulator".into(),
            firmware: env!("CARGO_PKG_VERSION").into(),
            serial: self.esn()?,
            login_required: self.login_required()?,
        })
    }

    fn capabilities(&self) -> Result<Capabilities> {
        use MechanismKind as K;
        let sv = MechanismFlags::SIGN | MechanismFlags::VERIFY;
        let wu = MechanismFlags::WRAP | MechanismFlags::UNWRAP;
        let row = |kind, min_bits, max_bits, flags| MechanismInfo { kind, min_bits, max_bits, flags, composed: false };
        let mut mechanisms = vec![
            row(K::RsaPkcsKeyPairGen, 1024, 4096, MechanismFlags::GENERATE_KEY_PAIR),
            row(K::EcKeyPairGen, 256, 521, MechanismFlags::GENERATE_KEY_PAIR),
            row(K::EcEdwardsKeyPairGen, 255, 255, MechanismFlags::GENERATE_KEY_PAIR),
            row(K::AesKeyGen, 128, 256, MechanismFlags::GENERATE),
            row(K::GenericSecretKeyGen, 8, MAX_GENERIC_SECRET as u32 * 8, MechanismFlags::GENERATE),
            row(K::RsaPkcs, 1024, 4096, sv | MechanismFlags::ENCRYPT | MechanismFlags::DECRYPT),
            row(K::RsaX509, 1024, 4096, sv | MechanismFlags::ENCRYPT | MechanismFlags::DECRYPT),
            row(K::RsaPkcsPss, 1024, 4096, sv),
        ];
        for k in [K::Sha1RsaPkcs, K::Sha224RsaPkcs, K::Sha256RsaPkcs, K::Sha384RsaPkcs, K::Sha512RsaPkcs] {
            mechanisms.push(row(k, 1024, 4096, sv));
        }
        for k in [K::Sha1RsaPkcsPss, K::Sha224RsaPkcsPss, K::Sha256RsaPkcsPss, K::Sha384RsaPkcsPss, K::Sha512RsaPkcsPss]
        {
            mechanisms.push(row(k, 1024, 4096, sv));
        }
        for k in [K::Sha1Hmac, K::Sha224Hmac, K::Sha256Hmac, K::Sha384Hmac, K::Sha512Hmac] {
            mechanisms.push(row(k, 8, MAX_GENERIC_SECRET as u32 * 8, sv));
        }
        for k in [K::Ecdsa, K::EcdsaSha1, K::EcdsaSha224, K::EcdsaSha256, K::EcdsaSha384, K::EcdsaSha512] {
            mechanisms.push(row(k, 256, 521, sv));
        }
        mechanisms.push(row(K::Eddsa, 255, 255, sv));
        mechanisms.push(row(K::Ecdh1Derive, 256, 521, MechanismFlags::DERIVE));
        mechanisms.push(row(K::HkdfDerive, 8, MAX_GENERIC_SECRET as u32 * 8, MechanismFlags::DERIVE));
        mechanisms.push(row(K::Sp800108CounterKdf, 8, MAX_GENERIC_SECRET as u32 * 8, MechanismFlags::DERIVE));
        mechanisms.push(row(K::AesCbcEncryptData, 128, 256, MechanismFlags::DERIVE));
        mechanisms.push(row(K::RsaPkcsOaep, 1024, 4096, MechanismFlags::ENCRYPT | MechanismFlags::DECRYPT | wu));
        mechanisms.push(row(K::AesCmac, 128, 256, sv));
        for k in [K::AesEcb, K::AesCbc, K::AesCbcPad, K::AesCtr, K::AesGcm] {
            mechanisms.push(row(k, 128, 256, MechanismFlags::ENCRYPT | MechanismFlags::DECRYPT));
        }
        mechanisms.push(row(K::Des3KeyGen, 192, 192, MechanismFlags::GENERATE));
        for k in [K::Des3Ecb, K::Des3Cbc, K::Des3CbcPad] {
            mechanisms.push(row(k, 192, 192, MechanismFlags::ENCRYPT | MechanismFlags::DECRYPT));
        }
        mechanisms.push(row(K::AesKeyWrap, 128, 256, wu));
        mechanisms.push(row(K::AesKeyWrapPad, 128, 256, wu));
        mechanisms.push(row(K::AesKeyWrapKwp, 128, 256, wu));
        mechanisms.push(row(K::RsaAesKeyWrap, 1024, 4096, wu));
        Ok(Capabilities { mechanisms })
    }

    fn slots(&self) -> Result<Vec<SlotId>> {
        Ok(vec![SLOT])
    }

    fn world_lab(&self) -> Option<&dyn hsmkit_backend::WorldLab> {
        Some(self)
    }

    fn open_session(&self, slot: SlotId, mode: SessionMode) -> Result<Box<dyn Session + '_>> {
        if slot != SLOT {
            return Err(Error::new(ErrorKind::SlotIdInvalid, Op::OpenSession)
                .detail(format!("the emulator has slot {} only, not {}", SLOT.0, slot.0)));
        }
        self.require_world(Op::OpenSession)?;
        self.app.lock().map_err(|_| crate::emulator::poisoned(Op::OpenSession))?.sessions += 1;
        Ok(Box::new(EmulatorSession {
            emu: EmuRef::Borrowed(self),
            group: None,
            officer: Cell::new(false),
            quorum: RefCell::new(None),
            quorum_by_login: Cell::new(false),
            id: self.new_session_id(),
            mode,
            _not_sync: PhantomData,
        }))
    }
}

/// The module a session talks to: borrowed (through [`Backend::open_session`]) or shared (through
/// [`EmulatorSession::shared`], for a holder such as the PKCS#11 module that outlives any borrow).
enum EmuRef<'a> {
    Borrowed(&'a Emulator),
    Shared(Arc<Emulator>),
}

impl std::ops::Deref for EmuRef<'_> {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        match self {
            EmuRef::Borrowed(e) => e,
            EmuRef::Shared(e) => e,
        }
    }
}

/// A session with the emulated module. Closing it (dropping it) destroys its session keys.
pub struct EmulatorSession<'a> {
    emu: EmuRef<'a>,
    group: Option<u64>,
    /// Set while a key is made with the quorum's authority (see [`Self::import_key_with_quorum`]).
    officer: Cell<bool>,
    /// The Administrator Card Set quorum, while the security officer is logged in (cards presented).
    quorum: RefCell<Option<crate::world::QuorumAuth>>,
    /// Whether `quorum` came from the security officer's login (it ends with the application's
    /// login) rather than from cards presented to this session.
    quorum_by_login: Cell<bool>,
    id: u64,
    mode: SessionMode,
    _not_sync: PhantomData<Cell<()>>,
}

impl std::fmt::Debug for EmulatorSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorSession").field("id", &self.id).field("mode", &self.mode).finish()
    }
}

impl Drop for EmulatorSession<'_> {
    fn drop(&mut self) {
        let id = self.id;
        self.emu.remove_objects(|o| o.owner == Some(id));
        if self.in_process() {
            // When the application's last session closes, its login ends (PKCS#11 §5.6).
            let mut app = self.emu.app.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            app.sessions = app.sessions.saturating_sub(1);
            if app.sessions == 0 {
                app.user = None;
            }
        }
    }
}

/// `policy` for the object `o` names, with the usages of the other half of its pair kept (a
/// pair's two halves share one ACL).
fn with_other_half(policy: &KeyPolicy, o: &Object) -> KeyPolicy {
    let side = Usage::of_class(o.class);
    KeyPolicy { usage: (policy.usage & side) | (o.key.header.acl.policy().usage - side), ..policy.clone() }
}

/// The seam policy of an object.
fn policy_of(o: &Object) -> KeyPolicy {
    let mut p = o.key.header.acl.policy();
    p.wrap_with_trusted |= o.key.header.wrap_with_trusted;
    p.public_object = o.key.header.public_object && o.class != ObjectClass::PublicKey;
    p.usage &= Usage::of_class(o.class);
    if o.class == ObjectClass::PublicKey {
        // A public key is not secret.
        p.sensitive = false;
        p.extractable = true;
        p.wrap_with_trusted = false;
    }
    p.allowed_mechanisms = o.key.allowed.clone();
    p.token = o.key.path.is_some();
    p.label = Some(o.key.header.name.clone());
    p.id = Some(o.key.header.id.clone());
    p
}

impl EmulatorSession<'static> {
    /// A session on a shared module, for holders that keep sessions beyond any borrow (the
    /// PKCS#11 module keeps its sessions in a table). Like [`Backend::open_session`], it needs the
    /// world in kmdata.
    ///
    /// Sessions opened with the same `application` see each other's session objects, as the
    /// sessions of one PKCS#11 application do; a session object still goes when the session that
    /// made it closes.
    pub fn shared(emu: Arc<Emulator>, mode: SessionMode, application: u64) -> Result<EmulatorSession<'static>> {
        emu.require_world(Op::OpenSession)?;
        let id = emu.new_session_id();
        Ok(EmulatorSession {
            emu: EmuRef::Shared(emu),
            group: Some(application),
            officer: Cell::new(false),
            quorum: RefCell::new(None),
            quorum_by_login: Cell::new(false),
            id,
            mode,
            _not_sync: PhantomData,
        })
    }
}

impl EmulatorSession<'_> {
    /// Signs with `mech`, the key's `CKA_ALLOWED_MECHANISMS` checked against `allowed_as` (the
    /// mechanism the caller asked for, when `mech` finishes its work on a digest).
    fn sign_as(&self, allowed_as: &Mechanism, mech: &Mechanism, key: KeyHandle, data: &[u8]) -> Result<Vec<u8>> {
        let o = self.object(key, Op::Sign)?;
        if let Mechanism::Hmac { hash } = *mech {
            let secret = self.generic_secret(&o, mech, Op::Sign)?;
            self.emu.enforce(&o.key, &Need::Op(OpPerms::Sign), None, Op::Sign)?;
            return Ok(keys::hmac_sign(hash, secret, data));
        }
        if *mech == Mechanism::AesCmac {
            self.check_class(&o, ObjectClass::SecretKey, allowed_as, Op::Sign)?;
            let k = self.aes(&o, mech, Op::Sign)?;
            self.emu.enforce(&o.key, &Need::Op(OpPerms::Sign), None, Op::Sign)?;
            return keys::cmac_sign(k, data, Op::Sign);
        }
        self.check_class(&o, ObjectClass::PrivateKey, allowed_as, Op::Sign)?;
        if let Material::Ec(k) = &o.key.material {
            self.emu.enforce(&o.key, &Need::Op(OpPerms::Sign), None, Op::Sign)?;
            return k.sign(mech, data);
        }
        let private = self.rsa(&o, mech, Op::Sign)?;
        self.emu.enforce(&o.key, &Need::Op(OpPerms::Sign), None, Op::Sign)?;
        // The common mechanisms sign on AWS-LC with no lock held; the others draw on the
        // module's generator (seeded runs stay reproducible) under its lock.
        if let Some(done) = private.sign_fast(mech, data) {
            return done;
        }
        let mut rng = self.emu.rng(Op::Sign)?;
        private.sign(mech, data, &mut rng)
    }

    /// Verifies as [`Self::sign_as`] signs.
    fn verify_as(
        &self,
        allowed_as: &Mechanism,
        mech: &Mechanism,
        key: KeyHandle,
        data: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        let o = self.object(key, Op::Verify)?;
        if let Mechanism::Hmac { hash } = *mech {
            let secret = self.generic_secret(&o, mech, Op::Verify)?;
            self.emu.enforce(&o.key, &Need::Op(OpPerms::Verify), None, Op::Verify)?;
            return keys::hmac_verify(hash, secret, data, signature);
        }
        if *mech == Mechanism::AesCmac {
            self.check_class(&o, ObjectClass::SecretKey, allowed_as, Op::Verify)?;
            let k = self.aes(&o, mech, Op::Verify)?;
            self.emu.enforce(&o.key, &Need::Op(OpPerms::Verify), None, Op::Verify)?;
            return keys::cmac_verify(k, data, signature);
        }
        self.check_class(&o, ObjectClass::PublicKey, allowed_as, Op::Verify)?;
        if let Some(PublicKey::Ec(p)) = &o.key.public {
            self.emu.enforce(&o.key, &Need::Op(OpPerms::Verify), None, Op::Verify)?;
            return p.verify(mech, data, signature);
        }
        let public = self.public(&o, mech, Op::Verify)?;
        self.emu.enforce(&o.key, &Need::Op(OpPerms::Verify), None, Op::Verify)?;
        keys::verify(public, mech, data, signature)
    }

    /// Checks `key` for a MAC of `mech` (HMAC or AES-CMAC) as a one-part MAC checks it (class,
    /// type, `CKA_ALLOWED_MECHANISMS`, the ACL's Sign or Verify) and hands its secret to `then`.
    fn with_mac_key<T>(
        &self,
        mech: &Mechanism,
        key: KeyHandle,
        op: Op,
        then: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let o = self.object(key, op)?;
        let perm = if op == Op::Verify { OpPerms::Verify } else { OpPerms::Sign };
        let secret = match *mech {
            Mechanism::Hmac { .. } => self.generic_secret(&o, mech, op)?,
            Mechanism::AesCmac => {
                self.check_class(&o, ObjectClass::SecretKey, mech, op)?;
                self.aes(&o, mech, op)?
            }
            _ => return Err(mechanism_invalid(mech, op, "as a MAC computed in parts")),
        };
        self.emu.enforce(&o.key, &Need::Op(perm), None, op)?;
        then(secret)
    }

    /// Starts a MAC (HMAC or AES-CMAC) that takes the message in parts: multi-part signing and
    /// verification keep no copy of the message. `op` is [`Op::Sign`] or [`Op::Verify`].
    pub fn mac_begin(&self, mech: &Mechanism, key: KeyHandle, op: Op) -> Result<MacStream> {
        self.with_mac_key(mech, key, op, |secret| match *mech {
            Mechanism::Hmac { hash } => {
                let k = aws_lc_rs::hmac::Key::new(keys::hmac_alg(hash), secret);
                Ok(MacStream(MacContext::Hmac(hash, Box::new(aws_lc_rs::hmac::Context::with_key(&k)))))
            }
            _ => Ok(MacStream(MacContext::Cmac(aws_lc_rs::cmac::Context::with_key(&keys::cmac_key(secret, op)?)))),
        })
    }

    /// The tag of a MAC begun with [`Self::mac_begin`]. The key is checked again first, as at the
    /// start (a logout in between ends the right to use it).
    pub fn mac_sign_finish(&self, stream: MacStream, mech: &Mechanism, key: KeyHandle) -> Result<Vec<u8>> {
        self.with_mac_key(mech, key, Op::Sign, |_| Ok(()))?;
        stream.tag(Op::Sign)
    }

    /// Checks `tag` (in constant time) against a MAC begun with [`Self::mac_begin`].
    pub fn mac_verify_finish(&self, stream: MacStream, mech: &Mechanism, key: KeyHandle, tag: &[u8]) -> Result<()> {
        self.with_mac_key(mech, key, Op::Verify, |_| Ok(()))?;
        let want = stream.tag(Op::Verify)?;
        if tag.len() != want.len() {
            return Err(Error::new(ErrorKind::SignatureLenRange, Op::Verify).detail(format!(
                "the tag is {} bytes, not {}",
                want.len(),
                tag.len()
            )));
        }
        #[allow(deprecated)]
        aws_lc_rs::constant_time::verify_slices_are_equal(&want, tag)
            .map_err(|_| Error::new(ErrorKind::SignatureInvalid, Op::Verify))
    }

    /// For a hash-and-sign mechanism (`CKM_SHA256_RSA_PKCS`, `CKM_SHA256_RSA_PKCS_PSS`,
    /// `CKM_ECDSA_SHA256` and kin), the hash it applies to the message: a caller that hashes the
    /// message as it arrives gives [`Self::sign_digest`] the digest. `None` for the others.
    pub fn digest_first(mech: &Mechanism) -> Option<HashAlg> {
        match *mech {
            Mechanism::RsaPkcs1v15 { hash } | Mechanism::RsaPss { hash } | Mechanism::Ecdsa { hash: Some(hash) } => {
                Some(hash)
            }
            _ => None,
        }
    }

    /// The mechanism that finishes `mech`'s work on a digest, and its input.
    fn on_digest(mech: &Mechanism, digest: &[u8], op: Op) -> Result<(Mechanism, Vec<u8>)> {
        let Some(hash) = Self::digest_first(mech) else {
            return Err(mechanism_invalid(mech, op, "over a digest"));
        };
        if digest.len() != hash.output_len() {
            return Err(Error::new(ErrorKind::DataLenRange, op).detail(format!(
                "a {} digest is {} bytes, not {}",
                hash.name(),
                hash.output_len(),
                digest.len()
            )));
        }
        Ok(match *mech {
            Mechanism::RsaPkcs1v15 { hash } => {
                (Mechanism::RsaPkcs1v15Raw, [keys::digest_info_prefix(hash), digest].concat())
            }
            Mechanism::RsaPss { hash } => (Mechanism::RsaPssRaw { hash }, digest.to_vec()),
            _ => (Mechanism::Ecdsa { hash: None }, digest.to_vec()),
        })
    }

    /// Signs the message whose `digest` (under [`Self::digest_first`]'s hash) is given, exactly
    /// as `mech` signs the message itself: the key's ACL and `CKA_ALLOWED_MECHANISMS` are checked
    /// for `mech`. Multi-part signing hashes as the data arrives and ends here.
    pub fn sign_digest(&self, mech: &Mechanism, key: KeyHandle, digest: &[u8]) -> Result<Vec<u8>> {
        let (raw, input) = Self::on_digest(mech, digest, Op::Sign)?;
        self.sign_as(mech, &raw, key, &input)
    }

    /// Verifies a signature of the message whose `digest` is given, as [`Self::sign_digest`].
    pub fn verify_digest(&self, mech: &Mechanism, key: KeyHandle, digest: &[u8], signature: &[u8]) -> Result<()> {
        let (raw, input) = Self::on_digest(mech, digest, Op::Verify)?;
        self.verify_as(mech, &raw, key, &input, signature)
    }

    /// Mixes a caller's `seed` into the module's generator (`C_SeedRandom`).
    pub fn seed_random(&self, seed: &[u8]) -> Result<()> {
        self.emu.rng(Op::Random)?.mix(seed);
        Ok(())
    }

    /// Whether this is a read-write session.
    pub fn mode(&self) -> SessionMode {
        self.mode
    }

    /// Whether the key behind `key` holds private or secret material (true for the public half of a
    /// pair, which shares its blob with the private key).
    pub fn holds_secret(&self, key: KeyHandle) -> Result<bool> {
        Ok(!matches!(self.object(key, Op::GetAttributes)?.key.material, Material::PublicOnly))
    }

    /// How the key behind `key` came to be (`None` when its history was not recorded).
    pub fn origin(&self, key: KeyHandle) -> Result<Option<KeyOrigin>> {
        Ok(self.object(key, Op::GetAttributes)?.key.header.origin)
    }

    /// Changes a key in place (`C_SetAttributeValue`): its label and id freely, its rights only
    /// downwards (fewer usages, sensitive, not extractable), under its ACL's `ReduceACL`. A token
    /// key's blob is rewritten crash-safely; every handle to the key keeps working. Keys with use
    /// limits are refused, even for a new label, so a change can never restart a limit.
    pub fn modify(&self, key: KeyHandle, policy: &KeyPolicy) -> Result<()> {
        let op = Op::ChangeAcl;
        self.change(key, op, |o, header| {
            let original = policy_of(o);
            if policy.token != original.token {
                return Err(Error::new(ErrorKind::ActionProhibited, op)
                    .detail("CKA_TOKEN cannot change; copy the key to make a token or session copy"));
            }
            if let Some(label) = &policy.label {
                header.name = label.clone();
            }
            if let Some(id) = &policy.id {
                header.id = id.clone();
            }
            let rights_change = KeyPolicy { label: None, id: None, ..policy.clone() }
                != KeyPolicy { label: None, id: None, ..original.clone() };
            if rights_change {
                policy.check_narrowing_of(&original)?;
                self.emu.enforce(&o.key, &Need::Op(OpPerms::ReduceACL), None, op)?;
                header.acl = o.key.header.acl.narrowed_to(&with_other_half(policy, o));
                header.wrap_with_trusted |= policy.wrap_with_trusted && !policy.extractable;
                header.public_object &= policy.public_object;
                if let Some(m) = &policy.allowed_mechanisms {
                    header.allowed_mechanisms = Some(m.iter().map(|k| k.ckm()).collect());
                }
                header.acl_certificate = None;
            }
            Ok(())
        })
    }

    /// A key's PKCS#11 details that are not policy: its unique identifier (`CKA_UNIQUE_ID`, which
    /// names the blob and the half), dates and `CKA_ALWAYS_AUTHENTICATE`.
    pub fn details(&self, key: KeyHandle) -> Result<KeyDetails> {
        let o = self.object(key, Op::GetAttributes)?;
        let h = &o.key.header;
        let half = if o.class == ObjectClass::PublicKey && !matches!(o.key.material, Material::PublicOnly) {
            "/public"
        } else {
            ""
        };
        Ok(KeyDetails {
            unique_id: format!("{}/{}{half}", h.appname, h.ident),
            start_date: h.start_date.clone().into_bytes(),
            end_date: h.end_date.clone().into_bytes(),
            always_authenticate: h.always_authenticate && o.class == ObjectClass::PrivateKey,
        })
    }

    /// Sets a key's dates (`YYYYMMDD` or empty) and, on a private key, `CKA_ALWAYS_AUTHENTICATE`
    /// (only ever on: it makes the key stricter). `None` leaves a value as it is.
    pub fn set_details(
        &self,
        key: KeyHandle,
        start_date: Option<&[u8]>,
        end_date: Option<&[u8]>,
        always_authenticate: Option<bool>,
    ) -> Result<()> {
        let op = Op::ChangeAcl;
        let date = |d: &[u8]| -> Result<String> {
            if d.is_empty() || (d.len() == 8 && d.iter().all(u8::is_ascii_digit)) {
                Ok(String::from_utf8_lossy(d).into_owned())
            } else {
                Err(Error::new(ErrorKind::AttributeValueInvalid, op).detail("a date is YYYYMMDD or empty"))
            }
        };
        self.change(key, op, |o, header| {
            if let Some(d) = start_date {
                header.start_date = date(d)?;
            }
            if let Some(d) = end_date {
                header.end_date = date(d)?;
            }
            match always_authenticate {
                Some(true) if o.class == ObjectClass::PrivateKey => header.always_authenticate = true,
                Some(true) => {
                    return Err(Error::new(ErrorKind::AttributeTypeInvalid, op)
                        .detail("CKA_ALWAYS_AUTHENTICATE is an attribute of private keys"));
                }
                Some(false) if header.always_authenticate => {
                    return Err(Error::new(ErrorKind::ActionProhibited, op)
                        .detail("CKA_ALWAYS_AUTHENTICATE cannot be turned off"));
                }
                _ => {}
            }
            Ok(())
        })
    }

    /// Changes a key's header in place with `edit`, one change at a time: a token key's blob is
    /// rewritten crash-safely, and every handle to the key keeps working. Keys with use limits are
    /// refused, so a change can never restart a limit.
    fn change(&self, key: KeyHandle, op: Op, edit: impl FnOnce(&Object, &mut KeyHeader) -> Result<()>) -> Result<()> {
        // One change at a time, destruction included: none is lost or undone by another.
        let _serial = self.emu.key_changes(op)?;
        let o = self.object(key, op)?;
        if o.key.header.acl.groups.iter().any(|g| !g.limits.is_empty()) {
            return Err(Error::new(ErrorKind::ActionProhibited, op)
                .detail("the key has use limits; changing it in place would restart them")
                .hint("copy the key with the new label or narrower policy instead"));
        }
        if o.key.path.as_ref().is_some_and(|p| !p.exists()) {
            return Err(Error::new(ErrorKind::KeyHandleInvalid, op).detail("the key was destroyed"));
        }
        let mut header = o.key.header.clone();
        edit(&o, &mut header)?;
        if header == o.key.header {
            return Ok(());
        }
        let private = key_material_bytes(&o.key).unwrap_or_default();
        let mut fresh = self.emu.loaded_from(header.clone(), &private, o.key.path.clone())?;
        if let Some(k) = Arc::get_mut(&mut fresh) {
            k.loaded_ms = o.key.loaded_ms;
        }
        if let Some(path) = &o.key.path {
            self.require_rw(true, op)?;
            let (world, km) = self.emu.module_key(op)?;
            self.emu.seal_key(&world, &km, header, &private, true)?.write(path, &self.emu.config().faults)?;
        }
        self.emu.replace_key(&o.key, &fresh);
        Ok(())
    }

    /// Imports a key with the authority of the world's Administrator Card Set quorum, which alone
    /// may make a trusted wrapping key (`CKA_TRUSTED`): the PKCS#11 security officer's login is
    /// that quorum. The quorum must be this world's.
    pub fn import_key_with_quorum(
        &self,
        material: &KeyMaterial,
        policy: &KeyPolicy,
        quorum: &crate::world::QuorumAuth,
    ) -> Result<KeyHandle> {
        let world = self.emu.require_world(Op::ImportKey)?;
        if quorum.hknso() != world.hknso() {
            return Err(Error::new(ErrorKind::TokenNotRecognized, Op::ImportKey)
                .detail("the quorum was collected for another security world"));
        }
        /// Lowers the flag however the import ends, a panic included.
        struct Lower<'c>(&'c Cell<bool>);
        impl Drop for Lower<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        self.officer.set(true);
        let _lower = Lower(&self.officer);
        self.import_key(material, policy)
    }

    /// This session's number inside the module.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn object(&self, h: KeyHandle, op: Op) -> Result<Object> {
        let o = self.emu.object_in(h, Some(self.id), self.group, op)?;
        if o.class != ObjectClass::PublicKey && !o.key.header.public_object {
            self.require_private(op)?;
        }
        Ok(o)
    }

    /// Whether this session belongs to the in-process application (opened through
    /// [`Backend::open_session`]), whose login state the emulator keeps. A holder of shared
    /// sessions (the PKCS#11 module) keeps its own and applies the same rule before it calls in.
    fn in_process(&self) -> bool {
        matches!(self.emu, EmuRef::Borrowed(_))
    }

    fn app(&self, op: Op) -> Result<std::sync::MutexGuard<'_, crate::emulator::AppLogin>> {
        self.emu.app.lock().map_err(|_| crate::emulator::poisoned(op))
    }

    /// Whether private and secret keys may be used now: always on a world without a user PIN
    /// (module protection), else only while the user is logged in.
    fn private_allowed(&self, op: Op) -> Result<bool> {
        if !self.in_process() || self.app(op)?.user == Some(UserKind::User) {
            return Ok(true);
        }
        Ok(!self.emu.login_required()?)
    }

    fn require_private(&self, op: Op) -> Result<()> {
        if self.private_allowed(op)? {
            return Ok(());
        }
        Err(Error::new(ErrorKind::NotLoggedIn, op)
            .detail("this token has a user PIN: its private and secret keys are used only after the user's login")
            .hint("log in as the user first (C_Login with CKU_USER)"))
    }

    /// The world's quorum, if this session holds it: cards presented to it, or the security
    /// officer's login while it lasts.
    pub(crate) fn quorum_now(&self, op: Op) -> Result<bool> {
        if self.quorum_by_login.get() && self.in_process() && self.app(op)?.user != Some(UserKind::SecurityOfficer) {
            // The officer logged out (from any session of the application): the cards went with it.
            self.quorum.replace(None);
            self.quorum_by_login.set(false);
        }
        Ok(self.quorum.borrow().is_some())
    }

    fn require_rw(&self, token: bool, op: Op) -> Result<()> {
        if token && self.mode == SessionMode::ReadOnly {
            return Err(Error::new(ErrorKind::ActionProhibited, op)
                .detail("a read-only session cannot create or destroy token keys")
                .hint("open a read-write session"));
        }
        Ok(())
    }

    fn check_class(&self, o: &Object, want: ObjectClass, mech: &Mechanism, op: Op) -> Result<()> {
        if o.class != want {
            return Err(Error::new(ErrorKind::KeyTypeInconsistent, op).detail(format!(
                "{} needs a {want:?} object, not a {:?}",
                mech.describe(),
                o.class
            )));
        }
        if !o.key.allowed.as_ref().is_none_or(|a| a.contains(&mech.kind())) {
            return Err(Error::new(ErrorKind::MechanismInvalid, op)
                .detail(format!("{} is not in the key's CKA_ALLOWED_MECHANISMS", mech.describe())));
        }
        Ok(())
    }

    fn rsa<'k>(&self, o: &'k Object, mech: &Mechanism, op: Op) -> Result<&'k keys::RsaPrivate> {
        match &o.key.material {
            Material::Rsa(r) => Ok(r),
            _ => Err(mechanism_invalid(mech, op, "this key")),
        }
    }

    fn public<'k>(&self, o: &'k Object, mech: &Mechanism, op: Op) -> Result<&'k rsa::PublicKey> {
        match &o.key.public {
            Some(PublicKey::Rsa(p)) => Ok(p),
            Some(PublicKey::Ec(_)) => Err(mechanism_invalid(mech, op, "an EC key")),
            None => Err(mechanism_invalid(mech, op, "a secret key")),
        }
    }

    /// The bytes of a generic secret (HMAC's key).
    fn generic_secret<'k>(&self, o: &'k Object, mech: &Mechanism, op: Op) -> Result<&'k [u8]> {
        self.check_class(o, ObjectClass::SecretKey, mech, op)?;
        match &o.key.material {
            Material::Aes(k) if o.key.header.key_type == BlobKeyType::Generic => Ok(k),
            _ => Err(Error::new(ErrorKind::KeyTypeInconsistent, op)
                .detail(format!("{} needs a generic secret key", mech.describe()))),
        }
    }

    fn aes<'k>(&self, o: &'k Object, mech: &Mechanism, op: Op) -> Result<&'k [u8]> {
        match &o.key.material {
            Material::Aes(k) if o.class == ObjectClass::SecretKey && o.key.header.key_type == BlobKeyType::Aes => Ok(k),
            _ => {
                // The key of a wrap is the wrapping key; of anything else, the operation's key.
                let kind = if matches!(op, Op::WrapKey | Op::UnwrapKey) {
                    ErrorKind::WrappingKeyTypeInconsistent
                } else {
                    ErrorKind::KeyTypeInconsistent
                };
                Err(Error::new(kind, op).detail(format!("{} needs an AES key", mech.describe())))
            }
        }
    }

    /// The bytes of the secret key a block-cipher mechanism takes (AES, or DES3 for the DES3 modes).
    fn cipher_key<'k>(&self, o: &'k Object, mech: &Mechanism, op: Op) -> Result<&'k [u8]> {
        if mech.key_type() == KeyType::Aes {
            return self.aes(o, mech, op);
        }
        match &o.key.material {
            Material::Aes(k) if o.key.header.key_type == BlobKeyType::Des3 => Ok(k),
            _ => {
                Err(Error::new(ErrorKind::KeyTypeInconsistent, op)
                    .detail(format!("{} needs a DES3 key", mech.describe())))
            }
        }
    }

    /// Saves (for token keys) and registers a new key; returns its handles, private first.
    fn store(
        &self,
        world: &World,
        km: &[u8],
        header: KeyHeader,
        private: &[u8],
        token: bool,
        op: Op,
    ) -> Result<Vec<KeyHandle>> {
        self.require_rw(token, op)?;
        if header.has_private && !header.public_object {
            self.require_private(op)?;
        }
        let path = token.then(|| self.emu.key_path(&header.appname, &header.ident));
        // Parse the key before anything is written, so a key that cannot load leaves no blob.
        let key = self.emu.loaded_from(header.clone(), private, path.clone())?;
        if let Some(path) = &path {
            let file = self.emu.seal_key(world, km, header, private, true)?;
            if let Err(e) = file.write_new(path, &self.emu.config().faults) {
                // A write that failed after its rename left our file in place: it goes, so a
                // failed call makes no key. (A file made meanwhile by another is not ours.)
                if e.kind() != &ErrorKind::AlreadyExists {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e);
            }
        }
        Ok(self.emu.register_in(key, (!token).then_some(self.id), if token { None } else { self.group }))
    }

    fn new_ident(&self) -> Result<String> {
        let b: [u8; 8] = self.emu.rng(Op::GenerateKey)?.array();
        Ok(format!("ua{}", hex::encode(b)))
    }

    fn header(&self, world: &World, policy: &KeyPolicy, key_type: BlobKeyType, bits: u32) -> Result<KeyHeader> {
        if policy.trusted && !self.officer.get() && !self.quorum_now(Op::GenerateKey)? {
            return Err(Error::new(ErrorKind::ActionProhibited, Op::GenerateKey)
                .detail("CKA_TRUSTED (a trusted wrapping key) is granted only by the security officer")
                .hint("on an nShield world that is the ACS quorum: change the key's ACL with the quorum"));
        }
        Ok(KeyHeader {
            format: KEY_FORMAT.into(),
            version: 1,
            appname: "pkcs11".into(),
            ident: self.new_ident()?,
            name: policy.label.clone().unwrap_or_default(),
            id: policy.id.clone().unwrap_or_default(),
            key_type,
            bits,
            pubexp: 0,
            has_private: true,
            protection: Protection::Module,
            hkm: world.hkm().to_vec(),
            gentime_ms: self.emu.now_ms(),
            acl: Acl::from_policy(policy, world.hkm(), world.hknso()),
            allowed_mechanisms: policy.allowed_mechanisms.as_ref().map(|m| m.iter().map(|k| k.ckm()).collect()),
            public: Vec::new(),
            hash: Vec::new(),
            cng: None,
            acl_certificate: None,
            origin: None,
            wrap_with_trusted: policy.wrap_with_trusted && !policy.extractable,
            public_apart: false,
            public_object: policy.public_object,
            start_date: String::new(),
            end_date: String::new(),
            always_authenticate: false,
        })
    }

    fn aes_header(&self, world: &World, policy: &KeyPolicy, key: &[u8]) -> Result<KeyHeader> {
        self.secret_header(world, policy, key, BlobKeyType::Aes)
    }

    /// The header of a secret key (AES: 16, 24 or 32 bytes; generic secret: 1 to 512 bytes).
    fn secret_header(&self, world: &World, policy: &KeyPolicy, key: &[u8], kind: BlobKeyType) -> Result<KeyHeader> {
        let bits = match (kind, key.len()) {
            (BlobKeyType::Aes, 16 | 24 | 32) | (BlobKeyType::Generic, 1..=MAX_GENERIC_SECRET) => key.len() as u32 * 8,
            (BlobKeyType::Des3, _) => {
                keys::check_des3(key, Op::ImportKey)?;
                192
            }
            (BlobKeyType::Generic, n) => {
                return Err(Error::new(ErrorKind::KeySizeRange, Op::ImportKey)
                    .detail(format!("generic secrets are 1 to {MAX_GENERIC_SECRET} bytes, not {n}")));
            }
            (_, n) => {
                return Err(Error::new(ErrorKind::KeySizeRange, Op::ImportKey)
                    .detail(format!("AES keys are 128, 192 or 256 bits, not {}", n * 8)));
            }
        };
        let mut h = self.header(world, policy, kind, bits)?;
        // The hash of a secret key must not reveal it: hash a random identity instead.
        let id: [u8; 16] = self.emu.rng(Op::GenerateKey)?.array();
        h.hash = world.suite().hash(&[b"hsmkit AES key", &id]);
        Ok(h)
    }

    fn private_key_header(&self, world: &World, policy: &KeyPolicy, pkcs8: &[u8]) -> Result<KeyHeader> {
        let base = self.header(world, policy, BlobKeyType::Rsa, 0)?;
        let allowed: Option<Vec<MechanismKind>> = policy.allowed_mechanisms.clone();
        let mut h = self.emu.private_header(
            world,
            &base.appname,
            &base.ident,
            &base.name,
            &base.id,
            pkcs8,
            base.acl,
            allowed.as_deref(),
        )?;
        // What the ACL cannot carry, the header does.
        h.wrap_with_trusted = base.wrap_with_trusted;
        h.public_object = base.public_object;
        Ok(h)
    }

    fn unwrap_bytes(&self, mech: &Mechanism, o: &Object, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let op = Op::UnwrapKey;
        match mech {
            Mechanism::AesKeyWrap | Mechanism::AesKeyWrapPad | Mechanism::AesKeyWrapKwp => {
                self.check_class(o, ObjectClass::SecretKey, mech, op)?;
                keys::aes_unwrap(self.aes(o, mech, op)?, *mech != Mechanism::AesKeyWrap, wrapped)
            }
            Mechanism::RsaOaep { hash } => {
                self.check_class(o, ObjectClass::PrivateKey, mech, op)?;
                self.rsa(o, mech, op)?.decrypt_oaep(*hash, wrapped, op)
            }
            Mechanism::RsaAesKeyWrap { hash, .. } => {
                self.check_class(o, ObjectClass::PrivateKey, mech, op)?;
                keys::rsa_aes_unwrap(self.rsa(o, mech, op)?, *hash, wrapped)
            }
            other => Err(mechanism_invalid(other, op, "a key-unwrapping key")),
        }
    }
}

fn key_material_bytes(key: &LoadedKey) -> Option<Zeroizing<Vec<u8>>> {
    match &key.material {
        Material::Rsa(r) => Some(Zeroizing::new(r.pkcs8().to_vec())),
        Material::Ec(k) => Some(Zeroizing::new(k.pkcs8().to_vec())),
        Material::Aes(a) => Some(a.clone()),
        Material::PublicOnly => None,
    }
}

impl Session for EmulatorSession<'_> {
    fn login(&self, user: UserKind, pin: &Pin) -> Result<()> {
        let op = Op::Login;
        if self.in_process() {
            match self.app(op)?.user {
                Some(u) if u == user => {
                    return Err(Error::new(ErrorKind::UserAlreadyLoggedIn, op).detail(format!("{user:?} is logged in")));
                }
                Some(u) => {
                    return Err(Error::new(ErrorKind::UserAnotherAlreadyLoggedIn, op)
                        .detail(format!("{u:?} is logged in"))
                        .hint("log out first"));
                }
                None => {}
            }
        }
        match user {
            // The token's user PIN, kept in kmdata (`local/pkcs11_token`) as libhsmkit_pkcs11.so
            // keeps it, wrong guesses counted across processes.
            UserKind::User => self.emu.check_user_pin(pin)?,
            // The security officer of an nShield world is the Administrator Card Set quorum: the PIN
            // is the PINs of cards 1 to k joined by commas (the PIN of card 1 for a 1-card quorum).
            UserKind::SecurityOfficer => {
                let world = self.emu.require_world(op)?;
                let k = world.body().acs.k;
                let pins = crate::token::so_pins(pin, k);
                if pins.len() != usize::from(k) {
                    return Err(Error::new(ErrorKind::PinIncorrect, op)
                        .detail(format!("the security officer of this world is {k} Administrator cards"))
                        .hint(format!("give the PINs of cards 1 to {k}, joined by commas")));
                }
                let cards: Vec<(u8, Pin)> = pins.into_iter().enumerate().map(|(i, p)| (i as u8 + 1, p)).collect();
                hsmkit_backend::WorldAuthority::present_cards(self, &cards)?;
                self.quorum_by_login.set(true);
            }
        }
        if self.in_process() {
            // Checked again: another session may have logged in during the slow PIN check.
            let mut app = self.app(op)?;
            if let Some(u) = app.user {
                if user == UserKind::SecurityOfficer {
                    self.quorum.replace(None);
                    self.quorum_by_login.set(false);
                }
                let kind =
                    if u == user { ErrorKind::UserAlreadyLoggedIn } else { ErrorKind::UserAnotherAlreadyLoggedIn };
                return Err(Error::new(kind, op).detail(format!("{u:?} logged in meanwhile")));
            }
            app.user = Some(user);
        }
        Ok(())
    }

    fn logout(&self) -> Result<()> {
        // The security officer's cards are withdrawn.
        let presented = self.quorum.replace(None).is_some();
        self.quorum_by_login.set(false);
        if self.in_process() && self.app(Op::Logout)?.user.take().is_none() && !presented {
            return Err(Error::new(ErrorKind::NotLoggedIn, Op::Logout).detail("nobody is logged in"));
        }
        Ok(())
    }

    fn init_pin(&self, pin: &Pin) -> Result<()> {
        let op = Op::Login;
        if !self.quorum_now(op)? {
            return Err(Error::new(ErrorKind::NotLoggedIn, op)
                .detail("setting the user PIN needs the security officer (the Administrator Card Set quorum)")
                .hint("log in as the security officer first"));
        }
        let quorum = self.quorum.borrow();
        let auth = quorum.as_ref().ok_or_else(|| crate::emulator::poisoned(op))?;
        self.emu.init_user_pin(auth, pin)
    }

    fn set_pin(&self, old: &Pin, new: &Pin) -> Result<()> {
        self.emu.change_user_pin(old, new)
    }

    fn world_authority(&self) -> Option<&dyn hsmkit_backend::WorldAuthority> {
        Some(self)
    }

    fn generate_key(&self, spec: &KeySpec, policy: &KeyPolicy) -> Result<KeyHandle> {
        let (world, km) = self.emu.module_key(Op::GenerateKey)?;
        let (len, kind) = match *spec {
            KeySpec::Aes { bits: bits @ (128 | 192 | 256) } => (bits as usize / 8, BlobKeyType::Aes),
            KeySpec::Aes { bits } => {
                return Err(Error::new(ErrorKind::KeySizeRange, Op::GenerateKey)
                    .detail(format!("AES keys are 128, 192 or 256 bits, not {bits}")));
            }
            KeySpec::GenericSecret { bytes } => (bytes as usize, BlobKeyType::Generic),
            KeySpec::Des3 => (24, BlobKeyType::Des3),
            _ => {
                return Err(Error::new(ErrorKind::MechanismInvalid, Op::GenerateKey)
                    .detail("only AES keys and generic secrets"));
            }
        };
        if len > MAX_GENERIC_SECRET {
            return Err(Error::new(ErrorKind::KeySizeRange, Op::GenerateKey)
                .detail(format!("generic secrets are 1 to {MAX_GENERIC_SECRET} bytes, not {len}")));
        }
        let mut key = Zeroizing::new(vec![0u8; len]);
        self.emu.rng(Op::GenerateKey)?.fill(&mut key);
        if kind == BlobKeyType::Des3 {
            // Odd parity, and three distinct DES keys (a draw that repeats one is drawn again).
            keys::des_odd_parity(&mut key);
            while keys::check_des3(&key, Op::GenerateKey).is_err() {
                self.emu.rng(Op::GenerateKey)?.fill(&mut key);
                keys::des_odd_parity(&mut key);
            }
        }
        let mut header = self.secret_header(&world, policy, &key, kind)?;
        header.origin = Some(KeyOrigin::generated(policy));
        let handles = self.store(&world, &km, header, &key, policy.token, Op::GenerateKey)?;
        handles.first().copied().ok_or_else(|| crate::emulator::poisoned(Op::GenerateKey))
    }

    fn generate_key_pair(&self, spec: &KeyPairSpec, policy: &KeyPolicy) -> Result<(KeyHandle, KeyHandle)> {
        let (world, km) = self.emu.module_key(Op::GenerateKeyPair)?;
        let op = Op::GenerateKeyPair;
        let pkcs8 = match *spec {
            KeyPairSpec::Rsa { bits, public_exponent } => self.emu.new_rsa_pkcs8(bits, public_exponent)?,
            KeyPairSpec::Ec { curve } => crate::ec::EcPrivate::generate(curve, &mut *self.emu.rng(op)?)?,
            _ => {
                return Err(Error::new(ErrorKind::MechanismInvalid, op).detail("only RSA and EC key pairs"));
            }
        };
        let mut header = self.private_key_header(&world, policy, &pkcs8)?;
        header.origin = Some(KeyOrigin::generated(policy));
        // Two objects, as PKCS#11 has them: the private key, and its public half in a public key
        // blob of its own (its own label, lifetime and usages).
        header.public_apart = true;
        let public_policy = KeyPolicy { usage: policy.usage & Usage::PUBLIC_SIDE, ..policy.clone() };
        let mut ph = self.header(&world, &public_policy, header.key_type, header.bits)?;
        ph.has_private = false;
        ph.pubexp = header.pubexp;
        ph.hash = world.suite().hash(&[&header.public]);
        ph.public = header.public.clone();
        ph.origin = header.origin;
        let private = match self.store(&world, &km, header, &pkcs8, policy.token, op)?[..] {
            [private] => private,
            _ => return Err(crate::emulator::poisoned(op)),
        };
        match self.store(&world, &km, ph, &[], policy.token, op) {
            Ok(handles) => match handles[..] {
                [public] => Ok((public, private)),
                _ => Err(crate::emulator::poisoned(op)),
            },
            Err(e) => {
                // No half-made pair is left behind.
                let _ = self.destroy(private);
                Err(e)
            }
        }
    }

    fn import_key(&self, material: &KeyMaterial, policy: &KeyPolicy) -> Result<KeyHandle> {
        let (world, km) = self.emu.module_key(Op::ImportKey)?;
        let (header, private): (KeyHeader, Zeroizing<Vec<u8>>) = match material {
            KeyMaterial::RsaPrivatePkcs8(der) if hsmkit_backend::EcCurve::of_pkcs8(der).is_none() => {
                (self.private_key_header(&world, policy, der)?, der.clone())
            }
            KeyMaterial::EcPrivatePkcs8(der) if hsmkit_backend::EcCurve::of_pkcs8(der).is_some() => {
                // Kept in the canonical form the module loads it in.
                let canonical = Zeroizing::new(crate::ec::EcPrivate::from_pkcs8(der, Op::ImportKey)?.pkcs8().to_vec());
                (self.private_key_header(&world, policy, &canonical)?, canonical)
            }
            KeyMaterial::RsaPrivatePkcs8(_) | KeyMaterial::EcPrivatePkcs8(_) => {
                return Err(Error::new(ErrorKind::DataInvalid, Op::ImportKey)
                    .detail("the PKCS#8 key is not of the type it was given as"));
            }
            KeyMaterial::EcPublicSpki(spki) => {
                let public = crate::ec::EcPublic::from_spki(spki, Op::ImportKey)?;
                let kind = if public.curve == hsmkit_backend::EcCurve::Ed25519 {
                    BlobKeyType::Ed25519
                } else {
                    BlobKeyType::Ec
                };
                let mut h = self.header(&world, policy, kind, public.curve.bits())?;
                h.has_private = false;
                h.public = public.spki();
                h.hash = world.suite().hash(&[&h.public]);
                (h, Zeroizing::new(Vec::new()))
            }
            KeyMaterial::Aes(k) => (self.aes_header(&world, policy, k)?, k.clone()),
            KeyMaterial::GenericSecret(k) => (self.secret_header(&world, policy, k, BlobKeyType::Generic)?, k.clone()),
            KeyMaterial::Des3(k) => (self.secret_header(&world, policy, k, BlobKeyType::Des3)?, k.clone()),
            KeyMaterial::RsaPublicSpki(spki) => {
                use rsa::traits::PublicKeyParts;
                let public = keys::public_from_spki(spki, Op::ImportKey)?;
                let mut h = self.header(&world, policy, BlobKeyType::Rsa, public.n().bit_width())?;
                h.has_private = false;
                h.hash = world.suite().hash(&[spki]);
                h.public = spki.clone();
                (h, Zeroizing::new(Vec::new()))
            }
            _ => {
                return Err(Error::new(ErrorKind::Unsupported, Op::ImportKey).detail("unknown key material"));
            }
        };
        let header = KeyHeader { origin: Some(KeyOrigin::IMPORTED), ..header };
        let handles = self.store(&world, &km, header, &private, policy.token, Op::ImportKey)?;
        handles.first().copied().ok_or_else(|| crate::emulator::poisoned(Op::ImportKey))
    }

    fn find_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyHandle>> {
        let world = self.emu.require_world(Op::FindKeys)?;
        // Load the token keys of this world that match, once each (one loader at a time, so two
        // searches never load the same blob twice).
        let serial = self.emu.key_changes(Op::FindKeys)?;
        let loaded: Vec<std::path::PathBuf> =
            self.emu.all_objects().into_iter().filter_map(|(_, o)| o.key.path.clone()).collect();
        for listing in self.emu.list_keys()? {
            let h = &listing.header;
            let matches = h.hkm == world.hkm()
                && h.protection == Protection::Module
                && filter.label.as_ref().is_none_or(|l| *l == h.name)
                && filter.id.as_ref().is_none_or(|i| *i == h.id);
            if matches && !loaded.contains(&listing.path) {
                let key = self.emu.load_blob(&listing.path)?;
                self.emu.register(key, None);
            }
        }
        drop(serial);
        // Private and secret keys are invisible until they may be used.
        let private_visible = self.private_allowed(Op::FindKeys)?;
        let mut out: Vec<KeyHandle> = self
            .emu
            .all_objects()
            .into_iter()
            .filter(|(_, o)| {
                o.owner.is_none() || o.owner == Some(self.id) || (self.group.is_some() && o.group == self.group)
            })
            .filter(|(_, o)| private_visible || o.class == ObjectClass::PublicKey || o.key.header.public_object)
            .filter(|(_, o)| {
                let h = &o.key.header;
                let key_type = h.key_type.key_type();
                filter.class.is_none_or(|c| c == o.class)
                    && filter.key_type.is_none_or(|t| t == key_type)
                    && filter.label.as_ref().is_none_or(|l| *l == h.name)
                    && filter.id.as_ref().is_none_or(|i| *i == h.id)
            })
            .map(|(h, _)| KeyHandle(h))
            .collect();
        out.sort();
        Ok(out)
    }

    fn attributes(&self, key: KeyHandle, which: &[AttrKind]) -> Result<Vec<Attr>> {
        use rsa::traits::PublicKeyParts;
        let o = self.object(key, Op::GetAttributes)?;
        let h = &o.key.header;
        let policy = policy_of(&o);
        let plain_export = which.contains(&AttrKind::Value)
            && o.class != ObjectClass::PublicKey
            && self.emu.enforce(&o.key, &Need::Op(OpPerms::ExportAsPlain), None, Op::GetAttributes).is_ok();
        Ok(which
            .iter()
            .map(|&kind| {
                let v = |value| Attr::Value(kind, value);
                match (kind, &o.key.public) {
                    (AttrKind::Class, _) => v(AttrValue::Class(o.class)),
                    (AttrKind::KeyType, _) => v(AttrValue::KeyType(h.key_type.key_type())),
                    (AttrKind::Label, _) => v(AttrValue::Text(h.name.clone())),
                    (AttrKind::Id, _) => v(AttrValue::Bytes(h.id.clone())),
                    (AttrKind::Bits, _) => v(AttrValue::Number(u64::from(h.bits))),
                    (AttrKind::Modulus, Some(PublicKey::Rsa(p))) => {
                        v(AttrValue::Bytes(p.n().to_be_bytes_trimmed_vartime().to_vec()))
                    }
                    (AttrKind::PublicExponent, Some(PublicKey::Rsa(p))) => {
                        v(AttrValue::Bytes(p.e().to_be_bytes_trimmed_vartime().to_vec()))
                    }
                    (AttrKind::EcParams, Some(PublicKey::Ec(p))) => v(AttrValue::Bytes(p.curve.params().to_vec())),
                    (AttrKind::EcPoint, Some(PublicKey::Ec(p))) if o.class == ObjectClass::PublicKey => {
                        v(AttrValue::Bytes(hsmkit_backend::EcCurve::point_attribute(&p.point)))
                    }
                    (AttrKind::PublicKeyInfo, Some(_)) => v(AttrValue::Bytes(h.public.clone())),
                    (AttrKind::Value, _) if o.class == ObjectClass::PublicKey => Attr::Invalid(kind),
                    (AttrKind::Value, _) => match key_material_bytes(&o.key) {
                        Some(bytes) if plain_export => v(AttrValue::Secret(bytes)),
                        _ => Attr::Sensitive(kind),
                    },
                    (AttrKind::Policy, _) => v(AttrValue::Policy(policy.clone())),
                    _ => Attr::Invalid(kind),
                }
            })
            .collect())
    }

    fn copy_narrowed(&self, key: KeyHandle, policy: &KeyPolicy) -> Result<KeyHandle> {
        let o = self.object(key, Op::CopyKey)?;
        let original = policy_of(&o);
        policy.check_narrowing_of(&original)?;
        self.emu.enforce(&o.key, &Need::Op(OpPerms::ReduceACL), None, Op::CopyKey)?;
        let (world, km) = self.emu.module_key(Op::CopyKey)?;
        if policy.token {
            self.emu.enforce(&o.key, &Need::MakeBlob(world.hkm()), None, Op::CopyKey)?;
        }
        let full = with_other_half(policy, &o);
        let mut header = o.key.header.clone();
        header.appname = "pkcs11".into();
        header.ident = self.new_ident()?;
        header.acl = o.key.header.acl.narrowed_to(&full);
        header.wrap_with_trusted |= policy.wrap_with_trusted && !policy.extractable;
        header.public_object &= policy.public_object;
        if let Some(label) = &policy.label {
            header.name = label.clone();
        }
        if let Some(id) = &policy.id {
            header.id = id.clone();
        }
        if let Some(m) = &policy.allowed_mechanisms {
            header.allowed_mechanisms = Some(m.iter().map(|k| k.ckm()).collect());
        }
        header.cng = None;
        header.acl_certificate = None;
        // A copy of the public half is a public key: the private half it shares a blob with stays
        // where it is.
        let private = if o.class == ObjectClass::PublicKey {
            header.has_private = false;
            Zeroizing::new(Vec::new())
        } else {
            key_material_bytes(&o.key).unwrap_or_default()
        };
        let handles = self.store(&world, &km, header, &private, policy.token, Op::CopyKey)?;
        let new_objects: Vec<(KeyHandle, ObjectClass)> =
            handles.iter().filter_map(|h| self.object(*h, Op::CopyKey).ok().map(|n| (*h, n.class))).collect();
        new_objects
            .iter()
            .find(|(_, c)| *c == o.class)
            .map(|(h, _)| *h)
            .ok_or_else(|| crate::emulator::poisoned(Op::CopyKey))
    }

    fn destroy(&self, key: KeyHandle) -> Result<()> {
        let _serial = self.emu.key_changes(Op::DestroyKey)?;
        let o = self.object(key, Op::DestroyKey)?;
        self.require_rw(o.key.path.is_some(), Op::DestroyKey)?;
        let holds_private = !matches!(o.key.material, Material::PublicOnly);
        if o.class == ObjectClass::PublicKey && holds_private {
            // The public half of a pair shares the blob with its private key: forget the handle,
            // keep the key.
            self.emu.remove_objects(|x| x.class == ObjectClass::PublicKey && Arc::ptr_eq(&x.key, &o.key));
            return Ok(());
        }
        if let Some(path) = &o.key.path {
            crate::fsio::remove_file(path).map_err(|e| {
                Error::new(ErrorKind::Io, Op::DestroyKey).detail(format!("cannot remove {}: {e}", path.display()))
            })?;
            let path = path.clone();
            self.emu.remove_objects(|x| x.key.path.as_ref() == Some(&path));
        } else {
            let target = o.key.clone();
            self.emu.remove_objects(|x| Arc::ptr_eq(&x.key, &target));
        }
        Ok(())
    }

    fn sign(&self, mech: &Mechanism, key: KeyHandle, data: &[u8]) -> Result<Vec<u8>> {
        self.sign_as(mech, mech, key, data)
    }

    fn verify(&self, mech: &Mechanism, key: KeyHandle, data: &[u8], signature: &[u8]) -> Result<()> {
        self.verify_as(mech, mech, key, data, signature)
    }

    fn encrypt(&self, mech: &Mechanism, key: KeyHandle, plaintext: &[u8]) -> Result<Vec<u8>> {
        let op = Op::Encrypt;
        let o = self.object(key, op)?;
        if mech.is_secret_cipher() {
            self.check_class(&o, ObjectClass::SecretKey, mech, op)?;
            let k = self.cipher_key(&o, mech, op)?;
            self.emu.enforce(&o.key, &Need::Op(OpPerms::Encrypt), None, op)?;
            return Ok(keys::secret_crypt(k, mech, plaintext, true)?.to_vec());
        }
        if !matches!(
            mech,
            Mechanism::RsaOaep { .. } | Mechanism::RsaOaepLabel { .. } | Mechanism::RsaPkcs1v15Raw | Mechanism::RsaX509
        ) {
            return Err(mechanism_invalid(mech, op, "C_Encrypt here"));
        }
        self.check_class(&o, ObjectClass::PublicKey, mech, op)?;
        let public = keys::strong_enough(self.public(&o, mech, op)?, op)?;
        self.emu.enforce(&o.key, &Need::Op(OpPerms::Encrypt), None, op)?;
        let mut rng = self.emu.rng(op)?.child();
        keys::encrypt(public, mech, plaintext, &mut rng, op)
    }

    fn decrypt(&self, mech: &Mechanism, key: KeyHandle, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let op = Op::Decrypt;
        let o = self.object(key, op)?;
        if mech.is_secret_cipher() {
            self.check_class(&o, ObjectClass::SecretKey, mech, op)?;
            let k = self.cipher_key(&o, mech, op)?;
            self.emu.enforce(&o.key, &Need::Op(OpPerms::Decrypt), None, op)?;
            return Ok(keys::secret_crypt(k, mech, ciphertext, false)?.to_vec());
        }
        if !matches!(
            mech,
            Mechanism::RsaOaep { .. } | Mechanism::RsaOaepLabel { .. } | Mechanism::RsaPkcs1v15Raw | Mechanism::RsaX509
        ) {
            return Err(mechanism_invalid(mech, op, "C_Decrypt here"));
        }
        self.check_class(&o, ObjectClass::PrivateKey, mech, op)?;
        let private = self.rsa(&o, mech, op)?;
        self.emu.enforce(&o.key, &Need::Op(OpPerms::Decrypt), None, op)?;
        let plain = match mech {
            Mechanism::RsaOaep { hash } => private.decrypt_oaep(*hash, ciphertext, op)?,
            Mechanism::RsaOaepLabel { hash, label } => private.decrypt_oaep_label(*hash, label, ciphertext, op)?,
            Mechanism::RsaPkcs1v15Raw => private.decrypt_pkcs1(ciphertext, op)?,
            _ => {
                // The module's generator is locked only to seed this operation's own.
                let mut rng = self.emu.rng(op)?.child();
                private.decrypt_raw(ciphertext, &mut rng, op)?
            }
        };
        Ok(plain.to_vec())
    }

    fn wrap_key(&self, mech: &Mechanism, wrapping: KeyHandle, target: KeyHandle) -> Result<Vec<u8>> {
        let op = Op::WrapKey;
        let w = self.object(wrapping, op)?;
        let t = self.object(target, op)?;
        let want = match mech {
            Mechanism::AesKeyWrap | Mechanism::AesKeyWrapPad | Mechanism::AesKeyWrapKwp => ObjectClass::SecretKey,
            Mechanism::RsaOaep { .. } | Mechanism::RsaAesKeyWrap { .. } => ObjectClass::PublicKey,
            other => return Err(mechanism_invalid(other, op, "a wrapping key")),
        };
        self.check_class(&w, want, mech, op)?;
        let Some(bytes) = key_material_bytes(&t.key).filter(|_| t.class != ObjectClass::PublicKey) else {
            return Err(Error::new(ErrorKind::KeyNotWrappable, op)
                .detail("a public key is not wrapped; export its SubjectPublicKeyInfo"));
        };
        self.emu.enforce(&w.key, &Need::Derive(DeriveRole::WrapKey), None, op)?;
        let trusted = w.key.header.acl.check(&Need::Trusted, None, |_| false).is_ok();
        let need = Need::ExportUnder { wrapping_hash: &w.key.header.hash, trusted };
        self.emu.enforce(&t.key, &need, None, op).map_err(|e| {
            let p = policy_of(&t);
            let (kind, why) = if !p.extractable {
                (ErrorKind::KeyUnextractable, "the key is not extractable")
            } else {
                (ErrorKind::KeyNotWrappable, "the key may be wrapped only under a trusted or named key")
            };
            Error::new(kind, op).detail(format!("{why} ({})", e.detail_text().unwrap_or("")))
        })?;
        match mech {
            Mechanism::AesKeyWrap | Mechanism::AesKeyWrapPad | Mechanism::AesKeyWrapKwp => {
                keys::aes_wrap(self.aes(&w, mech, op)?, *mech != Mechanism::AesKeyWrap, &bytes)
            }
            Mechanism::RsaOaep { hash } => {
                let mut rng = self.emu.rng(op)?.child();
                keys::encrypt_oaep(keys::strong_enough(self.public(&w, mech, op)?, op)?, *hash, &bytes, &mut rng, op)
            }
            Mechanism::RsaAesKeyWrap { aes_bits, hash } => {
                let mut rng = self.emu.rng(op)?.child();
                keys::rsa_aes_wrap(
                    keys::strong_enough(self.public(&w, mech, op)?, op)?,
                    *aes_bits,
                    *hash,
                    &bytes,
                    &mut rng,
                )
            }
            other => Err(mechanism_invalid(other, op, "a wrapping key")),
        }
    }

    fn unwrap_key(
        &self,
        mech: &Mechanism,
        unwrapping: KeyHandle,
        wrapped: &[u8],
        key_type: KeyType,
        policy: &KeyPolicy,
    ) -> Result<KeyHandle> {
        let op = Op::UnwrapKey;
        let u = self.object(unwrapping, op)?;
        self.emu.enforce(&u.key, &Need::Derive(DeriveRole::UnwrapKey), None, op)?;
        let bytes = self.unwrap_bytes(mech, &u, wrapped)?;
        let material = match key_type {
            KeyType::Rsa => KeyMaterial::RsaPrivatePkcs8(bytes),
            KeyType::Aes => KeyMaterial::Aes(bytes),
            KeyType::GenericSecret => KeyMaterial::GenericSecret(bytes),
            KeyType::Ec | KeyType::EcEdwards => KeyMaterial::EcPrivatePkcs8(bytes),
            KeyType::Des3 => KeyMaterial::Des3(bytes),
        };
        self.import_key(&material, policy).map_err(|e| match e.kind() {
            ErrorKind::DataInvalid | ErrorKind::KeySizeRange => Error::new(ErrorKind::WrappedKeyInvalid, op),
            _ => e,
        })
    }

    fn derive_key(&self, mech: &Mechanism, base: KeyHandle, spec: &KeySpec, policy: &KeyPolicy) -> Result<KeyHandle> {
        use crate::derive;
        let op = Op::DeriveKey;
        let o = self.object(base, op)?;
        let want = mech.key_type();
        let want_class = if matches!(want, KeyType::Aes | KeyType::GenericSecret) {
            ObjectClass::SecretKey
        } else {
            ObjectClass::PrivateKey
        };
        if !mech.functions().contains(MechanismFlags::DERIVE) {
            return Err(mechanism_invalid(mech, op, "C_DeriveKey"));
        }
        self.check_class(&o, want_class, mech, op)?;
        if o.key.header.key_type.key_type() != want {
            return Err(Error::new(ErrorKind::KeyTypeInconsistent, op)
                .detail(format!("{} needs a base key of type {want:?}", mech.describe())));
        }
        self.emu.enforce(&o.key, &Need::Derive(DeriveRole::BaseKey), None, op)?;
        let (len, kind) = match *spec {
            KeySpec::Aes { bits: bits @ (128 | 192 | 256) } => (bits as usize / 8, BlobKeyType::Aes),
            KeySpec::GenericSecret { bytes } if (1..=MAX_GENERIC_SECRET).contains(&(bytes as usize)) => {
                (bytes as usize, BlobKeyType::Generic)
            }
            _ => {
                return Err(Error::new(ErrorKind::KeySizeRange, op).detail(
                    "a derived key is AES-128, -192 or -256, or a generic secret of 1 to 512 bytes".to_string(),
                ));
            }
        };
        let base_bytes = key_material_bytes(&o.key).ok_or_else(|| mechanism_invalid(mech, op, "a public key"))?;
        let value = match mech {
            Mechanism::Ecdh1Derive { kdf, shared_data, public } => {
                let curve = match &o.key.public {
                    Some(PublicKey::Ec(p)) => p.curve,
                    _ => return Err(mechanism_invalid(mech, op, "this key")),
                };
                let z = derive::ecdh_secret(curve, &base_bytes, public)?;
                match kdf {
                    Some(hash) => derive::x963_kdf(*hash, &z, shared_data, len),
                    None if !shared_data.is_empty() => {
                        return Err(
                            Error::new(ErrorKind::MechanismParamInvalid, op).detail("CKD_NULL takes no shared data")
                        );
                    }
                    // PKCS#11 §2.3.9: truncation removes bytes from the leading end.
                    None if len <= z.len() => Zeroizing::new(z[z.len() - len..].to_vec()),
                    None => {
                        return Err(Error::new(ErrorKind::KeySizeRange, op).detail(format!(
                            "ECDH on {} without a KDF gives {} bytes, not {len}",
                            curve.name(),
                            z.len()
                        )));
                    }
                }
            }
            Mechanism::HkdfDerive { hash, extract, expand, salt, info } => {
                derive::hkdf(*hash, &base_bytes, salt, info, *extract, *expand, len)?
            }
            Mechanism::Sp800108Counter { prf, params } => derive::sp800_108_counter(*prf, &base_bytes, params, len)?,
            Mechanism::AesCbcEncryptData { iv, data } => derive::aes_cbc_encrypt_data(&base_bytes, *iv, data, len)?,
            other => return Err(mechanism_invalid(other, op, "C_DeriveKey")),
        };
        let (world, km) = self.emu.module_key(op)?;
        let mut header = self.secret_header(&world, policy, &value, kind)?;
        header.origin = Some(KeyOrigin::derived(o.key.header.origin, policy));
        let handles = self.store(&world, &km, header, &value, policy.token, op)?;
        handles.first().copied().ok_or_else(|| crate::emulator::poisoned(op))
    }

    fn random(&self, out: &mut [u8]) -> Result<()> {
        self.emu.rng(Op::Random)?.fill(out);
        Ok(())
    }
}

/// A MAC's running state (AWS-LC's context, which holds the keyed state in C memory and cleanses
/// it when dropped).
enum MacContext {
    Hmac(HashAlg, Box<aws_lc_rs::hmac::Context>),
    Cmac(aws_lc_rs::cmac::Context),
}

/// A MAC being computed over a message given in parts ([`EmulatorSession::mac_begin`]).
pub struct MacStream(MacContext);

impl MacStream {
    /// Adds a part of the message.
    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.0 {
            MacContext::Hmac(_, c) => {
                c.update(data);
                Ok(())
            }
            MacContext::Cmac(c) => c.update(data).map_err(|_| Error::new(ErrorKind::FunctionFailed, Op::Sign)),
        }
    }

    fn tag(self, op: Op) -> Result<Vec<u8>> {
        match self.0 {
            MacContext::Hmac(_, c) => Ok(c.sign().as_ref().to_vec()),
            MacContext::Cmac(c) => {
                c.sign().map(|t| t.as_ref().to_vec()).map_err(|_| Error::new(ErrorKind::FunctionFailed, op))
            }
        }
    }
}

impl std::fmt::Debug for MacStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &self.0 {
            MacContext::Hmac(h, _) => h.name(),
            MacContext::Cmac(_) => "AES-CMAC",
        })?;
        f.write_str(" MAC in parts")
    }
}

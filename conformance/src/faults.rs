//! The kit's self-test: a backend wrapper that plants one named fault in any backend, and a run
//! of the suite against each fault. A fault is caught when a case that passes on the backend
//! itself fails (or crashes) with the fault in place; the mutation score is the share of faults
//! caught, and every fault must be.

use std::collections::HashMap;
use std::sync::Mutex;

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, Backend, BackendInfo, Capabilities, Error, ErrorKind, KeyFilter, KeyHandle, KeyMaterial,
    KeyPairSpec, KeyPolicy, KeySpec, KeyType, Mechanism, Op, Pin, Result, Session, SessionMode, SlotId, Usage,
    UserKind, WorldAuthority,
};

/// A planted fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Every signature has one bit flipped.
    SignatureBitFlip,
    /// Keys are made with `CKA_SIGN` whatever the template says.
    IgnoreSignUsage,
    /// Every error is `CKR_GENERAL_ERROR`, whatever went wrong.
    WrongErrorCode,
    /// `C_Verify` accepts any signature.
    VerifyAcceptsAnything,
    /// A PSS signature of a message is reused for that message (a fixed salt).
    ReusedPssSalt,
    /// An OAEP encryption of a plaintext is reused for that plaintext (a fixed seed).
    ReusedOaepSeed,
    /// RFC 5649 (KWP) wrap is done as RFC 3394 (KW) where the length allows.
    WrapPadForKwp,
    /// A sensitive value is revealed (here: made up) instead of refused.
    RevealSensitive,
    /// An OAEP label is ignored.
    IgnoreOaepLabel,
    /// A copy with more rights than its original is "made" (the original returned).
    AcceptWidenedCopy,
    /// A wrapped key loses its last byte.
    TruncateWrappedKey,
    /// The random generator returns the same bytes every time.
    FixedRandom,
    /// Decryption output has one byte changed.
    DecryptByteFlip,
    /// A search finds nothing.
    FindFindsNothing,
    /// Destroying a key leaves it in place.
    DestroyDoesNothing,
    /// A key that must not leave (unextractable, or wrap-with-trusted under an untrusted key) is
    /// "wrapped" anyway.
    WrapIgnoresPolicy,
    /// `C_Logout` leaves the user logged in.
    LogoutDoesNothing,
    /// An HMAC or CMAC is one byte short.
    TruncatedMac,
    /// AES-CBC encrypts block by block (ECB), ignoring the IV.
    CbcAsEcb,
    /// The public key's modulus reads back with one bit changed.
    WrongModulus,
    /// An AES-GCM tag is not checked on decryption.
    GcmTagIgnored,
    /// An ECDSA signature has its halves swapped.
    EcdsaSwapped,
}

impl Fault {
    /// Every fault.
    pub const ALL: &'static [Fault] = &[
        Fault::SignatureBitFlip,
        Fault::IgnoreSignUsage,
        Fault::WrongErrorCode,
        Fault::VerifyAcceptsAnything,
        Fault::ReusedPssSalt,
        Fault::ReusedOaepSeed,
        Fault::WrapPadForKwp,
        Fault::RevealSensitive,
        Fault::IgnoreOaepLabel,
        Fault::AcceptWidenedCopy,
        Fault::TruncateWrappedKey,
        Fault::FixedRandom,
        Fault::DecryptByteFlip,
        Fault::FindFindsNothing,
        Fault::DestroyDoesNothing,
        Fault::WrapIgnoresPolicy,
        Fault::LogoutDoesNothing,
        Fault::TruncatedMac,
        Fault::CbcAsEcb,
        Fault::WrongModulus,
        Fault::GcmTagIgnored,
        Fault::EcdsaSwapped,
    ];

    /// The fault's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::SignatureBitFlip => "signature-bit-flip",
            Fault::IgnoreSignUsage => "ignore-cka-sign",
            Fault::WrongErrorCode => "wrong-ckr",
            Fault::VerifyAcceptsAnything => "verify-accepts-anything",
            Fault::ReusedPssSalt => "reused-pss-salt",
            Fault::ReusedOaepSeed => "reused-oaep-seed",
            Fault::WrapPadForKwp => "kw-for-kwp",
            Fault::RevealSensitive => "reveal-sensitive",
            Fault::IgnoreOaepLabel => "ignore-oaep-label",
            Fault::AcceptWidenedCopy => "accept-widened-copy",
            Fault::TruncateWrappedKey => "truncate-wrapped-key",
            Fault::FixedRandom => "fixed-random",
            Fault::DecryptByteFlip => "decrypt-byte-flip",
            Fault::FindFindsNothing => "find-finds-nothing",
            Fault::DestroyDoesNothing => "destroy-does-nothing",
            Fault::WrapIgnoresPolicy => "wrap-ignores-policy",
            Fault::LogoutDoesNothing => "logout-does-nothing",
            Fault::TruncatedMac => "truncated-mac",
            Fault::CbcAsEcb => "cbc-as-ecb",
            Fault::WrongModulus => "wrong-modulus",
            Fault::GcmTagIgnored => "gcm-tag-ignored",
            Fault::EcdsaSwapped => "ecdsa-halves-swapped",
        }
    }
}

/// `inner` with `fault` planted.
#[derive(Debug)]
pub struct Faulty<'a> {
    inner: &'a dyn Backend,
    fault: Fault,
    /// Outputs remembered for the faults that reuse them.
    memo: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
}

impl<'a> Faulty<'a> {
    /// `inner`, with `fault`.
    pub fn new(inner: &'a dyn Backend, fault: Fault) -> Faulty<'a> {
        Faulty { inner, fault, memo: Mutex::new(HashMap::new()) }
    }
}

impl Backend for Faulty<'_> {
    fn info(&self) -> Result<BackendInfo> {
        self.inner.info()
    }

    fn capabilities(&self) -> Result<Capabilities> {
        self.inner.capabilities()
    }

    fn slots(&self) -> Result<Vec<SlotId>> {
        self.inner.slots()
    }

    fn open_session(&self, slot: SlotId, mode: SessionMode) -> Result<Box<dyn Session + '_>> {
        let inner = self.inner.open_session(slot, mode)?;
        Ok(Box::new(FaultySession { inner, b: self }))
    }
}

#[derive(Debug)]
struct FaultySession<'a> {
    inner: Box<dyn Session + 'a>,
    b: &'a Faulty<'a>,
}

impl FaultySession<'_> {
    fn is(&self, f: Fault) -> bool {
        self.b.fault == f
    }

    /// The fault's rewrite of every error.
    fn r<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(e) if self.is(Fault::WrongErrorCode) => {
                Err(Error::new(ErrorKind::GeneralError, Op::Info).detail(format!("(planted: was {e})")))
            }
            other => other,
        }
    }

    fn policy(&self, p: &KeyPolicy) -> KeyPolicy {
        let mut p = p.clone();
        if self.is(Fault::IgnoreSignUsage) && !p.usage.is_empty() {
            p.usage |= Usage::SIGN;
        }
        p
    }

    /// The output remembered for `key`, or `make`'s, remembered.
    fn reuse(&self, key: Vec<u8>, make: impl FnOnce() -> Result<Vec<u8>>) -> Result<Vec<u8>> {
        if let Ok(memo) = self.b.memo.lock()
            && let Some(v) = memo.get(&key)
        {
            return Ok(v.clone());
        }
        let v = make()?;
        if let Ok(mut memo) = self.b.memo.lock() {
            memo.insert(key, v.clone());
        }
        Ok(v)
    }

    fn fake_bytes(&self, n: usize) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(29).wrapping_add(7)).collect()
    }
}

fn flip_bit(mut v: Vec<u8>) -> Vec<u8> {
    let mid = v.len() / 2;
    if let Some(b) = v.get_mut(mid) {
        *b ^= 0x04;
    }
    v
}

impl Session for FaultySession<'_> {
    fn login(&self, user: UserKind, pin: &Pin) -> Result<()> {
        self.r(self.inner.login(user, pin))
    }

    fn logout(&self) -> Result<()> {
        if self.is(Fault::LogoutDoesNothing) {
            return Ok(());
        }
        self.r(self.inner.logout())
    }

    fn init_pin(&self, pin: &Pin) -> Result<()> {
        self.r(self.inner.init_pin(pin))
    }

    fn set_pin(&self, old: &Pin, new: &Pin) -> Result<()> {
        self.r(self.inner.set_pin(old, new))
    }

    fn generate_key(&self, spec: &KeySpec, policy: &KeyPolicy) -> Result<KeyHandle> {
        self.r(self.inner.generate_key(spec, &self.policy(policy)))
    }

    fn generate_key_pair(&self, spec: &KeyPairSpec, policy: &KeyPolicy) -> Result<(KeyHandle, KeyHandle)> {
        self.r(self.inner.generate_key_pair(spec, &self.policy(policy)))
    }

    fn import_key(&self, material: &KeyMaterial, policy: &KeyPolicy) -> Result<KeyHandle> {
        self.r(self.inner.import_key(material, &self.policy(policy)))
    }

    fn find_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyHandle>> {
        if self.is(Fault::FindFindsNothing) {
            return Ok(Vec::new());
        }
        self.r(self.inner.find_keys(filter))
    }

    fn attributes(&self, key: KeyHandle, which: &[AttrKind]) -> Result<Vec<Attr>> {
        let mut attrs = self.r(self.inner.attributes(key, which))?;
        for a in &mut attrs {
            match a {
                Attr::Sensitive(AttrKind::Value) if self.is(Fault::RevealSensitive) => {
                    *a = Attr::Value(AttrKind::Value, AttrValue::Bytes(self.fake_bytes(32)));
                }
                Attr::Value(AttrKind::Modulus, AttrValue::Bytes(n)) if self.is(Fault::WrongModulus) => {
                    if let Some(last) = n.last_mut() {
                        *last ^= 0x02;
                    }
                }
                _ => {}
            }
        }
        Ok(attrs)
    }

    fn copy_narrowed(&self, key: KeyHandle, policy: &KeyPolicy) -> Result<KeyHandle> {
        match self.inner.copy_narrowed(key, policy) {
            Err(_) if self.is(Fault::AcceptWidenedCopy) => Ok(key),
            r => self.r(r),
        }
    }

    fn destroy(&self, key: KeyHandle) -> Result<()> {
        if self.is(Fault::DestroyDoesNothing) {
            return Ok(());
        }
        self.r(self.inner.destroy(key))
    }

    fn sign(&self, mech: &Mechanism, key: KeyHandle, data: &[u8]) -> Result<Vec<u8>> {
        let sign = || self.r(self.inner.sign(mech, key, data));
        let sig = match mech {
            Mechanism::RsaPss { .. } | Mechanism::RsaPssRaw { .. } if self.is(Fault::ReusedPssSalt) => {
                let mut id = format!("pss {mech:?} {}", key.0).into_bytes();
                id.extend_from_slice(data);
                self.reuse(id, sign)?
            }
            _ => sign()?,
        };
        Ok(match mech {
            _ if self.is(Fault::SignatureBitFlip) => flip_bit(sig),
            Mechanism::Hmac { .. } | Mechanism::AesCmac if self.is(Fault::TruncatedMac) => {
                sig[..sig.len().saturating_sub(1)].to_vec()
            }
            Mechanism::Ecdsa { .. } if self.is(Fault::EcdsaSwapped) => {
                let (r, s) = sig.split_at(sig.len() / 2);
                [s, r].concat()
            }
            _ => sig,
        })
    }

    fn verify(&self, mech: &Mechanism, key: KeyHandle, data: &[u8], signature: &[u8]) -> Result<()> {
        if self.is(Fault::VerifyAcceptsAnything) {
            return Ok(());
        }
        self.r(self.inner.verify(mech, key, data, signature))
    }

    fn encrypt(&self, mech: &Mechanism, key: KeyHandle, plaintext: &[u8]) -> Result<Vec<u8>> {
        match mech {
            Mechanism::RsaOaep { .. } if self.is(Fault::ReusedOaepSeed) => {
                let mut id = format!("oaep {mech:?} {}", key.0).into_bytes();
                id.extend_from_slice(plaintext);
                self.reuse(id, || self.r(self.inner.encrypt(mech, key, plaintext)))
            }
            Mechanism::RsaOaepLabel { hash, .. } if self.is(Fault::IgnoreOaepLabel) => {
                self.r(self.inner.encrypt(&Mechanism::RsaOaep { hash: *hash }, key, plaintext))
            }
            Mechanism::AesCbc { .. } if self.is(Fault::CbcAsEcb) => {
                self.r(self.inner.encrypt(&Mechanism::AesEcb, key, plaintext))
            }
            _ => self.r(self.inner.encrypt(mech, key, plaintext)),
        }
    }

    fn decrypt(&self, mech: &Mechanism, key: KeyHandle, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let out = match mech {
            Mechanism::RsaOaepLabel { hash, .. } if self.is(Fault::IgnoreOaepLabel) => {
                self.inner.decrypt(&Mechanism::RsaOaep { hash: *hash }, key, ciphertext)
            }
            Mechanism::AesGcm { iv, aad, tag_bits } if self.is(Fault::GcmTagIgnored) => {
                // Decrypt as if the tag were right: re-encrypt what CTR mode gives back is not
                // available through the seam, so a bad tag is answered with the plaintext of a
                // good one, found by fixing the tag bytes we were given.
                match self.inner.decrypt(mech, key, ciphertext) {
                    Err(e) if e.kind() == &ErrorKind::EncryptedDataInvalid => {
                        let tag = (*tag_bits / 8) as usize;
                        let body = &ciphertext[..ciphertext.len().saturating_sub(tag)];
                        let again = self.inner.encrypt(
                            &Mechanism::AesGcm { iv: iv.clone(), aad: aad.clone(), tag_bits: *tag_bits },
                            key,
                            &vec![0u8; body.len()],
                        )?;
                        // The keystream, XORed with the body, is the plaintext.
                        Ok(body.iter().zip(&again).map(|(c, k)| c ^ k).collect())
                    }
                    other => other,
                }
            }
            _ => self.inner.decrypt(mech, key, ciphertext),
        };
        let out = self.r(out)?;
        Ok(if self.is(Fault::DecryptByteFlip) { flip_bit(out) } else { out })
    }

    fn wrap_key(&self, mech: &Mechanism, wrapping: KeyHandle, target: KeyHandle) -> Result<Vec<u8>> {
        let wrapped = match mech {
            Mechanism::AesKeyWrapPad | Mechanism::AesKeyWrapKwp if self.is(Fault::WrapPadForKwp) => {
                match self.inner.wrap_key(&Mechanism::AesKeyWrap, wrapping, target) {
                    Ok(w) => Ok(w),
                    Err(_) => self.inner.wrap_key(mech, wrapping, target),
                }
            }
            _ => self.inner.wrap_key(mech, wrapping, target),
        };
        let w = match wrapped {
            Err(e)
                if self.is(Fault::WrapIgnoresPolicy)
                    && matches!(
                        e.kind(),
                        ErrorKind::KeyUnextractable
                            | ErrorKind::KeyNotWrappable
                            | ErrorKind::WrappingKeyTypeInconsistent
                    ) =>
            {
                self.fake_bytes(40)
            }
            other => self.r(other)?,
        };
        Ok(if self.is(Fault::TruncateWrappedKey) { w[..w.len().saturating_sub(1)].to_vec() } else { w })
    }

    fn unwrap_key(
        &self,
        mech: &Mechanism,
        unwrapping: KeyHandle,
        wrapped: &[u8],
        key_type: KeyType,
        policy: &KeyPolicy,
    ) -> Result<KeyHandle> {
        self.r(self.inner.unwrap_key(mech, unwrapping, wrapped, key_type, &self.policy(policy)))
    }

    fn derive_key(&self, mech: &Mechanism, base: KeyHandle, spec: &KeySpec, policy: &KeyPolicy) -> Result<KeyHandle> {
        self.r(self.inner.derive_key(mech, base, spec, &self.policy(policy)))
    }

    fn random(&self, out: &mut [u8]) -> Result<()> {
        if self.is(Fault::FixedRandom) {
            out.copy_from_slice(&self.fake_bytes(out.len()));
            return Ok(());
        }
        self.r(self.inner.random(out))
    }

    fn world_authority(&self) -> Option<&dyn WorldAuthority> {
        self.inner.world_authority()
    }
}

/// What the self-test found for one fault.
#[derive(Debug, Clone)]
pub struct Caught {
    /// The fault.
    pub fault: Fault,
    /// The case that caught it: the first, in run order, that passed on the backend and failed
    /// with the fault (`None` when none did).
    pub by: Option<String>,
}

/// The self-test's result: the cases that passed on the clean backend, and each fault's catchers.
#[derive(Debug, Clone)]
pub struct SelfTest {
    /// How many cases passed on the backend itself (the ones a fault can be caught by).
    pub baseline_passes: usize,
    /// Per fault, in [`Fault::ALL`]'s order.
    pub faults: Vec<Caught>,
    /// How many ABI-level cases passed on the module itself (0 when the ABI level was not run).
    pub abi_baseline_passes: usize,
    /// Per fault planted under the C ABI ([`crate::abi_faults`]), where the ABI level was run.
    pub abi_faults: Vec<crate::abi_faults::AbiCaught>,
}

impl SelfTest {
    /// Faults caught over faults planted.
    pub fn score(&self) -> (usize, usize) {
        let caught = self.faults.iter().filter(|c| c.by.is_some()).count()
            + self.abi_faults.iter().filter(|c| c.by.is_some()).count();
        (caught, self.faults.len() + self.abi_faults.len())
    }
}

impl std::fmt::Display for SelfTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "self-test: {} cases pass on the backend itself; each fault planted in turn",
            self.baseline_passes
        )?;
        for c in &self.faults {
            match &c.by {
                None => writeln!(f, "  MISSED  {}", c.fault.name())?,
                Some(by) => writeln!(f, "  caught  {:<24} by {by}", c.fault.name())?,
            }
        }
        if !self.abi_faults.is_empty() {
            writeln!(
                f,
                "under the C ABI: {} ABI-level cases pass on the module itself; each fault planted in turn",
                self.abi_baseline_passes
            )?;
            for c in &self.abi_faults {
                match &c.by {
                    None => writeln!(f, "  MISSED  {}", c.fault.name())?,
                    Some(by) => writeln!(f, "  caught  {:<32} by {by}", c.fault.name())?,
                }
            }
        }
        let (caught, all) = self.score();
        writeln!(f, "mutation score: {caught}/{all} faults caught")
    }
}

/// The first of `cases` (in run order) that fails on `target`: a fault is caught once one case
/// fails, as mutation testing stops at the first failing test, so a run costs the cases up to the
/// catch rather than the whole suite.
pub(crate) fn first_catch(
    cases: &[crate::Case],
    target: crate::Target<'_>,
    none: &crate::Expectations,
) -> Option<String> {
    cases.iter().map(|c| crate::run_case(c, target, none.get(&c.id))).find(|f| !f.outcome.ok()).map(|f| f.id)
}

/// A worker's message about one fault.
enum Step {
    /// The fault is planted and its run begins.
    Started,
    /// The case that caught it, if any.
    Done(Option<String>),
}

/// Runs `cases` on `backend` (the baseline), then with each of `faults` planted; `progress` is
/// told of each fault as it starts. Each fault is caught by the first case that fails with it.
pub fn self_test(
    backend: &dyn Backend,
    slot: SlotId,
    user_pin: Option<Pin>,
    cases: &[crate::Case],
    faults: &[Fault],
    progress: &mut dyn FnMut(Fault),
) -> SelfTest {
    let seam: Vec<crate::Case> = cases.iter().filter(|c| matches!(c.body, crate::Body::Seam(_))).cloned().collect();
    let none = crate::Expectations::none();
    let ctx = crate::Ctx::new(backend, slot, user_pin.clone());
    let baseline = crate::run_cases(&seam, crate::Target { seam: Some(&ctx), abi: None }, &none, &mut |_| {});
    let passing: Vec<crate::Case> =
        seam.iter().zip(&baseline).filter(|(_, f)| f.outcome == crate::Outcome::Pass).map(|(c, _)| c.clone()).collect();
    // The faults run side by side, one thread a core, each on sessions of its own; the cases that
    // change the application's login state (shared by every session) run afterwards, one fault at
    // a time, so no thread logs another out.
    let (serial, passing): (Vec<crate::Case>, Vec<crate::Case>) =
        passing.into_iter().partition(|c| crate::NEED_LOGIN.contains(&c.id.as_str()));
    let baseline_passes = serial.len() + passing.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, faults.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Step)>();
    let mut found: Vec<Option<String>> = vec![None; faults.len()];
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, passing, none, user_pin) = (&next, &passing, &none, user_pin.clone());
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&fault) = faults.get(i) else { break };
                    let _ = tx.send((i, Step::Started));
                    let faulty = Faulty::new(backend, fault);
                    let ctx = crate::Ctx::new(&faulty, slot, user_pin.clone());
                    let target = crate::Target { seam: Some(&ctx), abi: None };
                    let _ = tx.send((i, Step::Done(first_catch(passing, target, none))));
                }
            });
        }
        drop(tx);
        for (i, by) in rx {
            match by {
                Step::Started => progress(faults[i]),
                Step::Done(by) => found[i] = by,
            }
        }
    });
    let mut out: Vec<Caught> = faults.iter().zip(found).map(|(&fault, by)| Caught { fault, by }).collect();
    for caught in out.iter_mut().filter(|c| c.by.is_none()) {
        let faulty = Faulty::new(backend, caught.fault);
        let ctx = crate::Ctx::new(&faulty, slot, user_pin.clone());
        caught.by = first_catch(&serial, crate::Target { seam: Some(&ctx), abi: None }, &none);
    }
    SelfTest { baseline_passes, faults: out, abi_baseline_passes: 0, abi_faults: Vec::new() }
}

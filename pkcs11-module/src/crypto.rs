//! Sign, verify, encrypt, decrypt, digest, wrap and unwrap (PKCS#11 §5.8 to §5.14).
//!
//! Every operation runs through the emulator's session, so the key's ACL decides: a denial is
//! `CKR_KEY_FUNCTION_NOT_PERMITTED`. `*Init` checks what PKCS#11 says it checks (the key's class,
//! usage flag and allowed mechanisms), so mistakes are reported where the caller made them.

use cryptoki_sys as ck;
use cryptoki_sys::{CK_OBJECT_HANDLE, CK_SESSION_HANDLE};
use zeroize::Zeroizing;

use hsmkit_backend::{KeyType, Mechanism, MechanismFlags, ObjectClass, Session as _, Usage};

use crate::ffi::{OutBuf, Result, Rv, Wrote, rv};
use crate::objects::{Template, View, private_allowed, unwrap_template};
use crate::ops::{CipherOp, DigestOp, Hasher, MechIn, SignOp, mechanism};
use crate::state::{self, Library, Session, SessionState};

/// What an operation is for: the usage it needs and the class of key it takes.
#[derive(Clone, Copy)]
enum Purpose {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
}

impl Purpose {
    fn usage(self) -> Usage {
        match self {
            Purpose::Sign => Usage::SIGN,
            Purpose::Verify => Usage::VERIFY,
            Purpose::Encrypt => Usage::ENCRYPT,
            Purpose::Decrypt => Usage::DECRYPT,
        }
    }

    fn class(self) -> ObjectClass {
        match self {
            Purpose::Sign | Purpose::Decrypt => ObjectClass::PrivateKey,
            Purpose::Verify | Purpose::Encrypt => ObjectClass::PublicKey,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Purpose::Sign => "sign",
            Purpose::Verify => "verify",
            Purpose::Encrypt => "encrypt",
            Purpose::Decrypt => "decrypt",
        }
    }

    fn fits(self, m: &Mechanism) -> bool {
        let needed = match self {
            Purpose::Sign => MechanismFlags::SIGN,
            Purpose::Verify => MechanismFlags::VERIFY,
            Purpose::Encrypt => MechanismFlags::ENCRYPT,
            Purpose::Decrypt => MechanismFlags::DECRYPT,
        };
        m.functions().contains(needed)
    }
}

/// Checks that key `h` may start an operation for `purpose` with `m`.
fn check_key(
    lib: &Library,
    s: &Session,
    st: &SessionState,
    h: CK_OBJECT_HANDLE,
    m: &Mechanism,
    p: Purpose,
) -> Result<()> {
    let v = visible_key(lib, s, st, h, rv::KEY_HANDLE_INVALID)?;
    let (class, key_type, policy) = v.parts();
    // Secret-key mechanisms take a secret key; the others the half of the pair the purpose needs.
    let want_type = m.key_type();
    let want_class = match want_type {
        KeyType::Aes | KeyType::GenericSecret | KeyType::Des3 => ObjectClass::SecretKey,
        _ => p.class(),
    };
    if class != want_class || key_type != want_type {
        crate::log(&format!(
            "{} needs a {want_class:?} of type {want_type:?}, not a {class:?} of type {key_type:?}",
            m.describe()
        ));
        return Err(rv::KEY_TYPE_INCONSISTENT);
    }
    if !policy.usage.contains(p.usage()) {
        return Err(Rv(ck::CKR_KEY_FUNCTION_NOT_PERMITTED));
    }
    if !policy.allows_mechanism(m.kind()) {
        return Err(rv::MECHANISM_INVALID);
    }
    Ok(())
}

fn start(h: CK_SESSION_HANDLE, m: &MechIn, key: CK_OBJECT_HANDLE, p: Purpose) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let mut st = s.lock()?;
    let active = match p {
        Purpose::Sign => st.ops.sign.is_some(),
        Purpose::Verify => st.ops.verify.is_some(),
        Purpose::Encrypt => st.ops.encrypt.is_some(),
        Purpose::Decrypt => st.ops.decrypt.is_some(),
    };
    if active {
        return Err(rv::OPERATION_ACTIVE);
    }
    let mech = mechanism(m)?;
    if !p.fits(&mech) {
        crate::log(&format!("{} cannot {}", mech.describe(), p.verb()));
        return Err(rv::MECHANISM_INVALID);
    }
    check_key(&lib, &s, &st, key, &mech, p)?;
    // A key with CKA_ALWAYS_AUTHENTICATE owes a context-specific login before each use.
    let reauth = match p {
        Purpose::Sign | Purpose::Decrypt => {
            st.emu.details(state::key(key)).map_err(crate::emu_err)?.always_authenticate.then_some(false)
        }
        _ => None,
    };
    let key = state::key(key);
    match p {
        Purpose::Sign | Purpose::Verify => {
            let hasher = hsmkit_emulator::EmulatorSession::digest_first(&mech).map(Hasher::for_alg);
            let op = SignOp {
                mech,
                key,
                hasher,
                mac: None,
                data: Zeroizing::new(Vec::new()),
                multipart: false,
                single: false,
                result: None,
                reauth,
            };
            if matches!(p, Purpose::Sign) {
                st.ops.sign = Some(op);
            } else {
                st.ops.verify = Some(op);
            }
        }
        Purpose::Encrypt | Purpose::Decrypt => {
            let op = CipherOp {
                mech,
                key,
                result: None,
                reauth,
                data: Zeroizing::new(Vec::new()),
                multipart: false,
                single: false,
            };
            if matches!(p, Purpose::Encrypt) {
                st.ops.encrypt = Some(op);
            } else {
                st.ops.decrypt = Some(op);
            }
        }
    }
    Ok(())
}

/// `C_SignInit`.
pub fn sign_init(h: CK_SESSION_HANDLE, m: &MechIn, key: CK_OBJECT_HANDLE) -> Result<()> {
    start(h, m, key, Purpose::Sign)
}

/// `C_VerifyInit`.
pub fn verify_init(h: CK_SESSION_HANDLE, m: &MechIn, key: CK_OBJECT_HANDLE) -> Result<()> {
    start(h, m, key, Purpose::Verify)
}

/// `C_EncryptInit`.
pub fn encrypt_init(h: CK_SESSION_HANDLE, m: &MechIn, key: CK_OBJECT_HANDLE) -> Result<()> {
    start(h, m, key, Purpose::Encrypt)
}

/// `C_DecryptInit`.
pub fn decrypt_init(h: CK_SESSION_HANDLE, m: &MechIn, key: CK_OBJECT_HANDLE) -> Result<()> {
    start(h, m, key, Purpose::Decrypt)
}

/// Which active operation a call belongs to.
#[derive(Clone, Copy)]
pub enum Which {
    /// `C_Sign*`.
    Sign,
    /// `C_Verify*`.
    Verify,
    /// `C_Encrypt*`.
    Encrypt,
    /// `C_Decrypt*`.
    Decrypt,
    /// `C_Digest*`.
    Digest,
}

/// Runs a call of operation `which`; an error other than `CKR_BUFFER_TOO_SMALL` ends the
/// operation (PKCS#11 §5.2), argument errors found before the operation was reached included.
pub fn ending_on_error(h: CK_SESSION_HANDLE, which: Which, call: impl FnOnce() -> Result<()>) -> Result<()> {
    let r = call();
    if let Err(e) = r
        && e != rv::BUFFER_TOO_SMALL
        && e != rv::SESSION_HANDLE_INVALID
        && e != rv::NOT_INITIALIZED
        && let Ok((_, s)) = state::session(h)
        && let Ok(mut st) = s.lock()
    {
        match which {
            Which::Sign => st.ops.sign = None,
            Which::Verify => st.ops.verify = None,
            Which::Encrypt => st.ops.encrypt = None,
            Which::Decrypt => st.ops.decrypt = None,
            Which::Digest => st.ops.digest = None,
        }
    }
    r
}

/// Hands `result` out; the operation ends unless this was a length query or the buffer was short.
fn hand_out(out: OutBuf<'_>, result: &[u8]) -> Result<bool> {
    Ok(out.put(result)? == Wrote::Copied)
}

/// `C_Sign` (`final_` false) and `C_SignFinal` (`final_` true, `data` empty).
pub fn sign(h: CK_SESSION_HANDLE, data: &[u8], out: OutBuf<'_>, final_: bool) -> Result<()> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    let st = &mut *st;
    let op = st.ops.sign.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    // C_Sign after C_SignUpdate or C_SignFinal, or C_SignFinal after C_Sign, mixes the two forms
    // (C_SignFinal right after C_SignInit signs the empty message, as a multi-part operation).
    if (!final_ && op.multipart) || (final_ && op.single) {
        st.ops.sign = None;
        return Err(rv::OPERATION_ACTIVE);
    }
    op.single |= !final_;
    op.multipart |= final_;
    if op.reauth == Some(false) {
        st.ops.sign = None;
        return Err(rv::USER_NOT_LOGGED_IN);
    }
    if op.result.is_none() {
        let signed = match (final_, op.hasher.take(), op.mac.take()) {
            (true, Some(h), _) => st.emu.sign_digest(&op.mech, op.key, &h.finish()),
            (true, None, Some(m)) => st.emu.mac_sign_finish(m, &op.mech, op.key),
            (true, None, None) => st.emu.sign(&op.mech, op.key, &op.data),
            (false, ..) => st.emu.sign(&op.mech, op.key, data),
        };
        match signed {
            Ok(sig) => op.result = Some(sig),
            Err(e) => {
                st.ops.sign = None;
                return Err(crate::emu_err(e));
            }
        }
    }
    let result = op.result.clone().unwrap_or_default();
    if hand_out(out, &result)? {
        st.ops.sign = None;
    }
    Ok(())
}

/// `C_SignUpdate` and `C_VerifyUpdate`.
pub fn update(h: CK_SESSION_HANDLE, data: &[u8], verify: bool) -> Result<()> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    let st = &mut *st;
    let slot = if verify { &mut st.ops.verify } else { &mut st.ops.sign };
    let op = slot.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    // An update after a result was computed (a length query of C_Sign or C_SignFinal) mixes forms.
    if op.result.is_some() || op.single {
        *slot = None;
        return Err(rv::OPERATION_ACTIVE);
    }
    op.multipart = true;
    if let Some(h) = &mut op.hasher {
        h.update(data);
        return Ok(());
    }
    if op.mac.is_none() && matches!(op.mech, Mechanism::Hmac { .. } | Mechanism::AesCmac) {
        let purpose = if verify { hsmkit_backend::Op::Verify } else { hsmkit_backend::Op::Sign };
        match st.emu.mac_begin(&op.mech, op.key, purpose) {
            Ok(m) => op.mac = Some(m),
            Err(e) => {
                *slot = None;
                return Err(crate::emu_err(e));
            }
        }
    }
    if let Some(m) = &mut op.mac {
        if let Err(e) = m.update(data) {
            *slot = None;
            return Err(crate::emu_err(e));
        }
        return Ok(());
    }
    if op.data.len().saturating_add(data.len()) > crate::ffi::MAX_INPUT {
        *slot = None;
        return Err(rv::DATA_LEN_RANGE);
    }
    op.data.extend_from_slice(data);
    Ok(())
}

/// `C_Verify` (`final_` false) and `C_VerifyFinal` (`final_` true). The operation always ends.
pub fn verify(h: CK_SESSION_HANDLE, data: &[u8], signature: &[u8], final_: bool) -> Result<()> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    let op = st.ops.verify.take().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    if !final_ && op.multipart {
        return Err(rv::OPERATION_ACTIVE);
    }
    let checked = match (final_, op.hasher, op.mac) {
        (true, Some(h), _) => st.emu.verify_digest(&op.mech, op.key, &h.finish(), signature),
        (true, None, Some(m)) => st.emu.mac_verify_finish(m, &op.mech, op.key, signature),
        (true, None, None) => st.emu.verify(&op.mech, op.key, &op.data, signature),
        (false, ..) => st.emu.verify(&op.mech, op.key, data, signature),
    };
    checked.map_err(crate::emu_err)
}

/// `C_Encrypt` and `C_Decrypt` (single-part mechanisms).
pub fn crypt(h: CK_SESSION_HANDLE, input: &[u8], out: OutBuf<'_>, decrypt: bool) -> Result<()> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    let st = &mut *st;
    let slot = if decrypt { &mut st.ops.decrypt } else { &mut st.ops.encrypt };
    let op = slot.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    if op.reauth == Some(false) {
        *slot = None;
        return Err(rv::USER_NOT_LOGGED_IN);
    }
    if op.multipart {
        // C_Encrypt after C_EncryptUpdate mixes the two forms.
        *slot = None;
        return Err(rv::OPERATION_ACTIVE);
    }
    op.single = true;
    finish(&st.emu, slot, Some(input), out, decrypt)
}

/// Computes a cipher operation's result once (from `input`, or the gathered data) and hands it
/// out; the operation ends unless this was a length query or the buffer was short.
fn finish(
    emu: &hsmkit_emulator::EmulatorSession<'static>,
    slot: &mut Option<CipherOp>,
    input: Option<&[u8]>,
    out: OutBuf<'_>,
    decrypt: bool,
) -> Result<()> {
    let op = slot.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    if op.result.is_none() {
        let data = input.unwrap_or(&op.data);
        let r = if decrypt { emu.decrypt(&op.mech, op.key, data) } else { emu.encrypt(&op.mech, op.key, data) };
        match r {
            Ok(v) => op.result = Some(Zeroizing::new(v)),
            Err(e) => {
                *slot = None;
                return Err(crate::emu_err(e));
            }
        }
    }
    let result = op.result.clone().unwrap_or_default();
    if hand_out(out, &result)? {
        *slot = None;
    }
    Ok(())
}

/// `C_EncryptUpdate` and `C_DecryptUpdate`: the AES and DES3 modes gather their input and return nothing
/// yet (the whole result comes from the final call, as PKCS#11 allows); RSA is single-part only.
pub fn crypt_update(h: CK_SESSION_HANDLE, input: &[u8], out: OutBuf<'_>, decrypt: bool) -> Result<()> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    let slot = if decrypt { &mut st.ops.decrypt } else { &mut st.ops.encrypt };
    let op = slot.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    if !op.mech.is_secret_cipher() {
        crate::log(&format!("{} is single-part: use C_Encrypt or C_Decrypt", op.mech.describe()));
        *slot = None;
        return Err(rv::MECHANISM_INVALID);
    }
    // After C_Encrypt, or after C_EncryptFinal computed the result, no more input is taken.
    if op.single || op.result.is_some() {
        *slot = None;
        return Err(rv::OPERATION_ACTIVE);
    }
    if op.data.len().saturating_add(input.len()) > crate::ffi::MAX_INPUT {
        *slot = None;
        return Err(rv::DATA_LEN_RANGE);
    }
    op.multipart = true;
    op.data.extend_from_slice(input);
    out.put(&[]).map(|_| ())
}

/// `C_EncryptFinal` and `C_DecryptFinal`: the gathered input, processed; the size-query protocol
/// holds (the result is computed once and kept until handed out).
pub fn crypt_final(h: CK_SESSION_HANDLE, out: OutBuf<'_>, decrypt: bool) -> Result<()> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    let st = &mut *st;
    let slot = if decrypt { &mut st.ops.decrypt } else { &mut st.ops.encrypt };
    let op = slot.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    if !op.mech.is_secret_cipher() || op.single {
        let e = if op.single { rv::OPERATION_ACTIVE } else { rv::MECHANISM_INVALID };
        *slot = None;
        return Err(e);
    }
    // From here on the operation is multi-part: C_Encrypt may not take its (kept) result.
    op.multipart = true;
    finish(&st.emu, slot, None, out, decrypt)
}

/// `C_DigestInit`.
pub fn digest_init(h: CK_SESSION_HANDLE, m: &MechIn) -> Result<()> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    if st.ops.digest.is_some() {
        return Err(rv::OPERATION_ACTIVE);
    }
    st.ops.digest = Some(DigestOp { hasher: Hasher::new(m)?, multipart: false, single: false });
    Ok(())
}

/// `C_Digest` (`final_` false) and `C_DigestFinal` (`final_` true).
pub fn digest(h: CK_SESSION_HANDLE, data: &[u8], out: OutBuf<'_>, final_: bool) -> Result<()> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    let op = st.ops.digest.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    // C_Digest after C_DigestUpdate, or C_DigestFinal after a C_Digest length query, mixes the
    // single-part and multi-part forms (CKR_OPERATION_ACTIVE).
    if (!final_ && op.multipart) || (final_ && op.single) {
        st.ops.digest = None;
        return Err(rv::OPERATION_ACTIVE);
    }
    op.single |= !final_;
    let mut hasher = op.hasher.clone();
    if !final_ {
        hasher.update(data);
    }
    if hand_out(out, &hasher.finish())? {
        st.ops.digest = None;
    }
    Ok(())
}

/// `C_DigestUpdate`.
pub fn digest_update(h: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    let op = st.ops.digest.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    if op.single {
        st.ops.digest = None;
        return Err(rv::OPERATION_ACTIVE);
    }
    op.multipart = true;
    op.hasher.update(data);
    Ok(())
}

/// `C_DigestKey`: a secret key's value added to the running digest, inside the module. A key
/// whose value may not be read (sensitive or not extractable) is `CKR_KEY_INDIGESTIBLE`: its
/// digest would be an oracle on a secret the module keeps.
pub fn digest_key(h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let mut st = s.lock()?;
    let op = st.ops.digest.as_ref().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    if op.single {
        st.ops.digest = None;
        return Err(rv::OPERATION_ACTIVE);
    }
    let v = visible_key(&lib, &s, &st, key, rv::KEY_HANDLE_INVALID)?;
    let (class, _, policy) = v.parts();
    if class != ObjectClass::SecretKey || policy.sensitive || !policy.extractable {
        return Err(Rv(ck::CKR_KEY_INDIGESTIBLE));
    }
    let value = crate::objects::secret_value(&st.emu, key).ok_or(Rv(ck::CKR_KEY_INDIGESTIBLE))?;
    let op = st.ops.digest.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    op.multipart = true;
    op.hasher.update(&value);
    Ok(())
}

fn key_or(e: Rv, instead: Rv) -> Rv {
    if e == rv::OBJECT_HANDLE_INVALID || e == rv::KEY_HANDLE_INVALID { instead } else { e }
}

/// Reads key `h` as the session may use it: a bad handle is `invalid`, a private key without the
/// user `CKR_USER_NOT_LOGGED_IN`.
fn visible_key(lib: &Library, s: &Session, st: &SessionState, h: CK_OBJECT_HANDLE, invalid: Rv) -> Result<View> {
    let v = View::read(&st.emu, h).map_err(|e| key_or(e, invalid))?;
    if v.private() && !private_allowed(lib, s)? {
        return Err(rv::USER_NOT_LOGGED_IN);
    }
    Ok(v)
}

/// `C_WrapKey`.
pub fn wrap_key(
    h: CK_SESSION_HANDLE,
    m: &MechIn,
    wrapping: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
    out: OutBuf<'_>,
) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let st = s.lock()?;
    let mech = mechanism(m)?;
    if !matches!(
        mech,
        Mechanism::AesKeyWrap
            | Mechanism::AesKeyWrapPad
            | Mechanism::AesKeyWrapKwp
            | Mechanism::RsaOaep { .. }
            | Mechanism::RsaAesKeyWrap { .. }
    ) {
        return Err(rv::MECHANISM_INVALID);
    }
    visible_key(&lib, &s, &st, wrapping, Rv(ck::CKR_WRAPPING_KEY_HANDLE_INVALID))?;
    visible_key(&lib, &s, &st, key, rv::KEY_HANDLE_INVALID)?;
    let wrapped = st.emu.wrap_key(&mech, state::key(wrapping), state::key(key)).map_err(crate::emu_err)?;
    out.put(&wrapped).map(|_| ())
}

/// `C_UnwrapKey`.
pub fn unwrap_key(
    h: CK_SESSION_HANDLE,
    m: &MechIn,
    unwrapping: CK_OBJECT_HANDLE,
    wrapped: &[u8],
    t: &Template<'_>,
) -> Result<CK_OBJECT_HANDLE> {
    let (lib, s) = state::session(h)?;
    let st = s.lock()?;
    let mech = mechanism(m)?;
    visible_key(&lib, &s, &st, unwrapping, Rv(ck::CKR_UNWRAPPING_KEY_HANDLE_INVALID))?;
    let (key_type, policy) = unwrap_template(&lib, &s, t)?;
    let k = st.emu.unwrap_key(&mech, state::key(unwrapping), wrapped, key_type, &policy).map_err(crate::emu_err)?;
    crate::objects::with_details(&st.emu, k, t)
}

/// `C_DeriveKey`: a secret key from `base` (its `CKA_DERIVE` must be set), the template naming
/// the new key's type, length and attributes.
pub fn derive_key(
    h: CK_SESSION_HANDLE,
    m: &MechIn,
    base: CK_OBJECT_HANDLE,
    t: &Template<'_>,
) -> Result<CK_OBJECT_HANDLE> {
    let (lib, s) = state::session(h)?;
    let st = s.lock()?;
    let mech = mechanism(m)?;
    if !mech.functions().contains(MechanismFlags::DERIVE) {
        crate::log(&format!("{} derives no keys", mech.describe()));
        return Err(rv::MECHANISM_INVALID);
    }
    let v = visible_key(&lib, &s, &st, base, rv::KEY_HANDLE_INVALID)?;
    let (class, key_type, policy) = v.parts();
    if key_type != mech.key_type() || class == ObjectClass::PublicKey {
        crate::log(&format!(
            "{} derives from a {:?} key (a secret key or a private key), not a {class:?} of type {key_type:?}",
            mech.describe(),
            mech.key_type()
        ));
        return Err(rv::KEY_TYPE_INCONSISTENT);
    }
    if !policy.usage.contains(Usage::DERIVE) {
        crate::log("the base key's CKA_DERIVE is false");
        return Err(Rv(ck::CKR_KEY_FUNCTION_NOT_PERMITTED));
    }
    if !policy.allows_mechanism(mech.kind()) {
        crate::log(&format!("{} is not in the base key's CKA_ALLOWED_MECHANISMS", mech.describe()));
        return Err(rv::MECHANISM_INVALID);
    }
    // The length a derived key has when the template gives none: what the mechanism makes.
    let natural = match &mech {
        hsmkit_backend::Mechanism::Ecdh1Derive { kdf: None, .. } => v.curve().map(|c| c.field_len()),
        hsmkit_backend::Mechanism::HkdfDerive { hash, expand: false, .. } => Some(hash.output_len()),
        hsmkit_backend::Mechanism::AesCbcEncryptData { data, .. } => Some(data.len()),
        _ => None,
    };
    let (spec, policy) = crate::objects::derive_template(&lib, &s, t, natural)?;
    let k = st.emu.derive_key(&mech, state::key(base), &spec, &policy).map_err(crate::emu_err)?;
    crate::objects::with_details(&st.emu, k, t)
}

/// `C_Login` with `CKU_CONTEXT_SPECIFIC`: the user's PIN again, for the active sign or decrypt
/// operation of a key with `CKA_ALWAYS_AUTHENTICATE` (PKCS#11 §5.6).
pub fn context_login(h: CK_SESSION_HANDLE, pin: &hsmkit_backend::Pin) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let slot = &lib.slots[s.slot];
    let emu = {
        let t = slot.token()?;
        if t.login != Some(ck::CKU_USER) {
            return Err(rv::USER_NOT_LOGGED_IN);
        }
        t.emu.clone()
    };
    {
        let st = s.lock()?;
        let owed = st.ops.sign.as_ref().is_some_and(|o| o.reauth.is_some())
            || st.ops.decrypt.as_ref().is_some_and(|o| o.reauth.is_some());
        if !owed {
            return Err(rv::OPERATION_NOT_INITIALIZED);
        }
    }
    let _one_at_a_time = slot.pin_check()?;
    emu.check_user_pin(pin).map_err(crate::emu_err)?;
    let mut st = s.lock()?;
    if let Some(op) = st.ops.sign.as_mut().filter(|o| o.reauth.is_some()) {
        op.reauth = Some(true);
    }
    if let Some(op) = st.ops.decrypt.as_mut().filter(|o| o.reauth.is_some()) {
        op.reauth = Some(true);
    }
    Ok(())
}

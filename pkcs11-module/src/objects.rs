//! Objects: templates in, attributes out, and the functions that make, copy, find and destroy keys
//! (PKCS#11 §5.7, §5.13).
//!
//! Every object is a key of the emulated module. Private and secret keys are private objects: they
//! are found and used only while the user is logged in. Their policy becomes the key's ACL, which
//! the module enforces; `CKA_ALWAYS_SENSITIVE`, `CKA_NEVER_EXTRACTABLE` and `CKA_LOCAL` come from
//! the key's recorded history.

use cryptoki_sys as ck;
use cryptoki_sys::{CK_ATTRIBUTE_TYPE, CK_OBJECT_HANDLE, CK_SESSION_HANDLE, CK_ULONG};
use rsa::BoxedUint;
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use zeroize::Zeroizing;

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, KeyFilter, KeyHandle, KeyMaterial, KeyPairSpec, KeyPolicy, KeySpec, KeyType,
    MechanismKind, ObjectClass, Session as _, Usage,
};
use hsmkit_emulator::keyblob::KeyOrigin;
use hsmkit_emulator::{EmulatorSession, KeyDetails, MAX_GENERIC_SECRET};

use crate::ffi::{Answer, InAttr, Result, Rv, rv};
use crate::ops::{FindOp, MechIn, Param};
use crate::state::{self, Library, Session};
use crate::storage;

/// A caller's template, checked for duplicates.
pub struct Template<'a> {
    attrs: Vec<InAttr<'a>>,
}

impl<'a> Template<'a> {
    /// Wraps `attrs`; an attribute given twice is `CKR_TEMPLATE_INCONSISTENT`.
    pub fn new(attrs: Vec<InAttr<'a>>) -> Result<Template<'a>> {
        for (i, a) in attrs.iter().enumerate() {
            if attrs[..i].iter().any(|b| b.kind == a.kind) {
                return Err(rv::TEMPLATE_INCONSISTENT);
            }
        }
        Ok(Template { attrs })
    }

    /// The attributes, in the caller's order.
    pub fn attrs(&self) -> &[InAttr<'a>] {
        &self.attrs
    }

    fn get(&self, t: CK_ATTRIBUTE_TYPE) -> Option<&'a [u8]> {
        self.attrs.iter().find(|a| a.kind == t).map(|a| a.value)
    }

    fn bool(&self, t: CK_ATTRIBUTE_TYPE) -> Result<Option<bool>> {
        match self.get(t) {
            None => Ok(None),
            Some([b]) => Ok(Some(*b != 0)),
            Some(v) => {
                crate::log(&format!("attribute 0x{t:x} is a CK_BBOOL (1 byte), not {} bytes", v.len()));
                Err(rv::ATTRIBUTE_VALUE_INVALID)
            }
        }
    }

    fn ulong(&self, t: CK_ATTRIBUTE_TYPE) -> Result<Option<CK_ULONG>> {
        match self.get(t) {
            None => Ok(None),
            Some(v) => Ok(Some(CK_ULONG::from_ne_bytes(v.try_into().map_err(|_| {
                crate::log(&format!(
                    "attribute 0x{t:x} is a CK_ULONG ({} bytes), not {} bytes",
                    size_of::<CK_ULONG>(),
                    v.len()
                ));
                rv::ATTRIBUTE_VALUE_INVALID
            })?))),
        }
    }

    fn text(&self, t: CK_ATTRIBUTE_TYPE) -> Result<Option<String>> {
        self.get(t)
            .map(|v| {
                String::from_utf8(v.to_vec()).map_err(|_| {
                    crate::log(&format!("attribute 0x{t:x} is not UTF-8 text"));
                    rv::ATTRIBUTE_VALUE_INVALID
                })
            })
            .transpose()
    }

    /// Every attribute is one of `known` (else `CKR_ATTRIBUTE_TYPE_INVALID`); those only the
    /// module sets are `CKR_ATTRIBUTE_READ_ONLY`.
    fn only(&self, known: &[&[CK_ATTRIBUTE_TYPE]]) -> Result<()> {
        for a in &self.attrs {
            if READ_ONLY.contains(&a.kind) {
                crate::log(&format!("attribute 0x{:x} is set by the module only (read-only)", a.kind));
                return Err(rv::ATTRIBUTE_READ_ONLY);
            }
            if !known.iter().any(|k| k.contains(&a.kind)) {
                crate::log(&format!("attribute 0x{:x} is not an attribute of this kind of object", a.kind));
                return Err(rv::ATTRIBUTE_TYPE_INVALID);
            }
        }
        Ok(())
    }

    fn class(&self) -> Result<Option<ObjectClass>> {
        self.ulong(ck::CKA_CLASS)?
            .map(|c| match c {
                ck::CKO_PRIVATE_KEY => Ok(ObjectClass::PrivateKey),
                ck::CKO_PUBLIC_KEY => Ok(ObjectClass::PublicKey),
                ck::CKO_SECRET_KEY => Ok(ObjectClass::SecretKey),
                _ => {
                    crate::log(&format!("object class 0x{c:x} is not one the module makes here"));
                    Err(rv::ATTRIBUTE_VALUE_INVALID)
                }
            })
            .transpose()
    }

    fn key_type(&self) -> Result<Option<KeyType>> {
        self.ulong(ck::CKA_KEY_TYPE)?
            .map(|k| match k {
                ck::CKK_RSA => Ok(KeyType::Rsa),
                ck::CKK_AES => Ok(KeyType::Aes),
                ck::CKK_GENERIC_SECRET => Ok(KeyType::GenericSecret),
                ck::CKK_EC => Ok(KeyType::Ec),
                ck::CKK_EC_EDWARDS => Ok(KeyType::EcEdwards),
                ck::CKK_DES3 => Ok(KeyType::Des3),
                _ => {
                    crate::log(&format!(
                        "key type 0x{k:x} is not one the module has (RSA, EC, EC Edwards, AES, generic secret, DES3)"
                    ));
                    Err(rv::ATTRIBUTE_VALUE_INVALID)
                }
            })
            .transpose()
    }
}

const READ_ONLY: &[CK_ATTRIBUTE_TYPE] =
    &[ck::CKA_LOCAL, ck::CKA_ALWAYS_SENSITIVE, ck::CKA_NEVER_EXTRACTABLE, ck::CKA_KEY_GEN_MECHANISM, ck::CKA_UNIQUE_ID];
const COMMON: &[CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_CLASS,
    ck::CKA_KEY_TYPE,
    ck::CKA_TOKEN,
    ck::CKA_PRIVATE,
    ck::CKA_LABEL,
    ck::CKA_ID,
    ck::CKA_MODIFIABLE,
    ck::CKA_COPYABLE,
    ck::CKA_DESTROYABLE,
    ck::CKA_START_DATE,
    ck::CKA_END_DATE,
    ck::CKA_DERIVE,
    ck::CKA_ALLOWED_MECHANISMS,
    ck::CKA_SUBJECT,
];
const PUBLIC: &[CK_ATTRIBUTE_TYPE] =
    &[ck::CKA_ENCRYPT, ck::CKA_VERIFY, ck::CKA_VERIFY_RECOVER, ck::CKA_WRAP, ck::CKA_TRUSTED];
const PRIVATE: &[CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_SIGN,
    ck::CKA_DECRYPT,
    ck::CKA_UNWRAP,
    ck::CKA_SIGN_RECOVER,
    ck::CKA_SENSITIVE,
    ck::CKA_EXTRACTABLE,
    ck::CKA_WRAP_WITH_TRUSTED,
    ck::CKA_ALWAYS_AUTHENTICATE,
];
const RSA_GEN: &[CK_ATTRIBUTE_TYPE] = &[ck::CKA_MODULUS_BITS, ck::CKA_PUBLIC_EXPONENT];
const RSA_PUBLIC: &[CK_ATTRIBUTE_TYPE] = &[ck::CKA_MODULUS, ck::CKA_PUBLIC_EXPONENT];
const RSA_PRIVATE: &[CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_MODULUS,
    ck::CKA_PUBLIC_EXPONENT,
    ck::CKA_PRIVATE_EXPONENT,
    ck::CKA_PRIME_1,
    ck::CKA_PRIME_2,
    ck::CKA_EXPONENT_1,
    ck::CKA_EXPONENT_2,
    ck::CKA_COEFFICIENT,
];
const EC_GEN: &[CK_ATTRIBUTE_TYPE] = &[ck::CKA_EC_PARAMS];
const EC_PUBLIC: &[CK_ATTRIBUTE_TYPE] = &[ck::CKA_EC_PARAMS, ck::CKA_EC_POINT];
const EC_PRIVATE: &[CK_ATTRIBUTE_TYPE] = &[ck::CKA_EC_PARAMS, ck::CKA_VALUE];
const SECRET: &[CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_ENCRYPT,
    ck::CKA_DECRYPT,
    ck::CKA_SIGN,
    ck::CKA_VERIFY,
    ck::CKA_WRAP,
    ck::CKA_UNWRAP,
    ck::CKA_SENSITIVE,
    ck::CKA_EXTRACTABLE,
    ck::CKA_WRAP_WITH_TRUSTED,
    ck::CKA_TRUSTED,
    ck::CKA_VALUE_LEN,
];

/// Reads the policy a template asks for on top of `base`: usage flags of `side`, protection,
/// persistence, label and id. Capabilities the module does not have (recover, derive, per-use
/// authentication, public private keys) are `CKR_ATTRIBUTE_VALUE_INVALID`.
fn apply(t: &Template<'_>, side: Usage, base: &mut KeyPolicy, is_private: bool) -> Result<()> {
    for (usage, cka) in Usage::ATTRIBUTES {
        if let Some(on) = t.bool(*cka)? {
            if *usage == Usage::DERIVE && !is_private {
                // Applications such as pkcs11-tool ask CKA_DERIVE on an EC public key too; the
                // agreement is the private key's (C_DeriveKey takes it), so the public key's
                // flag carries nothing here and reads false.
                continue;
            }
            if !side.contains(*usage) {
                if on {
                    crate::log(&format!(
                        "{} true is not a right this kind of key can have here",
                        usage.attribute_name()
                    ));
                    return Err(rv::ATTRIBUTE_VALUE_INVALID);
                }
                continue;
            }
            base.usage.set(*usage, on);
        }
    }
    for cka in [ck::CKA_SIGN_RECOVER, ck::CKA_VERIFY_RECOVER] {
        if t.bool(cka)? == Some(true) {
            crate::log("the module signs and verifies with recovery nothing (CKA_SIGN_RECOVER, CKA_VERIFY_RECOVER)");
            return Err(rv::ATTRIBUTE_VALUE_INVALID);
        }
    }
    for cka in [ck::CKA_MODIFIABLE, ck::CKA_COPYABLE, ck::CKA_DESTROYABLE] {
        if t.bool(cka)? == Some(false) {
            crate::log("the module's keys are always modifiable, copyable and destroyable");
            return Err(rv::ATTRIBUTE_VALUE_INVALID);
        }
    }
    if let Some(private) = t.bool(ck::CKA_PRIVATE)? {
        if !is_private && private {
            // A public key is a public object: asking otherwise is a template the module cannot
            // keep (it would hide nothing secret).
            crate::log("a public key is a public object here (CKA_PRIVATE true is refused)");
            return Err(rv::ATTRIBUTE_VALUE_INVALID);
        }
        // CKA_PRIVATE false on a private or secret key: a public object, as the template asks.
        base.public_object = is_private && !private;
    }
    if let Some(v) = t.bool(ck::CKA_SENSITIVE)? {
        base.sensitive = v;
    }
    if let Some(v) = t.bool(ck::CKA_EXTRACTABLE)? {
        base.extractable = v;
    }
    if let Some(v) = t.bool(ck::CKA_WRAP_WITH_TRUSTED)? {
        base.wrap_with_trusted = v;
    }
    if let Some(v) = t.bool(ck::CKA_TRUSTED)? {
        base.trusted = v;
    }
    if let Some(v) = t.bool(ck::CKA_TOKEN)? {
        base.token = v;
    }
    if let Some(l) = t.text(ck::CKA_LABEL)? {
        base.label = Some(l);
    }
    if let Some(id) = t.get(ck::CKA_ID) {
        base.id = Some(id.to_vec());
    }
    if let Some(m) = t.get(ck::CKA_ALLOWED_MECHANISMS) {
        if m.len() % size_of::<CK_ULONG>() != 0 {
            return Err(rv::ATTRIBUTE_VALUE_INVALID);
        }
        let kinds = m
            .chunks_exact(size_of::<CK_ULONG>())
            .map(|c| {
                let ckm = CK_ULONG::from_ne_bytes(c.try_into().map_err(|_| rv::ATTRIBUTE_VALUE_INVALID)?);
                MechanismKind::from_ckm(ckm).ok_or(rv::ATTRIBUTE_VALUE_INVALID)
            })
            .collect::<Result<Vec<_>>>()?;
        base.allowed_mechanisms = Some(kinds);
    }
    Ok(())
}

/// Whether a secret key of `key_type` may be `len` bytes long.
fn secret_len_fits(key_type: KeyType, len: usize) -> bool {
    match key_type {
        KeyType::Aes => matches!(len, 16 | 24 | 32),
        KeyType::Des3 => len == 24,
        _ => (1..=MAX_GENERIC_SECRET).contains(&len),
    }
}

/// The default policy of a new key: every usage of its side, sensitive, not extractable, a
/// session object.
fn default_policy(side: Usage) -> KeyPolicy {
    KeyPolicy { usage: side - Usage::DERIVE, sensitive: true, ..KeyPolicy::default() }
}

/// What the module knows of one object, gathered for attribute answers and searches.
pub struct View {
    class: ObjectClass,
    key_type: KeyType,
    policy: KeyPolicy,
    bits: u64,
    modulus: Option<Vec<u8>>,
    exponent: Option<Vec<u8>>,
    spki: Option<Vec<u8>>,
    ec_params: Option<Vec<u8>>,
    ec_point: Option<Vec<u8>>,
    origin: Option<KeyOrigin>,
    details: KeyDetails,
}

impl View {
    /// Reads object `h` through the session.
    pub fn read(emu: &EmulatorSession<'static>, h: CK_OBJECT_HANDLE) -> Result<View> {
        let kinds = [
            AttrKind::Class,
            AttrKind::KeyType,
            AttrKind::Bits,
            AttrKind::Modulus,
            AttrKind::PublicExponent,
            AttrKind::PublicKeyInfo,
            AttrKind::EcParams,
            AttrKind::EcPoint,
            AttrKind::Policy,
        ];
        let attrs = emu.attributes(state::key(h), &kinds).map_err(object_err)?;
        let mut v = View {
            class: ObjectClass::SecretKey,
            key_type: KeyType::Aes,
            policy: KeyPolicy::default(),
            bits: 0,
            modulus: None,
            exponent: None,
            spki: None,
            ec_params: None,
            ec_point: None,
            origin: emu.origin(state::key(h)).map_err(object_err)?,
            details: emu.details(state::key(h)).map_err(object_err)?,
        };
        for a in attrs {
            match a {
                Attr::Value(_, AttrValue::Class(c)) => v.class = c,
                Attr::Value(_, AttrValue::KeyType(k)) => v.key_type = k,
                Attr::Value(_, AttrValue::Number(n)) => v.bits = n,
                Attr::Value(AttrKind::Modulus, AttrValue::Bytes(b)) => v.modulus = Some(b),
                Attr::Value(AttrKind::PublicExponent, AttrValue::Bytes(b)) => v.exponent = Some(b),
                Attr::Value(AttrKind::PublicKeyInfo, AttrValue::Bytes(b)) => v.spki = Some(b),
                Attr::Value(AttrKind::EcParams, AttrValue::Bytes(b)) => v.ec_params = Some(b),
                Attr::Value(AttrKind::EcPoint, AttrValue::Bytes(b)) => v.ec_point = Some(b),
                Attr::Value(_, AttrValue::Policy(p)) => v.policy = p,
                _ => {}
            }
        }
        Ok(v)
    }

    /// The curve of an EC or Ed25519 key.
    pub fn curve(&self) -> Option<hsmkit_backend::EcCurve> {
        self.ec_params.as_deref().and_then(hsmkit_backend::EcCurve::from_params)
    }

    /// Class, key type and policy.
    pub fn parts(&self) -> (ObjectClass, KeyType, &KeyPolicy) {
        (self.class, self.key_type, &self.policy)
    }

    /// Whether this is a private object (seen only by a logged-in user): private and secret keys,
    /// unless made with `CKA_PRIVATE` false.
    pub fn private(&self) -> bool {
        self.class != ObjectClass::PublicKey && !self.policy.public_object
    }

    fn origin(&self) -> KeyOrigin {
        self.origin.unwrap_or(KeyOrigin::IMPORTED)
    }

    /// The answer for attribute `t`; `value` reads the secret value when it may be revealed.
    pub fn answer(&self, t: CK_ATTRIBUTE_TYPE, value: &dyn Fn() -> Option<Zeroizing<Vec<u8>>>) -> Answer {
        let b = |on: bool| Answer::value(vec![u8::from(on)]);
        let n = |x: CK_ULONG| Answer::value(x.to_ne_bytes().to_vec());
        let p = &self.policy;
        let public = self.class == ObjectClass::PublicKey;
        let private = self.class == ObjectClass::PrivateKey;
        let secret = self.class == ObjectClass::SecretKey;
        let rsa = self.key_type == KeyType::Rsa;
        let ec = matches!(self.key_type, KeyType::Ec | KeyType::EcEdwards);
        let usage =
            |u: Usage| if Usage::of_class(self.class).contains(u) { b(p.usage.contains(u)) } else { Answer::Invalid };
        match t {
            ck::CKA_CLASS => n(match self.class {
                ObjectClass::PrivateKey => ck::CKO_PRIVATE_KEY,
                ObjectClass::PublicKey => ck::CKO_PUBLIC_KEY,
                ObjectClass::SecretKey => ck::CKO_SECRET_KEY,
            }),
            ck::CKA_KEY_TYPE => n(match self.key_type {
                KeyType::Rsa => ck::CKK_RSA,
                KeyType::Aes => ck::CKK_AES,
                KeyType::GenericSecret => ck::CKK_GENERIC_SECRET,
                KeyType::Ec => ck::CKK_EC,
                KeyType::EcEdwards => ck::CKK_EC_EDWARDS,
                KeyType::Des3 => ck::CKK_DES3,
            }),
            ck::CKA_TOKEN => b(p.token),
            ck::CKA_PRIVATE => b(self.private()),
            ck::CKA_MODIFIABLE | ck::CKA_COPYABLE | ck::CKA_DESTROYABLE => b(true),
            ck::CKA_LABEL => Answer::value(p.label.clone().unwrap_or_default().into_bytes()),
            ck::CKA_ID => Answer::value(p.id.clone().unwrap_or_default()),
            ck::CKA_START_DATE => Answer::value(self.details.start_date.clone()),
            ck::CKA_END_DATE => Answer::value(self.details.end_date.clone()),
            ck::CKA_UNIQUE_ID => Answer::value(self.details.unique_id.clone().into_bytes()),
            ck::CKA_DERIVE => b(p.usage.contains(Usage::DERIVE)),
            ck::CKA_LOCAL => b(self.origin().local),
            ck::CKA_KEY_GEN_MECHANISM => n(match (self.origin().local, self.key_type) {
                (true, KeyType::Rsa) => ck::CKM_RSA_PKCS_KEY_PAIR_GEN,
                (true, KeyType::Aes) => ck::CKM_AES_KEY_GEN,
                (true, KeyType::GenericSecret) => ck::CKM_GENERIC_SECRET_KEY_GEN,
                (true, KeyType::Ec) => ck::CKM_EC_KEY_PAIR_GEN,
                (true, KeyType::EcEdwards) => ck::CKM_EC_EDWARDS_KEY_PAIR_GEN,
                (true, KeyType::Des3) => ck::CKM_DES3_KEY_GEN,
                (false, _) => ck::CK_UNAVAILABLE_INFORMATION,
            }),
            // Absent when the key was made without a list (any mechanism its usages allow).
            ck::CKA_ALLOWED_MECHANISMS => match &p.allowed_mechanisms {
                Some(list) => Answer::value(list.iter().flat_map(|k| k.ckm().to_ne_bytes()).collect()),
                None => Answer::Invalid,
            },
            ck::CKA_SIGN => usage(Usage::SIGN),
            ck::CKA_VERIFY => usage(Usage::VERIFY),
            ck::CKA_ENCRYPT => usage(Usage::ENCRYPT),
            ck::CKA_DECRYPT => usage(Usage::DECRYPT),
            ck::CKA_WRAP => usage(Usage::WRAP),
            ck::CKA_UNWRAP => usage(Usage::UNWRAP),
            ck::CKA_SIGN_RECOVER if private => b(false),
            ck::CKA_VERIFY_RECOVER if public => b(false),
            ck::CKA_ALWAYS_AUTHENTICATE if private => b(self.details.always_authenticate),
            ck::CKA_SUBJECT if !secret => Answer::value(Vec::new()),
            ck::CKA_TRUSTED if !private => b(p.trusted),
            ck::CKA_SENSITIVE if !public => b(p.sensitive),
            ck::CKA_EXTRACTABLE if !public => b(p.extractable),
            ck::CKA_WRAP_WITH_TRUSTED if !public => b(p.wrap_with_trusted),
            ck::CKA_ALWAYS_SENSITIVE if !public => b(self.origin().always_sensitive && p.sensitive),
            ck::CKA_NEVER_EXTRACTABLE if !public => b(self.origin().never_extractable && !p.extractable),
            ck::CKA_MODULUS if rsa => self.modulus.clone().map_or(Answer::Invalid, Answer::value),
            ck::CKA_PUBLIC_EXPONENT if rsa => self.exponent.clone().map_or(Answer::Invalid, Answer::value),
            ck::CKA_MODULUS_BITS if rsa && public => n(self.bits as CK_ULONG),
            ck::CKA_PUBLIC_KEY_INFO if rsa || ec => self.spki.clone().map_or(Answer::Invalid, Answer::value),
            ck::CKA_EC_PARAMS if ec => self.ec_params.clone().map_or(Answer::Invalid, Answer::value),
            ck::CKA_EC_POINT if ec && public => self.ec_point.clone().map_or(Answer::Invalid, Answer::value),
            ck::CKA_VALUE if ec && private => {
                if p.sensitive || !p.extractable {
                    return Answer::Sensitive;
                }
                value()
                    .and_then(|der| hsmkit_backend::EcCurve::parse_pkcs8(&der))
                    .map_or(Answer::Sensitive, |(_, v)| Answer::value(v.to_vec()))
            }
            ck::CKA_PRIVATE_EXPONENT
            | ck::CKA_PRIME_1
            | ck::CKA_PRIME_2
            | ck::CKA_EXPONENT_1
            | ck::CKA_EXPONENT_2
            | ck::CKA_COEFFICIENT
                if private =>
            {
                if p.sensitive || !p.extractable {
                    return Answer::Sensitive;
                }
                value().and_then(|der| rsa_component(&der, t)).map_or(Answer::Sensitive, Answer::value)
            }
            // A DES3 key has no CKA_VALUE_LEN (its length is fixed).
            ck::CKA_VALUE_LEN if secret && self.key_type != KeyType::Des3 => n(self.bits as CK_ULONG / 8),
            ck::CKA_VALUE if secret => {
                if p.sensitive || !p.extractable {
                    return Answer::Sensitive;
                }
                value().map_or(Answer::Sensitive, |v| Answer::value(v.to_vec()))
            }
            _ => Answer::Invalid,
        }
    }
}

/// One CRT component of a PKCS#8 RSA key.
fn rsa_component(pkcs8: &[u8], t: CK_ATTRIBUTE_TYPE) -> Option<Vec<u8>> {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PrivateKeyParts as _;
    let key = rsa::PrivateKey::from_pkcs8_der(pkcs8).ok()?;
    let bytes = |v: &BoxedUint| v.to_be_bytes_trimmed_vartime().to_vec();
    match t {
        ck::CKA_PRIVATE_EXPONENT => Some(bytes(key.d())),
        ck::CKA_PRIME_1 => key.primes().first().map(|p| bytes(p.as_ref())),
        ck::CKA_PRIME_2 => key.primes().get(1).map(|p| bytes(p.as_ref())),
        ck::CKA_EXPONENT_1 => key.dp().map(bytes),
        ck::CKA_EXPONENT_2 => key.dq().map(bytes),
        ck::CKA_COEFFICIENT => key.crt_coefficient().map(|c| bytes(&c)),
        _ => None,
    }
}

/// A bad handle in an object function is `CKR_OBJECT_HANDLE_INVALID`.
fn object_err(e: hsmkit_backend::Error) -> Rv {
    match e.kind() {
        hsmkit_backend::ErrorKind::KeyHandleInvalid | hsmkit_backend::ErrorKind::NotFound => rv::OBJECT_HANDLE_INVALID,
        _ => crate::emu_err(e),
    }
}

/// Whether the session may see and use private objects: the user is logged in, or the token has
/// no user PIN (a world made by the nShield tools: module protection alone, as nShield's
/// module-protected keys need no login). The in-process emulator applies the same rule
/// ([`hsmkit_emulator::Emulator::login_required`]).
pub fn private_allowed(lib: &Library, s: &Session) -> Result<bool> {
    let t = lib.slots[s.slot].token()?;
    if t.login == Some(ck::CKU_USER) {
        return Ok(true);
    }
    Ok(!t.emu.login_required().map_err(crate::emu_err)?)
}

/// Reads object `h` as the session may see it: a private object is invisible without the user.
fn visible(lib: &Library, s: &Session, emu: &EmulatorSession<'static>, h: CK_OBJECT_HANDLE) -> Result<View> {
    let v = View::read(emu, h)?;
    if v.private() && !private_allowed(lib, s)? {
        return Err(rv::OBJECT_HANDLE_INVALID);
    }
    Ok(v)
}

/// The secret value of `h`, when the module lets it be read.
pub(crate) fn secret_value(emu: &EmulatorSession<'static>, h: CK_OBJECT_HANDLE) -> Option<Zeroizing<Vec<u8>>> {
    match emu.attributes(state::key(h), &[AttrKind::Value]).ok()?.pop()? {
        Attr::Value(_, AttrValue::Secret(v)) => Some(v),
        _ => None,
    }
}

/// `C_GetAttributeValue`: the answer for each of `types`.
pub fn get_attribute_values(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    types: &[CK_ATTRIBUTE_TYPE],
) -> Result<Vec<Answer>> {
    let (lib, s) = state::session(h)?;
    if storage::is_stored(obj) {
        return storage::get_attribute_values(&lib, &s, obj, types);
    }
    let st = s.lock()?;
    let v = visible(&lib, &s, &st.emu, obj)?;
    let value = || secret_value(&st.emu, obj);
    Ok(types.iter().map(|t| v.answer(*t, &value)).collect())
}

/// The session's mode allows creating a token object (`CKR_SESSION_READ_ONLY`) and the user is
/// logged in for private ones (`CKR_USER_NOT_LOGGED_IN`).
fn may_create(lib: &Library, s: &Session, policy: &KeyPolicy, private: bool) -> Result<()> {
    if policy.token && !s.rw {
        return Err(rv::SESSION_READ_ONLY);
    }
    if private && !private_allowed(lib, s)? {
        return Err(rv::USER_NOT_LOGGED_IN);
    }
    Ok(())
}

/// The curve a template's `CKA_EC_PARAMS` names, which must fit `key_type` (`CKK_EC` for NIST
/// curves, `CKK_EC_EDWARDS` for Ed25519).
fn curve_of(t: &Template<'_>, key_type: KeyType) -> Result<hsmkit_backend::EcCurve> {
    let params = t.get(ck::CKA_EC_PARAMS).ok_or_else(|| {
        crate::log("an EC key needs CKA_EC_PARAMS (the DER of its curve's OID)");
        rv::TEMPLATE_INCOMPLETE
    })?;
    let curve = hsmkit_backend::EcCurve::from_params(params).ok_or_else(|| {
        crate::log("CKA_EC_PARAMS names no curve the module has (P-256, P-384, P-521 by OID; Ed25519)");
        rv::ATTRIBUTE_VALUE_INVALID
    })?;
    if curve.key_type() != key_type {
        crate::log(&format!("{} is not a curve of key type {key_type:?}", curve.name()));
        return Err(rv::TEMPLATE_INCONSISTENT);
    }
    Ok(curve)
}

fn big(t: &Template<'_>, cka: CK_ATTRIBUTE_TYPE) -> Result<BoxedUint> {
    let v = t.get(cka).ok_or(rv::TEMPLATE_INCOMPLETE)?;
    if v.is_empty() || v.len() > 1024 {
        return Err(rv::ATTRIBUTE_VALUE_INVALID);
    }
    Ok(BoxedUint::from_be_slice_vartime(v))
}

/// Sets what `t` asks that is not policy (dates, `CKA_ALWAYS_AUTHENTICATE`) on `key`.
fn set_details(emu: &EmulatorSession<'static>, key: KeyHandle, t: &Template<'_>) -> Result<()> {
    let start = t.get(ck::CKA_START_DATE);
    let end = t.get(ck::CKA_END_DATE);
    let always = t.bool(ck::CKA_ALWAYS_AUTHENTICATE)?;
    if start.is_none() && end.is_none() && always.is_none() {
        return Ok(());
    }
    emu.set_details(key, start, end, always).map_err(crate::emu_err)
}

/// [`set_details`] on a key just made; if that fails, the key is destroyed, so no key is left
/// that the caller did not ask for.
pub fn with_details(emu: &EmulatorSession<'static>, key: KeyHandle, t: &Template<'_>) -> Result<CK_OBJECT_HANDLE> {
    match set_details(emu, key, t) {
        Ok(()) => Ok(key.0),
        Err(e) => {
            let _ = emu.destroy(key);
            Err(e)
        }
    }
}

/// `C_CreateObject`: AES keys from `CKA_VALUE`, RSA public keys from modulus and exponent, RSA
/// private keys from their components.
pub fn create_object(h: CK_SESSION_HANDLE, t: &Template<'_>) -> Result<CK_OBJECT_HANDLE> {
    let (lib, s) = state::session(h)?;
    if let Some(class) = t.ulong(ck::CKA_CLASS)?.filter(|c| storage::stores(*c)) {
        return storage::create(&lib, &s, t, class);
    }
    let class = t.class()?.ok_or(rv::TEMPLATE_INCOMPLETE)?;
    let key_type = t.key_type()?.ok_or(rv::TEMPLATE_INCOMPLETE)?;
    let mut policy = default_policy(Usage::of_class(class));
    let material = match (class, key_type) {
        (ObjectClass::SecretKey, KeyType::Aes | KeyType::GenericSecret | KeyType::Des3) => {
            t.only(&[COMMON, SECRET, &[ck::CKA_VALUE]])?;
            apply(t, Usage::of_class(class), &mut policy, true)?;
            let value = t.get(ck::CKA_VALUE).ok_or(rv::TEMPLATE_INCOMPLETE)?;
            if t.ulong(ck::CKA_VALUE_LEN)?.is_some_and(|l| l as usize != value.len()) {
                return Err(rv::TEMPLATE_INCONSISTENT);
            }
            if !secret_len_fits(key_type, value.len()) {
                crate::log(&format!("a {key_type:?} key of {} bytes is out of range", value.len()));
                return Err(rv::ATTRIBUTE_VALUE_INVALID);
            }
            let value = Zeroizing::new(value.to_vec());
            match key_type {
                KeyType::Aes => KeyMaterial::Aes(value),
                KeyType::Des3 => KeyMaterial::Des3(value),
                _ => KeyMaterial::GenericSecret(value),
            }
        }
        (ObjectClass::PublicKey, KeyType::Rsa) => {
            t.only(&[COMMON, PUBLIC, RSA_PUBLIC])?;
            apply(t, Usage::of_class(class), &mut policy, false)?;
            let (n, e) = (big(t, ck::CKA_MODULUS)?, big(t, ck::CKA_PUBLIC_EXPONENT)?);
            let key = match rsa::PublicKey::new(n.clone(), e.clone()) {
                Ok(k) => k,
                // A legacy key of 512 to 1023 bits: kept to verify old signatures (the module
                // encrypts and wraps nothing with it).
                Err(_)
                    if (512..1024).contains(&n.bit_width_vartime())
                        && e.bit_width_vartime() > 1
                        && e.bit_width_vartime() <= 32
                        && e.to_be_bytes_trimmed_vartime().last().is_some_and(|b| b & 1 == 1) =>
                {
                    rsa::PublicKey::new_unchecked(n, e)
                }
                Err(_) => return Err(rv::ATTRIBUTE_VALUE_INVALID),
            };
            KeyMaterial::RsaPublicSpki(key.to_public_key_der().map_err(|_| rv::ATTRIBUTE_VALUE_INVALID)?.into_vec())
        }
        (ObjectClass::PrivateKey, KeyType::Rsa) => {
            t.only(&[COMMON, PRIVATE, RSA_PRIVATE])?;
            apply(t, Usage::of_class(class), &mut policy, true)?;
            let primes = vec![big(t, ck::CKA_PRIME_1)?, big(t, ck::CKA_PRIME_2)?];
            let key = rsa::PrivateKey::from_components(
                big(t, ck::CKA_MODULUS)?,
                big(t, ck::CKA_PUBLIC_EXPONENT)?,
                big(t, ck::CKA_PRIVATE_EXPONENT)?,
                primes,
            )
            .map_err(|_| rv::ATTRIBUTE_VALUE_INVALID)?;
            // The CRT values the caller gave must be the key's own: a wrong or oversized one is
            // refused rather than silently replaced.
            for cka in [ck::CKA_EXPONENT_1, ck::CKA_EXPONENT_2, ck::CKA_COEFFICIENT] {
                if let Some(given) = t.get(cka) {
                    let der = Zeroizing::new(
                        key.to_pkcs8_der().map_err(|_| rv::ATTRIBUTE_VALUE_INVALID)?.as_bytes().to_vec(),
                    );
                    let own = rsa_component(&der, cka).ok_or(rv::ATTRIBUTE_VALUE_INVALID)?;
                    let trimmed = &given[given.iter().take_while(|b| **b == 0).count()..];
                    if trimmed != own.as_slice() {
                        return Err(rv::ATTRIBUTE_VALUE_INVALID);
                    }
                }
            }
            let der = key.to_pkcs8_der().map_err(|_| rv::ATTRIBUTE_VALUE_INVALID)?;
            KeyMaterial::RsaPrivatePkcs8(Zeroizing::new(der.as_bytes().to_vec()))
        }
        (ObjectClass::PublicKey, KeyType::Ec | KeyType::EcEdwards) => {
            t.only(&[COMMON, PUBLIC, EC_PUBLIC])?;
            apply(t, Usage::of_class(class), &mut policy, false)?;
            let curve = curve_of(t, key_type)?;
            let point = t.get(ck::CKA_EC_POINT).ok_or_else(|| {
                crate::log("an EC public key needs CKA_EC_POINT");
                rv::TEMPLATE_INCOMPLETE
            })?;
            let point = curve.point_from_attribute(point).ok_or_else(|| {
                crate::log(&format!("CKA_EC_POINT is not an uncompressed point on {}", curve.name()));
                rv::ATTRIBUTE_VALUE_INVALID
            })?;
            KeyMaterial::EcPublicSpki(curve.spki(&point))
        }
        (ObjectClass::PrivateKey, KeyType::Ec | KeyType::EcEdwards) => {
            t.only(&[COMMON, PRIVATE, EC_PRIVATE])?;
            apply(t, Usage::of_class(class), &mut policy, true)?;
            let curve = curve_of(t, key_type)?;
            let value = t.get(ck::CKA_VALUE).ok_or(rv::TEMPLATE_INCOMPLETE)?;
            let der = hsmkit_emulator::ec::EcPrivate::pkcs8_from_value(curve, value, hsmkit_backend::Op::ImportKey)
                .map_err(|e| {
                    crate::log(&e.to_string());
                    rv::ATTRIBUTE_VALUE_INVALID
                })?;
            KeyMaterial::EcPrivatePkcs8(der)
        }
        _ => {
            crate::log(&format!("a {class:?} of type {key_type:?} is not an object the module makes"));
            return Err(rv::TEMPLATE_INCONSISTENT);
        }
    };
    may_create(&lib, &s, &policy, class != ObjectClass::PublicKey && !policy.public_object)?;
    if policy.trusted {
        // Only the security officer, whose login presented the world's cards, makes a trusted
        // wrapping key.
        let quorum = lib.slots[s.slot].token()?.quorum.clone().ok_or_else(|| {
            crate::log("CKA_TRUSTED is set by the security officer only (the world's Administrator cards)");
            rv::ATTRIBUTE_READ_ONLY
        })?;
        let st = s.lock()?;
        let k = st.emu.import_key_with_quorum(&material, &policy, &quorum).map_err(crate::emu_err)?;
        return with_details(&st.emu, k, t);
    }
    let st = s.lock()?;
    let k = st.emu.import_key(&material, &policy).map_err(crate::emu_err)?;
    with_details(&st.emu, k, t)
}

/// `C_CopyObject`: a copy whose template may only narrow the original (fewer usages, sensitive,
/// not extractable), with a new label, id or persistence.
pub fn copy_object(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, t: &Template<'_>) -> Result<CK_OBJECT_HANDLE> {
    let (lib, s) = state::session(h)?;
    if storage::is_stored(obj) {
        return storage::copy(&lib, &s, obj, t);
    }
    let st = s.lock()?;
    let v = visible(&lib, &s, &st.emu, obj)?;
    t.only(&[COMMON, PUBLIC, PRIVATE, SECRET])?;
    if t.class()?.is_some_and(|c| c != v.class) || t.key_type()?.is_some_and(|k| k != v.key_type) {
        return Err(rv::TEMPLATE_INCONSISTENT);
    }
    let mut policy = v.policy.clone();
    apply(t, Usage::of_class(v.class), &mut policy, v.class != ObjectClass::PublicKey)?;
    if policy.check_narrowing_of(&v.policy).is_err() {
        crate::log("a copy may only narrow the original: fewer usages, sensitive, not extractable");
        return Err(rv::ATTRIBUTE_READ_ONLY);
    }
    may_create(&lib, &s, &policy, v.class != ObjectClass::PublicKey && !policy.public_object)?;
    let k = st.emu.copy_narrowed(state::key(obj), &policy).map_err(object_err)?;
    with_details(&st.emu, k, t)
}

/// Attributes `C_SetAttributeValue` may change: label and id freely; usage flags only off,
/// `CKA_SENSITIVE` only on, `CKA_EXTRACTABLE` only off, `CKA_WRAP_WITH_TRUSTED` only on.
const CHANGEABLE: &[CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_LABEL,
    ck::CKA_ID,
    ck::CKA_SIGN,
    ck::CKA_VERIFY,
    ck::CKA_ENCRYPT,
    ck::CKA_DECRYPT,
    ck::CKA_WRAP,
    ck::CKA_UNWRAP,
    ck::CKA_SENSITIVE,
    ck::CKA_EXTRACTABLE,
    ck::CKA_WRAP_WITH_TRUSTED,
];

/// `C_SetAttributeValue`: the key is changed in place, its blob rewritten under its ACL.
/// Setting any other attribute to the value it has is accepted and changes nothing.
pub fn set_attribute_value(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, t: &Template<'_>) -> Result<()> {
    let (lib, s) = state::session(h)?;
    if storage::is_stored(obj) {
        return storage::set_attribute_value(&lib, &s, obj, t);
    }
    let st = s.lock()?;
    let v = visible(&lib, &s, &st.emu, obj)?;
    let value = || secret_value(&st.emu, obj);
    for a in &t.attrs {
        if READ_ONLY.contains(&a.kind) {
            // Attributes only the module sets are read-only, whatever the value (§4.1.1).
            return Err(rv::ATTRIBUTE_READ_ONLY);
        }
        if DETAILS.contains(&a.kind) && v.answer(a.kind, &value) != Answer::Invalid {
            continue;
        }
        if CHANGEABLE.contains(&a.kind) && v.answer(a.kind, &value) != Answer::Invalid {
            continue;
        }
        match v.answer(a.kind, &value) {
            Answer::Invalid => return Err(rv::ATTRIBUTE_TYPE_INVALID),
            Answer::Value(now) if now.as_slice() == a.value => {}
            _ => return Err(rv::ATTRIBUTE_READ_ONLY),
        }
    }
    if v.policy.token && !s.rw {
        return Err(rv::SESSION_READ_ONLY);
    }
    // The public half of a pair shares its blob (label, id, ACL) with the private key: changing
    // it changes a private object, which needs the user.
    if !v.private() && st.emu.holds_secret(state::key(obj)).map_err(object_err)? && !private_allowed(&lib, &s)? {
        return Err(rv::USER_NOT_LOGGED_IN);
    }
    let mut policy = v.policy.clone();
    let changes = Template { attrs: t.attrs.iter().filter(|a| CHANGEABLE.contains(&a.kind)).copied().collect() };
    apply(&changes, Usage::of_class(v.class), &mut policy, v.class != ObjectClass::PublicKey)?;
    if policy.check_narrowing_of(&v.policy).is_err() {
        crate::log("an attribute change may only narrow the key; widening needs the security officer's quorum");
        return Err(rv::ATTRIBUTE_READ_ONLY);
    }
    // The details are checked first (a malformed date changes nothing), then set after the policy.
    let details = Template { attrs: t.attrs.iter().filter(|a| DETAILS.contains(&a.kind)).copied().collect() };
    for a in &details.attrs {
        if a.kind != ck::CKA_ALWAYS_AUTHENTICATE {
            crate::storage::check_date(a.value)?;
        }
        if a.kind == ck::CKA_ALWAYS_AUTHENTICATE
            && details.bool(a.kind)? == Some(false)
            && v.details.always_authenticate
        {
            return Err(rv::ATTRIBUTE_READ_ONLY);
        }
    }
    st.emu.modify(state::key(obj), &policy).map_err(crate::emu_err)?;
    // Never `with_details` here: a failure must not destroy the caller's existing key.
    set_details(&st.emu, state::key(obj), &details)
}

/// Attributes `C_SetAttributeValue` may change that are not policy: the dates freely,
/// `CKA_ALWAYS_AUTHENTICATE` only on.
const DETAILS: &[CK_ATTRIBUTE_TYPE] = &[ck::CKA_START_DATE, ck::CKA_END_DATE, ck::CKA_ALWAYS_AUTHENTICATE];

/// `C_DestroyObject`.
pub fn destroy_object(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> Result<()> {
    let (lib, s) = state::session(h)?;
    if storage::is_stored(obj) {
        return storage::destroy(&lib, &s, obj);
    }
    let st = s.lock()?;
    let v = visible(&lib, &s, &st.emu, obj)?;
    if v.policy.token && !s.rw {
        return Err(rv::SESSION_READ_ONLY);
    }
    st.emu.destroy(state::key(obj)).map_err(object_err)
}

/// `C_FindObjectsInit`.
pub fn find_init(h: CK_SESSION_HANDLE, t: &Template<'_>) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let mut st = s.lock()?;
    if st.ops.find.is_some() {
        return Err(rv::OPERATION_ACTIVE);
    }
    let user = private_allowed(&lib, &s)?;
    // An unknown class or key type matches nothing rather than failing.
    let filter = KeyFilter {
        class: t.class().ok().flatten(),
        key_type: t.key_type().ok().flatten(),
        label: t.text(ck::CKA_LABEL).ok().flatten(),
        id: t.get(ck::CKA_ID).map(<[u8]>::to_vec),
    };
    let unknown_class = t.get(ck::CKA_CLASS).is_some() && filter.class.is_none()
        || t.get(ck::CKA_KEY_TYPE).is_some() && filter.key_type.is_none();
    let mut found = Vec::new();
    if !unknown_class {
        for KeyHandle(k) in st.emu.find_keys(&filter).map_err(crate::emu_err)? {
            let Ok(v) = View::read(&st.emu, k) else { continue };
            if v.private() && !user {
                continue;
            }
            let value = || secret_value(&st.emu, k);
            if t.attrs.iter().all(|a| v.answer(a.kind, &value) == Answer::value(a.value.to_vec())) {
                found.push(k);
            }
        }
    }
    // Data objects and certificates (no key attribute can match them).
    found.extend(storage::find(&lib, &s, t)?);
    st.ops.find = Some(FindOp { found, next: 0 });
    Ok(())
}

/// `C_FindObjects`: up to `max` more handles.
pub fn find(h: CK_SESSION_HANDLE, max: usize) -> Result<Vec<CK_OBJECT_HANDLE>> {
    let (_, s) = state::session(h)?;
    let mut st = s.lock()?;
    let f = st.ops.find.as_mut().ok_or(rv::OPERATION_NOT_INITIALIZED)?;
    let end = f.found.len().min(f.next.saturating_add(max));
    let out = f.found[f.next..end].to_vec();
    f.next = end;
    Ok(out)
}

/// `C_FindObjectsFinal`.
pub fn find_final(h: CK_SESSION_HANDLE) -> Result<()> {
    let (_, s) = state::session(h)?;
    s.lock()?.ops.find.take().map(|_| ()).ok_or(rv::OPERATION_NOT_INITIALIZED)
}

/// `C_GenerateKey`: AES keys (`CKM_AES_KEY_GEN`) and generic secrets
/// (`CKM_GENERIC_SECRET_KEY_GEN`), `CKA_VALUE_LEN` in bytes.
pub fn generate_key(h: CK_SESSION_HANDLE, m: &MechIn, t: &Template<'_>) -> Result<CK_OBJECT_HANDLE> {
    let (lib, s) = state::session(h)?;
    let key_type = match m.ty {
        ck::CKM_AES_KEY_GEN => KeyType::Aes,
        ck::CKM_GENERIC_SECRET_KEY_GEN => KeyType::GenericSecret,
        ck::CKM_DES3_KEY_GEN => KeyType::Des3,
        other => {
            crate::log(&format!("mechanism 0x{other:x} makes no secret key here"));
            return Err(rv::MECHANISM_INVALID);
        }
    };
    if m.param != Param::None {
        return Err(rv::MECHANISM_PARAM_INVALID);
    }
    t.only(&[COMMON, SECRET])?;
    if t.class()?.is_some_and(|c| c != ObjectClass::SecretKey) || t.key_type()?.is_some_and(|k| k != key_type) {
        return Err(rv::TEMPLATE_INCONSISTENT);
    }
    // A DES3 key's length is fixed (24 bytes); AES keys and generic secrets say theirs.
    let len = match (key_type, t.ulong(ck::CKA_VALUE_LEN)?) {
        (KeyType::Des3, None) => 24,
        (_, Some(len)) => len,
        (_, None) => {
            crate::log("C_GenerateKey needs CKA_VALUE_LEN (the key's length in bytes)");
            return Err(rv::TEMPLATE_INCOMPLETE);
        }
    };
    if !usize::try_from(len).is_ok_and(|l| secret_len_fits(key_type, l)) {
        crate::log(&format!("a {key_type:?} key of {len} bytes is out of range"));
        return Err(rv::ATTRIBUTE_VALUE_INVALID);
    }
    let mut policy = default_policy(Usage::all());
    apply(t, Usage::all(), &mut policy, true)?;
    may_create(&lib, &s, &policy, !policy.public_object)?;
    let st = s.lock()?;
    let spec = match key_type {
        KeyType::Aes => KeySpec::Aes { bits: len as u32 * 8 },
        KeyType::Des3 => KeySpec::Des3,
        _ => KeySpec::GenericSecret { bytes: len as u32 },
    };
    let k = st.emu.generate_key(&spec, &policy).map_err(crate::emu_err)?;
    with_details(&st.emu, k, t)
}

/// `C_GenerateKeyPair`: RSA (`CKM_RSA_PKCS_KEY_PAIR_GEN`, `CKA_MODULUS_BITS` on the public
/// template). Returns (public, private).
pub fn generate_key_pair(
    h: CK_SESSION_HANDLE,
    m: &MechIn,
    public: &Template<'_>,
    private: &Template<'_>,
) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    let (lib, s) = state::session(h)?;
    let key_type = match m.ty {
        ck::CKM_RSA_PKCS_KEY_PAIR_GEN => KeyType::Rsa,
        ck::CKM_EC_KEY_PAIR_GEN => KeyType::Ec,
        ck::CKM_EC_EDWARDS_KEY_PAIR_GEN => KeyType::EcEdwards,
        other => {
            crate::log(&format!("mechanism 0x{other:x} makes no key pair here"));
            return Err(rv::MECHANISM_INVALID);
        }
    };
    if m.param != Param::None {
        return Err(rv::MECHANISM_PARAM_INVALID);
    }
    public.only(&[COMMON, PUBLIC, if key_type == KeyType::Rsa { RSA_GEN } else { EC_GEN }])?;
    private.only(&[COMMON, PRIVATE])?;
    for (t, class) in [(public, ObjectClass::PublicKey), (private, ObjectClass::PrivateKey)] {
        if t.class()?.is_some_and(|c| c != class) || t.key_type()?.is_some_and(|k| k != key_type) {
            crate::log(&format!("the {class:?} template names another class or key type"));
            return Err(rv::TEMPLATE_INCONSISTENT);
        }
    }
    let spec = match key_type {
        KeyType::Rsa => {
            let bits = public.ulong(ck::CKA_MODULUS_BITS)?.ok_or(rv::TEMPLATE_INCOMPLETE)?;
            let e = match public.get(ck::CKA_PUBLIC_EXPONENT) {
                None => 65537,
                Some(v) if !v.is_empty() && v.len() <= 8 => v.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
                Some(_) => return Err(rv::ATTRIBUTE_VALUE_INVALID),
            };
            KeyPairSpec::Rsa { bits: u32::try_from(bits).map_err(|_| Rv(ck::CKR_KEY_SIZE_RANGE))?, public_exponent: e }
        }
        _ => KeyPairSpec::Ec { curve: curve_of(public, key_type)? },
    };
    // One policy for the pair (the union of both templates' usages; each half keeps its side's);
    // the public key's own label and id are set on it afterwards.
    let mut pub_policy = default_policy(Usage::PUBLIC_SIDE);
    apply(public, Usage::PUBLIC_SIDE, &mut pub_policy, false)?;
    let mut policy = default_policy(Usage::PRIVATE_SIDE);
    apply(private, Usage::PRIVATE_SIDE, &mut policy, true)?;
    policy.usage |= pub_policy.usage & Usage::PUBLIC_SIDE;
    policy.token |= pub_policy.token;
    policy.trusted = pub_policy.trusted;
    if policy.label.is_none() {
        policy.label = pub_policy.label.clone();
    }
    if policy.id.is_none() {
        policy.id = pub_policy.id.clone();
    }
    may_create(&lib, &s, &policy, !policy.public_object)?;
    let st = s.lock()?;
    let (pub_h, priv_h) = st.emu.generate_key_pair(&spec, &policy).map_err(crate::emu_err)?;
    // The public key is an object of its own: it takes the public template's label and id.
    // The public key is an object of its own: it takes the public template's label and id, and
    // each half its template's details. Any failure removes both halves.
    let done = (|| {
        let v = View::read(&st.emu, pub_h.0)?;
        let mut named = v.policy.clone();
        if let Some(l) = &pub_policy.label {
            named.label = Some(l.clone());
        }
        if let Some(i) = &pub_policy.id {
            named.id = Some(i.clone());
        }
        if named != v.policy {
            st.emu.modify(pub_h, &named).map_err(crate::emu_err)?;
        }
        with_details(&st.emu, pub_h, public)?;
        with_details(&st.emu, priv_h, private)
    })();
    if let Err(e) = done {
        let _ = st.emu.destroy(pub_h);
        let _ = st.emu.destroy(priv_h);
        return Err(e);
    }
    Ok((pub_h.0, priv_h.0))
}

/// The template of `C_DeriveKey`: the new secret key's type and length (`CKA_VALUE_LEN`, or
/// `natural`, what the mechanism makes, when the template gives none) and its policy.
pub fn derive_template(
    lib: &Library,
    s: &Session,
    t: &Template<'_>,
    natural: Option<usize>,
) -> Result<(KeySpec, KeyPolicy)> {
    t.only(&[COMMON, SECRET])?;
    if t.class()?.is_some_and(|c| c != ObjectClass::SecretKey) {
        crate::log("C_DeriveKey makes secret keys (CKO_SECRET_KEY)");
        return Err(rv::TEMPLATE_INCONSISTENT);
    }
    let key_type = t.key_type()?.ok_or_else(|| {
        crate::log("a derived key's template names its CKA_KEY_TYPE (CKK_AES or CKK_GENERIC_SECRET)");
        rv::TEMPLATE_INCOMPLETE
    })?;
    let len = match t.ulong(ck::CKA_VALUE_LEN)? {
        Some(l) => usize::try_from(l).map_err(|_| rv::ATTRIBUTE_VALUE_INVALID)?,
        None => natural.ok_or_else(|| {
            crate::log("this derivation needs CKA_VALUE_LEN in the template");
            rv::TEMPLATE_INCOMPLETE
        })?,
    };
    let spec = match key_type {
        KeyType::Aes if matches!(len, 16 | 24 | 32) => KeySpec::Aes { bits: len as u32 * 8 },
        KeyType::GenericSecret if secret_len_fits(key_type, len) => KeySpec::GenericSecret { bytes: len as u32 },
        KeyType::Aes | KeyType::GenericSecret => {
            crate::log(&format!("a derived {key_type:?} key of {len} bytes is out of range"));
            return Err(if t.ulong(ck::CKA_VALUE_LEN)?.is_some() {
                rv::ATTRIBUTE_VALUE_INVALID
            } else {
                rv::TEMPLATE_INCOMPLETE
            });
        }
        other => {
            crate::log(&format!("C_DeriveKey makes AES keys and generic secrets, not {other:?} keys"));
            return Err(rv::TEMPLATE_INCONSISTENT);
        }
    };
    let mut policy = default_policy(Usage::all());
    apply(t, Usage::all(), &mut policy, true)?;
    may_create(lib, s, &policy, !policy.public_object)?;
    Ok((spec, policy))
}

/// The template of `C_UnwrapKey`: the key type and policy of the key to make.
pub fn unwrap_template(lib: &Library, s: &Session, t: &Template<'_>) -> Result<(KeyType, KeyPolicy)> {
    let class = t.class()?.ok_or(rv::TEMPLATE_INCOMPLETE)?;
    let key_type = t.key_type()?.ok_or(rv::TEMPLATE_INCOMPLETE)?;
    match (class, key_type) {
        (ObjectClass::SecretKey, KeyType::Aes | KeyType::GenericSecret | KeyType::Des3) => t.only(&[COMMON, SECRET])?,
        (ObjectClass::PrivateKey, KeyType::Rsa | KeyType::Ec | KeyType::EcEdwards) => t.only(&[COMMON, PRIVATE])?,
        _ => {
            crate::log(&format!("a {class:?} of type {key_type:?} is not unwrapped here"));
            return Err(rv::TEMPLATE_INCONSISTENT);
        }
    }
    let mut policy = default_policy(Usage::of_class(class));
    apply(t, Usage::of_class(class), &mut policy, true)?;
    may_create(lib, s, &policy, !policy.public_object)?;
    Ok((key_type, policy))
}

//! The one mapping between the seam's [`KeyPolicy`] / [`Mechanism`] and PKCS#11 attributes and
//! mechanisms.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism as CkMechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass as CkClass};
use hsmkit_backend::{
    EcCurve, Error, ErrorKind, HashAlg, KeyPolicy, KeyType, Mechanism, MechanismKind, ObjectClass, Op, Result, Usage,
};

/// Makes a boolean attribute.
pub type MakeBool = fn(bool) -> Attribute;

/// Usage flags and the attributes that carry them, as `cryptoki` types them: the backend's
/// [`Usage::ATTRIBUTES`] with a constructor each (a test keeps the two equal).
pub const USAGE_ATTRIBUTES: &[(Usage, AttributeType, MakeBool)] = &[
    (Usage::SIGN, AttributeType::Sign, Attribute::Sign),
    (Usage::VERIFY, AttributeType::Verify, Attribute::Verify),
    (Usage::ENCRYPT, AttributeType::Encrypt, Attribute::Encrypt),
    (Usage::DECRYPT, AttributeType::Decrypt, Attribute::Decrypt),
    (Usage::WRAP, AttributeType::Wrap, Attribute::Wrap),
    (Usage::UNWRAP, AttributeType::Unwrap, Attribute::Unwrap),
    (Usage::DERIVE, AttributeType::Derive, Attribute::Derive),
];

/// The attributes every key template carries: persistence, label, id.
fn common(policy: &KeyPolicy) -> Vec<Attribute> {
    let mut t = vec![Attribute::Token(policy.token)];
    if let Some(l) = &policy.label {
        t.push(Attribute::Label(l.as_bytes().to_vec()));
    }
    if let Some(id) = &policy.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

fn usages(policy: &KeyPolicy, side: Usage) -> Vec<Attribute> {
    USAGE_ATTRIBUTES
        .iter()
        .filter(|(u, _, _)| side.contains(*u))
        .map(|(u, _, make)| make(policy.usage.contains(*u)))
        .collect()
}

fn allowed(policy: &KeyPolicy) -> Vec<Attribute> {
    match &policy.allowed_mechanisms {
        Some(m) => {
            let types = m.iter().filter_map(|k| MechanismType::try_from(k.ckm()).ok()).collect();
            vec![Attribute::AllowedMechanisms(types)]
        }
        None => Vec::new(),
    }
}

/// The protection attributes of a private or secret key.
fn protection(policy: &KeyPolicy) -> Vec<Attribute> {
    vec![
        Attribute::Private(!policy.public_object),
        Attribute::Sensitive(policy.sensitive),
        Attribute::Extractable(policy.extractable),
        Attribute::WrapWithTrusted(policy.wrap_with_trusted),
    ]
}

/// Templates (public, private) for an RSA key pair.
pub fn rsa_pair_templates(policy: &KeyPolicy, bits: u32, public_exponent: u64) -> (Vec<Attribute>, Vec<Attribute>) {
    let mut public = common(policy);
    public.extend(usages(policy, Usage::PUBLIC_SIDE));
    public.push(Attribute::Private(false));
    public.push(Attribute::ModulusBits(u64::from(bits).into()));
    let e = public_exponent.to_be_bytes();
    let first = e.iter().position(|b| *b != 0).unwrap_or(e.len() - 1);
    public.push(Attribute::PublicExponent(e[first..].to_vec()));
    if policy.trusted {
        public.push(Attribute::Trusted(true));
    }
    public.extend(allowed(policy));
    let mut private = common(policy);
    private.extend(usages(policy, Usage::PRIVATE_SIDE));
    private.extend(protection(policy));
    private.extend(allowed(policy));
    (public, private)
}

/// Template for an AES key (generate: with its length; unwrap or import: without).
pub fn aes_template(policy: &KeyPolicy, bits: Option<u32>) -> Vec<Attribute> {
    secret_template(policy, CkKeyType::AES, bits)
}

/// Template for a secret key of `key_type` (generate: with its length in bits; else without).
pub fn secret_template(policy: &KeyPolicy, key_type: CkKeyType, bits: Option<u32>) -> Vec<Attribute> {
    let mut t = common(policy);
    t.push(Attribute::Class(CkClass::SECRET_KEY));
    t.push(Attribute::KeyType(key_type));
    if let Some(bits) = bits {
        t.push(Attribute::ValueLen(u64::from(bits / 8).into()));
    }
    t.extend(usages(policy, Usage::all()));
    t.extend(protection(policy));
    if policy.trusted {
        t.push(Attribute::Trusted(true));
    }
    t.extend(allowed(policy));
    t
}

/// Template for an RSA private key arriving by unwrap.
pub fn rsa_private_template(policy: &KeyPolicy) -> Vec<Attribute> {
    private_template(policy, CkKeyType::RSA)
}

/// Template for an unwrapped key of `key_type`.
pub fn unwrap_template(policy: &KeyPolicy, key_type: KeyType) -> Vec<Attribute> {
    match key_type {
        KeyType::Rsa => rsa_private_template(policy),
        KeyType::Aes => aes_template(policy, None),
        KeyType::GenericSecret => secret_template(policy, CkKeyType::GENERIC_SECRET, None),
        KeyType::Ec | KeyType::EcEdwards => private_template(policy, ck_key_type(key_type)),
        KeyType::Des3 => secret_template(policy, CkKeyType::DES3, None),
    }
}

/// The `CKA_KEY_TYPE` value of a key type.
pub fn ck_key_type(k: KeyType) -> CkKeyType {
    match k {
        KeyType::Rsa => CkKeyType::RSA,
        KeyType::Aes => CkKeyType::AES,
        KeyType::GenericSecret => CkKeyType::GENERIC_SECRET,
        KeyType::Ec => CkKeyType::EC,
        KeyType::EcEdwards => CkKeyType::EC_EDWARDS,
        KeyType::Des3 => CkKeyType::DES3,
    }
}

/// The key type of a `CKA_KEY_TYPE` value.
pub fn key_type_of(k: CkKeyType) -> Option<KeyType> {
    [KeyType::Rsa, KeyType::Aes, KeyType::GenericSecret, KeyType::Ec, KeyType::EcEdwards, KeyType::Des3]
        .into_iter()
        .find(|t| ck_key_type(*t) == k)
}

/// Templates (public, private) for an EC or Ed25519 key pair on `curve`.
pub fn ec_pair_templates(policy: &KeyPolicy, curve: EcCurve) -> (Vec<Attribute>, Vec<Attribute>) {
    let mut public = common(policy);
    public.extend(usages(policy, Usage::PUBLIC_SIDE));
    public.push(Attribute::Private(false));
    public.push(Attribute::EcParams(curve.params().to_vec()));
    public.extend(allowed(policy));
    let mut private = common(policy);
    private.extend(usages(policy, Usage::PRIVATE_SIDE));
    private.extend(protection(policy));
    private.extend(allowed(policy));
    (public, private)
}

/// Template for a private key of `key_type` (without its key material).
pub fn private_template(policy: &KeyPolicy, key_type: CkKeyType) -> Vec<Attribute> {
    let mut t = common(policy);
    t.push(Attribute::Class(CkClass::PRIVATE_KEY));
    t.push(Attribute::KeyType(key_type));
    t.extend(usages(policy, Usage::PRIVATE_SIDE));
    t.extend(protection(policy));
    t.extend(allowed(policy));
    t
}

/// The attributes a `C_CopyObject` template changes: only the ones that may narrow (the token
/// refuses the others), plus label, id and persistence.
pub fn narrowing_template(new: &KeyPolicy, old: &KeyPolicy, class: ObjectClass) -> Vec<Attribute> {
    let mut t = common(new);
    let side = Usage::of_class(class);
    for (u, _, make) in USAGE_ATTRIBUTES {
        if side.contains(*u) && old.usage.contains(*u) && !new.usage.contains(*u) {
            t.push(make(false));
        }
    }
    if class != ObjectClass::PublicKey {
        if old.extractable && !new.extractable {
            t.push(Attribute::Extractable(false));
        }
        if !old.sensitive && new.sensitive {
            t.push(Attribute::Sensitive(true));
        }
        if !old.wrap_with_trusted && new.wrap_with_trusted {
            t.push(Attribute::WrapWithTrusted(true));
        }
        if old.public_object && !new.public_object {
            t.push(Attribute::Private(true));
        }
    }
    if new.allowed_mechanisms != old.allowed_mechanisms {
        t.extend(allowed(new));
    }
    t
}

/// The attribute types read back to make a [`KeyPolicy`].
pub const POLICY_ATTRIBUTES: &[AttributeType] = &[
    AttributeType::Sign,
    AttributeType::Verify,
    AttributeType::Encrypt,
    AttributeType::Decrypt,
    AttributeType::Wrap,
    AttributeType::Unwrap,
    AttributeType::Derive,
    AttributeType::Extractable,
    AttributeType::Sensitive,
    AttributeType::WrapWithTrusted,
    AttributeType::Trusted,
    AttributeType::AllowedMechanisms,
    AttributeType::Token,
    AttributeType::Private,
    AttributeType::Label,
    AttributeType::Id,
];

/// A [`KeyPolicy`] from the attributes the token returned (absent ones keep their defaults:
/// a public key is neither sensitive nor protected against extraction).
pub fn policy_from(attrs: &[Attribute], class: ObjectClass) -> KeyPolicy {
    let mut p = KeyPolicy { sensitive: class != ObjectClass::PublicKey, ..KeyPolicy::default() };
    if class == ObjectClass::PublicKey {
        p.extractable = true;
    }
    for a in attrs {
        for (u, at, _) in USAGE_ATTRIBUTES {
            if a.attribute_type() == *at
                && matches!(
                    a,
                    Attribute::Sign(true)
                        | Attribute::Verify(true)
                        | Attribute::Encrypt(true)
                        | Attribute::Decrypt(true)
                        | Attribute::Wrap(true)
                        | Attribute::Unwrap(true)
                        | Attribute::Derive(true)
                )
            {
                p.usage |= *u;
            }
        }
        match a {
            Attribute::Extractable(v) => p.extractable = *v,
            Attribute::Sensitive(v) => p.sensitive = *v,
            Attribute::WrapWithTrusted(v) => p.wrap_with_trusted = *v,
            Attribute::Trusted(v) => p.trusted = *v,
            Attribute::Token(v) => p.token = *v,
            Attribute::Private(v) if class != ObjectClass::PublicKey => p.public_object = !*v,
            Attribute::Label(l) => p.label = Some(String::from_utf8_lossy(l).into_owned()),
            Attribute::Id(i) => p.id = Some(i.clone()),
            Attribute::AllowedMechanisms(m) if !m.is_empty() => {
                p.allowed_mechanisms = Some(m.iter().filter_map(|t| MechanismKind::from_ckm(**t)).collect());
            }
            _ => {}
        }
    }
    p
}

/// The object class of a `CKA_CLASS` value.
pub fn class_of(c: CkClass) -> Option<ObjectClass> {
    if c == CkClass::PRIVATE_KEY {
        Some(ObjectClass::PrivateKey)
    } else if c == CkClass::PUBLIC_KEY {
        Some(ObjectClass::PublicKey)
    } else if c == CkClass::SECRET_KEY {
        Some(ObjectClass::SecretKey)
    } else {
        None
    }
}

/// The `CKA_CLASS` value of an object class.
pub fn ck_class(c: ObjectClass) -> CkClass {
    match c {
        ObjectClass::PrivateKey => CkClass::PRIVATE_KEY,
        ObjectClass::PublicKey => CkClass::PUBLIC_KEY,
        ObjectClass::SecretKey => CkClass::SECRET_KEY,
    }
}

pub(crate) fn hash_type(h: HashAlg) -> MechanismType {
    match h {
        HashAlg::Sha1 => MechanismType::SHA1,
        HashAlg::Sha224 => MechanismType::SHA224,
        HashAlg::Sha256 => MechanismType::SHA256,
        HashAlg::Sha384 => MechanismType::SHA384,
        HashAlg::Sha512 => MechanismType::SHA512,
    }
}

fn mgf(h: HashAlg) -> PkcsMgfType {
    match h {
        HashAlg::Sha1 => PkcsMgfType::MGF1_SHA1,
        HashAlg::Sha224 => PkcsMgfType::MGF1_SHA224,
        HashAlg::Sha256 => PkcsMgfType::MGF1_SHA256,
        HashAlg::Sha384 => PkcsMgfType::MGF1_SHA384,
        HashAlg::Sha512 => PkcsMgfType::MGF1_SHA512,
    }
}

/// RSA-OAEP parameters: MGF1 with the same hash, empty label.
pub fn oaep(h: HashAlg) -> CkMechanism<'static> {
    CkMechanism::RsaPkcsOaep(PkcsOaepParams::new(hash_type(h), mgf(h), PkcsOaepSource::empty()))
}

/// The `cryptoki` mechanism for a single-call mechanism. RSA-AES key wrap is handled by the
/// session (natively or composed), not here.
pub fn mechanism(m: &Mechanism, op: Op) -> Result<CkMechanism<'_>> {
    let pss = |h: HashAlg| PkcsPssParams { hash_alg: hash_type(h), mgf: mgf(h), s_len: (h.output_len() as u64).into() };
    Ok(match m {
        Mechanism::RsaPkcs1v15Raw => CkMechanism::RsaPkcs,
        Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha1 } => CkMechanism::Sha1RsaPkcs,
        Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha224 } => CkMechanism::Sha224RsaPkcs,
        Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 } => CkMechanism::Sha256RsaPkcs,
        Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha384 } => CkMechanism::Sha384RsaPkcs,
        Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha512 } => CkMechanism::Sha512RsaPkcs,
        Mechanism::RsaPss { hash: h @ HashAlg::Sha1 } => CkMechanism::Sha1RsaPkcsPss(pss(*h)),
        Mechanism::RsaPss { hash: h @ HashAlg::Sha256 } => CkMechanism::Sha256RsaPkcsPss(pss(*h)),
        Mechanism::RsaPss { hash: h @ HashAlg::Sha384 } => CkMechanism::Sha384RsaPkcsPss(pss(*h)),
        Mechanism::RsaPss { hash: h @ HashAlg::Sha512 } => CkMechanism::Sha512RsaPkcsPss(pss(*h)),
        Mechanism::RsaPssRaw { hash } => CkMechanism::RsaPkcsPss(pss(*hash)),
        Mechanism::RsaX509 => CkMechanism::RsaX509,
        Mechanism::Hmac { hash: HashAlg::Sha1 } => CkMechanism::Sha1Hmac,
        Mechanism::Hmac { hash: HashAlg::Sha224 } => CkMechanism::Sha224Hmac,
        Mechanism::Hmac { hash: HashAlg::Sha256 } => CkMechanism::Sha256Hmac,
        Mechanism::Hmac { hash: HashAlg::Sha384 } => CkMechanism::Sha384Hmac,
        Mechanism::Hmac { hash: HashAlg::Sha512 } => CkMechanism::Sha512Hmac,
        Mechanism::RsaOaep { hash } => oaep(*hash),
        Mechanism::RsaOaepLabel { hash, label } => CkMechanism::RsaPkcsOaep(PkcsOaepParams::new(
            hash_type(*hash),
            mgf(*hash),
            PkcsOaepSource::data_specified(label),
        )),
        Mechanism::AesEcb => CkMechanism::AesEcb,
        Mechanism::AesCmac => CkMechanism::AesCMac,
        Mechanism::AesCbc { iv } => CkMechanism::AesCbc(*iv),
        Mechanism::AesCbcPad { iv } => CkMechanism::AesCbcPad(*iv),
        Mechanism::AesKeyWrap => CkMechanism::AesKeyWrap,
        Mechanism::AesKeyWrapPad => CkMechanism::AesKeyWrapPad,
        Mechanism::Des3Ecb => CkMechanism::Des3Ecb,
        Mechanism::Des3Cbc { iv } => CkMechanism::Des3Cbc(*iv),
        Mechanism::Des3CbcPad { iv } => CkMechanism::Des3CbcPad(*iv),
        Mechanism::Ecdsa { hash: None } => CkMechanism::Ecdsa,
        Mechanism::Ecdsa { hash: Some(HashAlg::Sha1) } => CkMechanism::EcdsaSha1,
        Mechanism::Ecdsa { hash: Some(HashAlg::Sha224) } => CkMechanism::EcdsaSha224,
        Mechanism::Ecdsa { hash: Some(HashAlg::Sha256) } => CkMechanism::EcdsaSha256,
        Mechanism::Ecdsa { hash: Some(HashAlg::Sha384) } => CkMechanism::EcdsaSha384,
        Mechanism::Ecdsa { hash: Some(HashAlg::Sha512) } => CkMechanism::EcdsaSha512,
        Mechanism::Eddsa => CkMechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
            cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
        )),
        other => {
            return Err(Error::new(ErrorKind::MechanismInvalid, op)
                .detail(format!("{} has no single-call form here", other.describe())));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_table_is_the_backends() {
        let ours: Vec<(Usage, cryptoki_sys::CK_ATTRIBUTE_TYPE)> =
            USAGE_ATTRIBUTES.iter().map(|(u, at, _)| (*u, cryptoki_sys::CK_ATTRIBUTE_TYPE::from(*at))).collect();
        assert_eq!(ours, Usage::ATTRIBUTES.to_vec());
        for (u, at, make) in USAGE_ATTRIBUTES {
            assert_eq!(make(true).attribute_type(), *at, "{u:?}");
        }
    }
}

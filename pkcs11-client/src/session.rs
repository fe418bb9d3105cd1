//! [`Session`] over a `cryptoki` session.

use std::cell::RefCell;
use std::collections::HashMap;

use cryptoki::mechanism::Mechanism as CkMechanism;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType as CkKeyType, ObjectHandle};
use cryptoki::session::UserType;
use hsmkit_backend::{
    Attr, AttrKind, AttrValue, Capabilities, EcCurve, Error, ErrorKind, KeyFilter, KeyHandle, KeyMaterial, KeyPairSpec,
    KeyPolicy, KeySpec, KeyType, Mechanism, MechanismKind, ObjectClass, Op, Pin, Result, Session, UserKind,
};
use zeroize::Zeroizing;

use crate::convert;
use crate::error::OrOp;

/// A session with a PKCS#11 token. Key handles are those this session returned.
pub struct Pkcs11Session {
    s: cryptoki::session::Session,
    handles: RefCell<HashMap<u64, ObjectHandle>>,
    capabilities: Capabilities,
    raw: std::sync::Arc<crate::raw::Raw>,
}

impl std::fmt::Debug for Pkcs11Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Session").field("handle", &self.s.handle()).finish_non_exhaustive()
    }
}

impl Pkcs11Session {
    pub(crate) fn new(
        s: cryptoki::session::Session,
        capabilities: Capabilities,
        raw: std::sync::Arc<crate::raw::Raw>,
    ) -> Self {
        Pkcs11Session { s, handles: RefCell::new(HashMap::new()), capabilities, raw }
    }

    /// The PKCS#11 session handle (`CK_SESSION_HANDLE`), for raw calls beside this session.
    pub fn raw_handle(&self) -> cryptoki_sys::CK_SESSION_HANDLE {
        self.s.handle()
    }

    fn register(&self, h: ObjectHandle) -> KeyHandle {
        self.handles.borrow_mut().insert(h.handle(), h);
        KeyHandle(h.handle())
    }

    fn object(&self, k: KeyHandle, op: Op) -> Result<ObjectHandle> {
        self.handles.borrow().get(&k.0).copied().ok_or_else(|| {
            Error::new(ErrorKind::KeyHandleInvalid, op).detail(format!("handle {} names no key of this session", k.0))
        })
    }

    fn class(&self, h: ObjectHandle, op: Op) -> Result<ObjectClass> {
        match self.s.get_attributes(h, &[AttributeType::Class]).or_op(op)?.first() {
            Some(Attribute::Class(c)) => convert::class_of(*c)
                .ok_or_else(|| Error::new(ErrorKind::KeyTypeInconsistent, op).detail("the object is not a key")),
            _ => Err(Error::new(ErrorKind::AttributeTypeInvalid, op).detail("the object has no CKA_CLASS")),
        }
    }

    /// Reads the attributes that exist and are readable, skipping sensitive or absent ones.
    fn readable(&self, h: ObjectHandle, types: &[AttributeType], op: Op) -> Result<Vec<Attribute>> {
        let info = self.s.get_attribute_info(h, types).or_op(op)?;
        let ok: Vec<AttributeType> =
            types.iter().zip(info).filter(|(_, i)| matches!(i, AttributeInfo::Available(_))).map(|(t, _)| *t).collect();
        if ok.is_empty() {
            return Ok(Vec::new());
        }
        self.s.get_attributes(h, &ok).or_op(op)
    }

    fn policy(&self, h: ObjectHandle, op: Op) -> Result<(KeyPolicy, ObjectClass)> {
        let class = self.class(h, op)?;
        let attrs = self.readable(h, convert::POLICY_ATTRIBUTES, op)?;
        Ok((convert::policy_from(&attrs, class), class))
    }

    fn composed_rsa_aes(&self) -> bool {
        self.capabilities.mechanism(MechanismKind::RsaAesKeyWrap).is_some_and(|m| m.composed)
    }

    fn native_rsa_aes(&self, op: Op) -> Result<()> {
        if self.capabilities.mechanism(MechanismKind::RsaAesKeyWrap).is_some() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::MechanismInvalid, op).detail(
                "CKM_RSA_AES_KEY_WRAP: the module has neither the mechanism nor RSA-OAEP with CKM_AES_KEY_WRAP_PAD to compose it",
            ))
        }
    }

    /// An ephemeral AES-256 key for composing RSA-AES wrap: a session object that can wrap,
    /// unwrap and be wrapped.
    /// RFC 5649 as this module calls it: `CKM_AES_KEY_WRAP_KWP` where it lists that (NSS's
    /// `CKM_AES_KEY_WRAP_PAD` is PKCS#7 padding plus RFC 3394), else `CKM_AES_KEY_WRAP_PAD`
    /// (SoftHSM2's is RFC 5649).
    fn rfc5649(&self) -> cryptoki_sys::CK_MECHANISM {
        let wu = hsmkit_backend::MechanismFlags::WRAP | hsmkit_backend::MechanismFlags::UNWRAP;
        if self.capabilities.mechanism(MechanismKind::AesKeyWrapKwp).is_some_and(|m| m.flags.contains(wu)) {
            kwp()
        } else {
            cryptoki_sys::CK_MECHANISM {
                mechanism: cryptoki_sys::CKM_AES_KEY_WRAP_PAD,
                pParameter: std::ptr::null_mut(),
                ulParameterLen: 0,
            }
        }
    }

    fn ephemeral_aes(&self, op: Op) -> Result<ObjectHandle> {
        let mut policy = KeyPolicy::new(hsmkit_backend::Usage::WRAP | hsmkit_backend::Usage::UNWRAP).extractable(true);
        policy.token = false;
        policy.sensitive = true;
        self.s.generate_key(&CkMechanism::AesKeyGen, &convert::aes_template(&policy, Some(256))).or_op(op)
    }

    fn modulus_len(&self, h: ObjectHandle, op: Op) -> Result<usize> {
        match self.readable(h, &[AttributeType::Modulus], op)?.first() {
            Some(Attribute::Modulus(n)) => Ok(n.iter().skip_while(|b| **b == 0).count()),
            _ => Err(Error::new(ErrorKind::KeyTypeInconsistent, op).detail("the key has no RSA modulus")),
        }
    }

    /// `C_WrapKey` through the module's function list, the output cut to the length the module
    /// returns (see [`crate::raw::Raw::wrap`]).
    fn wrap_raw(&self, mech: &CkMechanism<'_>, wrapping: ObjectHandle, target: ObjectHandle) -> Result<Vec<u8>> {
        let mut m: cryptoki_sys::CK_MECHANISM = mech.into();
        self.raw.wrap(self.s.handle(), &mut m, wrapping.handle(), target.handle())
    }

    /// `CKM_RSA_AES_KEY_WRAP` composed inside the module.
    fn rsa_aes_wrap_composed(
        &self,
        hash: hsmkit_backend::HashAlg,
        wrapping: ObjectHandle,
        target: ObjectHandle,
    ) -> Result<Vec<u8>> {
        let op = Op::WrapKey;
        let eph = self.ephemeral_aes(op)?;
        let result = (|| {
            let tail = self.raw.wrap(self.s.handle(), &mut self.rfc5649(), eph.handle(), target.handle())?;
            let mut out = self.wrap_raw(&convert::oaep(hash), wrapping, eph).map_err(|e| {
                let refused = matches!(e.kind(), ErrorKind::ArgumentsBad | ErrorKind::MechanismParamInvalid);
                if refused && hash != hsmkit_backend::HashAlg::Sha1 {
                    Error::new(ErrorKind::MechanismParamInvalid, op)
                        .detail(format!(
                            "this module's RSA-OAEP refuses {hash:?} ({e}), so CKM_RSA_AES_KEY_WRAP with {hash:?} cannot be composed from it"
                        ))
                        .hint("use a format that wraps with OAEP SHA-1 (aws RSA_AES_KEY_WRAP_SHA_1, gcp method 1 or 2, azure-kv), or a module with OAEP SHA-256")
                } else {
                    e
                }
            })?;
            out.extend(tail);
            Ok(out)
        })();
        let destroyed = self.s.destroy_object(eph).or_op(Op::DestroyKey);
        let out = result?;
        destroyed?;
        Ok(out)
    }

    fn rsa_aes_unwrap_composed(
        &self,
        hash: hsmkit_backend::HashAlg,
        unwrapping: ObjectHandle,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> Result<ObjectHandle> {
        let op = Op::UnwrapKey;
        let n = self.modulus_len(unwrapping, op)?;
        if wrapped.len() <= n {
            return Err(Error::new(ErrorKind::WrappedKeyInvalid, op));
        }
        let (head, tail) = wrapped.split_at(n);
        let mut policy = KeyPolicy::new(hsmkit_backend::Usage::UNWRAP);
        policy.token = false;
        let eph = self
            .s
            .unwrap_key(&convert::oaep(hash), unwrapping, head, &convert::aes_template(&policy, None))
            .or_op(op)?;
        let result = self.raw.unwrap(self.s.handle(), &mut self.rfc5649(), eph.handle(), tail, template).map(adopt);
        let destroyed = self.s.destroy_object(eph).or_op(Op::DestroyKey);
        let h = result?;
        destroyed?;
        Ok(h)
    }
}

/// Names the mechanism in an error, unless the error must stay opaque (decrypt, unwrap).
fn named(e: Error, mech: &Mechanism) -> Error {
    match e.kind() {
        ErrorKind::EncryptedDataInvalid | ErrorKind::WrappedKeyInvalid => e,
        _ => e.context(format!("mechanism {}", mech.describe())),
    }
}

fn rsa_components_template(der: &[u8], policy: &KeyPolicy) -> Result<Vec<Attribute>> {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let key = rsa::PrivateKey::from_pkcs8_der(der).map_err(|_| {
        Error::new(ErrorKind::DataInvalid, Op::ImportKey).detail("the key material is not an RSA PKCS#8 private key")
    })?;
    let b = |n: &rsa::BoxedUint| n.to_be_bytes_trimmed_vartime().to_vec();
    let primes = key.primes();
    if primes.len() != 2 {
        return Err(Error::new(ErrorKind::DataInvalid, Op::ImportKey).detail("only two-prime RSA keys are imported"));
    }
    let mut t = convert::rsa_private_template(policy);
    t.push(Attribute::Modulus(b(key.n())));
    t.push(Attribute::PublicExponent(b(key.e())));
    t.push(Attribute::PrivateExponent(b(key.d())));
    t.push(Attribute::Prime1(b(&primes[0])));
    t.push(Attribute::Prime2(b(&primes[1])));
    if let (Some(dp), Some(dq), Some(qinv)) = (key.dp(), key.dq(), key.qinv()) {
        t.push(Attribute::Exponent1(b(dp)));
        t.push(Attribute::Exponent2(b(dq)));
        t.push(Attribute::Coefficient(qinv.retrieve().to_be_bytes_trimmed_vartime().to_vec()));
    }
    Ok(t)
}

/// The template of an EC or Ed25519 private key given as PKCS#8: `CKA_EC_PARAMS` and the private
/// value in `CKA_VALUE` (PKCS#11 3.1 §2.3.4, §2.3.6).
fn ec_private_template(der: &[u8], policy: &KeyPolicy) -> Result<Vec<Attribute>> {
    let (curve, value) = EcCurve::parse_pkcs8(der).ok_or_else(|| {
        Error::new(ErrorKind::DataInvalid, Op::ImportKey).detail("the key material is not an EC or Ed25519 PKCS#8 key")
    })?;
    let mut t = convert::private_template(policy, convert::ck_key_type(curve.key_type()));
    t.push(Attribute::EcParams(curve.params().to_vec()));
    t.push(Attribute::Value(value.to_vec()));
    Ok(t)
}

/// The `C_DeriveKey` call for a derivation mechanism: its `cryptoki` parameters live only as long
/// as this call, so the call is made here.
fn derive_call(
    s: &cryptoki::session::Session,
    mech: &Mechanism,
    base: ObjectHandle,
    template: &[Attribute],
) -> Result<ObjectHandle> {
    use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
    use cryptoki::mechanism::hkdf::{HkdfParams, HkdfSalt};
    use cryptoki::mechanism::kbkdf::{
        Endianness, KbkdfCounterFormat, KbkdfDkmLengthFormat, KbkdfDkmLengthMethod, KbkdfParams, PrfDataParam,
        PrfDataParamType,
    };
    use hsmkit_backend::{HashAlg, KdfParam, KdfPrf};
    let op = Op::DeriveKey;
    let bad = |why: &str| Error::new(ErrorKind::MechanismParamInvalid, op).detail(why.to_string());
    let call = |m: &CkMechanism<'_>| s.derive_key(m, base, template).or_op(op).map_err(|e| named(e, mech));
    match mech {
        Mechanism::Ecdh1Derive { kdf, shared_data, public } => {
            let kdf = match kdf {
                None => EcKdf::null(),
                Some(HashAlg::Sha1) => EcKdf::sha1(shared_data),
                Some(HashAlg::Sha224) => EcKdf::sha224(shared_data),
                Some(HashAlg::Sha256) => EcKdf::sha256(shared_data),
                Some(HashAlg::Sha384) => EcKdf::sha384(shared_data),
                Some(HashAlg::Sha512) => EcKdf::sha512(shared_data),
            };
            call(&CkMechanism::Ecdh1Derive(Ecdh1DeriveParams::new(kdf, public)))
        }
        Mechanism::HkdfDerive { hash, extract, expand, salt, info } => {
            if !extract && !salt.is_empty() {
                return Err(bad("HKDF without the extract step takes no salt"));
            }
            let salt = extract.then_some(if salt.is_empty() { HkdfSalt::Null } else { HkdfSalt::Data(salt) });
            let info = expand.then_some(&info[..]);
            call(&CkMechanism::HkdfDerive(HkdfParams::new(convert::hash_type(*hash), salt, info)))
        }
        Mechanism::Sp800108Counter { prf, params } => {
            let endian = |little: bool| if little { Endianness::Little } else { Endianness::Big };
            let width = |bits: u8| std::num::NonZeroUsize::new(usize::from(bits)).ok_or_else(|| bad("a zero width"));
            // The formats first: the data parameters point at them.
            let mut counters = Vec::new();
            let mut lengths = Vec::new();
            for p in params {
                match p {
                    KdfParam::Counter { little_endian, bits } => {
                        counters.push(KbkdfCounterFormat::new(endian(*little_endian), width(*bits)?));
                    }
                    KdfParam::DkmLength { little_endian, bits } => lengths.push(KbkdfDkmLengthFormat::new(
                        KbkdfDkmLengthMethod::SumOfKeys,
                        endian(*little_endian),
                        width(*bits)?,
                    )),
                    KdfParam::Bytes(_) => {}
                }
            }
            let (mut c, mut l) = (counters.iter(), lengths.iter());
            let mut data = Vec::new();
            for p in params {
                data.push(PrfDataParam::new(match p {
                    KdfParam::Counter { .. } => {
                        PrfDataParamType::IterationVariable(Some(c.next().ok_or_else(|| bad("counter"))?))
                    }
                    KdfParam::DkmLength { .. } => PrfDataParamType::DkmLength(l.next().ok_or_else(|| bad("length"))?),
                    KdfParam::Bytes(b) => PrfDataParamType::ByteArray(b),
                }));
            }
            let prf = match prf {
                KdfPrf::Hmac(h) => match h {
                    HashAlg::Sha1 => cryptoki::mechanism::MechanismType::SHA1_HMAC,
                    HashAlg::Sha224 => cryptoki::mechanism::MechanismType::SHA224_HMAC,
                    HashAlg::Sha256 => cryptoki::mechanism::MechanismType::SHA256_HMAC,
                    HashAlg::Sha384 => cryptoki::mechanism::MechanismType::SHA384_HMAC,
                    HashAlg::Sha512 => cryptoki::mechanism::MechanismType::SHA512_HMAC,
                },
                KdfPrf::AesCmac => cryptoki::mechanism::MechanismType::AES_CMAC,
            };
            call(&CkMechanism::KbkdfCounter(KbkdfParams::new(prf, &data, None)))
        }
        Mechanism::AesCbcEncryptData { iv, data } => {
            call(&CkMechanism::AesCbcEncryptData(cryptoki::mechanism::ekdf::AesCbcDeriveParams::new(*iv, data)))
        }
        other => Err(Error::new(ErrorKind::MechanismInvalid, op)
            .detail(format!("{} is not a derivation mechanism", other.describe()))),
    }
}

impl Session for Pkcs11Session {
    fn login(&self, user: UserKind, pin: &Pin) -> Result<()> {
        let ut = match user {
            UserKind::User => UserType::User,
            UserKind::SecurityOfficer => UserType::So,
        };
        self.s.login(ut, Some(pin)).or_op(Op::Login)
    }

    fn logout(&self) -> Result<()> {
        self.s.logout().or_op(Op::Logout)
    }

    fn init_pin(&self, pin: &Pin) -> Result<()> {
        self.s.init_pin(pin).or_op(Op::Login)
    }

    fn set_pin(&self, old: &Pin, new: &Pin) -> Result<()> {
        self.s.set_pin(old, new).or_op(Op::Login)
    }

    fn generate_key(&self, spec: &KeySpec, policy: &KeyPolicy) -> Result<KeyHandle> {
        let (mechanism, template) = match *spec {
            KeySpec::Aes { bits: bits @ (128 | 192 | 256) } => {
                (CkMechanism::AesKeyGen, convert::aes_template(policy, Some(bits)))
            }
            KeySpec::Aes { bits } => {
                return Err(Error::new(ErrorKind::KeySizeRange, Op::GenerateKey)
                    .detail(format!("AES keys are 128, 192 or 256 bits, not {bits}")));
            }
            KeySpec::Des3 => (CkMechanism::Des3KeyGen, convert::secret_template(policy, CkKeyType::DES3, None)),
            KeySpec::GenericSecret { bytes } => (
                CkMechanism::GenericSecretKeyGen,
                convert::secret_template(policy, CkKeyType::GENERIC_SECRET, Some(bytes.saturating_mul(8))),
            ),
            _ => {
                return Err(Error::new(ErrorKind::MechanismInvalid, Op::GenerateKey)
                    .detail("only AES keys and generic secrets"));
            }
        };
        let h = self.s.generate_key(&mechanism, &template).or_op(Op::GenerateKey)?;
        Ok(self.register(h))
    }

    fn generate_key_pair(&self, spec: &KeyPairSpec, policy: &KeyPolicy) -> Result<(KeyHandle, KeyHandle)> {
        let (mechanism, (public, private)) = match *spec {
            KeyPairSpec::Rsa { bits, public_exponent } => {
                (CkMechanism::RsaPkcsKeyPairGen, convert::rsa_pair_templates(policy, bits, public_exponent))
            }
            KeyPairSpec::Ec { curve: curve @ EcCurve::Ed25519 } => {
                (CkMechanism::EccEdwardsKeyPairGen, convert::ec_pair_templates(policy, curve))
            }
            KeyPairSpec::Ec { curve } => (CkMechanism::EccKeyPairGen, convert::ec_pair_templates(policy, curve)),
            _ => {
                return Err(
                    Error::new(ErrorKind::MechanismInvalid, Op::GenerateKeyPair).detail("only RSA and EC key pairs")
                );
            }
        };
        let (p, q) = self.s.generate_key_pair(&mechanism, &public, &private).or_op(Op::GenerateKeyPair)?;
        Ok((self.register(p), self.register(q)))
    }

    fn import_key(&self, material: &KeyMaterial, policy: &KeyPolicy) -> Result<KeyHandle> {
        let template = match material {
            KeyMaterial::RsaPrivatePkcs8(der) => rsa_components_template(der, policy)?,
            KeyMaterial::Aes(k) => {
                let mut t = convert::aes_template(policy, None);
                t.push(Attribute::Value(k.to_vec()));
                t
            }
            KeyMaterial::GenericSecret(k) => {
                let mut t = convert::secret_template(policy, CkKeyType::GENERIC_SECRET, None);
                t.push(Attribute::Value(k.to_vec()));
                t
            }
            KeyMaterial::RsaPublicSpki(spki) => {
                use rsa::pkcs8::DecodePublicKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::PublicKey::from_public_key_der(spki).map_err(|_| {
                    Error::new(ErrorKind::DataInvalid, Op::ImportKey).detail("not an RSA SubjectPublicKeyInfo")
                })?;
                let (mut t, _) = convert::rsa_pair_templates(policy, 0, 0);
                t.retain(|a| !matches!(a, Attribute::ModulusBits(_) | Attribute::PublicExponent(_)));
                t.push(Attribute::Class(cryptoki::object::ObjectClass::PUBLIC_KEY));
                t.push(Attribute::KeyType(CkKeyType::RSA));
                t.push(Attribute::Modulus(key.n().to_be_bytes_trimmed_vartime().to_vec()));
                t.push(Attribute::PublicExponent(key.e().to_be_bytes_trimmed_vartime().to_vec()));
                t
            }
            KeyMaterial::EcPrivatePkcs8(der) => ec_private_template(der, policy)?,
            KeyMaterial::Des3(k) => {
                let mut t = convert::secret_template(policy, CkKeyType::DES3, None);
                t.push(Attribute::Value(k.to_vec()));
                t
            }
            KeyMaterial::EcPublicSpki(spki) => {
                let (curve, point) = EcCurve::parse_spki(spki).ok_or_else(|| {
                    Error::new(ErrorKind::DataInvalid, Op::ImportKey)
                        .detail("not an EC or Ed25519 SubjectPublicKeyInfo")
                })?;
                let (mut t, _) = convert::ec_pair_templates(policy, curve);
                t.push(Attribute::Class(cryptoki::object::ObjectClass::PUBLIC_KEY));
                t.push(Attribute::KeyType(convert::ck_key_type(curve.key_type())));
                t.push(Attribute::EcPoint(EcCurve::point_attribute(&point)));
                t
            }
            _ => return Err(Error::new(ErrorKind::Unsupported, Op::ImportKey).detail("unknown key material")),
        };
        let h = self.s.create_object(&template).or_op(Op::ImportKey)?;
        Ok(self.register(h))
    }

    fn derive_key(&self, mech: &Mechanism, base: KeyHandle, spec: &KeySpec, policy: &KeyPolicy) -> Result<KeyHandle> {
        let h = self.object(base, Op::DeriveKey)?;
        let template = match *spec {
            KeySpec::Aes { bits } => convert::aes_template(policy, Some(bits)),
            KeySpec::GenericSecret { bytes } => {
                convert::secret_template(policy, CkKeyType::GENERIC_SECRET, Some(bytes.saturating_mul(8)))
            }
            _ => {
                return Err(Error::new(ErrorKind::MechanismInvalid, Op::DeriveKey)
                    .detail("only AES keys and generic secrets are derived"));
            }
        };
        let derived = derive_call(&self.s, mech, h, &template)?;
        Ok(self.register(derived))
    }

    fn find_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyHandle>> {
        let mut t = Vec::new();
        if let Some(c) = filter.class {
            t.push(Attribute::Class(convert::ck_class(c)));
        }
        if let Some(k) = filter.key_type {
            t.push(Attribute::KeyType(convert::ck_key_type(k)));
        }
        if let Some(l) = &filter.label {
            t.push(Attribute::Label(l.as_bytes().to_vec()));
        }
        if let Some(i) = &filter.id {
            t.push(Attribute::Id(i.clone()));
        }
        let found = self.s.find_objects(&t).or_op(Op::FindKeys)?;
        let mut out: Vec<KeyHandle> = found.into_iter().map(|h| self.register(h)).collect();
        out.sort();
        Ok(out)
    }

    fn attributes(&self, key: KeyHandle, which: &[AttrKind]) -> Result<Vec<Attr>> {
        let op = Op::GetAttributes;
        let h = self.object(key, op)?;
        let class = self.class(h, op)?;
        let mut out = Vec::new();
        for &kind in which {
            let ty = match kind {
                AttrKind::Class => {
                    out.push(Attr::Value(kind, AttrValue::Class(class)));
                    continue;
                }
                AttrKind::Policy => {
                    out.push(Attr::Value(kind, AttrValue::Policy(self.policy(h, op)?.0)));
                    continue;
                }
                AttrKind::KeyType => AttributeType::KeyType,
                AttrKind::Label => AttributeType::Label,
                AttrKind::Id => AttributeType::Id,
                AttrKind::Bits if class == ObjectClass::SecretKey => AttributeType::ValueLen,
                AttrKind::Bits => AttributeType::Modulus,
                AttrKind::Modulus => AttributeType::Modulus,
                AttrKind::PublicExponent => AttributeType::PublicExponent,
                AttrKind::PublicKeyInfo => AttributeType::PublicKeyInfo,
                AttrKind::Value => AttributeType::Value,
                AttrKind::EcParams => AttributeType::EcParams,
                AttrKind::EcPoint => AttributeType::EcPoint,
                _ => {
                    out.push(Attr::Invalid(kind));
                    continue;
                }
            };
            let info = self.s.get_attribute_info(h, &[ty]).or_op(op)?;
            match info.first() {
                Some(AttributeInfo::Available(_)) => {}
                Some(AttributeInfo::Sensitive) => {
                    out.push(Attr::Sensitive(kind));
                    continue;
                }
                _ => {
                    out.push(Attr::Invalid(kind));
                    continue;
                }
            }
            let value = self.s.get_attributes(h, &[ty]).or_op(op)?.into_iter().next();
            let v = match (kind, value) {
                (AttrKind::KeyType, Some(Attribute::KeyType(t))) => match convert::key_type_of(t) {
                    Some(t) => AttrValue::KeyType(t),
                    None => {
                        out.push(Attr::Invalid(kind));
                        continue;
                    }
                },
                (AttrKind::Label, Some(Attribute::Label(l))) => {
                    AttrValue::Text(String::from_utf8_lossy(&l).into_owned())
                }
                (AttrKind::Bits, Some(Attribute::ValueLen(n))) => AttrValue::Number(u64::from(n) * 8),
                (AttrKind::Bits, Some(Attribute::Modulus(n))) => {
                    let n: Vec<u8> = n.into_iter().skip_while(|b| *b == 0).collect();
                    let top = n.first().map_or(0, |b| 8 - b.leading_zeros() as u64);
                    AttrValue::Number((n.len() as u64).saturating_sub(1) * 8 + top)
                }
                (AttrKind::Value, Some(Attribute::Value(v))) => AttrValue::Secret(Zeroizing::new(v)),
                (
                    _,
                    Some(
                        Attribute::Id(b)
                        | Attribute::Modulus(b)
                        | Attribute::PublicExponent(b)
                        | Attribute::PublicKeyInfo(b)
                        | Attribute::EcParams(b)
                        | Attribute::EcPoint(b),
                    ),
                ) => AttrValue::Bytes(b),
                _ => {
                    out.push(Attr::Invalid(kind));
                    continue;
                }
            };
            out.push(Attr::Value(kind, v));
        }
        Ok(out)
    }

    fn copy_narrowed(&self, key: KeyHandle, policy: &KeyPolicy) -> Result<KeyHandle> {
        let h = self.object(key, Op::CopyKey)?;
        let (old, class) = self.policy(h, Op::CopyKey)?;
        let mut wanted = policy.clone();
        // A public key's sensitivity and extractability are not the caller's to narrow.
        if class == ObjectClass::PublicKey {
            wanted.sensitive = old.sensitive;
            wanted.extractable = old.extractable;
            wanted.wrap_with_trusted = old.wrap_with_trusted;
        }
        wanted.check_narrowing_of(&old)?;
        let copy = self.s.copy_object(h, &convert::narrowing_template(&wanted, &old, class)).or_op(Op::CopyKey)?;
        Ok(self.register(copy))
    }

    fn destroy(&self, key: KeyHandle) -> Result<()> {
        let h = self.object(key, Op::DestroyKey)?;
        self.s.destroy_object(h).or_op(Op::DestroyKey)?;
        self.handles.borrow_mut().remove(&key.0);
        Ok(())
    }

    fn sign(&self, mech: &Mechanism, key: KeyHandle, data: &[u8]) -> Result<Vec<u8>> {
        let h = self.object(key, Op::Sign)?;
        let (call, digest) = sha224_pss(mech, data);
        let data = digest.as_deref().unwrap_or(data);
        self.s.sign(&convert::mechanism(&call, Op::Sign)?, h, data).or_op(Op::Sign).map_err(|e| named(e, mech))
    }

    fn verify(&self, mech: &Mechanism, key: KeyHandle, data: &[u8], signature: &[u8]) -> Result<()> {
        let h = self.object(key, Op::Verify)?;
        let (call, digest) = sha224_pss(mech, data);
        let data = digest.as_deref().unwrap_or(data);
        self.s
            .verify(&convert::mechanism(&call, Op::Verify)?, h, data, signature)
            .or_op(Op::Verify)
            .map_err(|e| named(e, mech))
    }

    fn encrypt(&self, mech: &Mechanism, key: KeyHandle, plaintext: &[u8]) -> Result<Vec<u8>> {
        let h = self.object(key, Op::Encrypt)?;
        if matches!(mech, Mechanism::AesCtr { .. } | Mechanism::AesGcm { .. }) {
            return self.raw.aes_crypt(self.s.handle(), mech, h.handle(), plaintext, true).map_err(|e| named(e, mech));
        }
        self.s
            .encrypt(&convert::mechanism(mech, Op::Encrypt)?, h, plaintext)
            .or_op(Op::Encrypt)
            .map_err(|e| named(e, mech))
    }

    fn decrypt(&self, mech: &Mechanism, key: KeyHandle, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let h = self.object(key, Op::Decrypt)?;
        if matches!(mech, Mechanism::AesCtr { .. } | Mechanism::AesGcm { .. }) {
            return self
                .raw
                .aes_crypt(self.s.handle(), mech, h.handle(), ciphertext, false)
                .map_err(|e| named(e, mech));
        }
        self.s
            .decrypt(&convert::mechanism(mech, Op::Decrypt)?, h, ciphertext)
            .or_op(Op::Decrypt)
            .map_err(|e| named(e, mech))
    }

    fn wrap_key(&self, mech: &Mechanism, wrapping: KeyHandle, target: KeyHandle) -> Result<Vec<u8>> {
        let w = self.object(wrapping, Op::WrapKey)?;
        let t = self.object(target, Op::WrapKey)?;
        match *mech {
            Mechanism::RsaAesKeyWrap { aes_bits: 256, hash } if self.composed_rsa_aes() => {
                self.rsa_aes_wrap_composed(hash, w, t)
            }
            Mechanism::RsaAesKeyWrap { aes_bits, .. } if self.composed_rsa_aes() => {
                Err(Error::new(ErrorKind::MechanismParamInvalid, Op::WrapKey)
                    .detail(format!("the composed RSA-AES key wrap uses AES-256, not AES-{aes_bits}")))
            }
            Mechanism::RsaAesKeyWrap { aes_bits, hash } => {
                self.native_rsa_aes(Op::WrapKey)?;
                self.raw
                    .rsa_aes_wrap(self.s.handle(), aes_bits, hash, w.handle(), t.handle())
                    .map_err(|e| named(e, mech))
            }
            Mechanism::AesKeyWrapKwp => {
                let mut m = kwp();
                self.raw.wrap(self.s.handle(), &mut m, w.handle(), t.handle()).map_err(|e| named(e, mech))
            }
            _ => self.wrap_raw(&convert::mechanism(mech, Op::WrapKey)?, w, t).map_err(|e| named(e, mech)),
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
        let u = self.object(unwrapping, Op::UnwrapKey)?;
        let template = convert::unwrap_template(policy, key_type);
        let h = match *mech {
            Mechanism::RsaAesKeyWrap { hash, .. } if self.composed_rsa_aes() => {
                self.rsa_aes_unwrap_composed(hash, u, wrapped, &template)?
            }
            Mechanism::RsaAesKeyWrap { aes_bits, hash } => {
                self.native_rsa_aes(Op::UnwrapKey)?;
                self.raw
                    .rsa_aes_unwrap(self.s.handle(), aes_bits, hash, u.handle(), wrapped, &template)
                    .map(adopt)
                    .map_err(|e| named(e, mech))?
            }
            Mechanism::AesKeyWrapKwp => self
                .raw
                .unwrap(self.s.handle(), &mut kwp(), u.handle(), wrapped, &template)
                .map(adopt)
                .map_err(|e| named(e, mech))?,
            _ => self
                .s
                .unwrap_key(&convert::mechanism(mech, Op::UnwrapKey)?, u, wrapped, &template)
                .or_op(Op::UnwrapKey)
                .map_err(|e| named(e, mech))?,
        };
        Ok(self.register(h))
    }

    fn random(&self, out: &mut [u8]) -> Result<()> {
        self.s.generate_random_slice(out).or_op(Op::Random)
    }
}

/// The object handle the module just returned for a key this session made (through the raw
/// function list, which `cryptoki` does not wrap).
fn adopt(h: cryptoki_sys::CK_OBJECT_HANDLE) -> ObjectHandle {
    // SAFETY: `h` is a handle the module returned for this session's new object.
    #[allow(unsafe_code)]
    unsafe {
        ObjectHandle::new_from_raw(h)
    }
}

/// `CKM_AES_KEY_WRAP_KWP` (PKCS#11 3.0), which `cryptoki` 0.12 has no type for: no parameter
/// (RFC 5649's default integrity check value).
fn kwp() -> cryptoki_sys::CK_MECHANISM {
    cryptoki_sys::CK_MECHANISM {
        mechanism: cryptoki_sys::CKM_AES_KEY_WRAP_KWP,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    }
}

/// `CKM_SHA224_RSA_PKCS_PSS`, which `cryptoki` cannot call, as `CKM_RSA_PKCS_PSS` with the
/// SHA-224 parameters over the SHA-224 digest the client computes: the same signature. Other
/// mechanisms pass unchanged.
fn sha224_pss(mech: &Mechanism, data: &[u8]) -> (Mechanism, Option<Vec<u8>>) {
    use sha2::Digest as _;
    match mech {
        Mechanism::RsaPss { hash: hsmkit_backend::HashAlg::Sha224 } => {
            (Mechanism::RsaPssRaw { hash: hsmkit_backend::HashAlg::Sha224 }, Some(sha2::Sha224::digest(data).to_vec()))
        }
        other => (other.clone(), None),
    }
}

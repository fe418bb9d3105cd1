//! The customer's side of the transfer, written once against the seam: finding the key,
//! narrowing a copy for the provider (`KeyTransferRemote -ModifyAcls`), wrapping it under the
//! provider's KEK (`-Package`, and today's Key Vault, AWS and Google formats) and its public key.
//!
//! Every function takes a [`hsmkit_backend::Session`]; none names a backend. Where a module models a security
//! world ([`hsmkit_backend::Session::world_authority`], the emulator), the narrowing is its Administrator Card Set
//! quorum's, certified; on any other PKCS#11 module it is the security officer's: a
//! `CKA_TRUSTED` KEK and a `CKA_WRAP_WITH_TRUSTED` copy, which the module enforces but which
//! prove nothing to a third party (the package is then *unattested*).

use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use sha2::Digest;

use hsmkit_backend::{
    Attestation, Attr, AttrKind, AttrValue, Backend, Capabilities, EcCurve, Error, ErrorKind, KeyFilter, KeyHandle,
    KeyMaterial, KeyPairSpec, KeyPolicy, KeyType, Mechanism, MechanismKind, ObjectClass, Op, Pin, Result, Session,
    TransferTarget, Usage, UserKind,
};

use crate::byok::{self, TransferBody, TransferPackage};
use crate::formats::{self, Format};
use crate::packages::Verified;

/// The label prefix of a narrowed copy on a PKCS#11 module (`xferacld-<label>`), after the
/// application name nShield's BYOK tool gives narrowed copies (`key_xferacld_<ident>`).
pub const COPY_PREFIX: &str = "xferacld-";

/// A key, as the user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// nShield naming: application and ident (`key_<app>_<ident>` in kmdata). Needs a module
    /// that models a security world.
    Named {
        /// Application (`simple`).
        app: String,
        /// Ident (`contosokey`).
        ident: String,
    },
    /// `CKA_LABEL`.
    Label(String),
    /// `CKA_ID`.
    Id(Vec<u8>),
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRef::Named { app, ident } => write!(f, "{app}/{ident}"),
            KeyRef::Label(l) => write!(f, "label {l:?}"),
            KeyRef::Id(id) => write!(f, "id {}", hex::encode(id)),
        }
    }
}

/// The security officer's credentials.
#[derive(Clone)]
pub enum Officer {
    /// Administrator cards by number, with their PINs (an nShield world's quorum).
    Cards(Vec<(u8, Pin)>),
    /// The security officer's PIN (`C_Login(CKU_SO)`; on the emulator, card PINs 1 to k joined by
    /// commas).
    Pin(Pin),
}

impl std::fmt::Debug for Officer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Officer::Cards(c) => write!(f, "Officer::Cards({:?})", c.iter().map(|(n, _)| n).collect::<Vec<_>>()),
            Officer::Pin(_) => f.write_str("Officer::Pin(<redacted>)"),
        }
    }
}

/// How the narrowing was approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// The world's Administrator Card Set quorum, which certified the copy's ACL.
    Quorum,
    /// The PKCS#11 security officer: the KEK is a `CKA_TRUSTED` key with this label, and the copy
    /// is `CKA_WRAP_WITH_TRUSTED` (unless the module composes `CKM_RSA_AES_KEY_WRAP`, whose
    /// ephemeral AES key cannot be trusted).
    SecurityOfficer {
        /// The trusted KEK's label.
        kek_label: String,
        /// Whether the copy is `CKA_WRAP_WITH_TRUSTED`.
        wrap_with_trusted: bool,
    },
}

/// The narrowed copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed {
    /// The copy's private half.
    pub copy: KeyHandle,
    /// The copy's label.
    pub label: String,
    /// The key's SubjectPublicKeyInfo (the copy is the same key).
    pub public: Vec<u8>,
    /// How it was approved.
    pub approval: Approval,
}

/// A key wrapped for transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// The narrowed copy that was wrapped.
    pub copy: KeyHandle,
    /// Its SubjectPublicKeyInfo.
    pub public: Vec<u8>,
    /// Its size (the modulus', or the curve's).
    pub bits: u32,
    /// The mechanism's output.
    pub wrapped: Vec<u8>,
    /// The rights the copy holds: the quorum-certified ACL, or the PKCS#11 attributes.
    pub rights: Rights,
    /// Whether the module composed `CKM_RSA_AES_KEY_WRAP` from its own mechanisms.
    pub composed: bool,
}

/// The rights a narrowed copy holds, as a package states them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rights {
    /// The nShield ACL, certified by the source world's quorum.
    Attested(Attestation),
    /// The copy's PKCS#11 attributes, as the module reports them (not certified).
    Attributes(serde_json::Value),
}

fn sha256(data: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(data).to_vec()
}

/// The key's identity hash a package names: the hash of its SubjectPublicKeyInfo, under SHA-1
/// where the source world's quorum certificate names keys with SHA-1 (`DLf1024s160mRijndael`),
/// else SHA-256. Any backend computes it from the public key alone.
pub fn identity_hash(public: &[u8], attestation: Option<&Attestation>) -> Vec<u8> {
    match attestation {
        Some(a) if a.key_hash.len() == 20 => sha1::Sha1::digest(public).to_vec(),
        _ => sha256(public),
    }
}

/// The engine on one session of one backend.
#[derive(Debug)]
pub struct Engine<'s> {
    session: &'s dyn Session,
    composed: bool,
}

impl<'s> Engine<'s> {
    /// The engine on `session`, a session of `backend` (whose mechanism list says whether
    /// `CKM_RSA_AES_KEY_WRAP` is native or composed).
    pub fn new(backend: &dyn Backend, session: &'s dyn Session) -> Result<Engine<'s>> {
        Ok(Engine::with_capabilities(&backend.capabilities()?, session))
    }

    /// The engine on `session` of a backend whose capabilities are `caps` (read once by a
    /// caller that makes many engines, such as a bench, instead of once per engine).
    pub fn with_capabilities(caps: &Capabilities, session: &'s dyn Session) -> Engine<'s> {
        let composed = caps.mechanism(MechanismKind::RsaAesKeyWrap).is_none_or(|m| m.composed);
        Engine { session, composed }
    }

    /// The session.
    pub fn session(&self) -> &'s dyn Session {
        self.session
    }

    /// Whether this module composes `CKM_RSA_AES_KEY_WRAP`.
    pub fn composed(&self) -> bool {
        self.composed
    }

    /// Generates a key pair for transfer (`C_GenerateKeyPair`): an RSA token key that signs,
    /// verifies, encrypts and decrypts, or an EC one that signs and verifies, sensitive and
    /// extractable, so that a narrowed copy of it can later be wrapped. Returns its private half
    /// and its SubjectPublicKeyInfo.
    pub fn generate(&self, label: &str, id: Option<&[u8]>, spec: &KeyPairSpec) -> Result<(KeyHandle, Vec<u8>)> {
        if !self.session.find_keys(&KeyFilter { label: Some(label.to_string()), ..KeyFilter::default() })?.is_empty() {
            return Err(Error::new(ErrorKind::AlreadyExists, Op::GenerateKeyPair)
                .detail(format!("the token already has a key labelled {label:?}"))
                .hint("choose another --label"));
        }
        let usage = match spec {
            KeyPairSpec::Rsa { .. } => Usage::SIGN | Usage::VERIFY | Usage::DECRYPT | Usage::ENCRYPT,
            _ => Usage::SIGN | Usage::VERIFY,
        };
        let mut policy = KeyPolicy::new(usage).with_label(label).extractable(true);
        policy.id = id.map(<[u8]>::to_vec);
        let (_, private) = self.session.generate_key_pair(spec, &policy)?;
        Ok((private, self.public_key(private)?))
    }

    /// The private key `key` names; an error names what was not found and why.
    pub fn find(&self, key: &KeyRef) -> Result<KeyHandle> {
        let filter = match key {
            KeyRef::Named { app, ident } => {
                let authority = self.session.world_authority().ok_or_else(|| {
                    Error::new(ErrorKind::ArgumentsBad, Op::FindKeys)
                        .detail(format!("{key}: app/ident names keys of an nShield world, and this module has none"))
                        .hint("name the key by --label or --id on a PKCS#11 module")
                })?;
                return authority.find_named(app, ident);
            }
            KeyRef::Label(l) => KeyFilter { label: Some(l.clone()), ..KeyFilter::default() },
            KeyRef::Id(id) => KeyFilter { id: Some(id.clone()), ..KeyFilter::default() },
        };
        let mut found = self.session.find_keys(&KeyFilter { class: Some(ObjectClass::PrivateKey), ..filter })?;
        if found.len() > 1 && matches!(key, KeyRef::Id(_)) {
            // A narrowed copy keeps its source's CKA_ID: the source is the one that is not a copy.
            let mut sources = Vec::new();
            for h in found.iter().copied() {
                if !self.label(h)?.starts_with(COPY_PREFIX) {
                    sources.push(h);
                }
            }
            found = sources;
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::new(ErrorKind::NotFound, Op::FindKeys)
                .detail(format!("there is no private key with {key} on this token"))
                .hint("check the name, and log in as the user (--pin-file) so private keys are visible")),
            _ => Err(Error::new(ErrorKind::ArgumentsBad, Op::FindKeys)
                .detail(format!("{} private keys have {key}", found.len()))
                .hint("name the key by a CKA_ID or label that is unique")),
        }
    }

    /// The label of a key.
    /// The label of `source`'s narrowed copy on a PKCS#11 token (or a world's key found by label).
    fn copy_label(&self, source: KeyHandle) -> Result<String> {
        Ok(format!("{COPY_PREFIX}{}", self.label(source)?))
    }

    fn label(&self, key: KeyHandle) -> Result<String> {
        match self.session.attributes(key, &[AttrKind::Label])?.pop() {
            Some(Attr::Value(_, AttrValue::Text(t))) => Ok(t),
            _ => Ok(String::new()),
        }
    }

    /// The SubjectPublicKeyInfo (DER) of a key: an RSA key's from its modulus and public exponent
    /// (which every PKCS#11 module reports, unlike `CKA_PUBLIC_KEY_INFO`); an EC private key's from
    /// `CKA_PUBLIC_KEY_INFO`, or else from the public key object with its `CKA_ID` (or its
    /// source's label), whose `CKA_EC_POINT` a PKCS#11 module always has.
    pub fn public_key(&self, key: KeyHandle) -> Result<Vec<u8>> {
        let attrs = self.session.attributes(key, &[AttrKind::KeyType, AttrKind::Modulus, AttrKind::PublicExponent])?;
        let bytes = |a: Option<&Attr>| match a {
            Some(Attr::Value(_, AttrValue::Bytes(b))) => Some(b.clone()),
            _ => None,
        };
        match attrs.first() {
            Some(Attr::Value(_, AttrValue::KeyType(KeyType::Ec | KeyType::EcEdwards))) => {
                return self.ec_public_key(key);
            }
            Some(Attr::Value(_, AttrValue::KeyType(KeyType::Rsa))) => {}
            _ => {
                return Err(Error::new(ErrorKind::KeyTypeInconsistent, Op::GetAttributes)
                    .detail("only RSA and EC keys are transferred"));
            }
        }
        let (Some(n), Some(e)) = (bytes(attrs.get(1)), bytes(attrs.get(2))) else {
            return Err(Error::new(ErrorKind::KeyTypeInconsistent, Op::GetAttributes)
                .detail("the RSA key reports no modulus and public exponent"));
        };
        let public =
            rsa::PublicKey::new(rsa::BoxedUint::from_be_slice_vartime(&n), rsa::BoxedUint::from_be_slice_vartime(&e))
                .map_err(|e| Error::new(ErrorKind::DataInvalid, Op::GetAttributes).detail(e.to_string()))?;
        public
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|e| Error::new(ErrorKind::DataInvalid, Op::GetAttributes).detail(e.to_string()))
    }

    fn ec_public_key(&self, key: KeyHandle) -> Result<Vec<u8>> {
        let s = self.session;
        let attrs = s.attributes(key, &[AttrKind::PublicKeyInfo, AttrKind::EcParams, AttrKind::EcPoint])?;
        if let Some(Attr::Value(_, AttrValue::Bytes(spki))) = attrs.first()
            && EcCurve::parse_spki(spki).is_some()
        {
            return Ok(spki.clone());
        }
        let point_of = |h: KeyHandle| -> Result<Option<Vec<u8>>> {
            let a = s.attributes(h, &[AttrKind::EcParams, AttrKind::EcPoint])?;
            Ok(match (a.first(), a.get(1)) {
                (Some(Attr::Value(_, AttrValue::Bytes(p))), Some(Attr::Value(_, AttrValue::Bytes(q)))) => {
                    EcCurve::from_params(p).and_then(|c| c.point_from_attribute(q).map(|q| c.spki(&q)))
                }
                _ => None,
            })
        };
        // A public key object itself.
        if let Some(spki) = point_of(key)? {
            return Ok(spki);
        }
        // The private key's public half: the public key with its CKA_ID, or with its source's label.
        let policy = match s.attributes(key, &[AttrKind::Policy])?.pop() {
            Some(Attr::Value(_, AttrValue::Policy(p))) => p,
            _ => KeyPolicy::default(),
        };
        let mut filters = Vec::new();
        if let Some(id) = policy.id.filter(|i| !i.is_empty()) {
            filters.push(KeyFilter { id: Some(id), ..KeyFilter::default() });
        }
        if let Some(label) = policy.label.filter(|l| !l.is_empty()) {
            let source = label.strip_prefix(COPY_PREFIX).unwrap_or(&label).to_string();
            filters.push(KeyFilter { label: Some(source), ..KeyFilter::default() });
        }
        let params = match attrs.get(1) {
            Some(Attr::Value(_, AttrValue::Bytes(p))) => p.clone(),
            _ => Vec::new(),
        };
        for f in filters {
            for h in s.find_keys(&KeyFilter { class: Some(ObjectClass::PublicKey), ..f })? {
                if let Some(spki) = point_of(h)?
                    && EcCurve::parse_spki(&spki).is_some_and(|(c, _)| c.params() == params.as_slice())
                {
                    return Ok(spki);
                }
            }
        }
        Err(Error::new(ErrorKind::NotFound, Op::GetAttributes)
            .detail("the EC key's public point is nowhere to be read: no CKA_PUBLIC_KEY_INFO and no public key with its CKA_ID")
            .hint("keep the public key object of the pair on the token (same CKA_ID)"))
    }

    /// The public key of `key` as PEM (`transfer public-key`).
    pub fn public_key_pem(&self, key: &KeyRef) -> Result<String> {
        use base64ct::{Base64, Encoding as _};
        let spki = self.public_key(self.find(key)?)?;
        let b64 = Base64::encode_string(&spki);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Ok(pem)
    }

    /// Narrows a copy of `key` for `target` (`KeyTransferRemote -ModifyAcls`): with the world's
    /// quorum where the module models one, else with the PKCS#11 security officer, then the user
    /// (`user`, when the module needs a login to see private keys). The original is untouched.
    pub fn narrow(
        &self,
        key: &KeyRef,
        target: &TransferTarget,
        officer: &Officer,
        user: Option<&Pin>,
    ) -> Result<Narrowed> {
        let s = self.session;
        if let Some(authority) = s.world_authority() {
            // A world with a user PIN shows its keys to the user only; the cards approve the
            // narrowing.
            if let Some(pin) = user {
                s.login(UserKind::User, pin)?;
            }
            // The cards, whether given one by one or as the officer's PIN (card PINs joined by
            // commas); presented rather than logged in, so the user's login stays.
            let presented = match officer {
                Officer::Cards(cards) => authority.present_cards(cards),
                Officer::Pin(pin) => {
                    use secrecy::ExposeSecret as _;
                    let cards: Vec<(u8, hsmkit_backend::Pin)> = pin
                        .expose_secret()
                        .split(',')
                        .enumerate()
                        .map(|(i, p)| (i as u8 + 1, hsmkit_backend::Pin::from(p.to_owned())))
                        .collect();
                    authority.present_cards(&cards)
                }
            };
            if let Err(e) = presented {
                let _ = s.logout();
                return Err(e);
            }
            let result = (|| {
                let source = self.find(key)?;
                let mut target = target.clone();
                if !matches!(key, KeyRef::Named { .. }) && target.label.is_none() {
                    target.label = Some(self.copy_label(source)?);
                }
                let copy = authority.narrow_for_transfer(source, &target)?;
                Ok(Narrowed {
                    copy,
                    label: self.label(copy)?,
                    public: self.public_key(copy)?,
                    approval: Approval::Quorum,
                })
            })();
            let _ = s.logout();
            return result;
        }
        // A plain PKCS#11 module: the security officer makes the KEK a trusted wrapping key.
        let Officer::Pin(so_pin) = officer else {
            return Err(Error::new(ErrorKind::ArgumentsBad, Op::Login)
                .detail("this module has no Administrator cards; its security officer logs in with a PIN"));
        };
        let kek_label = kek_label(&target.kek_spki);
        s.login(UserKind::SecurityOfficer, so_pin)?;
        let imported = (|| {
            if self.trusted_kek(&target.kek_spki)?.is_none() {
                let mut p = KeyPolicy::new(Usage::WRAP | Usage::ENCRYPT).with_label(kek_label.clone());
                p.trusted = true;
                s.import_key(&KeyMaterial::RsaPublicSpki(target.kek_spki.clone()), &p)?;
            }
            Ok(())
        })();
        let _ = s.logout();
        imported?;
        if let Some(pin) = user {
            s.login(UserKind::User, pin)?;
        }
        let source = self.find(key)?;
        // The copy is always `xferacld-<source label>`, the name `narrowed_copy` looks for.
        let label = self.copy_label(source)?;
        let original = match s.attributes(source, &[AttrKind::Policy])?.pop() {
            Some(Attr::Value(_, AttrValue::Policy(p))) => p,
            _ => {
                return Err(Error::new(ErrorKind::AttributeTypeInvalid, Op::CopyKey)
                    .detail("the key's attributes cannot be read"));
            }
        };
        if !original.extractable {
            return Err(Error::new(ErrorKind::KeyUnextractable, Op::CopyKey)
                .detail(format!("{key} is not extractable (CKA_EXTRACTABLE false): it can never leave the module"))
                .hint("transfer a key made extractable (it can still be made to wrap only under trusted keys)"));
        }
        // A composed RSA-AES wrap goes through an ephemeral AES key that only the security
        // officer could mark trusted, so there the copy cannot also be wrap-with-trusted.
        let wrap_with_trusted = !self.composed;
        let policy = KeyPolicy {
            usage: original.usage & (Usage::SIGN | Usage::DECRYPT),
            extractable: true,
            sensitive: true,
            wrap_with_trusted: wrap_with_trusted || original.wrap_with_trusted,
            trusted: false,
            allowed_mechanisms: original.allowed_mechanisms.clone(),
            token: true,
            label: Some(label.clone()),
            id: original.id.clone(),
            // The narrowed copy is a private object, whatever the source was.
            public_object: false,
        };
        if !policy.usage.contains(Usage::SIGN) {
            return Err(Error::new(ErrorKind::KeyFunctionNotPermitted { missing: "Sign" }, Op::CopyKey)
                .detail(format!("{key} cannot sign (CKA_SIGN false); the package is signed by the key itself")));
        }
        let copy = s.copy_narrowed(source, &policy)?;
        Ok(Narrowed {
            copy,
            label,
            public: self.public_key(copy)?,
            approval: Approval::SecurityOfficer { kek_label, wrap_with_trusted: policy.wrap_with_trusted },
        })
    }

    /// The trusted KEK the security officer imported for `kek_spki`, if any.
    fn trusted_kek(&self, kek_spki: &[u8]) -> Result<Option<KeyHandle>> {
        let found = self.session.find_keys(&KeyFilter {
            class: Some(ObjectClass::PublicKey),
            label: Some(kek_label(kek_spki)),
            ..KeyFilter::default()
        })?;
        for h in found {
            if self.public_key(h).is_ok_and(|p| p == kek_spki) {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    /// The narrowed copy of `key`; an error says how to make it.
    pub fn narrowed_copy(&self, key: &KeyRef, hint: &str) -> Result<KeyHandle> {
        let missing = || {
            Error::new(ErrorKind::KeyUnextractable, Op::WrapKey)
                .detail(format!("{key} has not been narrowed for transfer (there is no narrowed copy)"))
                .hint(hint.to_string())
        };
        if let Some(authority) = self.session.world_authority() {
            let source = match self.find(key) {
                Ok(h) => h,
                Err(e) if e.kind() == &ErrorKind::NotFound => return Err(missing()),
                Err(e) => return Err(e),
            };
            return authority.transfer_copy(source)?.ok_or_else(missing);
        }
        let source = self.find(key)?;
        let label = self.copy_label(source)?;
        match self.find(&KeyRef::Label(label)) {
            Ok(h) => Ok(h),
            Err(e) if e.kind() == &ErrorKind::NotFound => Err(missing()),
            Err(e) => Err(e),
        }
    }

    /// Wraps `copy`, a narrowed copy ([`Self::narrowed_copy`]), under `target`'s KEK with
    /// `mechanism` (after checking, on a world, that the quorum narrowed it for exactly this target).
    pub fn wrap(&self, copy: KeyHandle, target: &TransferTarget, mechanism: &Mechanism) -> Result<Wrapped> {
        self.wrap_public(copy, self.public_key(copy)?, target, mechanism)
    }

    /// [`Self::wrap`] with the copy's public key already read.
    fn wrap_public(
        &self,
        copy: KeyHandle,
        public: Vec<u8>,
        target: &TransferTarget,
        mechanism: &Mechanism,
    ) -> Result<Wrapped> {
        let s = self.session;
        let rights = match s.world_authority() {
            Some(authority) => Rights::Attested(authority.attestation(copy, target)?),
            None => Rights::Attributes(self.attributes_json(copy)?),
        };
        let bits = formats::TransferKey::of_spki(&public).map_or(0, formats::TransferKey::bits);
        let (kek, temporary) = match self.trusted_kek(&target.kek_spki)? {
            Some(h) => (h, false),
            None => {
                let mut policy = KeyPolicy::new(Usage::WRAP | Usage::ENCRYPT).with_label("transfer KEK");
                policy.token = false;
                (s.import_key(&KeyMaterial::RsaPublicSpki(target.kek_spki.clone()), &policy)?, true)
            }
        };
        let wrapped = s.wrap_key(mechanism, kek, copy);
        if temporary {
            // A session object for this wrap only: it does not pile up over many packages.
            let _ = s.destroy(kek);
        }
        let wrapped = wrapped?;
        Ok(Wrapped { copy, public, bits, wrapped, rights, composed: self.composed })
    }

    /// The copy's attributes, as an unattested package states them.
    fn attributes_json(&self, copy: KeyHandle) -> Result<serde_json::Value> {
        let label = self.label(copy)?;
        let p = match self.session.attributes(copy, &[AttrKind::Policy])?.pop() {
            Some(Attr::Value(_, AttrValue::Policy(p))) => p,
            _ => {
                return Err(Error::new(ErrorKind::AttributeTypeInvalid, Op::GetAttributes)
                    .detail("the copy's attributes cannot be read"));
            }
        };
        let mut attrs = serde_json::Map::new();
        attrs.insert("CKA_LABEL".into(), label.into());
        for (usage, _) in Usage::ATTRIBUTES.iter().filter(|(u, _)| Usage::PRIVATE_SIDE.contains(*u)) {
            attrs.insert(usage.attribute_name().into(), p.usage.contains(*usage).into());
        }
        attrs.insert("CKA_EXTRACTABLE".into(), p.extractable.into());
        attrs.insert("CKA_SENSITIVE".into(), p.sensitive.into());
        attrs.insert("CKA_WRAP_WITH_TRUSTED".into(), p.wrap_with_trusted.into());
        attrs.insert("CKA_TOKEN".into(), p.token.into());
        Ok(serde_json::json!({ "pkcs11": attrs }))
    }

    /// `KeyTransferRemote -Package`: the narrowed copy of `key` wrapped under the toolset's KEK
    /// with `CKM_RSA_AES_KEY_WRAP`, in a transfer package for `tenant`, signed by the key itself.
    pub fn package(
        &self,
        key: &KeyRef,
        toolset: &Verified,
        tenant: &str,
        friendly_name: &str,
    ) -> Result<(TransferPackage, Wrapped)> {
        byok::check_tenant(tenant)?;
        byok::file_name(friendly_name)?;
        let target = TransferTarget {
            kek_spki: toolset.kek.body.kek.spki.clone(),
            provider_hkm: Some(toolset.world.body.hkm.clone()),
            label: None,
        };
        let copy =
            self.narrowed_copy(key, "narrow the key first (KeyTransferRemote -ModifyAcls) with the same packages")?;
        let public = self.public_key(copy)?;
        if let Some(formats::TransferKey::Ec(curve)) = formats::TransferKey::of_spki(&public) {
            return Err(Error::new(ErrorKind::KeyTypeInconsistent, Op::WrapKey)
                .detail(format!("the transfer package carries RSA tenant keys; {key} is an EC {} key", curve.name()))
                .hint("export EC keys with --format azure-kv, aws or gcp"));
        }
        let w = self.wrap_public(copy, public, &target, &byok::WRAP)?;
        let (rights, certificate, key_hash) = match &w.rights {
            Rights::Attested(a) => {
                let parse = |t: &str| {
                    serde_json::from_str(t)
                        .map_err(|e| Error::new(ErrorKind::Device, Op::WrapKey).detail(e.to_string()))
                };
                (parse(&a.rights)?, parse(&a.certificate)?, a.key_hash.clone())
            }
            Rights::Attributes(v) => (v.clone(), serde_json::Value::Null, identity_hash(&w.public, None)),
        };
        let body = TransferBody {
            tenant: tenant.to_ascii_lowercase(),
            friendly_name: friendly_name.to_string(),
            kek_spki_sha256: sha256(&toolset.kek.body.kek.spki),
            world_hknso: toolset.world.body.hknso.clone(),
            world_hkm: toolset.world.body.hkm.clone(),
            public: w.public.clone(),
            key_hash,
            acl: rights,
            acl_certificate: certificate,
            wrap_mechanism: "CKM_RSA_AES_KEY_WRAP".into(),
            wrapped: w.wrapped.clone(),
        };
        let package = TransferPackage::sign(body, self.session, w.copy)?;
        Ok((package, w))
    }

    /// Today's formats: the narrowed copy of `key` wrapped for a cloud KMS whose KEK is
    /// `kek_spki`, after that service's rules. Returns the file's bytes and what was wrapped.
    pub fn export(
        &self,
        key: &KeyRef,
        format: Format,
        kek_spki: &[u8],
        kid: Option<&str>,
        generator: &str,
    ) -> Result<(Vec<u8>, Mechanism, Wrapped)> {
        let kek_bits = rsa::PublicKey::from_public_key_der(kek_spki)
            .map(|k| k.n().bit_width())
            .map_err(|_| Error::new(ErrorKind::DataInvalid, Op::WrapKey).detail("the KEK is not an RSA public key"))?;
        let kid = match format {
            Format::AzureKeyVault => Some(kid.ok_or_else(|| {
                Error::new(ErrorKind::ArgumentsBad, Op::WrapKey)
                    .detail("the azure-kv format needs the KEK's key identifier (--kid)")
            })?),
            _ => None,
        };
        let target = TransferTarget { kek_spki: kek_spki.to_vec(), provider_hkm: None, label: None };
        let copy = self
            .narrowed_copy(key, "narrow it first with `hsmkit transfer modify-acls --kek-public-key` and this KEK")?;
        let public = self.public_key(copy)?;
        let transferred = formats::TransferKey::of_spki(&public).ok_or_else(|| {
            Error::new(ErrorKind::KeyTypeInconsistent, Op::WrapKey).detail("only RSA and EC keys are transferred")
        })?;
        let mechanism = format.mechanism_for(kek_bits, transferred)?;
        let w = self.wrap_public(copy, public, &target, &mechanism)?;
        let bytes = match kid {
            Some(kid) => formats::azure_byok(kid, &w.wrapped, generator)?,
            None => w.wrapped.clone(),
        };
        Ok((bytes, mechanism, w))
    }
}

/// The label of the trusted KEK the security officer imports on a PKCS#11 module:
/// `hsmkit-kek-<first 16 hex digits of SHA-256 of its SubjectPublicKeyInfo>`.
pub fn kek_label(kek_spki: &[u8]) -> String {
    format!("hsmkit-kek-{}", &hex::encode(sha256(kek_spki))[..16])
}

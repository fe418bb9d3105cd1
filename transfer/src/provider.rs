//! The provider's side of the transfer, written once against the seam: checking an uploaded
//! package (`Add-AadrmKey`), unwrapping it inside the provider's module, and the tenant's keys.
//!
//! The provider's module is any backend; checking a source world's quorum certificate needs one
//! that models security worlds ([`hsmkit_backend::Session::world_authority`]), as a real provider
//! HSM checks it on import.

use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use sha2::Digest;

use hsmkit_backend::{
    Attestation, Attr, AttrKind, AttrValue, Error, ErrorKind, HashAlg, KeyFilter, KeyHandle, KeyPairSpec, KeyPolicy,
    KeyType, Mechanism, ObjectClass, Op, Result, Session, Usage,
};

use crate::byok::{self, TransferPackage};
use crate::engine::identity_hash;
use crate::tenant::{Added, Store, TenantKey};

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// A GUID-shaped identifier from a hex digest.
pub fn guid(digest_hex: &str) -> String {
    let d = format!("{digest_hex:0<32}");
    format!("{}-{}-{}-{}-{}", &d[..8], &d[8..12], &d[12..16], &d[16..20], &d[20..32])
}

/// The SubjectPublicKeyInfo of `key`, as its module reports it.
fn spki_of(s: &dyn Session, key: KeyHandle) -> Result<Vec<u8>> {
    match s.attributes(key, &[AttrKind::PublicKeyInfo])?.pop() {
        Some(Attr::Value(_, AttrValue::Bytes(b))) if !b.is_empty() => Ok(b),
        _ => Err(Error::new(ErrorKind::AttributeTypeInvalid, Op::GetAttributes).detail("the key has no public key")),
    }
}

/// How a package's narrowing was approved, as the provider established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// The source world's quorum certified the narrowed ACL.
    Certified {
        /// The source world (`hknso`).
        source_world: Vec<u8>,
    },
    /// No certificate (a PKCS#11 token's security officer narrowed it); accepted on request.
    Unattested,
}

/// A package that passed every check of the provider's service.
#[derive(Debug)]
pub struct Checked {
    /// The package.
    pub package: TransferPackage,
    /// SHA-256 of the file (hex): what the store remembers it by.
    pub package_sha256: String,
    /// What the key may do in the provider's module: what its certified ACL allows, sign and
    /// verify only for an unattested package.
    pub usage: Usage,
    /// The provider's KEK (its private half) the package was made for.
    pub kek: KeyHandle,
    /// How the narrowing was approved.
    pub provenance: Provenance,
}

/// Checks an uploaded package before anything is stored: its form and signature, the tenant,
/// the provider's world and KEK, the identity hash, and the source world's quorum certificate
/// over the narrowed ACL (a package without one only with `allow_unattested`).
pub fn check(session: &dyn Session, tenant: &str, name: &str, bytes: &[u8], allow_unattested: bool) -> Result<Checked> {
    let op = Op::UnwrapKey;
    let package = TransferPackage::from_bytes(name, bytes)?;
    let b = &package.body;
    let refuse = |why: String, hint: &str| {
        Err(Error::new(ErrorKind::DataInvalid, op).detail(format!("{name}: {why}")).hint(hint.to_string()))
    };
    if b.tenant != tenant.to_ascii_lowercase() {
        return refuse(
            format!("it is for tenant {:?}, not {}", b.tenant, tenant.to_ascii_lowercase()),
            "upload it to its own tenant",
        );
    }
    let authority = session.world_authority().ok_or_else(|| {
        Error::new(ErrorKind::Unsupported, op)
            .detail("the provider's module models no security world; it cannot check packages")
    })?;
    let world = authority.world()?;
    if b.world_hknso != world.hknso || b.world_hkm != world.hkm {
        return refuse(
            "it is bound to another security world than this provider's".into(),
            "package the key with this provider's toolset",
        );
    }
    let kek = provider_kek(session, &b.kek_spki_sha256)?.ok_or_else(|| {
        Error::new(ErrorKind::DataInvalid, op)
            .detail(format!("{name}: it was made for a KEK this provider does not have"))
            .hint("package the key with this provider's toolset")
    })?;
    let kek_spki = spki_of(session, kek)?;
    let (usage, provenance) = if b.acl_certificate.is_null() {
        if b.key_hash != identity_hash(&b.public, None) {
            return refuse("its key hash is not the hash of its public key".into(), "make the package again");
        }
        if !allow_unattested {
            return refuse(
                "it carries no quorum certificate for its narrowed rights (a PKCS#11 token's security officer narrowed it)".into(),
                "accept such packages explicitly with --allow-unattested",
            );
        }
        (Usage::SIGN | Usage::VERIFY, Provenance::Unattested)
    } else {
        let attestation = Attestation {
            key_hash: b.key_hash.clone(),
            rights: b.acl.to_string(),
            certificate: b.acl_certificate.to_string(),
        };
        if b.key_hash != identity_hash(&b.public, Some(&attestation)) {
            return refuse(
                "its ACL certificate is for another key".into(),
                "make the package again from the narrowed key",
            );
        }
        let attested = authority.check_attestation(&b.public, &attestation, &kek_spki).map_err(|e| {
            Error::new(e.kind().clone(), op)
                .detail(format!("{name}: {}", e.detail_text().unwrap_or("")))
                .hint(e.hint_text().unwrap_or("").to_string())
        })?;
        (attested.usage, Provenance::Certified { source_world: attested.source_world })
    };
    Ok(Checked { package_sha256: sha256_hex(bytes), package, usage, kek, provenance })
}

/// The provider's KEK whose SubjectPublicKeyInfo hashes (SHA-256) to `spki_sha256`.
fn provider_kek(session: &dyn Session, spki_sha256: &[u8]) -> Result<Option<KeyHandle>> {
    let keys = session.find_keys(&KeyFilter { class: Some(ObjectClass::PrivateKey), ..KeyFilter::default() })?;
    for k in keys {
        if spki_of(session, k).is_ok_and(|p| sha2::Sha256::digest(&p).as_slice() == spki_sha256) {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

/// Refuses a package that was added before, or whose key was (packaged again): nothing would
/// change. A service asks this before it asks the user to confirm.
pub fn refuse_if_added(store: &Store, checked: &Checked, name: &str) -> Result<()> {
    match store.added_as(&checked.package_sha256, &sha256_hex(&checked.package.body.public))? {
        Some(id) => Err(already_added(name, &id)),
        None => Ok(()),
    }
}

fn already_added(name: &str, id: &str) -> Error {
    Error::new(ErrorKind::AlreadyExists, Op::UnwrapKey)
        .detail(format!("{name} was already added, as key {id}; nothing changed"))
        .hint("list the keys with `hsmkit tenant … keys`")
}

/// A key added to a tenant: its identifier, and the key it archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The new Active key's identifier.
    pub identifier: String,
    /// The previous Active key, now Archived.
    pub archived: Option<String>,
}

/// Unwraps a checked package inside the provider's module as the tenant's new Active key (the
/// previous Active key is Archived), in one store transaction. The same package, or the same key
/// packaged again, changes nothing and says so.
pub fn import(
    session: &dyn Session,
    store: &mut Store,
    checked: &Checked,
    name: &str,
    now_ms: u64,
) -> Result<Imported> {
    let op = Op::UnwrapKey;
    let b = &checked.package.body;
    let fingerprint = sha256_hex(&b.public);
    refuse_if_added(store, checked, name)?;
    let identifier = guid(&checked.package_sha256);
    let policy = KeyPolicy::new(checked.usage).with_label(identifier.clone());
    // A key left by an attempt that crashed between the unwrap and the database's commit (the
    // package was not added: `refuse_if_added` passed) is the same key: reused, not made again.
    let strays = session.find_keys(&KeyFilter {
        class: Some(ObjectClass::PrivateKey),
        label: Some(identifier.clone()),
        ..KeyFilter::default()
    })?;
    let mut reused = None;
    for stray in strays {
        if reused.is_none() && spki_of(session, stray).is_ok_and(|p| p == b.public) {
            reused = Some(stray);
        } else {
            session.destroy(stray)?;
        }
    }
    let key = match reused {
        Some(k) => k,
        None => session.unwrap_key(&byok::WRAP, checked.kek, &b.wrapped, KeyType::Rsa, &policy)?,
    };
    let result = (|| {
        if spki_of(session, key)? != b.public {
            return Err(Error::new(ErrorKind::DataInvalid, op)
                .detail(format!("{name}: the wrapped key is not the key the package names"))
                .hint("make the package again"));
        }
        let row = TenantKey {
            identifier: identifier.clone(),
            key_type: crate::tenant::CUSTOMER_MANAGED.into(),
            status: "Active".into(),
            created_ms: now_ms,
            fingerprint: fingerprint.clone(),
            module_key: format!("label {identifier}"),
        };
        match store.add(&row, &checked.package_sha256)? {
            Added::Added { identifier, archived } => Ok(Imported { identifier, archived }),
            Added::AlreadyAdded(id) => Err(already_added(name, &id)),
        }
    })();
    if result.is_err() {
        let _ = session.destroy(key);
    }
    result
}

/// Whether the provider's module holds keys of tenants (their initial keys, `tenant-…`, or keys
/// they uploaded, named by the GUID of their package): then a missing tenant database was lost,
/// not never made.
pub fn module_holds_tenant_keys(session: &dyn Session) -> Result<bool> {
    let keys = session.find_keys(&KeyFilter { class: Some(ObjectClass::PrivateKey), ..KeyFilter::default() })?;
    for k in keys {
        if let Some(hsmkit_backend::Attr::Value(_, hsmkit_backend::AttrValue::Text(label))) =
            session.attributes(k, &[hsmkit_backend::AttrKind::Label])?.pop()
        {
            let guid_like = label.len() == 36 && label.bytes().filter(|b| *b == b'-').count() == 4;
            if label.starts_with("tenant-") || guid_like {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The provider's initial key for a new tenant (identifier, fingerprint, key name in the module),
/// made in its module; a key left by an earlier attempt whose database write failed is reused.
pub fn initial_key(session: &dyn Session, tenant: &str) -> Result<(String, String, String)> {
    let tag: String = tenant.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_ascii_lowercase();
    let label = format!("tenant-{tag}-initial");
    let existing = session.find_keys(&KeyFilter {
        class: Some(ObjectClass::PrivateKey),
        label: Some(label.clone()),
        ..KeyFilter::default()
    })?;
    let key = match existing.first() {
        Some(k) => *k,
        None => {
            let policy =
                KeyPolicy::new(Usage::SIGN | Usage::VERIFY | Usage::DECRYPT | Usage::ENCRYPT).with_label(label.clone());
            session.generate_key_pair(&KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, &policy)?.1
        }
    };
    let spki = spki_of(session, key)?;
    Ok((guid(&sha256_hex(&spki)), sha256_hex(&spki), format!("label {label}")))
}

/// The ceremony's last check: a signature made by the tenant's Active key in the provider's
/// module verifies under `original_spki`, the public key of the key the customer generated.
/// Returns the Active key's identifier.
pub fn active_key_signs_as(session: &dyn Session, store: &Store, tenant: &str, original_spki: &[u8]) -> Result<String> {
    let active = store.keys()?.into_iter().find(|k| k.status == "Active").ok_or_else(|| {
        Error::new(ErrorKind::NotFound, Op::Info).detail(format!("tenant {tenant} has no Active key"))
    })?;
    let filter = KeyFilter {
        class: Some(ObjectClass::PrivateKey),
        label: Some(active.identifier.clone()),
        ..KeyFilter::default()
    };
    let key = *session.find_keys(&filter)?.first().ok_or_else(|| {
        Error::new(ErrorKind::NotFound, Op::FindKeys)
            .detail(format!("the provider's module has no key {}", active.identifier))
    })?;
    let message = b"hsmkit ceremony: signed by the tenant's Active key";
    let sig = session.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, key, message)?;
    let public = rsa::PublicKey::from_public_key_der(original_spki).map_err(|_| {
        Error::new(ErrorKind::DataInvalid, Op::Verify).detail("the original key's public half is malformed")
    })?;
    let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice())
        .map_err(|_| Error::new(ErrorKind::SignatureInvalid, Op::Verify))?;
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public).verify(message, &sig).map_err(|_| {
        Error::new(ErrorKind::SignatureInvalid, Op::Verify)
            .detail("the tenant's Active key does not sign as the key generated at the start")
    })?;
    Ok(active.identifier)
}

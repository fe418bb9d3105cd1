//! The provider's service, emulated: the tenant's keys (`Add-AadrmKey`, `Get-AadrmKeys`,
//! `Set-AadrmKeyProperties -Active`), unwrapped inside the provider's module.

use std::io::BufRead;
use std::path::PathBuf;

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, Backend, Error, ErrorKind, KeyPolicy, KeyType, Op, Result, Session, SessionMode, Usage,
};
use hsmkit_emulator::acl::Acl;
use hsmkit_emulator::keyblob::AclCertificate;
use hsmkit_emulator::{Config, Emulator, SLOT};
use hsmkit_transfer::byok::{self, TransferPackage};
use hsmkit_transfer::tenant::{Added, Store, TenantKey};

use crate::Global;
use crate::commands::hex;

/// `tenant` options.
#[derive(Debug, clap::Args)]
pub struct TenantArgs {
    /// The provider's folder (made by `vendor init`).
    #[arg(long, value_name = "DIR")]
    pub(crate) provider: PathBuf,
    /// The tenant id (BPOSId GUID).
    #[arg(long)]
    pub(crate) tenant: String,
    #[command(subcommand)]
    pub(crate) command: TenantCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TenantCommand {
    /// Upload a transfer package (`Add-AadrmKey -KeyFile …`): it becomes the Active key.
    AddKey {
        /// The `.byok` package.
        #[arg(long = "key-file")]
        key_file: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Accept a package from a PKCS#11 token, which carries no quorum certificate for its
        /// narrowed attributes (only the key's own signature).
        #[arg(long)]
        allow_unattested: bool,
    },
    /// List the tenant's keys (`Get-AadrmKeys`).
    Keys,
    /// Make a key the Active one (`Set-AadrmKeyProperties -Active $true`).
    SetActive {
        /// The key identifier.
        #[arg(long)]
        identifier: String,
    },
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}

/// A GUID-shaped identifier from a digest.
fn guid(digest_hex: &str) -> String {
    let d = &digest_hex[..32];
    format!("{}-{}-{}-{}-{}", &d[..8], &d[8..12], &d[12..16], &d[16..20], &d[20..32])
}

fn provider(g: &Global, dir: &std::path::Path) -> Result<Emulator> {
    let kmdata = dir.join("kmdata");
    if !kmdata.is_dir() {
        return Err(Error::new(ErrorKind::NotFound, Op::Initialize)
            .detail(format!("{} is not a provider folder (no kmdata)", dir.display()))
            .hint("make one with `hsmkit vendor init --region NA --dir DIR`"));
    }
    let mut c = Config::beside(&kmdata);
    c.seed = g.seed.map(|s| s.wrapping_add(0x7e4a_0001));
    if g.seed.is_some() {
        c.clock = hsmkit_emulator::rng::Clock::Fixed(crate::env::SEEDED_TIME_MS);
    }
    Emulator::open(c)
}

fn spki_of(s: &dyn Session, h: hsmkit_backend::KeyHandle) -> Result<Vec<u8>> {
    match s.attributes(h, &[AttrKind::PublicKeyInfo])?.pop() {
        Some(Attr::Value(_, AttrValue::Bytes(b))) => Ok(b),
        _ => Err(Error::new(ErrorKind::AttributeTypeInvalid, Op::GetAttributes).detail("the key has no public key")),
    }
}

pub fn run(g: &Global, a: &TenantArgs) -> Result<()> {
    byok::check_tenant(&a.tenant)?;
    let emu = provider(g, &a.provider)?;
    let now = emu.config().clock.now_ms();
    let tenant_tag: String =
        a.tenant.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_ascii_lowercase();
    // An upload is checked before the store is opened: a refused package changes nothing,
    // not even by creating the tenant.
    let checked = match &a.command {
        TenantCommand::AddKey { key_file, allow_unattested, .. } => {
            Some(check_package(&emu, &a.tenant, key_file, *allow_unattested)?)
        }
        _ => None,
    };
    let mut store = Store::open(&a.provider.join("tenants.sqlite"), &a.tenant, now, || {
        // The provider's initial key for the tenant, made in its module.
        let ident = format!("tenant-{tenant_tag}-initial");
        // An initial key left by an earlier attempt whose database write failed is reused.
        let existing = emu.key_path("tenant", &ident);
        let h = if existing.exists() {
            hsmkit_emulator::keyblob::KeyFile::read(&existing)?.header
        } else {
            emu.generate_rsa("tenant", &ident, &ident, 2048, 65537)?
        };
        Ok((guid(&sha256_hex(&h.public)), sha256_hex(&h.public), format!("tenant/{ident}")))
    })?;
    match &a.command {
        TenantCommand::Keys => {
            println!(
                "{:<38} {:<24} {:<9} {:<20} PublicKeyFingerprint(SHA-256)",
                "KeyIdentifier", "KeyType", "Status", "CreationTime"
            );
            for k in store.keys()? {
                println!(
                    "{:<38} {:<24} {:<9} {:<20} {}",
                    k.identifier,
                    k.key_type,
                    k.status,
                    crate::show::utc(k.created_ms),
                    k.fingerprint
                );
            }
            Ok(())
        }
        TenantCommand::SetActive { identifier } => {
            store.set_active(identifier)?;
            println!("Key {identifier} is now the Active key of tenant {}.", a.tenant.to_ascii_lowercase());
            Ok(())
        }
        TenantCommand::AddKey { yes, .. } => match checked {
            Some(c) => add_key(&emu, &mut store, &a.tenant, c, *yes, now),
            None => Err(Error::new(ErrorKind::Device, Op::UnwrapKey).detail("the package was not checked")),
        },
    }
}

/// A package that passed every check of the provider's service.
struct Checked {
    /// What the key may do in the provider's module: what its certified ACL allows (sign and
    /// verify only for an unattested package).
    usage: Usage,
    name: String,
    bytes: Vec<u8>,
    package: TransferPackage,
    kek_ident: String,
    source_world: Vec<u8>,
}

/// Checks a package before anything is stored: form and signature, tenant, world, KEK, the
/// source world's quorum certificate and the narrowed ACL.
fn check_package(emu: &Emulator, tenant: &str, key_file: &std::path::Path, allow_unattested: bool) -> Result<Checked> {
    let op = Op::UnwrapKey;
    let bytes = std::fs::read(key_file)
        .map_err(|e| Error::new(ErrorKind::NotFound, op).detail(format!("cannot read {}: {e}", key_file.display())))?;
    let name = key_file.display().to_string();
    let package = TransferPackage::from_bytes(&name, &bytes)?;
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
    let world = emu.require_world(op)?;
    if b.world_hknso != world.hknso() || b.world_hkm != world.hkm() {
        return refuse(
            "it is bound to another security world than this provider's".into(),
            "package the key with this provider's toolset",
        );
    }
    // The provider's KEK the package was made for.
    let keks: Vec<_> = emu
        .list_keys()?
        .into_iter()
        .filter(|k| k.header.appname == "hsmkit" && k.header.ident.starts_with("kek-"))
        .filter(|k| sha256_hex(&k.header.public) == hex(&b.kek_spki_sha256))
        .collect();
    let Some(kek) = keks.first() else {
        return refuse(
            "it was made for a KEK this provider does not have".into(),
            "package the key with this provider's toolset",
        );
    };
    if b.acl_certificate.is_null() {
        // From a PKCS#11 token: the narrowed attributes are the customer's word, signed by the key.
        if !allow_unattested {
            return refuse(
                "it comes from a PKCS#11 token and carries no quorum certificate for its narrowed attributes".into(),
                "accept such packages explicitly with --allow-unattested",
            );
        }
        println!("{name}: from a PKCS#11 token; narrowed attributes (not certified): {}", b.acl);
        let usage = Usage::SIGN | Usage::VERIFY;
        return Ok(Checked {
            usage,
            name,
            bytes,
            kek_ident: kek.header.ident.clone(),
            source_world: Vec::new(),
            package,
        });
    }
    // The source world's quorum approved exactly this narrowed ACL for this key.
    let acl: Acl = serde_json::from_value(b.acl.clone())
        .map_err(|_| Error::new(ErrorKind::DataInvalid, op).detail(format!("{name}: its ACL is malformed")))?;
    let cert: AclCertificate = serde_json::from_value(b.acl_certificate.clone()).map_err(|_| {
        Error::new(ErrorKind::DataInvalid, op).detail(format!("{name}: its ACL certificate is malformed"))
    })?;
    // The certificate names a key by its hash: it must be this package's key.
    if b.key_hash != cert.cipher_suite.hash(&[&b.public]) {
        return refuse("its ACL certificate is for another key".into(), "make the package again from the narrowed key");
    }
    let Some(source_world) = cert.verify(&b.key_hash, &acl) else {
        return refuse("its ACL certificate does not verify".into(), "make the package again from the narrowed key");
    };
    if !acl.is_narrowed_for(world.hkm(), &cert.cipher_suite.hash(&[&kek.header.public])) {
        return refuse(
            "the key's ACL is not narrowed for this provider's world and KEK".into(),
            "narrow the key with -ModifyAcls and this toolset",
        );
    }
    let usage = acl.policy().usage & (Usage::SIGN | Usage::VERIFY | Usage::DECRYPT | Usage::ENCRYPT);
    Ok(Checked { usage, name, bytes, kek_ident: kek.header.ident.clone(), source_world, package })
}

fn add_key(emu: &Emulator, store: &mut Store, tenant: &str, checked: Checked, yes: bool, now: u64) -> Result<()> {
    let op = Op::UnwrapKey;
    let Checked { usage, name, bytes, package, kek_ident, source_world } = checked;
    let b = &package.body;
    let refuse = |why: String, hint: &str| {
        Err(Error::new(ErrorKind::DataInvalid, op).detail(format!("{name}: {why}")).hint(hint.to_string()))
    };
    let package_sha = sha256_hex(&bytes);
    if let Some(id) = store.added_as(&package_sha, &sha256_hex(&b.public))? {
        return Err(Error::new(ErrorKind::AlreadyExists, op)
            .detail(format!("{name} was already added, as key {id}; nothing changed"))
            .hint("list the keys with `hsmkit tenant … keys`"));
    }
    if !yes {
        println!("Adding this key makes it tenant {tenant}'s Active key; this cannot be undone. Continue? [y/N]");
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::new(ErrorKind::Io, op).detail(e.to_string()))?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Err(Error::new(ErrorKind::ActionProhibited, op)
                .detail("not confirmed; nothing changed")
                .hint("answer y, or give --yes"));
        }
    }
    let identifier = guid(&package_sha);
    let kek_handles = emu.load_key("hsmkit", &kek_ident)?;
    let session = emu.open_session(SLOT, SessionMode::ReadWrite)?;
    let policy = KeyPolicy::new(usage).with_label(identifier.clone());
    let key = session.unwrap_key(
        &byok::WRAP,
        crate::commands::private_handle(&kek_handles)?,
        &b.wrapped,
        KeyType::Rsa,
        &policy,
    )?;
    let cleanup = |e: Error| {
        let _ = session.destroy(key);
        e
    };
    if spki_of(session.as_ref(), key).map_err(cleanup)? != b.public {
        let _ = session.destroy(key);
        return refuse("the wrapped key is not the key the package names".into(), "make the package again");
    }
    let row = TenantKey {
        identifier: identifier.clone(),
        key_type: hsmkit_transfer::tenant::CUSTOMER_MANAGED.into(),
        status: "Active".into(),
        created_ms: now,
        fingerprint: sha256_hex(&b.public),
        module_key: format!("label {identifier}"),
    };
    match store.add(&row, &package_sha).map_err(cleanup)? {
        Added::Added { archived, .. } => {
            println!(
                "Key {identifier} (from {:?}, source world {}) is the Active key",
                b.friendly_name,
                hex(&source_world)
            );
            if let Some(old) = archived {
                println!("Key {old} is now Archived");
            }
            println!("The Rights management service successfully added the key.");
            Ok(())
        }
        Added::AlreadyAdded(id) => {
            let _ = session.destroy(key);
            Err(Error::new(ErrorKind::AlreadyExists, op)
                .detail(format!("{name} was already added, as key {id}; nothing changed")))
        }
    }
}

/// The ceremony's last check: a signature made by the tenant's Active key in the provider's
/// module verifies under `original_spki`, the public key of the key the customer generated.
pub fn check_active_key(
    g: &Global,
    provider_dir: &std::path::Path,
    tenant: &str,
    original_spki: &[u8],
) -> Result<String> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let emu = provider(g, provider_dir)?;
    let store = Store::open(&provider_dir.join("tenants.sqlite"), tenant, 0, || {
        Err(Error::new(ErrorKind::NotFound, Op::Info).detail(format!("tenant {tenant} has no keys")))
    })?;
    let active = store.keys()?.into_iter().find(|k| k.status == "Active").ok_or_else(|| {
        Error::new(ErrorKind::NotFound, Op::Info).detail(format!("tenant {tenant} has no Active key"))
    })?;
    let session = emu.open_session(SLOT, SessionMode::ReadOnly)?;
    let filter = hsmkit_backend::KeyFilter {
        class: Some(hsmkit_backend::ObjectClass::PrivateKey),
        label: Some(active.identifier.clone()),
        ..Default::default()
    };
    let key = *session.find_keys(&filter)?.first().ok_or_else(|| {
        Error::new(ErrorKind::NotFound, Op::FindKeys)
            .detail(format!("the provider's module has no key {}", active.identifier))
    })?;
    let message = b"hsmkit ceremony: signed by the tenant's Active key";
    let sig = session.sign(
        &hsmkit_backend::Mechanism::RsaPkcs1v15 { hash: hsmkit_backend::HashAlg::Sha256 },
        key,
        message,
    )?;
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

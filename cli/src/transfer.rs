//! The customer's side of the transfer: `KeyTransferRemote -ModifyAcls` (and its conventional
//! spelling `transfer modify-acls`).

use std::path::PathBuf;

use hsmkit_backend::{Error, ErrorKind, Op, Result};

use crate::{Global, env, quorum, vendor};

/// `transfer modify-acls` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ModifyAclsArgs {
    /// The key's application name.
    #[arg(long = "app", default_value = "simple")]
    pub app: String,
    /// The key's ident.
    #[arg(long = "ident")]
    pub ident: String,
    /// The provider's KEK package.
    #[arg(long = "kek-package")]
    pub kek_package: PathBuf,
    /// The provider's Security World package.
    #[arg(long = "world-package")]
    pub world_package: PathBuf,
    /// The numbers of the Administrator cards to present (default: the first K).
    #[arg(long = "card", value_name = "N")]
    pub card: Vec<u8>,
    /// The root hash to pin (else HSMKIT_ROOT_HASH, else the toolset's verifykeypackage.pin).
    #[arg(long)]
    pub root_hash: Option<String>,
}

/// `KeyTransferRemote` takes its arguments PowerShell-style: `-ModifyAcls -KeyAppName simple …`.
#[derive(Debug, clap::Args)]
pub struct KeyTransferRemoteArgs {
    /// `-ModifyAcls -KeyAppName APP -KeyIdentifier IDENT -ExchangeKeyPackage FILE -NewSecurityWorldPackage FILE`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    args: Vec<String>,
}

const VALUED: &[&str] = &[
    "keyappname",
    "keyidentifier",
    "exchangekeypackage",
    "newsecurityworldpackage",
    "tenantbposid",
    "keyfriendlyname",
];
const SWITCHES: &[&str] = &["modifyacls", "package"];

fn bad(what: String) -> Error {
    Error::new(ErrorKind::ArgumentsBad, Op::ChangeAcl).detail(what).hint(
        "write `hsmkit KeyTransferRemote -ModifyAcls -KeyAppName simple -KeyIdentifier IDENT -ExchangeKeyPackage BYOK-KEK-pkg-NA-1 -NewSecurityWorldPackage BYOK-SecurityWorld-pkg-NA-1`",
    )
}

pub fn key_transfer_remote(g: &Global, a: &KeyTransferRemoteArgs) -> Result<()> {
    let mut values = std::collections::BTreeMap::new();
    let mut switches = Vec::new();
    let mut it = a.args.iter();
    while let Some(arg) = it.next() {
        let name = arg.trim_start_matches(['-', '\u{2013}']).to_ascii_lowercase();
        if SWITCHES.contains(&name.as_str()) {
            switches.push(name);
        } else if VALUED.contains(&name.as_str()) {
            let v = it.next().ok_or_else(|| bad(format!("{arg} needs a value")))?;
            values.insert(name, v.clone());
        } else {
            return Err(bad(format!("unknown argument '{arg}'")));
        }
    }
    let get = |k: &str| values.get(k).cloned();
    let need = |k: &str, shown: &str| get(k).ok_or_else(|| bad(format!("-{shown} is missing")));
    match switches.as_slice() {
        [s] if s == "modifyacls" => modify_acls(
            g,
            &ModifyAclsArgs {
                app: get("keyappname").unwrap_or_else(|| "simple".into()),
                ident: need("keyidentifier", "KeyIdentifier")?,
                kek_package: need("exchangekeypackage", "ExchangeKeyPackage")?.into(),
                world_package: need("newsecurityworldpackage", "NewSecurityWorldPackage")?.into(),
                card: Vec::new(),
                root_hash: None,
            },
        ),
        [s] if s == "package" => package(
            g,
            &PackageArgs {
                ident: need("keyidentifier", "KeyIdentifier")?,
                kek_package: need("exchangekeypackage", "ExchangeKeyPackage")?.into(),
                world_package: need("newsecurityworldpackage", "NewSecurityWorldPackage")?.into(),
                tenant: need("tenantbposid", "TenantBposId")?,
                friendly_name: need("keyfriendlyname", "KeyFriendlyName")?,
                out: PathBuf::from("."),
                root_hash: None,
            },
        ),
        _ => Err(bad("give exactly one of -ModifyAcls and -Package".into())),
    }
}

/// `transfer package` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {
    /// The narrowed key's ident (the key `xferacld/<ident>`).
    #[arg(long = "ident")]
    pub ident: String,
    /// The provider's KEK package.
    #[arg(long = "kek-package")]
    pub kek_package: PathBuf,
    /// The provider's Security World package.
    #[arg(long = "world-package")]
    pub world_package: PathBuf,
    /// The tenant id (the BPOSId GUID).
    #[arg(long = "tenant")]
    pub tenant: String,
    /// The friendly name: the package is `TransferPackage-<name>.byok`.
    #[arg(long = "friendly-name")]
    pub friendly_name: String,
    /// Where the package is written.
    #[arg(long = "out", default_value = ".")]
    pub out: PathBuf,
    /// The root hash to pin (else HSMKIT_ROOT_HASH, else the toolset's verifykeypackage.pin).
    #[arg(long)]
    pub root_hash: Option<String>,
}

/// Packages a narrowed key for the provider: `TransferPackage-<name>.byok`.
pub fn package(g: &Global, a: &PackageArgs) -> Result<()> {
    use hsmkit_backend::{Backend, KeyMaterial, KeyPolicy, SessionMode, Usage};
    use hsmkit_transfer::byok::{self, TransferBody, TransferPackage};
    byok::check_tenant(&a.tenant)?;
    let path = a.out.join(byok::file_name(&a.friendly_name)?);
    if path.exists() {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::WrapKey)
            .detail(format!("{} already exists", path.display()))
            .hint("choose another -KeyFriendlyName, or move the existing package away"));
    }
    let verified = vendor::verified_toolset(&a.kek_package, &a.world_package, a.root_hash.as_deref())?;
    let emu = env::emulator(g)?;
    let world = emu.require_world(Op::WrapKey)?;
    let key = emu.load_named("xferacld", &a.ident).map_err(|e| {
        if e.kind() == &ErrorKind::NotFound {
            Error::new(ErrorKind::KeyUnextractable, Op::WrapKey)
                .detail(format!(
                    "the key {} has not been narrowed for transfer (there is no xferacld/{})",
                    a.ident, a.ident
                ))
                .hint("run `hsmkit KeyTransferRemote -ModifyAcls …` with the same packages first")
        } else {
            e
        }
    })?;
    let spki = &verified.kek.body.kek.spki;
    let kek_hash = world.suite().hash(&[spki]);
    if !key.header.acl.is_narrowed_for(&verified.world.body.hkm, &kek_hash) {
        return Err(Error::new(ErrorKind::KeyNotWrappable, Op::WrapKey)
            .detail(format!("xferacld/{} is not narrowed for this KEK and provider world", a.ident))
            .hint("narrow the key again with -ModifyAcls and these packages"));
    }
    let Some(certificate) = key.header.acl_certificate.clone() else {
        return Err(Error::new(ErrorKind::KeyNotWrappable, Op::WrapKey)
            .detail("the narrowed key carries no quorum certificate for its ACL")
            .hint("narrow the key with -ModifyAcls (which asks for the quorum)"));
    };
    let handles = emu.load_key("xferacld", &a.ident)?;
    let session = emu.open_session(hsmkit_emulator::SLOT, SessionMode::ReadWrite)?;
    let mut kek_policy = KeyPolicy::new(Usage::WRAP | Usage::ENCRYPT).with_label("BYOK KEK");
    kek_policy.token = false;
    let kek = session.import_key(&KeyMaterial::RsaPublicSpki(spki.clone()), &kek_policy)?;
    let wrapped = session.wrap_key(&byok::WRAP, kek, handles[0])?;
    let to_value = |v: serde_json::Result<serde_json::Value>| {
        v.map_err(|e| Error::new(ErrorKind::Device, Op::WrapKey).detail(e.to_string()))
    };
    let body = TransferBody {
        tenant: a.tenant.to_ascii_lowercase(),
        friendly_name: a.friendly_name.clone(),
        kek_spki_sha256: sha256(spki),
        world_hknso: verified.world.body.hknso.clone(),
        world_hkm: verified.world.body.hkm.clone(),
        public: key.header.public.clone(),
        key_hash: key.header.hash.clone(),
        acl: to_value(serde_json::to_value(&key.header.acl))?,
        acl_certificate: to_value(serde_json::to_value(&certificate))?,
        wrap_mechanism: "CKM_RSA_AES_KEY_WRAP".into(),
        wrapped,
    };
    let package = TransferPackage::sign(body, session.as_ref(), handles[0])?;
    hsmkit_emulator::fsio::write_atomic_new(&path, &package.to_bytes()?, &hsmkit_emulator::fsio::FaultHook::default())
        .map_err(|e| Error::new(ErrorKind::Io, Op::WrapKey).detail(format!("cannot write {}: {e}", path.display())))?;
    println!("Key {} wrapped under the provider's KEK with CKM_RSA_AES_KEY_WRAP (OAEP SHA-1, AES-256 KWP)", a.ident);
    println!("Transfer package: {}", path.display());
    println!("Keep it safe: it holds your private key, wrapped for the provider's HSMs only.");
    println!("Result: SUCCESS");
    Ok(())
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// Narrows a key for transfer: a copy `key_xferacld_<ident>` whose ACL cannot recover the key or
/// change the ACL, is bound to the provider's world, and exports only under the provider's KEK.
pub fn modify_acls(g: &Global, a: &ModifyAclsArgs) -> Result<()> {
    let verified = vendor::verified_toolset(&a.kek_package, &a.world_package, a.root_hash.as_deref())?;
    let emu = env::emulator(g)?;
    let world = emu.require_world(Op::ChangeAcl)?;
    let key = emu.load_named(&a.app, &a.ident)?;
    // The KEK as this module will know it once imported: the suite hash of its public key.
    let kek_hash = world.suite().hash(&[&verified.kek.body.kek.spki]);
    let narrowed = key.header.acl.narrowed_for_transfer(&verified.world.body.hkm, &kek_hash);
    println!(
        "Narrowing {}/{} for the provider world {}",
        a.app,
        a.ident,
        crate::commands::hex(&verified.world.body.hknso)
    );
    let auth = quorum::collect(g, &emu, &a.card)?;
    let (path, header) = emu.copy_with_acl((&a.app, &a.ident), ("xferacld", &a.ident), narrowed, Some(&auth))?;
    println!("Copy with reduced permissions: {}", path.display());
    println!(
        " no recovery, no ACL changes, blobs only under the provider's module key, export only under KEK {}",
        crate::commands::hex(&kek_hash)
    );
    println!(" key hash {} (the same key as {}/{})", crate::commands::hex(&header.hash), a.app, a.ident);
    println!("Result: SUCCESS");
    Ok(())
}

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
    #[arg(long = "kek-package", requires = "world_package", conflicts_with = "kek_public_key")]
    pub kek_package: Option<PathBuf>,
    /// The provider's Security World package.
    #[arg(long = "world-package", requires = "kek_package")]
    pub world_package: Option<PathBuf>,
    /// Or: the KEK's public key as PEM (a cloud KMS that gives its KEK as a public key).
    #[arg(long = "kek-public-key", value_name = "PEM")]
    pub kek_public_key: Option<PathBuf>,
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
                kek_package: Some(need("exchangekeypackage", "ExchangeKeyPackage")?.into()),
                world_package: Some(need("newsecurityworldpackage", "NewSecurityWorldPackage")?.into()),
                kek_public_key: None,
                card: Vec::new(),
                root_hash: None,
            },
        ),
        [s] if s == "package" => package(
            g,
            &PackageArgs {
                app: "simple".into(),
                ident: need("keyidentifier", "KeyIdentifier")?,
                kek_package: Some(need("exchangekeypackage", "ExchangeKeyPackage")?.into()),
                world_package: Some(need("newsecurityworldpackage", "NewSecurityWorldPackage")?.into()),
                tenant: Some(need("tenantbposid", "TenantBposId")?),
                friendly_name: Some(need("keyfriendlyname", "KeyFriendlyName")?),
                format: "hsmkit".into(),
                kek_public_key: None,
                kid: None,
                aws_algorithm: None,
                gcp_method: None,
                out: None,
                root_hash: None,
            },
        ),
        _ => Err(bad("give exactly one of -ModifyAcls and -Package".into())),
    }
}

/// `transfer package` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {
    /// The key's application (its narrowed copy is `xferacld/<ident>`).
    #[arg(long = "app", default_value = "simple")]
    pub app: String,
    /// The narrowed key's ident (the key `xferacld/<ident>`).
    #[arg(long = "ident")]
    pub ident: String,
    /// The format: hsmkit (the toolset's `.byok`), azure-kv, aws or gcp.
    #[arg(long = "format", default_value = "hsmkit")]
    pub format: String,
    /// hsmkit format: the provider's KEK package.
    #[arg(long = "kek-package")]
    pub kek_package: Option<PathBuf>,
    /// hsmkit format: the provider's Security World package.
    #[arg(long = "world-package")]
    pub world_package: Option<PathBuf>,
    /// hsmkit format: the tenant id (the BPOSId GUID).
    #[arg(long = "tenant")]
    pub tenant: Option<String>,
    /// hsmkit format: the friendly name; the package is `TransferPackage-<name>.byok`.
    #[arg(long = "friendly-name")]
    pub friendly_name: Option<String>,
    /// azure-kv, aws, gcp: the KEK's public key (PEM) the service gave you.
    #[arg(long = "kek-public-key", value_name = "PEM")]
    pub kek_public_key: Option<PathBuf>,
    /// azure-kv: the KEK's key identifier in the vault.
    #[arg(long)]
    pub kid: Option<String>,
    /// aws: the wrapping algorithm (default RSA_AES_KEY_WRAP_SHA_256).
    #[arg(long = "aws-algorithm")]
    pub aws_algorithm: Option<String>,
    /// gcp: the import method, 1 to 6 (default 3, RSA_OAEP_3072_SHA256_AES_256).
    #[arg(long = "gcp-method")]
    pub gcp_method: Option<u8>,
    /// hsmkit format: the folder (default .); other formats: the file to write.
    #[arg(long = "out")]
    pub out: Option<PathBuf>,
    /// The root hash to pin (else HSMKIT_ROOT_HASH, else the toolset's verifykeypackage.pin).
    #[arg(long)]
    pub root_hash: Option<String>,
}

/// Packages a narrowed key for the provider: `TransferPackage-<name>.byok`.
pub fn package(g: &Global, a: &PackageArgs) -> Result<()> {
    use hsmkit_backend::{Backend, SessionMode};
    use hsmkit_transfer::byok::{self, TransferBody, TransferPackage};
    if a.format != "hsmkit" {
        return export(g, a);
    }
    let missing = |what: &str| bad(format!("the hsmkit format needs {what}"));
    let kek_package = a.kek_package.clone().ok_or_else(|| missing("--kek-package"))?;
    let world_package = a.world_package.clone().ok_or_else(|| missing("--world-package"))?;
    let tenant = a.tenant.clone().ok_or_else(|| missing("--tenant"))?;
    let friendly_name = a.friendly_name.clone().ok_or_else(|| missing("--friendly-name"))?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("."));
    byok::check_tenant(&tenant)?;
    let path = out.join(byok::file_name(&friendly_name)?);
    if path.exists() {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::WrapKey)
            .detail(format!("{} already exists", path.display()))
            .hint("choose another -KeyFriendlyName, or move the existing package away"));
    }
    let verified = vendor::verified_toolset(&kek_package, &world_package, a.root_hash.as_deref())?;
    let emu = env::emulator(g)?;
    let world = emu.require_world(Op::WrapKey)?;
    let key =
        load_narrowed(&emu, &a.ident, "run `hsmkit KeyTransferRemote -ModifyAcls …` with the same packages first")?;
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
    let kek = import_kek(session.as_ref(), spki.clone())?;
    let wrapped = session.wrap_key(&byok::WRAP, kek, crate::commands::private_handle(&handles)?)?;
    let to_value = |v: serde_json::Result<serde_json::Value>| {
        v.map_err(|e| Error::new(ErrorKind::Device, Op::WrapKey).detail(e.to_string()))
    };
    let body = TransferBody {
        tenant: tenant.to_ascii_lowercase(),
        friendly_name: friendly_name.clone(),
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
    let package = TransferPackage::sign(body, session.as_ref(), crate::commands::private_handle(&handles)?)?;
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
    // The KEK, and the world the key may be saved under: the provider's, from its toolset; or,
    // for a cloud KMS that gives only a public key, this world (the copy stays here until it is
    // wrapped).
    let (kek_spki, target_hkm, target_name) = match (&a.kek_package, &a.world_package, &a.kek_public_key) {
        (Some(k), Some(w), None) => {
            let verified = vendor::verified_toolset(k, w, a.root_hash.as_deref())?;
            let name = format!("the provider world {}", crate::commands::hex(&verified.world.body.hknso));
            (verified.kek.body.kek.spki.clone(), Some(verified.world.body.hkm.clone()), name)
        }
        (None, None, Some(pem)) => (read_kek_pem(pem)?, None, format!("the KEK in {}", pem.display())),
        _ => return Err(bad("give the toolset's --kek-package and --world-package, or --kek-public-key".into())),
    };
    let emu = env::emulator(g)?;
    let world = emu.require_world(Op::ChangeAcl)?;
    let key = emu.load_named(&a.app, &a.ident)?;
    // The KEK as this module will know it once imported: the suite hash of its public key.
    let kek_hash = world.suite().hash(&[&kek_spki]);
    let target_hkm = target_hkm.unwrap_or_else(|| world.hkm().to_vec());
    let narrowed = key.header.acl.narrowed_for_transfer(&target_hkm, &kek_hash);
    println!("Narrowing {}/{} for {target_name}", a.app, a.ident);
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

/// Reads an RSA public key (SubjectPublicKeyInfo PEM) and returns its DER.
fn read_kek_pem(path: &std::path::Path) -> Result<Vec<u8>> {
    use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(ErrorKind::NotFound, Op::ImportKey).detail(format!("cannot read {}: {e}", path.display()))
    })?;
    let key = rsa::PublicKey::from_public_key_pem(&text).map_err(|_| {
        Error::new(ErrorKind::DataInvalid, Op::ImportKey)
            .detail(format!("{} is not an RSA public key in PEM (-----BEGIN PUBLIC KEY-----)", path.display()))
            .hint("give the KEK the service gave you, as a PEM public key")
    })?;
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| Error::new(ErrorKind::DataInvalid, Op::ImportKey).detail(e.to_string()))
}

/// `transfer package --format azure-kv|aws|gcp`: the narrowed key wrapped for a cloud KMS.
fn export(g: &Global, a: &PackageArgs) -> Result<()> {
    use hsmkit_backend::{Backend, SessionMode};
    use hsmkit_transfer::formats::{self, Format};
    use rsa::traits::PublicKeyParts;
    let format = Format::parse(&a.format, a.aws_algorithm.as_deref(), a.gcp_method)?;
    let pem =
        a.kek_public_key.as_ref().ok_or_else(|| bad(format!("the {} format needs --kek-public-key", a.format)))?;
    let out = a.out.clone().ok_or_else(|| bad("give the file to write with --out".into()))?;
    if out.exists() {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::WrapKey)
            .detail(format!("{} already exists", out.display()))
            .hint("give a new file name with --out"));
    }
    let kek_spki = read_kek_pem(pem)?;
    let kek_bits = <rsa::PublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&kek_spki)
        .map(|k| k.n().bit_width())
        .map_err(|_| Error::new(ErrorKind::DataInvalid, Op::WrapKey).detail("the KEK is not an RSA key"))?;
    let emu = env::emulator(g)?;
    let world = emu.require_world(Op::WrapKey)?;
    let key = load_narrowed(&emu, &a.ident, "run `hsmkit transfer modify-acls --kek-public-key KEK.pem …` first")?;
    let kek_hash = world.suite().hash(&[&kek_spki]);
    if !key.header.acl.is_narrowed_for(world.hkm(), &kek_hash) {
        return Err(Error::new(ErrorKind::KeyNotWrappable, Op::WrapKey)
            .detail(format!("xferacld/{} is not narrowed for the KEK in {}", a.ident, pem.display()))
            .hint("narrow it with `hsmkit transfer modify-acls --kek-public-key` and this KEK"));
    }
    let mechanism = format.mechanism_for_rsa(kek_bits, key.header.bits)?;
    let kid = match format {
        Format::AzureKeyVault => Some(
            a.kid.clone().ok_or_else(|| bad("the azure-kv format needs --kid (the KEK's key identifier)".into()))?,
        ),
        _ => None,
    };
    let handles = emu.load_key("xferacld", &a.ident)?;
    let session = emu.open_session(hsmkit_emulator::SLOT, SessionMode::ReadWrite)?;
    let kek = import_kek(session.as_ref(), kek_spki)?;
    let wrapped = session.wrap_key(&mechanism, kek, crate::commands::private_handle(&handles)?)?;
    let bytes = match kid {
        Some(kid) => {
            let generator = format!("hsmkit {}; hsmkit emulator module {}", env!("CARGO_PKG_VERSION"), emu.esn()?);
            formats::azure_byok(&kid, &wrapped, &generator)?
        }
        None => wrapped,
    };
    hsmkit_emulator::fsio::write_atomic_new(&out, &bytes, &hsmkit_emulator::fsio::FaultHook::default())
        .map_err(|e| Error::new(ErrorKind::Io, Op::WrapKey).detail(format!("cannot write {}: {e}", out.display())))?;
    println!("Key {}/{} wrapped for {} with {}", a.app, a.ident, format.name(), mechanism.describe());
    println!("Written: {}", out.display());
    println!("Result: SUCCESS");
    Ok(())
}

/// `transfer public-key` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PublicKeyArgs {
    /// The key's application.
    #[arg(long = "app", default_value = "simple")]
    pub app: String,
    /// The key's ident.
    #[arg(long = "ident")]
    pub ident: String,
    /// The PEM file to write.
    #[arg(long = "out")]
    pub out: PathBuf,
}

/// Writes a key's public half as PEM, so a recipient can check what it received.
pub fn public_key(g: &Global, a: &PublicKeyArgs) -> Result<()> {
    use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
    let emu = env::emulator(g)?;
    let key = emu.load_named(&a.app, &a.ident)?;
    let pem = rsa::PublicKey::from_public_key_der(&key.header.public)
        .map_err(|e| Error::new(ErrorKind::DataInvalid, Op::GetAttributes).detail(e.to_string()))?
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| Error::new(ErrorKind::DataInvalid, Op::GetAttributes).detail(e.to_string()))?;
    hsmkit_emulator::fsio::write_atomic_new(&a.out, pem.as_bytes(), &hsmkit_emulator::fsio::FaultHook::default())
        .map_err(|e| {
            Error::new(ErrorKind::Io, Op::GetAttributes).detail(format!("cannot write {}: {e}", a.out.display()))
        })?;
    println!("Public key of {}/{} written to {}", a.app, a.ident, a.out.display());
    Ok(())
}

/// The narrowed copy `xferacld/<ident>`; if there is none, an error saying how to make it.
fn load_narrowed(
    emu: &hsmkit_emulator::Emulator,
    ident: &str,
    hint: &str,
) -> Result<std::sync::Arc<hsmkit_emulator::LoadedKey>> {
    emu.load_named("xferacld", ident).map_err(|e| {
        if e.kind() == &ErrorKind::NotFound {
            Error::new(ErrorKind::KeyUnextractable, Op::WrapKey)
                .detail(format!("the key {ident} has not been narrowed for transfer (there is no xferacld/{ident})"))
                .hint(hint.to_string())
        } else {
            e
        }
    })
}

/// The KEK's public key, imported into the session as a wrapping key for this session only.
fn import_kek(session: &dyn hsmkit_backend::Session, spki: Vec<u8>) -> Result<hsmkit_backend::KeyHandle> {
    use hsmkit_backend::{KeyMaterial, KeyPolicy, Usage};
    let mut policy = KeyPolicy::new(Usage::WRAP | Usage::ENCRYPT).with_label("transfer KEK");
    policy.token = false;
    session.import_key(&KeyMaterial::RsaPublicSpki(spki), &policy)
}

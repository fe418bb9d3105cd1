//! The customer's side of the transfer: `KeyTransferRemote -ModifyAcls` (and its conventional
//! spelling `transfer modify-acls`).

use std::path::PathBuf;

use hsmkit_backend::{Error, ErrorKind, Op, Pin, Result, TransferTarget};
use hsmkit_transfer::engine::{Approval, Engine, KeyRef, Officer};

use crate::pins::PinSource;
use crate::{Global, vendor};

/// The module the key is on, and how it is named there.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// The module: `emulator`, `emulator:KMDATA` or `pkcs11:/path/to/module.so`.
    #[arg(long, default_value = "emulator")]
    pub backend: String,
    /// The token label, with `--backend pkcs11:…` (default: the first token).
    #[arg(long)]
    pub token: Option<String>,
    /// nShield naming: the key's application (with `--ident`).
    #[arg(long = "app", default_value = "simple")]
    pub app: String,
    /// nShield naming: the key's ident (`key_<app>_<ident>`).
    #[arg(long = "ident", conflicts_with_all = ["label", "id"])]
    pub ident: Option<String>,
    /// PKCS#11 naming: the key's `CKA_LABEL`.
    #[arg(long)]
    pub label: Option<String>,
    /// PKCS#11 naming: the key's `CKA_ID`, in hex.
    #[arg(long)]
    pub id: Option<String>,
}

impl KeyArgs {
    /// The key on the emulator, as nShield names it.
    pub fn named(app: &str, ident: &str) -> KeyArgs {
        KeyArgs {
            backend: "emulator".into(),
            token: None,
            app: app.into(),
            ident: Some(ident.into()),
            label: None,
            id: None,
        }
    }

    fn key(&self) -> Result<KeyRef> {
        match (&self.ident, &self.label, &self.id) {
            (Some(ident), None, None) => Ok(KeyRef::Named { app: self.app.clone(), ident: ident.clone() }),
            (None, Some(label), _) => Ok(KeyRef::Label(label.clone())),
            (None, None, Some(id)) => hex::decode(id)
                .map(KeyRef::Id)
                .map_err(|_| bad(format!("--id {id} is not hex")).hint("give the CKA_ID in hex, for example --id 01")),
            _ => Err(bad("name the key with --ident (nShield), --label or --id (PKCS#11)".into())),
        }
    }
}

/// A backend, a read-write session on its first slot, and the engine on it.
struct Opened {
    backend: Box<dyn hsmkit_backend::Backend>,
}

impl Opened {
    fn open(g: &Global, k: &KeyArgs) -> Result<Opened> {
        Ok(Opened { backend: crate::backends::open(&k.backend, g, k.token.as_deref())? })
    }

    fn session(&self) -> Result<Box<dyn hsmkit_backend::Session + '_>> {
        let slot =
            *self.backend.slots()?.first().ok_or_else(|| {
                Error::new(ErrorKind::TokenNotPresent, Op::OpenSession).detail("the module has no token")
            })?;
        self.backend.open_session(slot, hsmkit_backend::SessionMode::ReadWrite)
    }
}

/// Logs the user in where the token needs it (`CKF_LOGIN_REQUIRED`: a PKCS#11 token, or an
/// emulated world with a user PIN shows its private keys only to the user); returns the user PIN
/// it used, if any. The user PIN is the PIN file's first line.
fn user_login(
    g: &Global,
    backend: &dyn hsmkit_backend::Backend,
    session: &dyn hsmkit_backend::Session,
) -> Result<Option<Pin>> {
    if !backend.info()?.login_required {
        return Ok(None);
    }
    let pin = PinSource::from(g)?.next("the token's user", false)?;
    session.login(hsmkit_backend::UserKind::User, &pin)?;
    Ok(Some(pin))
}

/// `transfer modify-acls` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ModifyAclsArgs {
    /// The key and its module.
    #[command(flatten)]
    pub key: KeyArgs,
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

const KTR_USAGE: &str = "hsmkit KeyTransferRemote -ModifyAcls -KeyAppName simple -KeyIdentifier IDENT -ExchangeKeyPackage BYOK-KEK-pkg-NA-1 -NewSecurityWorldPackage BYOK-SecurityWorld-pkg-NA-1";

fn bad(what: String) -> Error {
    Error::new(ErrorKind::ArgumentsBad, Op::ChangeAcl).detail(what).hint(format!("write `{KTR_USAGE}`"))
}

pub fn key_transfer_remote(g: &Global, a: &KeyTransferRemoteArgs) -> Result<()> {
    let (values, switches) = crate::aadrm::parse("KeyTransferRemote", KTR_USAGE, &a.args, VALUED, SWITCHES)?;
    let get = |k: &str| values.get(k).cloned();
    let need = |k: &str, shown: &str| get(k).ok_or_else(|| bad(format!("-{shown} is missing")));
    match switches.as_slice() {
        [s] if s == "modifyacls" => modify_acls(
            g,
            &ModifyAclsArgs {
                key: KeyArgs::named(
                    &get("keyappname").unwrap_or_else(|| "simple".into()),
                    &need("keyidentifier", "KeyIdentifier")?,
                ),
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
                key: KeyArgs::named("simple", &need("keyidentifier", "KeyIdentifier")?),
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
    /// The key (its narrowed copy is wrapped) and its module.
    #[command(flatten)]
    pub key: KeyArgs,
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

fn write_new(path: &std::path::Path, bytes: &[u8], op: Op) -> Result<()> {
    hsmkit_emulator::fsio::write_atomic_new(path, bytes, &hsmkit_emulator::fsio::FaultHook::default())
        .map_err(|e| Error::new(ErrorKind::Io, op).detail(format!("cannot write {}: {e}", path.display())))
}

/// How the module wrapped, for messages.
fn how(w: &hsmkit_transfer::engine::Wrapped) -> &'static str {
    if w.composed { " (composed in the module from RSA-OAEP and AES-KWP)" } else { " (the module's own mechanism)" }
}

/// Packages a narrowed key for the provider: `TransferPackage-<name>.byok`.
pub fn package(g: &Global, a: &PackageArgs) -> Result<()> {
    use hsmkit_transfer::byok;
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
    let key = a.key.key()?;
    let verified = vendor::verified_toolset(&kek_package, &world_package, a.root_hash.as_deref())?;
    let opened = Opened::open(g, &a.key)?;
    let session = opened.session()?;
    user_login(g, opened.backend.as_ref(), session.as_ref())?;
    let engine = Engine::new(opened.backend.as_ref(), session.as_ref())?;
    let (package, wrapped) = engine.package(&key, &verified, &tenant, &friendly_name)?;
    write_new(&path, &package.to_bytes()?, Op::WrapKey)?;
    println!(
        "Key {key} wrapped under the provider's KEK with CKM_RSA_AES_KEY_WRAP (OAEP SHA-1, AES-256 KWP){}",
        how(&wrapped)
    );
    if package.body.acl_certificate.is_null() {
        println!(
            "The package carries the token's attributes, not a quorum certificate: the provider must accept it as unattested."
        );
    }
    println!("Transfer package: {}", path.display());
    println!("Keep it safe: it holds your private key, wrapped for the provider's HSMs only.");
    println!("Result: SUCCESS");
    Ok(())
}

/// Collects the security officer: on a security world, its Administrator cards (`--card`, else
/// the first k) with their PINs; on a PKCS#11 token, the user PIN and then the SO PIN.
fn officer(
    g: &Global,
    backend: &dyn hsmkit_backend::Backend,
    session: &dyn hsmkit_backend::Session,
    numbers: &[u8],
) -> Result<(Officer, Option<Pin>)> {
    let mut source = PinSource::from(g)?;
    match session.world_authority() {
        Some(authority) => {
            // A world with a user PIN: the user's PIN first, then the cards.
            let user =
                if backend.info()?.login_required { Some(source.next("the token's user", false)?) } else { None };
            let world = authority.world()?;
            let (k, n) = world.quorum;
            let numbers: Vec<u8> = if numbers.is_empty() { (1..=k).collect() } else { numbers.to_vec() };
            if let Some(c) = numbers.iter().find(|c| **c == 0 || **c > n) {
                return Err(bad(format!("the world has cards 1 to {n}, not {c}")));
            }
            let mut cards = Vec::new();
            for c in numbers {
                println!("Presenting card {c} of {n}");
                cards.push((c, source.next(&format!("card {c} of {n}"), false)?));
            }
            Ok((Officer::Cards(cards), user))
        }
        None => {
            let user = source.next("the token's user", false)?;
            let so = source.next("the token's security officer", false)?;
            Ok((Officer::Pin(so), Some(user)))
        }
    }
}

/// Narrows a key for transfer: on a security world a copy `key_xferacld_<ident>` whose ACL
/// cannot recover the key or change the ACL, is bound to the provider's world, and exports only
/// under the provider's KEK, certified by the quorum; on a PKCS#11 token a copy
/// `xferacld-<label>` that wraps only under the KEK the security officer made trusted.
pub fn modify_acls(g: &Global, a: &ModifyAclsArgs) -> Result<()> {
    // The KEK, and the world the key may be saved under: the provider's, from its toolset; or,
    // for a cloud KMS that gives only a public key, this world (the copy stays here until it is
    // wrapped).
    let (kek_spki, provider_hkm, target_name) = match (&a.kek_package, &a.world_package, &a.kek_public_key) {
        (Some(k), Some(w), None) => {
            let verified = vendor::verified_toolset(k, w, a.root_hash.as_deref())?;
            let name = format!("the provider world {}", crate::commands::hex(&verified.world.body.hknso));
            (verified.kek.body.kek.spki.clone(), Some(verified.world.body.hkm.clone()), name)
        }
        (None, None, Some(pem)) => (read_kek_pem(pem)?, None, format!("the KEK in {}", pem.display())),
        _ => return Err(bad("give the toolset's --kek-package and --world-package, or --kek-public-key".into())),
    };
    let key = a.key.key()?;
    let opened = Opened::open(g, &a.key)?;
    let session = opened.session()?;
    let engine = Engine::new(opened.backend.as_ref(), session.as_ref())?;
    println!("Narrowing {key} for {target_name}");
    let (officer, user) = officer(g, opened.backend.as_ref(), session.as_ref(), &a.card)?;
    let target = TransferTarget { kek_spki: kek_spki.clone(), provider_hkm, label: None };
    let narrowed = engine.narrow(&key, &target, &officer, user.as_ref())?;
    match &narrowed.approval {
        Approval::Quorum => {
            println!(
                "Copy with reduced permissions: {} (certified by the Administrator Card Set quorum)",
                narrowed.label
            );
            println!(
                " no recovery, no ACL changes, blobs only under the provider's module key, export only under KEK {}",
                crate::commands::hex(&sha256(&kek_spki))
            );
        }
        Approval::SecurityOfficer { kek_label, wrap_with_trusted } => {
            println!("The security officer made the KEK a trusted wrapping key: {kek_label} (CKA_TRUSTED)");
            println!(
                "Copy with reduced permissions: {} (use only, no new rights, extractable{})",
                narrowed.label,
                if *wrap_with_trusted { " under trusted keys only" } else { "" }
            );
        }
    }
    println!(" public key SHA-256 {} (the same key as {key})", crate::commands::hex(&sha256(&narrowed.public)));
    println!("Result: SUCCESS");
    Ok(())
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// Reads an RSA public key (SubjectPublicKeyInfo PEM) and returns its DER.
fn read_kek_pem(path: &std::path::Path) -> Result<Vec<u8>> {
    use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
    let text = hsmkit_emulator::fsio::read_text_bounded(path, hsmkit_emulator::fsio::MAX_TEXT_BYTES).map_err(|e| {
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
    use hsmkit_transfer::formats::Format;
    let format = Format::parse(&a.format, a.aws_algorithm.as_deref(), a.gcp_method)?;
    let pem =
        a.kek_public_key.as_ref().ok_or_else(|| bad(format!("the {} format needs --kek-public-key", a.format)))?;
    let out = a.out.clone().ok_or_else(|| bad("give the file to write with --out".into()))?;
    if out.exists() {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::WrapKey)
            .detail(format!("{} already exists", out.display()))
            .hint("give a new file name with --out"));
    }
    if format == Format::AzureKeyVault && a.kid.is_none() {
        return Err(bad("the azure-kv format needs --kid (the KEK's key identifier)".into()));
    }
    let kek_spki = read_kek_pem(pem)?;
    let key = a.key.key()?;
    let opened = Opened::open(g, &a.key)?;
    let session = opened.session()?;
    user_login(g, opened.backend.as_ref(), session.as_ref())?;
    let engine = Engine::new(opened.backend.as_ref(), session.as_ref())?;
    let info = opened.backend.info()?;
    let generator = format!("hsmkit {}; {} {} {}", env!("CARGO_PKG_VERSION"), info.vendor, info.model, info.serial);
    let (bytes, mechanism, wrapped) = engine.export(&key, format, &kek_spki, a.kid.as_deref(), &generator)?;
    write_new(&out, &bytes, Op::WrapKey)?;
    println!("Key {key} wrapped for {} with {}{}", format.name(), mechanism.describe(), how(&wrapped));
    println!("Written: {}", out.display());
    println!("Result: SUCCESS");
    Ok(())
}

/// `transfer public-key` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PublicKeyArgs {
    /// The key and its module.
    #[command(flatten)]
    pub key: KeyArgs,
    /// The PEM file to write.
    #[arg(long = "out")]
    pub out: PathBuf,
}

/// A key's SubjectPublicKeyInfo (DER), read through the engine.
pub fn public_spki(g: &Global, k: &KeyArgs) -> Result<Vec<u8>> {
    let key = k.key()?;
    let opened = Opened::open(g, k)?;
    let session = opened.session()?;
    user_login(g, opened.backend.as_ref(), session.as_ref())?;
    let engine = Engine::new(opened.backend.as_ref(), session.as_ref())?;
    engine.public_key(engine.find(&key)?)
}

/// Writes a key's public half as PEM, so a recipient can check what it received.
pub fn public_key(g: &Global, a: &PublicKeyArgs) -> Result<()> {
    let key = a.key.key()?;
    let opened = Opened::open(g, &a.key)?;
    let session = opened.session()?;
    user_login(g, opened.backend.as_ref(), session.as_ref())?;
    let engine = Engine::new(opened.backend.as_ref(), session.as_ref())?;
    let pem = engine.public_key_pem(&key)?;
    write_new(&a.out, pem.as_bytes(), Op::GetAttributes)?;
    println!("Public key of {key} written to {}", a.out.display());
    Ok(())
}

/// `transfer generate-key` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateKeyArgs {
    /// The module, and the new key's `--label` (and optional `--id`).
    #[command(flatten)]
    pub key: KeyArgs,
    /// The modulus size of an RSA key.
    #[arg(long, default_value_t = 2048)]
    pub bits: u32,
    /// Make an EC key on this curve instead (P-256, P-384 or P-521).
    #[arg(long)]
    pub curve: Option<String>,
}

/// Generates an RSA (or EC) key pair to transfer on any module: sensitive and extractable (which
/// `pkcs11-tool --keypairgen` cannot ask for), so that a narrowed copy of it can be wrapped.
pub fn generate_key(g: &Global, a: &GenerateKeyArgs) -> Result<()> {
    let label = match a.key.key()? {
        KeyRef::Label(l) => l,
        KeyRef::Id(_) | KeyRef::Named { .. } => {
            return Err(bad("give the new key's --label (and --id HEX if you want one)".into())
                .hint("on an nShield world, `hsmkit generatekey` makes app/ident keys"));
        }
    };
    let id = a.key.id.as_deref().map(hex::decode).transpose().map_err(|_| bad("--id is not hex".into()))?;
    let opened = Opened::open(g, &a.key)?;
    let session = opened.session()?;
    user_login(g, opened.backend.as_ref(), session.as_ref())?;
    let engine = Engine::new(opened.backend.as_ref(), session.as_ref())?;
    let (spec, what) = match &a.curve {
        None => (hsmkit_backend::KeyPairSpec::Rsa { bits: a.bits, public_exponent: 65537 }, format!("RSA-{}", a.bits)),
        Some(name) => match hsmkit_backend::EcCurve::from_name(name) {
            Some(curve) if curve != hsmkit_backend::EcCurve::Ed25519 => {
                (hsmkit_backend::KeyPairSpec::Ec { curve }, format!("EC {}", curve.name()))
            }
            _ => return Err(bad(format!("--curve {name} is not P-256, P-384 or P-521"))),
        },
    };
    let (_, public) = engine.generate(&label, id.as_deref(), &spec)?;
    println!("{what} key {label:?} generated on the token: sensitive, extractable (for transfer)");
    println!(" public key SHA-256 {}", crate::commands::hex(&sha256(&public)));
    println!("Result: SUCCESS");
    Ok(())
}

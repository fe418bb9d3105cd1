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
        [s] if s == "package" => Err(Error::new(ErrorKind::Unsupported, Op::WrapKey)
            .detail("-Package is not implemented yet")
            .hint("narrow the key with -ModifyAcls; packaging comes with the next part of the transfer engine")),
        _ => Err(bad("give exactly one of -ModifyAcls and -Package".into())),
    }
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

//! The provider's service, emulated: the tenant's keys (`Add-AadrmKey`, `Get-AadrmKeys`,
//! `Set-AadrmKeyProperties -Active`), unwrapped inside the provider's module.

use std::io::BufRead;
use std::path::PathBuf;

use hsmkit_backend::{Backend, Error, ErrorKind, Op, Result, Session, SessionMode};
use hsmkit_emulator::{Config, Emulator};
use hsmkit_transfer::byok;
use hsmkit_transfer::provider::{self, Checked, Provenance};
use hsmkit_transfer::tenant::Store;

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
    /// Connect as the tenant (`Connect-AadrmService`): on the first connection the tenant is
    /// made, with a provider-made initial key (and the provider's database, for its first tenant).
    Open,
}

/// The provider's module: the emulator on the provider folder's kmdata (seeded apart from the
/// customer's module in a seeded run).
fn provider_module(g: &Global, dir: &std::path::Path) -> Result<(Box<dyn Backend>, u64)> {
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
    let now = c.clock.now_ms();
    Ok((Box::new(Emulator::open(c)?), now))
}

fn open_session(backend: &dyn Backend, mode: SessionMode) -> Result<Box<dyn Session + '_>> {
    let slot = *backend.slots()?.first().ok_or_else(|| Error::new(ErrorKind::TokenNotPresent, Op::OpenSession))?;
    backend.open_session(slot, mode)
}

pub fn run(g: &Global, a: &TenantArgs) -> Result<()> {
    byok::check_tenant(&a.tenant)?;
    let (backend, now) = provider_module(g, &a.provider)?;
    let session = open_session(backend.as_ref(), SessionMode::ReadWrite)?;
    // An upload is checked before the store is opened: a refused package changes nothing,
    // not even by creating the tenant.
    let checked = match &a.command {
        TenantCommand::AddKey { key_file, allow_unattested, .. } => {
            let bytes =
                hsmkit_emulator::fsio::read_bounded(key_file, hsmkit_emulator::fsio::MAX_INPUT_BYTES).map_err(|e| {
                    Error::new(ErrorKind::NotFound, Op::UnwrapKey)
                        .detail(format!("cannot read {}: {e}", key_file.display()))
                })?;
            let name = key_file.display().to_string();
            let c = provider::check(session.as_ref(), &a.tenant, &name, &bytes, *allow_unattested)?;
            if c.provenance == Provenance::Unattested {
                println!(
                    "{name}: narrowed by a PKCS#11 token's security officer; its attributes (not certified): {}",
                    c.package.body.acl
                );
            }
            Some((name, c))
        }
        _ => None,
    };
    let path = a.provider.join("tenants.sqlite");
    // Reads and changes of a known tenant open the store as it is; only a connection or an upload
    // makes what is missing (and says so).
    let mut store = match &a.command {
        TenantCommand::Open | TenantCommand::AddKey { .. } => {
            let holds = provider::module_holds_tenant_keys(session.as_ref())?;
            let (store, made) = Store::open_or_create(&path, &a.tenant, now, holds, || {
                provider::initial_key(session.as_ref(), &a.tenant)
            })?;
            if made.database {
                println!("Made the provider's tenant database {}.", path.display());
            }
            if made.tenant {
                println!(
                    "Tenant {} is new here: it starts with a provider-made initial key.",
                    a.tenant.to_ascii_lowercase()
                );
            }
            store
        }
        TenantCommand::Keys | TenantCommand::SetActive { .. } => Store::open(&path, &a.tenant)?,
    };
    match &a.command {
        TenantCommand::Open => Ok(()),
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
            Some((name, c)) => add_key(session.as_ref(), &mut store, &a.tenant, &name, &c, *yes, now),
            None => Err(Error::new(ErrorKind::Device, Op::UnwrapKey).detail("the package was not checked")),
        },
    }
}

fn add_key(
    session: &dyn Session,
    store: &mut Store,
    tenant: &str,
    name: &str,
    checked: &Checked,
    yes: bool,
    now: u64,
) -> Result<()> {
    let op = Op::UnwrapKey;
    // Refused before the confirmation is asked: nothing would change.
    provider::refuse_if_added(store, checked, name)?;
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
    let imported = provider::import(session, store, checked, name, now)?;
    let source = match &checked.provenance {
        Provenance::Certified { source_world } => format!("source world {}", hex(source_world)),
        Provenance::Unattested => "unattested".to_string(),
    };
    println!("Key {} (from {:?}, {source}) is the Active key", imported.identifier, checked.package.body.friendly_name);
    if let Some(old) = imported.archived {
        println!("Key {old} is now Archived");
    }
    println!("The Rights management service successfully added the key.");
    Ok(())
}

/// The ceremony's last check: a signature made by the tenant's Active key in the provider's
/// module verifies under `original_spki`, the public key of the key the customer generated.
pub fn check_active_key(
    g: &Global,
    provider_dir: &std::path::Path,
    tenant: &str,
    original_spki: &[u8],
) -> Result<String> {
    let (backend, _) = provider_module(g, provider_dir)?;
    let store = Store::open(&provider_dir.join("tenants.sqlite"), tenant)?;
    let session = open_session(backend.as_ref(), SessionMode::ReadOnly)?;
    provider::active_key_signs_as(session.as_ref(), &store, tenant, original_spki)
}

//! The article's tenant cmdlets as written: `Connect-AadrmService`, `Get-AadrmConfiguration`,
//! `Disconnect-AadrmService`, `Get-AadrmKeys` and `Add-AadrmKey –KeyFile FILE -Verbose`.
//!
//! The real cmdlets keep their connection in the PowerShell session; here `Connect-AadrmService`
//! saves which provider (a folder made by `vendor init`) and which tenant the next commands use,
//! in `aadrm-connection.json` under `HSMKIT_STATE_DIR` (else `$XDG_STATE_HOME/hsmkit`, else
//! `~/.local/state/hsmkit`). The other cmdlets run the `tenant` subcommands on that connection.

use std::path::{Path, PathBuf};

use hsmkit_backend::{Error, ErrorKind, Op, Result};
use hsmkit_emulator::fsio::{FaultHook, write_atomic};
use hsmkit_transfer::byok;
use serde::{Deserialize, Serialize};

use crate::Global;
use crate::tenant::{TenantArgs, TenantCommand};

/// A cmdlet's PowerShell-style arguments (`-Name value`, `-Switch`; an en dash counts as a dash,
/// as the article prints `–KeyFile`).
#[derive(Debug, clap::Args)]
pub struct CmdletArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// The saved connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Connection {
    format: String,
    provider: PathBuf,
    tenant: String,
}

const FORMAT: &str = "hsmkit-aadrm-connection-1";

fn bad(cmdlet: &str, what: String, usage: &str) -> Error {
    Error::new(ErrorKind::ArgumentsBad, Op::Info).detail(format!("{cmdlet}: {what}")).hint(format!("write `{usage}`"))
}

/// Parses PowerShell-style `args` (`-Name value`, `-Switch`; an en dash counts as a dash) into
/// values (lower-cased names) and switches, for the article's tools and cmdlets.
pub(crate) fn parse(
    cmdlet: &str,
    usage: &str,
    args: &[String],
    valued: &[&str],
    switches: &[&str],
) -> Result<(std::collections::BTreeMap<String, String>, Vec<String>)> {
    let mut values = std::collections::BTreeMap::new();
    let mut on = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with(['-', '\u{2013}']) {
            return Err(bad(cmdlet, format!("unexpected '{arg}'"), usage));
        }
        let name = arg.trim_start_matches(['-', '\u{2013}']).to_ascii_lowercase();
        if switches.contains(&name.as_str()) {
            on.push(name);
        } else if valued.contains(&name.as_str()) {
            let v = it.next().ok_or_else(|| bad(cmdlet, format!("{arg} needs a value"), usage))?;
            values.insert(name, v.clone());
        } else {
            return Err(bad(cmdlet, format!("unknown argument '{arg}'"), usage));
        }
    }
    Ok((values, on))
}

fn state_dir() -> Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("HSMKIT_STATE_DIR")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("hsmkit")))
        .or_else(|| var("HOME").map(|d| d.join(".local").join("state").join("hsmkit")))
        .ok_or_else(|| {
            Error::new(ErrorKind::ArgumentsBad, Op::Info)
                .detail("there is no folder to keep the connection in")
                .hint("set HSMKIT_STATE_DIR to a folder")
        })
}

fn connection_path() -> Result<PathBuf> {
    Ok(state_dir()?.join("aadrm-connection.json"))
}

fn load() -> Result<Connection> {
    let path = connection_path()?;
    let bytes = match hsmkit_emulator::fsio::read_bounded(&path, hsmkit_emulator::fsio::MAX_TEXT_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::new(ErrorKind::NotLoggedIn, Op::Info)
                .detail("not connected to the Rights Management service")
                .hint("run `hsmkit Connect-AadrmService -Provider DIR -TenantBposId GUID` first"));
        }
        Err(e) => {
            return Err(Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot read {}: {e}", path.display())));
        }
    };
    let damaged = |why: String| {
        Error::new(ErrorKind::Corrupt, Op::Info)
            .detail(format!("the connection file {} is damaged: {why}", path.display()))
            .hint("connect again with `hsmkit Connect-AadrmService`")
    };
    let c: Connection = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    if c.format != FORMAT {
        return Err(damaged(format!("format {:?} is not {FORMAT}", c.format)));
    }
    byok::check_tenant(&c.tenant).map_err(|e| damaged(e.to_string()))?;
    Ok(c)
}

fn tenant_args(c: &Connection, command: TenantCommand) -> TenantArgs {
    TenantArgs { provider: c.provider.clone(), tenant: c.tenant.clone(), command }
}

fn check_provider(dir: &Path) -> Result<PathBuf> {
    if !dir.join("kmdata").is_dir() {
        return Err(Error::new(ErrorKind::NotFound, Op::Info)
            .detail(format!("{} is not a provider folder (no kmdata)", dir.display()))
            .hint("make one with `hsmkit vendor init --region NA --dir DIR`"));
    }
    std::path::absolute(dir)
        .map_err(|e| Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot resolve {}: {e}", dir.display())))
}

/// `Connect-AadrmService -Provider DIR -TenantBposId GUID`.
pub fn connect(g: &Global, a: &CmdletArgs) -> Result<()> {
    const USAGE: &str = "hsmkit Connect-AadrmService -Provider DIR -TenantBposId GUID";
    let (v, _) = parse("Connect-AadrmService", USAGE, &a.args, &["provider", "tenantbposid"], &[])?;
    let need = |k: &str, shown: &str| {
        v.get(k).cloned().ok_or_else(|| bad("Connect-AadrmService", format!("-{shown} is missing"), USAGE))
    };
    let provider = check_provider(Path::new(&need("provider", "Provider")?))?;
    let tenant = need("tenantbposid", "TenantBposId")?;
    byok::check_tenant(&tenant)?;
    let c = Connection { format: FORMAT.into(), provider, tenant: tenant.to_ascii_lowercase() };
    // The tenant is made (with its initial key) on first use, as the service has it already.
    crate::tenant::run(g, &tenant_args(&c, TenantCommand::Open))?;
    let path = connection_path()?;
    if let Some(dir) = path.parent() {
        hsmkit_emulator::fsio::create_private_dir(dir)
            .map_err(|e| Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot create {}: {e}", dir.display())))?;
    }
    let bytes =
        serde_json::to_vec_pretty(&c).map_err(|e| Error::new(ErrorKind::Device, Op::Info).detail(e.to_string()))?;
    write_atomic(&path, &bytes, &FaultHook::default())
        .map_err(|e| Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot write {}: {e}", path.display())))?;
    println!("A connection to the Rights Management service was opened.");
    println!("Tenant {} at the provider {}", c.tenant, c.provider.display());
    Ok(())
}

/// `Get-AadrmConfiguration`: the tenant's BPOSId, as the article reads it from the first line.
pub fn configuration(_g: &Global, a: &CmdletArgs) -> Result<()> {
    parse("Get-AadrmConfiguration", "hsmkit Get-AadrmConfiguration", &a.args, &[], &[])?;
    let c = load()?;
    println!("BPOSId                                   : {}", c.tenant);
    println!("Provider                                 : {}", c.provider.display());
    Ok(())
}

/// `Disconnect-AadrmService`.
pub fn disconnect(_g: &Global, a: &CmdletArgs) -> Result<()> {
    parse("Disconnect-AadrmService", "hsmkit Disconnect-AadrmService", &a.args, &[], &[])?;
    let path = connection_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => println!("The connection to the Rights Management service was closed."),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("Not connected."),
        Err(e) => {
            return Err(Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot remove {}: {e}", path.display())));
        }
    }
    Ok(())
}

/// `Get-AadrmKeys`.
pub fn keys(g: &Global, a: &CmdletArgs) -> Result<()> {
    parse("Get-AadrmKeys", "hsmkit Get-AadrmKeys", &a.args, &[], &["verbose"])?;
    crate::tenant::run(g, &tenant_args(&load()?, TenantCommand::Keys))
}

/// `Add-AadrmKey –KeyFile FILE [-Verbose] [-Force] [-AllowUnattested]`: asks for confirmation
/// unless `-Force`, as the article warns.
pub fn add_key(g: &Global, a: &CmdletArgs) -> Result<()> {
    const USAGE: &str = "hsmkit Add-AadrmKey -KeyFile FILE -Verbose";
    let (v, on) = parse("Add-AadrmKey", USAGE, &a.args, &["keyfile"], &["verbose", "force", "allowunattested"])?;
    let key_file =
        PathBuf::from(v.get("keyfile").ok_or_else(|| bad("Add-AadrmKey", "-KeyFile is missing".into(), USAGE))?);
    let c = load()?;
    let verbose = on.iter().any(|s| s == "verbose");
    if verbose {
        println!("VERBOSE: Performing the operation \"Add-AadrmKey\" on target \"{}\".", key_file.display());
        println!("VERBOSE: Tenant {} at the provider {}", c.tenant, c.provider.display());
    }
    let command = TenantCommand::AddKey {
        key_file,
        yes: on.iter().any(|s| s == "force"),
        allow_unattested: on.iter().any(|s| s == "allowunattested"),
    };
    crate::tenant::run(g, &tenant_args(&c, command))?;
    if verbose {
        println!("VERBOSE: The package was checked, unwrapped in the provider's module and stored.");
    }
    Ok(())
}

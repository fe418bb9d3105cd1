//! The provider's side, emulated: `vendor init` makes the toolset; `verifykeypackage` checks it.

use std::path::{Path, PathBuf};

use hsmkit_backend::{Error, ErrorKind, Op, Result};
pub use hsmkit_provider::PIN_FILE;
use hsmkit_provider::{Options, PROVIDER_FILES, mint};
use hsmkit_transfer::packages::{self, Region};

use crate::Global;
use crate::commands::hex;

/// `vendor init` arguments.
#[derive(Debug, clap::Args)]
pub struct VendorInitArgs {
    /// The region: NA, EU or AP.
    #[arg(long, default_value = "NA")]
    pub(crate) region: String,
    /// The provider's own folder (its module, world and keys).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Where the toolset (the two packages and the verifier's pin) is written.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) out: PathBuf,
}

/// `verifykeypackage` arguments, as the toolset's script takes them.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The KEK package.
    #[arg(short = 'k', long = "kek-package")]
    pub(crate) kek: PathBuf,
    /// The Security World package.
    #[arg(short = 'w', long = "world-package")]
    pub(crate) world: PathBuf,
    /// The root hash to pin (else HSMKIT_ROOT_HASH, else the toolset's verifykeypackage.pin).
    #[arg(long)]
    pub(crate) root_hash: Option<String>,
}

pub fn init(g: &Global, a: &VendorInitArgs) -> Result<()> {
    let region = Region::parse(&a.region)?;
    let mut opts = Options::new(region);
    opts.seed = g.seed;
    if g.seed.is_some() {
        opts.clock_ms = Some(crate::env::SEEDED_TIME_MS);
    }
    let (kek_name, world_name) = packages::package_names(region, opts.generation);
    let kek_path = a.out.join(&kek_name);
    let world_path = a.out.join(&world_name);
    if !a.out.is_dir() {
        return Err(Error::new(ErrorKind::NotFound, Op::Initialize)
            .detail(format!("the output folder {} does not exist", a.out.display())));
    }
    for p in [&kek_path, &world_path] {
        if p.exists() {
            return Err(Error::new(ErrorKind::AlreadyExists, Op::Initialize)
                .detail(format!("{} already exists", p.display()))
                .hint("move it away first, or write the toolset elsewhere with --out"));
        }
    }
    // A toolset folder pins one root: a second provider's packages there would not verify.
    if a.out.join(PIN_FILE).exists() {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::Initialize)
            .detail(format!("{} already pins another provider's root", a.out.join(PIN_FILE).display()))
            .hint("write each provider's toolset to a folder of its own with --out"));
    }
    if a.dir.join("kmdata").exists() {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::Initialize)
            .detail(format!("{} already holds a provider", a.dir.display()))
            .hint("choose another --dir"));
    }
    // Everything is made in a provider folder of its own; if anything fails, what this run made
    // is removed again, so the command can simply be run again.
    let dir_was_new = !a.dir.exists();
    let existed: Vec<bool> = PROVIDER_FILES.iter().map(|s| a.dir.join(s).exists()).collect();
    let made = [kek_path.clone(), world_path.clone(), a.out.join(PIN_FILE)];
    let result = mint(&a.dir, &opts).and_then(|t| t.write(&a.out).map(|()| t));
    let toolset = match result {
        Ok(t) => t,
        Err(e) => {
            if dir_was_new {
                let _ = std::fs::remove_dir_all(&a.dir);
            } else {
                for (sub, existed) in PROVIDER_FILES.iter().zip(existed) {
                    let p = a.dir.join(sub);
                    if !existed {
                        let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                    }
                }
            }
            for p in &made {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    println!("Provider module {} in world {}", toolset.esn, toolset.world_info);
    println!("KEK {} generated in the module (RSA-2048, not exportable)", toolset.kek_ident);
    println!("Toolset for region {region}:");
    println!("  {}", kek_path.display());
    println!("  {}", world_path.display());
    println!("  {} (the root hash the verifier pins)", a.out.join(PIN_FILE).display());
    println!("Vendor root hash: {}", packages::format_root_hash(&toolset.root_hash));
    println!("The provider keeps its world, KEK and root key in {}", a.dir.display());
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    hsmkit_emulator::fsio::read_bounded(path, hsmkit_emulator::fsio::MAX_INPUT_BYTES).map_err(|e| {
        Error::new(ErrorKind::NotFound, Op::Verify)
            .detail(format!("cannot read {}: {e}", path.display()))
            .hint("give the paths of the toolset's two packages")
    })
}

pub fn verify(a: &VerifyArgs) -> Result<()> {
    let verified = verified_toolset(&a.kek, &a.world, a.root_hash.as_deref())?;
    let k = &verified.kek.body;
    println!(" KEK: RSA-{} generated in module {}, not exportable", k.kek.bits, k.kek.generated_in);
    println!(" Security World: hknso {} ({})", hex(&verified.world.body.hknso), verified.world.body.cipher_suite);
    println!("Result: SUCCESS");
    Ok(())
}

/// Reads and verifies the toolset's two packages, printing each check.
pub fn verified_toolset(kek: &Path, world: &Path, root_hash: Option<&str>) -> Result<packages::Verified> {
    let (pin_text, source) = match (root_hash, std::env::var("HSMKIT_ROOT_HASH")) {
        (Some(h), _) => (h.to_string(), "--root-hash".to_string()),
        (None, Ok(h)) => (h, "HSMKIT_ROOT_HASH".to_string()),
        (None, Err(_)) => {
            let pin_path = kek.parent().unwrap_or(Path::new(".")).join(PIN_FILE);
            let text = hsmkit_emulator::fsio::read_text_bounded(&pin_path, hsmkit_emulator::fsio::MAX_TEXT_BYTES).map_err(|e| {
                Error::new(ErrorKind::NotFound, Op::Verify)
                    .detail(format!("no pinned root hash: {}: {e}", pin_path.display()))
                    .hint("give --root-hash (the hash your provider publishes), or keep the toolset's verifykeypackage.pin beside the packages")
            })?;
            println!(
                " note: the pin comes from the toolset's own folder; compare it with the hash your provider publishes, or give --root-hash"
            );
            (text.trim().to_string(), pin_path.display().to_string())
        }
    };
    let pinned = packages::parse_root_hash(&pin_text)?;
    let kek_name = kek.display().to_string();
    let world_name = world.display().to_string();
    println!("Verifying {kek_name} and {world_name}");
    println!(" pinned root hash {} (from {source})", packages::format_root_hash(&pinned));
    let verified = packages::verify(&kek_name, &read(kek)?, &world_name, &read(world)?, &pinned)?;
    for c in &verified.checks {
        println!(" ok: {c}");
    }
    Ok(verified)
}

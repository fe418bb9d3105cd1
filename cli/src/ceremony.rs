//! `hsmkit ceremony`: the whole article, end to end, in a fresh folder, with no prompts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hsmkit_backend::{Error, ErrorKind, Op, Result};
use hsmkit_transfer::packages::Region;

use crate::commands::{self, CngimportArgs, GeneratekeyArgs, NewWorldArgs, NkminfoArgs};
use crate::tenant::{TenantArgs, TenantCommand};
use crate::transfer::{GenerateKeyArgs, KeyArgs, ModifyAclsArgs, PackageArgs};
use crate::vendor::{VendorInitArgs, VerifyArgs};
use crate::{Global, tenant, transfer, vendor};

/// `ceremony` arguments.
#[derive(Debug, clap::Args)]
pub struct CeremonyArgs {
    /// The folder to run in (must not exist, or be empty); default: a new temporary folder.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The provider's region.
    #[arg(long, default_value = "NA")]
    region: String,
    /// Run the customer's side on a PKCS#11 module (`pkcs11:/path/to/module.so`) instead of the
    /// emulator; `--pin-file` then holds the token's user PIN and its security-officer PIN.
    #[arg(long)]
    backend: Option<String>,
    /// The token label, with `--backend pkcs11:…`.
    #[arg(long)]
    token: Option<String>,
}

const TENANT: &str = "01234567-89ab-cdef-0123-456789abcdef";

fn fresh_dir(dir: Option<&Path>) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            std::env::temp_dir().join(format!("hsmkit-ceremony-{}-{nanos:x}", std::process::id()))
        }
    };
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::Initialize)
            .detail(format!("{} is not empty", dir.display()))
            .hint("give a new or empty folder with --dir"));
    }
    hsmkit_emulator::fsio::create_private_dir(&dir.join("kmdata")).map_err(|e| {
        Error::new(ErrorKind::Io, Op::Initialize).detail(format!("cannot create {}: {e}", dir.display()))
    })?;
    Ok(dir)
}

fn step(n: usize, title: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!();
    println!("== Step {n}: {title}");
    let t = Instant::now();
    let r = f();
    match &r {
        Ok(()) => println!("-- step {n}: ok ({} ms)", t.elapsed().as_millis()),
        Err(e) => println!("-- step {n}: FAILED: {e}"),
    }
    r
}

pub fn run(g: &Global, a: &CeremonyArgs) -> Result<()> {
    let started = Instant::now();
    // Arguments are checked before anything is made.
    let region = Region::parse(&a.region)?;
    let dir = fresh_dir(a.dir.as_deref())?;
    let (kek_name, world_name) = hsmkit_transfer::packages::package_names(region, 1);
    let (kek, world) = (dir.join(&kek_name), dir.join(&world_name));
    if let Some(spec) = &a.backend {
        return run_pkcs11(g, a, spec, &dir, &kek, &world, started);
    }
    // Card PINs for the demonstration, made here and kept beside the cards.
    let pins = dir.join("card-pins");
    let pin_text = match g.seed {
        Some(s) => format!("card-1-{s}\ncard-2-{s}\ncard-3-{s}\n"),
        None => {
            let mut rng = hsmkit_emulator::rng::HsmRng::from_os()?;
            (0..3).map(|_| format!("{}\n", commands::hex(&rng.array::<8>()))).collect()
        }
    };
    hsmkit_emulator::fsio::write_atomic_new(&pins, pin_text.as_bytes(), &hsmkit_emulator::fsio::FaultHook::default())
        .map_err(|e| Error::new(ErrorKind::Io, Op::Initialize).detail(e.to_string()))?;
    let g = Global {
        kmdata: Some(dir.join("kmdata")),
        cards: None,
        nvram: None,
        pin_file: Some(pins.clone()),
        seed: g.seed,
    };
    println!("hsmkit ceremony in {}", dir.display());
    println!("Administrator card PINs for this demonstration are made here and written to {}", pins.display());

    step(1, "the provider's toolsets for NA, EU and AP (vendor init)", || make_toolsets(&g, &dir, region))?;
    step(2, "validate the packages (verifykeypackage)", || verify_toolsets(&dir, region))?;
    step(3, "create the security world, ACS 2/3 (new-world)", || {
        commands::new_world(
            &g,
            &NewWorldArgs {
                initialize: true,
                program: false,
                card: Vec::new(),
                cipher_suite: "DLf1024s160mRijndael".into(),
                module: 1,
                acs_quorum: "2/3".into(),
            },
        )
    })?;
    step(4, "create the tenant key (generatekey)", || {
        let params = "type=RSA size=2048 protect=module ident=contosokey plainname=contosokey nvram=no pubexp=";
        commands::generatekey(
            &g,
            &GeneratekeyArgs { app: "simple".into(), params: params.split(' ').map(String::from).collect() },
        )
    })?;
    step(5, "import it to CNG (cngimport -M)", || {
        commands::cngimport(
            &g,
            &CngimportArgs {
                import: true,
                machine: true,
                key: "contosokey".into(),
                appname: "simple".into(),
                container: "contosokey".into(),
            },
        )
    })?;
    step(6, "the keys (nkminfo -k)", || {
        commands::nkminfo(&g, &NkminfoArgs { keys: true, world: false, filter: Vec::new() })
    })?;
    step(7, "a copy with reduced permissions (KeyTransferRemote -ModifyAcls)", || {
        transfer::modify_acls(
            &g,
            &ModifyAclsArgs {
                key: KeyArgs::named("simple", "contosokey"),
                kek_package: Some(kek.clone()),
                world_package: Some(world.clone()),
                kek_public_key: None,
                card: Vec::new(),
                root_hash: None,
            },
        )
    })?;
    step(8, "inspect the copy (aclprint)", || commands::aclprint(&g, "xferacld", "contosokey"))?;
    step(9, "encrypt the key with the provider's KEK (KeyTransferRemote -Package)", || {
        transfer::package(&g, &package_args(KeyArgs::named("simple", "contosokey"), &kek, &world, &dir))
    })?;
    // The key's public half, through the seam as any backend gives it.
    let original = transfer::public_spki(&g, &KeyArgs::named("simple", "contosokey"))?;
    provider_steps(&g, &dir, region, 10, false, &original, started)
}

const REGIONS: [Region; 3] = [Region::NA, Region::EU, Region::AP];

/// Where a region's provider and toolset live: the chosen region's provider in `provider/` and
/// its toolset at the top of the run folder; another region's in `provider-<R>/` and
/// `toolset-<R>/`, as the article's per-region download.
fn region_dirs(dir: &Path, region: Region, chosen: Region) -> (PathBuf, PathBuf) {
    if region == chosen {
        (dir.join("provider"), dir.to_path_buf())
    } else {
        (dir.join(format!("provider-{region}")), dir.join(format!("toolset-{region}")))
    }
}

/// The provider's three regional toolsets, each made by its own provider module (and, in a
/// seeded run, from its own seed; the chosen region's from the run's seed as before).
fn make_toolsets(g: &Global, dir: &Path, chosen: Region) -> Result<()> {
    for (i, region) in REGIONS.into_iter().enumerate() {
        let (provider, out) = region_dirs(dir, region, chosen);
        let seed = if region == chosen { g.seed } else { g.seed.map(|s| s.wrapping_add(0x7e61_0000 + i as u64)) };
        hsmkit_emulator::fsio::create_private_dir(&out).map_err(|e| {
            Error::new(ErrorKind::Io, Op::Initialize).detail(format!("cannot create {}: {e}", out.display()))
        })?;
        println!("-- region {region}{}", if region == chosen { " (the customer's)" } else { "" });
        vendor::init(
            &Global { seed, ..g.clone() },
            &VendorInitArgs { region: region.to_string(), dir: provider, out },
        )?;
    }
    Ok(())
}

/// `verifykeypackage.py -k BYOK-KEK-pkg-<R>-1 -w BYOK-SecurityWorld-pkg-<R>-1` for each region.
fn verify_toolsets(dir: &Path, chosen: Region) -> Result<()> {
    for region in REGIONS {
        let (_, out) = region_dirs(dir, region, chosen);
        let (kek, world) = hsmkit_transfer::packages::package_names(region, 1);
        println!("-- verifykeypackage.py -k {kek} -w {world}");
        vendor::verify(&VerifyArgs { kek: out.join(kek), world: out.join(world), root_hash: None })?;
    }
    Ok(())
}

/// The provider's side of the ceremony, from step `first`: upload, list, and the final check that
/// the tenant's Active key signs as the key the customer generated (`original_spki`).
fn provider_steps(
    g: &Global,
    dir: &Path,
    region: Region,
    first: usize,
    allow_unattested: bool,
    original_spki: &[u8],
    started: Instant,
) -> Result<()> {
    let tenant_args = |command| TenantArgs { provider: dir.join("provider"), tenant: TENANT.into(), command };
    step(first, "upload the package (Add-AadrmKey)", || {
        let key_file = dir.join("TransferPackage-ContosoFirstkey.byok");
        tenant::run(g, &tenant_args(TenantCommand::AddKey { key_file, yes: true, allow_unattested }))
    })?;
    step(first + 1, "the tenant's keys (Get-AadrmKeys)", || tenant::run(g, &tenant_args(TenantCommand::Keys)))?;
    step(first + 2, "the Active key signs as the key the customer generated", || {
        let id = tenant::check_active_key(g, &dir.join("provider"), TENANT, original_spki)?;
        println!(
            "A signature by the Active key {id}, made in the provider's module, verifies under contosokey's public key."
        );
        Ok(())
    })?;
    step(
        first + 3,
        &format!("the package is for region {region} only: the other regions' services refuse it"),
        || {
            for other in REGIONS.into_iter().filter(|r| *r != region) {
                let (provider, _) = region_dirs(dir, other, region);
                let key_file = dir.join("TransferPackage-ContosoFirstkey.byok");
                let args = TenantArgs {
                    provider,
                    tenant: TENANT.into(),
                    command: TenantCommand::AddKey { key_file, yes: true, allow_unattested },
                };
                match tenant::run(g, &args) {
                    Err(e) if e.to_string().contains("bound to another security world") => {
                        println!("Region {other}: refused ({e})");
                    }
                    Err(e) => return Err(e),
                    Ok(()) => {
                        return Err(Error::new(ErrorKind::Device, Op::UnwrapKey)
                            .detail(format!("region {other}'s service accepted a package made for {region}")));
                    }
                }
            }
            Ok(())
        },
    )?;
    println!();
    println!("Ceremony complete in {} ms; everything is in {}", started.elapsed().as_millis(), dir.display());
    println!("Result: SUCCESS");
    Ok(())
}

/// The ceremony with the customer's side on a PKCS#11 module, through the same engine: the
/// key is generated on the token, the security officer makes the KEK a trusted wrapping key and
/// the user a narrowed copy (`transfer modify-acls`), and the module wraps it (`transfer
/// package`, natively or composed).
fn run_pkcs11(
    g: &Global,
    a: &CeremonyArgs,
    spec: &str,
    dir: &Path,
    kek: &Path,
    world: &Path,
    started: Instant,
) -> Result<()> {
    let key_args = KeyArgs {
        backend: spec.to_string(),
        token: a.token.clone(),
        app: "simple".into(),
        ident: None,
        label: Some("contosokey".into()),
        id: None,
    };
    // The token's PINs (user, then security officer) come from the caller's --pin-file.
    let g = Global { kmdata: Some(dir.join("kmdata")), ..g.clone() };
    println!("hsmkit ceremony in {}, the customer's side on {spec}", dir.display());
    let region = Region::parse(&a.region)?;
    step(1, "the provider's toolsets for NA, EU and AP (vendor init)", || make_toolsets(&g, dir, region))?;
    step(2, "validate the packages (verifykeypackage)", || verify_toolsets(dir, region))?;
    step(3, "create the tenant key on the token (transfer generate-key: C_GenerateKeyPair, RSA-2048)", || {
        transfer::generate_key(&g, &GenerateKeyArgs { key: key_args.clone(), bits: 2048, curve: None })
    })?;
    let original = transfer::public_spki(&g, &key_args)?;
    step(4, "a copy with reduced permissions (transfer modify-acls)", || {
        transfer::modify_acls(
            &g,
            &ModifyAclsArgs {
                key: key_args.clone(),
                kek_package: Some(kek.to_path_buf()),
                world_package: Some(world.to_path_buf()),
                kek_public_key: None,
                card: Vec::new(),
                root_hash: None,
            },
        )
    })?;
    step(5, "encrypt the key with the provider's KEK (transfer package)", || {
        transfer::package(&g, &package_args(key_args.clone(), kek, world, dir))
    })?;
    provider_steps(&g, dir, region, 6, true, &original, started)
}

/// `transfer package` of contosokey for the ceremony's tenant.
fn package_args(key: KeyArgs, kek: &Path, world: &Path, out: &Path) -> PackageArgs {
    PackageArgs {
        key,
        format: "hsmkit".into(),
        kek_package: Some(kek.to_path_buf()),
        world_package: Some(world.to_path_buf()),
        tenant: Some(TENANT.into()),
        friendly_name: Some("ContosoFirstkey".into()),
        kek_public_key: None,
        kid: None,
        aws_algorithm: None,
        gcp_method: None,
        out: Some(out.to_path_buf()),
        root_hash: None,
    }
}

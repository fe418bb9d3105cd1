//! The provider's side, emulated: `vendor init` makes the toolset; `verifykeypackage` checks it.

use std::path::{Path, PathBuf};

use hsmkit_backend::{Backend, Error, ErrorKind, Op, Pin, Result, SessionMode};
use hsmkit_emulator::acl::Acl;
use hsmkit_emulator::fsio::{FaultHook, write_atomic_new};
use hsmkit_emulator::suite::CipherSuite;
use hsmkit_emulator::world::Quorum;
use hsmkit_emulator::{Config, Emulator, SLOT};
use hsmkit_transfer::packages::{
    self, KEK_FORMAT, KekBody, KekInfo, KekPackage, ModuleCertBody, Region, VendorRoot, WORLD_FORMAT, WorldBody,
    WorldPackage,
};
use rand_core::SeedableRng;

use crate::Global;
use crate::commands::hex;

/// The pin file a toolset ships, standing for the root hash the real verifier has built in.
pub const PIN_FILE: &str = "verifykeypackage.pin";

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

fn io(op: Op, path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Io, op).detail(format!("{}: {e}", path.display()))
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.exists() {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::SaveKey)
            .detail(format!("{} already exists", path.display()))
            .hint("move it away first, or write the toolset elsewhere with --out"));
    }
    write_atomic_new(path, bytes, &FaultHook::default()).map_err(io(Op::SaveKey, path))
}

pub fn init(g: &Global, a: &VendorInitArgs) -> Result<()> {
    let region = Region::parse(&a.region)?;
    let generation = 1;
    let (kek_name, world_name) = packages::package_names(region, generation);
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
    let subs = ["kmdata", "nvram", "cards", "acs-pin", "vendor-root.pk8"];
    let existed: Vec<bool> = subs.iter().map(|s| a.dir.join(s).exists()).collect();
    let made = [kek_path.clone(), world_path.clone(), a.out.join(PIN_FILE)];
    let result = make_provider(g, a, region, generation, &kek_path, &world_path);
    if result.is_err() {
        if dir_was_new {
            let _ = std::fs::remove_dir_all(&a.dir);
        } else {
            for (sub, existed) in subs.iter().zip(existed) {
                let p = a.dir.join(sub);
                if !existed {
                    let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                }
            }
        }
        for p in &made {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

fn make_provider(
    g: &Global,
    a: &VendorInitArgs,
    region: Region,
    generation: u32,
    kek_path: &Path,
    world_path: &Path,
) -> Result<()> {
    let kmdata = a.dir.join("kmdata");
    hsmkit_emulator::fsio::create_private_dir(&kmdata).map_err(io(Op::Initialize, &kmdata))?;
    let mut config = Config::beside(&kmdata);
    config.seed = g.seed.map(|s| s.wrapping_add(0x5eed_0001));
    if g.seed.is_some() {
        config.clock = hsmkit_emulator::rng::Clock::Fixed(crate::env::SEEDED_TIME_MS);
    }
    let emu = Emulator::open(config)?;

    // The provider's world: one administrator card, its PIN kept in the provider's folder.
    let mut rng = match g.seed {
        Some(s) => rand_chacha::ChaCha20Rng::seed_from_u64(s.wrapping_add(0x2007)),
        None => {
            let mut seed = [0u8; 32];
            getrandom(&mut seed)?;
            rand_chacha::ChaCha20Rng::from_seed(seed)
        }
    };
    let pin_bytes: [u8; 12] = {
        use rand_core::Rng;
        let mut b = [0u8; 12];
        rng.fill_bytes(&mut b);
        b
    };
    let pin = Pin::from(hex(&pin_bytes));
    write_new(&a.dir.join("acs-pin"), format!("{}\n", secrecy::ExposeSecret::expose_secret(&pin)).as_bytes())?;
    let created = emu.create_world(CipherSuite::DLf3072s256mAEScSP800131Ar1, Quorum { k: 1, n: 1 }, &[pin])?;
    let world = created.world;
    println!("Provider module {} in world {} ({})", emu.esn()?, world.name(), world.suite());

    // The module signing key and the KEK, generated in the provider's module.
    let sign_header = emu.generate_rsa("hsmkit", "module-signing", "module signing key", 2048, 65537)?;
    let kek_ident = format!("kek-{}-{generation}", region.to_string().to_ascii_lowercase());
    let kek_acl = Acl::key_exchange_key(world.hkm());
    let exportable = kek_acl.allows_leaving(world.hkm());
    let kek_header = emu.generate_rsa_with_acl("hsmkit", &kek_ident, "Key Exchange Key", 2048, 65537, Some(kek_acl))?;
    println!("KEK {} generated in the module (RSA-2048, not exportable)", kek_header.ident);

    // The vendor root certifies the module signing key.
    let root = VendorRoot::generate(&mut rng)?;
    write_new(&a.dir.join("vendor-root.pk8"), &root.to_pkcs8()?)?;
    let cert = root.certify(ModuleCertBody { esn: emu.esn()?, spki: sign_header.public.clone() })?;

    let handles = emu.load_key("hsmkit", "module-signing")?;
    let session = emu.open_session(SLOT, SessionMode::ReadOnly)?;
    let kek_body = KekBody {
        region,
        generation,
        kek: KekInfo { spki: kek_header.public.clone(), bits: kek_header.bits, exportable, generated_in: emu.esn()? },
        world_hknso: world.hknso().to_vec(),
    };
    let signing = *handles
        .first()
        .ok_or_else(|| Error::new(ErrorKind::Device, Op::LoadKey).detail("the module signing key did not load"))?;
    let kek_pkg = KekPackage::sign(KEK_FORMAT, kek_body, cert.clone(), root.spki(), session.as_ref(), signing)?;
    let world_body = WorldBody {
        region,
        generation,
        cipher_suite: world.suite().name().to_string(),
        hknso: world.hknso().to_vec(),
        hkm: world.hkm().to_vec(),
    };
    let world_pkg = WorldPackage::sign(WORLD_FORMAT, world_body, cert, root.spki(), session.as_ref(), signing)?;
    write_new(kek_path, &kek_pkg.to_bytes()?)?;
    write_new(world_path, &world_pkg.to_bytes()?)?;
    let hash = packages::format_root_hash(&packages::root_hash(&root.spki()));
    let pin_path = a.out.join(PIN_FILE);
    write_new(&pin_path, format!("{hash}\n").as_bytes())?;
    println!("Toolset for region {region}:");
    println!("  {}", kek_path.display());
    println!("  {}", world_path.display());
    println!("  {} (the root hash the verifier pins)", pin_path.display());
    println!("Vendor root hash: {hash}");
    println!("The provider keeps its world, KEK and root key in {}", a.dir.display());
    Ok(())
}

fn getrandom(out: &mut [u8]) -> Result<()> {
    let mut rng = hsmkit_emulator::rng::HsmRng::from_os()?;
    rng.fill(out);
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

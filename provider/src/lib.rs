//! The cloud provider's side of a BYOK transfer, emulated.
//!
//! A real provider ships a toolset: a KEK package (the public half of a Key Exchange Key that
//! never leaves its HSMs) and a Security World package (the hashes of its world), both signed by
//! a module key certified by the vendor's root, whose hash the verifier pins. [`mint`] makes such
//! a provider in a folder of its own — an emulated module in a world of its own with one
//! administrator card, the module signing key, the KEK, the vendor root — and returns the toolset;
//! [`Toolset::write`] writes it out as the real toolset's three files.
//!
//! `hsmkit vendor init` is this function with a command line around it; the benches and tests
//! that need a genuine toolset call it directly.

use std::path::Path;

use hsmkit_backend::{Backend, Error, ErrorKind, Op, Pin, Result, SessionMode};
use hsmkit_emulator::acl::Acl;
use hsmkit_emulator::fsio::{FaultHook, write_atomic_new};
use hsmkit_emulator::suite::CipherSuite;
use hsmkit_emulator::world::Quorum;
use hsmkit_emulator::{Config, Emulator, SLOT};
use hsmkit_transfer::packages::{
    self, KEK_FORMAT, KekBody, KekInfo, KekPackage, ModuleCertBody, Region, VendorRoot, Verified, WORLD_FORMAT,
    WorldBody, WorldPackage,
};
use rand_core::SeedableRng as _;

/// The pin file a toolset ships, standing for the root hash the real verifier has built in.
pub const PIN_FILE: &str = "verifykeypackage.pin";

/// What the provider's files in its folder are called (removed again when minting fails).
pub const PROVIDER_FILES: &[&str] = &["kmdata", "nvram", "cards", "acs-pin", "vendor-root.pk8"];

/// How to mint a provider.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The region the packages are for.
    pub region: Region,
    /// The packages' generation (1 for a provider's first KEK).
    pub generation: u32,
    /// A seed for reproducible runs (the module's generator, the card PIN and the vendor root);
    /// `None` draws from the operating system.
    pub seed: Option<u64>,
    /// A fixed module clock, milliseconds since 1970 (with a seed, for byte-identical output).
    pub clock_ms: Option<u64>,
}

impl Options {
    /// A provider for `region`, generation 1, from the operating system's randomness.
    pub fn new(region: Region) -> Options {
        Options { region, generation: 1, seed: None, clock_ms: None }
    }
}

/// A minted toolset.
#[derive(Clone)]
pub struct Toolset {
    /// Region and generation.
    pub region: Region,
    /// The packages' generation.
    pub generation: u32,
    /// The KEK package's file name (`BYOK-KEK-pkg-NA-1`).
    pub kek_name: String,
    /// The world package's file name (`BYOK-SecurityWorld-pkg-NA-1`).
    pub world_name: String,
    /// The KEK package's bytes.
    pub kek: Vec<u8>,
    /// The world package's bytes.
    pub world: Vec<u8>,
    /// The hash of the vendor root the verifier pins.
    pub root_hash: [u8; 20],
    /// The provider module's serial number.
    pub esn: String,
    /// The provider world's name and cipher suite, for a person to read.
    pub world_info: String,
    /// The KEK's ident in the provider's module.
    pub kek_ident: String,
}

impl std::fmt::Debug for Toolset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolset")
            .field("region", &self.region)
            .field("kek_name", &self.kek_name)
            .field("world_name", &self.world_name)
            .field("root_hash", &packages::format_root_hash(&self.root_hash))
            .finish_non_exhaustive()
    }
}

fn io(op: Op, path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Io, op).detail(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path`, which must not exist yet (never overwrites).
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.exists() {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::SaveKey)
            .detail(format!("{} already exists", path.display()))
            .hint("move it away first, or write the toolset to another folder"));
    }
    write_atomic_new(path, bytes, &FaultHook::default()).map_err(io(Op::SaveKey, path))
}

/// Makes a provider in `dir` (its module's kmdata and NVRAM, its card, the card's PIN in
/// `acs-pin`, the vendor root's key in `vendor-root.pk8`) and returns its toolset. `dir` must not
/// hold a provider yet. On an error, the caller removes what was made ([`PROVIDER_FILES`]).
pub fn mint(dir: &Path, opts: &Options) -> Result<Toolset> {
    let kmdata = dir.join("kmdata");
    if kmdata.exists() {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::Initialize)
            .detail(format!("{} already holds a provider", dir.display()))
            .hint("choose another folder for the provider"));
    }
    hsmkit_emulator::fsio::create_private_dir(&kmdata).map_err(io(Op::Initialize, &kmdata))?;
    let mut config = Config::beside(&kmdata);
    config.seed = opts.seed.map(|s| s.wrapping_add(0x5eed_0001));
    if let Some(ms) = opts.clock_ms {
        config.clock = hsmkit_emulator::rng::Clock::Fixed(ms);
    }
    let emu = Emulator::open(config)?;

    // The provider's world: one administrator card, its PIN kept in the provider's folder.
    let mut rng = match opts.seed {
        Some(s) => rand_chacha::ChaCha20Rng::seed_from_u64(s.wrapping_add(0x2007)),
        None => {
            let mut seed = [0u8; 32];
            hsmkit_emulator::rng::HsmRng::from_os()?.fill(&mut seed);
            rand_chacha::ChaCha20Rng::from_seed(seed)
        }
    };
    let pin_bytes: [u8; 12] = {
        use rand_core::Rng as _;
        let mut b = [0u8; 12];
        rng.fill_bytes(&mut b);
        b
    };
    let pin_text: String = pin_bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_new(&dir.join("acs-pin"), format!("{pin_text}\n").as_bytes())?;
    let created =
        emu.create_world(CipherSuite::DLf3072s256mAEScSP800131Ar1, Quorum { k: 1, n: 1 }, &[Pin::from(pin_text)])?;
    let world = created.world;

    // The module signing key and the KEK, generated in the provider's module.
    let sign_header = emu.generate_rsa("hsmkit", "module-signing", "module signing key", 2048, 65537)?;
    let kek_ident = format!("kek-{}-{}", opts.region.to_string().to_ascii_lowercase(), opts.generation);
    let kek_acl = Acl::key_exchange_key(world.hkm());
    let exportable = kek_acl.allows_leaving(world.hkm());
    let kek_header = emu.generate_rsa_with_acl("hsmkit", &kek_ident, "Key Exchange Key", 2048, 65537, Some(kek_acl))?;

    // The vendor root certifies the module signing key.
    let root = VendorRoot::generate(&mut rng)?;
    write_new(&dir.join("vendor-root.pk8"), &root.to_pkcs8()?)?;
    let esn = emu.esn()?;
    let cert = root.certify(ModuleCertBody { esn: esn.clone(), spki: sign_header.public.clone() })?;

    let handles = emu.load_key("hsmkit", "module-signing")?;
    let session = emu.open_session(SLOT, SessionMode::ReadOnly)?;
    let kek_body = KekBody {
        region: opts.region,
        generation: opts.generation,
        kek: KekInfo { spki: kek_header.public.clone(), bits: kek_header.bits, exportable, generated_in: esn.clone() },
        world_hknso: world.hknso().to_vec(),
    };
    let signing = *handles
        .first()
        .ok_or_else(|| Error::new(ErrorKind::Device, Op::LoadKey).detail("the module signing key did not load"))?;
    let kek_pkg = KekPackage::sign(KEK_FORMAT, kek_body, cert.clone(), root.spki(), session.as_ref(), signing)?;
    let world_body = WorldBody {
        region: opts.region,
        generation: opts.generation,
        cipher_suite: world.suite().name().to_string(),
        hknso: world.hknso().to_vec(),
        hkm: world.hkm().to_vec(),
    };
    let world_pkg = WorldPackage::sign(WORLD_FORMAT, world_body, cert, root.spki(), session.as_ref(), signing)?;
    let (kek_name, world_name) = packages::package_names(opts.region, opts.generation);
    Ok(Toolset {
        region: opts.region,
        generation: opts.generation,
        kek_name,
        world_name,
        kek: kek_pkg.to_bytes()?,
        world: world_pkg.to_bytes()?,
        root_hash: packages::root_hash(&root.spki()),
        esn,
        world_info: format!("{} ({})", world.name(), world.suite()),
        kek_ident: kek_header.ident,
    })
}

impl Toolset {
    /// Writes the two packages and the verifier's pin file into `out`, none of which may exist.
    pub fn write(&self, out: &Path) -> Result<()> {
        write_new(&out.join(&self.kek_name), &self.kek)?;
        write_new(&out.join(&self.world_name), &self.world)?;
        write_new(&out.join(PIN_FILE), format!("{}\n", packages::format_root_hash(&self.root_hash)).as_bytes())
    }

    /// The toolset verified as a tenant verifies it (against its own root hash).
    pub fn verify(&self) -> Result<Verified> {
        packages::verify(&self.kek_name, &self.kek, &self.world_name, &self.world, &self.root_hash)
    }
}

//! The subcommands.

use std::path::PathBuf;

use hsmkit_backend::{Error, ErrorKind, Op, Result};
use hsmkit_emulator::generate::{GenerateParams, KeyKind};
use hsmkit_emulator::keyblob::KeyFile;
use hsmkit_emulator::suite::CipherSuite;
use hsmkit_emulator::world::Quorum;

use crate::pins::PinSource;
use crate::{Global, env, show};

/// `new-world` arguments, as nShield's `new-world` takes them.
#[derive(Debug, clap::Args)]
pub struct NewWorldArgs {
    /// Create a new world.
    #[arg(short = 'i', long, conflicts_with = "program")]
    pub(crate) initialize: bool,
    /// Program the module into the world already in kmdata (needs the ACS quorum).
    #[arg(short = 'p', long)]
    pub(crate) program: bool,
    /// With --program: the numbers of the cards to present (default: the first K).
    #[arg(long = "card", value_name = "N")]
    pub(crate) card: Vec<u8>,
    /// The cipher suite.
    #[arg(short = 'c', long, default_value = "DLf3072s256mAEScSP800131Ar1")]
    pub(crate) cipher_suite: String,
    /// The module (the emulator has module 1).
    #[arg(short = 'm', long, default_value_t = 1)]
    pub(crate) module: u32,
    /// Administrator Card Set quorum, K/N.
    #[arg(short = 'Q', long, default_value = "1/1")]
    pub(crate) acs_quorum: String,
}

/// `nkminfo` arguments.
#[derive(Debug, clap::Args)]
pub struct NkminfoArgs {
    /// List keys (optionally of one application, and one ident).
    #[arg(short = 'k', long = "key-list")]
    pub(crate) keys: bool,
    /// Show the world (the default).
    #[arg(short = 'w', long = "world-info")]
    pub(crate) world: bool,
    /// With -k: application name, then ident.
    pub(crate) filter: Vec<String>,
}

/// `generatekey` arguments: `--generate APP key=value …`.
#[derive(Debug, clap::Args)]
pub struct GeneratekeyArgs {
    /// Generate a key for application APP.
    #[arg(short = 'g', long = "generate", value_name = "APP")]
    pub(crate) app: String,
    /// Key parameters: type=RSA size=2048 (or type=ECDSA curve=NISTP256, or type=Ed25519)
    /// protect=module ident=… plainname=… nvram=no pubexp=
    pub(crate) params: Vec<String>,
}

/// `cngimport` arguments.
#[derive(Debug, clap::Args)]
pub struct CngimportArgs {
    /// Import a key (the only mode hsmkit has).
    #[arg(short = 'i', long)]
    pub(crate) import: bool,
    /// A machine key, usable by every user (without it, a key of the current user).
    #[arg(short = 'M', long = "machine-key")]
    pub(crate) machine: bool,
    /// The key's ident.
    #[arg(short = 'k', long)]
    pub(crate) key: String,
    /// The key's application name.
    #[arg(short = 'a', long, default_value = "simple")]
    pub(crate) appname: String,
    /// The CNG key (container) name.
    pub(crate) container: String,
}

/// `aclprint` arguments.
#[derive(Debug, clap::Args)]
pub struct AclprintArgs {
    /// Application name.
    #[arg(short = 'A', long = "app", value_name = "APP")]
    pub app: String,
    /// Key ident.
    #[arg(short = 'K', long = "ident", value_name = "IDENT")]
    pub ident: String,
}

/// `preload` arguments: `preload -m 1 -A APP -K IDENT PROGRAM…`.
#[derive(Debug, clap::Args)]
pub struct PreloadArgs {
    /// Module.
    #[arg(short = 'm', long, default_value_t = 1)]
    pub(crate) module: u32,
    /// Application name of the key to load.
    #[arg(short = 'A', long = "appname")]
    pub(crate) app: String,
    /// Ident of the key to load.
    #[arg(short = 'K', long = "key-ident")]
    pub(crate) ident: String,
    /// The program to run with the key loaded (hsmkit runs `aclprint.py`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub(crate) program: Vec<String>,
}

/// `nopclearfail` arguments: the mode to switch module 1 to.
#[derive(Debug, clap::Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("mode").required(true).multiple(false)))]
pub struct NopclearfailArgs {
    /// Operational mode.
    #[arg(short = 'O', long, group = "mode")]
    pub(crate) operational: bool,
    /// Pre-initialisation mode.
    #[arg(short = 'I', long = "initialization", group = "mode")]
    pub(crate) initialisation: bool,
    /// Maintenance mode.
    #[arg(short = 'M', long, group = "mode")]
    pub(crate) maintenance: bool,
    /// Module.
    #[arg(short = 'm', long, default_value_t = 1)]
    pub(crate) module: u32,
}

pub fn nopclearfail(g: &Global, a: &NopclearfailArgs) -> Result<()> {
    use hsmkit_emulator::module::Mode;
    if a.module != 1 {
        return Err(bad(Op::Module, format!("there is no module {}", a.module), "use -m 1"));
    }
    let mode = if a.operational {
        Mode::Operational
    } else if a.initialisation {
        Mode::Initialisation
    } else {
        Mode::Maintenance
    };
    let emu = env::emulator(g)?;
    emu.set_mode(mode)?;
    println!("Module 1 ({}): {} mode", emu.esn()?, mode.describe());
    Ok(())
}

/// `init-pin` arguments.
#[derive(Debug, clap::Args)]
pub struct InitPinArgs {
    /// The backend: emulator, emulator:KMDATA, pkcs11:/path/to/module.so
    #[arg(long, default_value = "emulator")]
    pub(crate) backend: String,
    /// The token label (PKCS#11 modules; default: the first token).
    #[arg(long)]
    pub(crate) token: Option<String>,
}

/// `init-pin`: the security officer (on a security world, the Administrator cards 1 to k) sets
/// the token's user PIN (`C_InitPIN`). From then on its private keys need the user's login, in
/// process and through `libhsmkit_pkcs11.so` alike. PINs: the officer's (each card's), then the
/// new user PIN.
pub fn init_pin(g: &Global, a: &InitPinArgs) -> Result<()> {
    use hsmkit_backend::{SessionMode, UserKind};
    let backend = crate::backends::open(&a.backend, g, a.token.as_deref())?;
    let slot = *backend.slots()?.first().ok_or_else(|| Error::new(ErrorKind::TokenNotPresent, Op::Info))?;
    let session = backend.open_session(slot, SessionMode::ReadWrite)?;
    let mut pins = PinSource::from(g)?;
    match session.world_authority() {
        Some(authority) => {
            let (k, n) = authority.world()?.quorum;
            let mut cards = Vec::new();
            for c in 1..=k {
                println!("Presenting card {c} of {n}");
                cards.push((c, pins.next(&format!("card {c} of {n}"), false)?));
            }
            authority.present_cards(&cards)?;
        }
        None => session.login(UserKind::SecurityOfficer, &pins.next("the token's security officer", false)?)?,
    }
    let set = pins.next("the new user PIN", true).and_then(|pin| session.init_pin(&pin));
    let _ = session.logout();
    set?;
    println!("User PIN set on {}: private keys now need the user's login", a.backend);
    println!("Result: SUCCESS");
    Ok(())
}

/// `kmfile-dump` arguments.
#[derive(Debug, clap::Args)]
pub struct KmfileDumpArgs {
    /// A key blob file.
    file: PathBuf,
}

fn bad(op: Op, detail: String, hint: &str) -> Error {
    Error::new(ErrorKind::ArgumentsBad, op).detail(detail).hint(hint.to_string())
}

pub fn new_world(g: &Global, a: &NewWorldArgs) -> Result<()> {
    if a.program {
        let emu = env::emulator(g)?;
        let auth = crate::quorum::collect(g, &emu, &a.card)?;
        emu.program_module(&auth)?;
        let w = emu.require_world(Op::Module)?;
        println!("Module 1 ({}) programmed into world {}; hknso = {}", emu.esn()?, w.name(), hex(w.hknso()));
        return Ok(());
    }
    if !a.initialize {
        return Err(bad(
            Op::CreateWorld,
            "new-world needs --initialize or --program".into(),
            "run `hsmkit new-world --initialize --cipher-suite=… --acs-quorum=K/N`",
        ));
    }
    if a.module != 1 {
        return Err(bad(
            Op::CreateWorld,
            format!("there is no module {}", a.module),
            "the emulator has module 1: use --module=1",
        ));
    }
    let suite = CipherSuite::parse(&a.cipher_suite)?;
    let quorum = Quorum::parse(&a.acs_quorum)?;
    let emu = env::emulator_making_kmdata(g)?;
    if let Some(w) = emu.world()? {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::CreateWorld)
            .detail(format!("kmdata {} already holds world {}", emu.config().kmdata.display(), w.name()))
            .hint("move the existing kmdata away (keep a backup) before creating a new world"));
    }
    let mut source = PinSource::from(g)?;
    if let Some(have) = source.available()
        && have < usize::from(quorum.n)
    {
        return Err(bad(
            Op::CreateWorld,
            format!("the PIN file has {have} PIN(s) for {} cards", quorum.n),
            "give one PIN a line, card by card",
        ));
    }
    println!("Create Security World:");
    println!(" Module 1 ({}): switching to initialisation mode", emu.esn()?);
    println!(" Cipher suite {suite} ({} bits of security), ACS quorum {}/{}", suite.strength(), quorum.k, quorum.n);
    let mut pins = Vec::new();
    for i in 1..=quorum.n {
        pins.push(source.next(&format!("card {i} of {}", quorum.n), true)?);
    }
    let created = emu.create_world(suite, quorum, &pins)?;
    for (i, p) in created.cards.iter().enumerate() {
        println!(" Module 1 Card {}: written to {}", i + 1, p.display());
    }
    println!(" Module 1: back in operational mode");
    println!("security world generated on module #1; hknso = {}", hex(created.world.hknso()));
    println!("World file: {}", emu.config().kmdata.join("local").join("world").display());
    println!(
        "Any {} of the {} cards give administrative access; keep each card and its PIN with a different person.",
        quorum.k, quorum.n
    );
    Ok(())
}

pub fn nkminfo(g: &Global, a: &NkminfoArgs) -> Result<()> {
    let emu = env::emulator(g)?;
    if a.keys {
        let app = a.filter.first();
        let ident = a.filter.get(1);
        let (listed, damaged) = emu.list_keys_and_damage()?;
        for e in &damaged {
            eprintln!("hsmkit: warning: skipped: {e}");
        }
        let keys: Vec<_> = listed
            .into_iter()
            .filter(|k| app.is_none_or(|x| *x == k.header.appname) && ident.is_none_or(|x| *x == k.header.ident))
            .collect();
        print!("{}", show::key_list(&keys));
        // The data and certificate objects applications stored through PKCS#11, when there are any.
        if app.is_none() {
            let objects = emu.list_objects()?;
            if !objects.is_empty() {
                print!("{}", show::object_list(&objects));
            }
        }
        return Ok(());
    }
    let world = emu.require_world(Op::Info)?;
    print!("{}", show::world_info(&world, &emu.esn()?, emu.mode()?));
    Ok(())
}

/// nShield's name of a curve (`NISTP256`).
fn curve_name(c: hsmkit_backend::EcCurve) -> &'static str {
    match c {
        hsmkit_backend::EcCurve::P256 => "NISTP256",
        hsmkit_backend::EcCurve::P384 => "NISTP384",
        hsmkit_backend::EcCurve::P521 => "NISTP521",
        hsmkit_backend::EcCurve::Ed25519 => "Ed25519",
    }
}

pub fn generatekey(g: &Global, a: &GeneratekeyArgs) -> Result<()> {
    hsmkit_emulator::keyblob::check_appname(&a.app, Op::GenerateKeyPair)?;
    let p = GenerateParams::parse(&a.params)?;
    let emu = env::emulator(g)?;
    println!("key generation parameters:");
    println!(" operation    Operation to perform       generate");
    println!(" application  Application                {}", a.app);
    println!(" protect      Protected by               module");
    match p.kind {
        KeyKind::Rsa { size, pubexp } => {
            println!(" type         Key type                   RSA");
            println!(" size         Key size                   {size}");
            println!(" pubexp       Public exponent (hex)      {pubexp:x}");
        }
        KeyKind::Ec(hsmkit_backend::EcCurve::Ed25519) => {
            println!(" type         Key type                   Ed25519");
        }
        KeyKind::Ec(curve) => {
            println!(" type         Key type                   ECDSA");
            println!(" curve        Elliptic curve             {}", curve_name(curve));
        }
    }
    println!(" ident        Key identifier             {}", p.ident);
    println!(" plainname    Key name                   {}", p.plainname);
    println!(" nvram        Blob in NVRAM (needs ACS)  no");
    let header = match p.kind {
        KeyKind::Rsa { size, pubexp } => emu.generate_rsa(&a.app, &p.ident, &p.plainname, size, pubexp)?,
        KeyKind::Ec(curve) => emu.generate_ec(&a.app, &p.ident, &p.plainname, curve)?,
    };
    println!("Key successfully generated.");
    println!("Path to key: {}", emu.key_path(&header.appname, &header.ident).display());
    Ok(())
}

pub fn cngimport(g: &Global, a: &CngimportArgs) -> Result<()> {
    if !a.import {
        return Err(bad(
            Op::ImportKey,
            "cngimport needs --import".into(),
            "run `hsmkit cngimport --import -M --key=IDENT --appname=simple NAME`",
        ));
    }
    let emu = env::emulator(g)?;
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let (path, header) = emu.cng_import(&a.appname, &a.key, &a.container, a.machine, &user)?;
    println!(
        "Key {}/{} imported to CNG as '{}' ({} key).",
        a.appname,
        a.key,
        a.container,
        if a.machine { "machine" } else { "user" }
    );
    println!("Tokenized key file: {}", path.display());
    println!("Key hash: {}", hex(&header.hash));
    println!("Back up this file with the world file: the key cannot be exported back once transferred.");
    Ok(())
}

pub fn aclprint(g: &Global, app: &str, ident: &str) -> Result<()> {
    let emu = env::emulator(g)?;
    // Loading the key through the module checks the blob's integrity before printing anything.
    let key = emu.load_named(app, ident)?;
    println!("Key {app}/{ident} ({}, {} bits), loaded on module 1", show::key_type(&key.header), key.header.bits);
    print!("{}", key.header.acl);
    Ok(())
}

pub fn preload(g: &Global, a: &PreloadArgs) -> Result<()> {
    if a.module != 1 {
        return Err(bad(Op::LoadKey, format!("there is no module {}", a.module), "use -m 1"));
    }
    let runs_aclprint = a.program.iter().any(|p| {
        let name =
            std::path::Path::new(p).file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        name == "aclprint.py" || name == "aclprint"
    });
    if !runs_aclprint {
        return Err(Error::new(ErrorKind::Unsupported, Op::LoadKey)
            .detail(format!("hsmkit preload runs aclprint.py only, not '{}'", a.program.join(" ")))
            .hint("run `hsmkit preload -m 1 -A APP -K IDENT python aclprint.py`"));
    }
    aclprint(g, &a.app, &a.ident)
}

pub fn kmfile_dump(a: &KmfileDumpArgs) -> Result<()> {
    let file = KeyFile::read(&a.file)?;
    print!("{}", show::kmfile(&a.file, &file));
    Ok(())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

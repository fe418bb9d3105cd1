//! The emulator: one module, its world, its kmdata, and the keys loaded in it.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use hsmkit_backend::{Error, ErrorKind, KeyHandle, MechanismKind, ObjectClass, Op, Pin, Result};

use crate::acl::{Acl, Denied, Need};
use crate::fsio::{FaultHook, write_atomic};
use crate::keyblob::{
    ArchiveBlob, BlobKeyType, CngInfo, KEY_FORMAT, KeyFile, KeyHeader, Protection, check_appname, check_ident,
    key_file_name,
};
use crate::keys::{RsaPrivate, UseCounters};
use crate::module::{self, Mode, Nvram};
use crate::rng::{Clock, HsmRng};
use crate::suite::{CipherSuite, derive_key, seal};
use crate::world::{CardPresentation, Quorum, QuorumAuth, World};

/// Where the emulator keeps its files, and how it gets randomness and time.
#[derive(Debug, Clone)]
pub struct Config {
    /// The kmdata folder (`NFAST_KMDATA`): `local/world`, `local/key_*`, `local/module_*`.
    pub kmdata: PathBuf,
    /// The module's NVRAM folder.
    pub nvram: PathBuf,
    /// Where Administrator card files go.
    pub cards: PathBuf,
    /// A seed for a reproducible run (not for real keys); `None` for the OS RNG.
    pub seed: Option<u64>,
    /// The clock.
    pub clock: Clock,
    /// A fault-injection hook for tests.
    pub faults: FaultHook,
    /// Whether a missing kmdata folder opens as a module without a world (the PKCS#11 module's
    /// uninitialised token, made by `C_InitToken`) rather than being an error.
    pub kmdata_may_be_missing: bool,
}

impl Config {
    /// kmdata at `kmdata`, with `nvram/` and `cards/` beside it.
    pub fn beside(kmdata: impl Into<PathBuf>) -> Config {
        let kmdata = kmdata.into();
        let parent = kmdata.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Config {
            nvram: parent.join("nvram"),
            cards: parent.join("cards"),
            kmdata,
            seed: None,
            clock: Clock::System,
            faults: FaultHook::default(),
            kmdata_may_be_missing: false,
        }
    }
}

/// The private part of a loaded key.
pub enum Material {
    /// An RSA private key.
    Rsa(Box<RsaPrivate>),
    /// An EC or Ed25519 private key.
    Ec(Box<crate::ec::EcPrivate>),
    /// A secret key's bytes: an AES key or a generic secret (the header's key type says which).
    Aes(Zeroizing<Vec<u8>>),
    /// A public key alone.
    PublicOnly,
}

/// The public half of an asymmetric key.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// RSA.
    Rsa(rsa::PublicKey),
    /// EC or Ed25519.
    Ec(crate::ec::EcPublic),
}

/// A key loaded in the module.
pub struct LoadedKey {
    /// The blob's header (names, ACL, public key).
    pub header: KeyHeader,
    /// The blob file, for keys kept in kmdata.
    pub path: Option<PathBuf>,
    /// The private or secret part.
    pub material: Material,
    /// The public key of an asymmetric key.
    pub public: Option<PublicKey>,
    /// Use counters per ACL group.
    pub counters: UseCounters,
    /// When the key was loaded (for time limits).
    pub loaded_ms: u64,
    /// `CKA_ALLOWED_MECHANISMS`.
    pub allowed: Option<Vec<MechanismKind>>,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedKey({}/{})", self.header.appname, self.header.ident)
    }
}

/// An object (a handle's target).
#[derive(Debug, Clone)]
pub struct Object {
    /// The key.
    pub key: Arc<LoadedKey>,
    /// Which half or kind of key the handle names.
    pub class: ObjectClass,
    /// The session that owns a session object; `None` for token objects.
    pub owner: Option<u64>,
    /// The application the owning session belongs to, when its sessions share session objects
    /// (PKCS#11 §4.4: every session of an application sees them); `None` for the seam's
    /// one-session view.
    pub group: Option<u64>,
}

/// A key listed by `nkminfo -k`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyListing {
    /// The blob file.
    pub path: PathBuf,
    /// Its header.
    pub header: KeyHeader,
}

/// What [`Emulator::create_world`] reports.
#[derive(Debug, Clone)]
pub struct WorldCreated {
    /// The world.
    pub world: World,
    /// The card files written.
    pub cards: Vec<PathBuf>,
}

/// The nShield-style module, in process. A plain value: no globals.
pub struct Emulator {
    config: Config,
    nvram: Mutex<(Nvram, PathBuf)>,
    world: RwLock<Option<World>>,
    rng: Mutex<HsmRng>,
    objects: RwLock<HashMap<u64, Object>>,
    next_handle: AtomicU64,
    next_session: AtomicU64,
    /// Whether the module is in operational mode, read on every key operation.
    operational: std::sync::atomic::AtomicBool,
    /// Serialises changes to the set of loaded keys (loading token keys, changing a key in place,
    /// destroying one), so no change is lost to another or undone by a stale copy.
    key_changes: Mutex<()>,
    /// The login state of the in-process application: every session opened through
    /// [`hsmkit_backend::Backend::open_session`] shares it, as the sessions of one PKCS#11
    /// application do (§5.6).
    pub(crate) app: Mutex<AppLogin>,
    /// Whether the token record asked for a login, by the record file's identity (inode, length,
    /// modification time), so the hot path does not read it on every key operation.
    login_cache: Mutex<Option<(FileStamp, bool)>>,
    /// The headers of the key blobs in kmdata, each by its file's identity (inode, length,
    /// modification time): a key search reads again only the blobs that changed, and parses no
    /// unchanged one (every write renames a new file into place, so a change is a new identity).
    key_index: Mutex<std::collections::HashMap<PathBuf, (FileStamp, KeyHeader)>>,
}

/// A file's identity for caching: inode, length, modification time (seconds, nanoseconds).
type FileStamp = (u64, u64, i64, i64);

/// A file's identity: inode, length and modification time (to the nanosecond).
fn file_stamp(meta: &fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt as _;
    (meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec())
}

/// Who is logged in for the in-process application, and how many of its sessions are open.
#[derive(Debug, Default)]
pub(crate) struct AppLogin {
    /// Open sessions (the login ends when the last one closes).
    pub sessions: usize,
    /// Who is logged in.
    pub user: Option<hsmkit_backend::UserKind>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("kmdata", &self.config.kmdata).finish_non_exhaustive()
    }
}

pub(crate) fn poisoned(op: Op) -> Error {
    Error::new(ErrorKind::Device, op).detail("an earlier operation panicked; restart the module")
}

/// The error for a world file whose identity is not the one the module joined.
fn forged_world(esn: &str, op: Op) -> Error {
    Error::new(ErrorKind::TokenNotRecognized, op)
        .detail(format!(
            "the world file in kmdata is not the world module {esn} joined: its KNSO differs from the one kept in NVRAM (the file was replaced or forged)"
        ))
        .hint("restore the world file from your backup; a world cannot be changed under a module")
}

impl Emulator {
    /// Opens the module described by `config`: its NVRAM (made on first use) and, if kmdata has
    /// one, its world. The kmdata folder must exist.
    pub fn open(config: Config) -> Result<Self> {
        let uninitialised = config.kmdata_may_be_missing && !config.kmdata.exists();
        if !uninitialised && !config.kmdata.is_dir() {
            return Err(Error::new(ErrorKind::NotFound, Op::Initialize)
                .detail(format!("the kmdata folder {} does not exist", config.kmdata.display()))
                .hint("create it, or point --kmdata or NFAST_KMDATA at an existing kmdata folder"));
        }
        let mut rng = match config.seed {
            Some(s) => HsmRng::from_seed(s),
            None => HsmRng::from_os()?,
        };
        let mut nvram = module::open_or_create(&config.nvram, &mut rng)?;
        let world_path = config.kmdata.join("local").join("world");
        let world = if world_path.exists() {
            Some(World::load_remembered(&world_path, nvram.0.world_sha256.as_deref())?)
        } else {
            None
        };
        if let Some(w) = &world {
            // A new-world that crashed after committing its world left cards to move into place.
            crate::world::finish_pending_cards(&config.cards, w.hknso())?;
        }
        let seeded = config.seed.is_some();
        let mixed = |what: &str| {
            let (made, run) = if seeded { ("real", "seeded") } else { ("seeded (--seed)", "unseeded") };
            Error::new(ErrorKind::ArgumentsBad, Op::Initialize)
                .detail(format!("{what} was made with {made} randomness; a {run} run does not use it"))
                .hint(if seeded {
                    "drop --seed: seeded runs make test keys, and never in a module or world of real ones"
                } else {
                    "give the same --seed as when it was made (its keys are test keys), or use another kmdata and NVRAM"
                })
        };
        if nvram.1.exists() && nvram.0.seeded != seeded {
            return Err(mixed(&format!("module {} (NVRAM {})", nvram.0.esn, nvram.1.display())));
        }
        if world.as_ref().is_some_and(|w| w.body().seeded != seeded) {
            return Err(mixed(&format!("the world in {}", config.kmdata.display())));
        }
        if seeded && nvram.1.exists() {
            // Each seeded run of an existing module draws another stream (counted in NVRAM
            // under its lock), so two runs never make the same keys.
            let _held = module::lock(&nvram.1)?;
            let (mut fresh, path) = module::open_or_create(&config.nvram, &mut rng)?;
            fresh.epoch = fresh.epoch.saturating_add(1);
            module::save(&fresh, &path, &config.faults)?;
            rng.mix(&fresh.epoch.to_be_bytes());
            nvram = (fresh, path);
        }
        let operational = std::sync::atomic::AtomicBool::new(nvram.0.mode == Mode::Operational);
        let emu = Emulator {
            operational,
            config,
            nvram: Mutex::new(nvram),
            world: RwLock::new(world),
            rng: Mutex::new(rng),
            objects: RwLock::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            key_changes: Mutex::new(()),
            app: Mutex::new(AppLogin::default()),
            login_cache: Mutex::new(None),
            key_index: Mutex::new(std::collections::HashMap::new()),
        };
        Ok(emu)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the token of this kmdata has a user PIN (`hsmkit init-pin`, `C_InitPIN`): then its
    /// private and secret keys are private objects, used only after the user's login, in process
    /// and through `libhsmkit_pkcs11.so` alike. Without one the world is module protection alone,
    /// as nShield's module-protected keys need no login. Read from kmdata on each call, so a PIN
    /// set by another process counts at once.
    pub fn login_required(&self) -> Result<bool> {
        // One stat a call: the record is read again only when its file changed (every write
        // renames a new file into place, so the inode changes).
        let path = crate::token::TokenRecord::path(&self.config.kmdata);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(Error::new(ErrorKind::Io, Op::Login).detail(format!("cannot read {}: {e}", path.display())));
            }
        };
        let stamp = file_stamp(&meta);
        let mut cache = self.login_cache.lock().map_err(|_| poisoned(Op::Login))?;
        if let Some((s, required)) = *cache
            && s == stamp
        {
            return Ok(required);
        }
        let required = match self.token_key(Op::Login)? {
            Some(key) => crate::token::login_required(&self.config.kmdata, &key)?,
            None => false,
        };
        *cache = Some((stamp, required));
        Ok(required)
    }

    /// The key the token record is authenticated under (derived from KM); `None` without a world.
    fn token_key(&self, op: Op) -> Result<Option<crate::token::RecordKey>> {
        if self.world()?.is_none() {
            return Ok(None);
        }
        let (_, km) = self.module_key(op)?;
        Ok(Some(derive_key(&km, "hsmkit pkcs11 token record")?))
    }

    fn require_token_key(&self, op: Op) -> Result<crate::token::RecordKey> {
        self.token_key(op)?.ok_or_else(|| self.require_world(op).err().unwrap_or_else(|| poisoned(op)))
    }

    /// The PKCS#11 token record (label, user PIN), read and checked now; `None` when there is none
    /// (or no world yet).
    pub fn token_record(&self) -> Result<Option<crate::token::TokenRecord>> {
        match self.token_key(Op::Info)? {
            Some(key) => crate::token::TokenRecord::load(&self.config.kmdata, &key),
            None => Ok(None),
        }
    }

    /// Writes a new token record labelled `label` (no user PIN), under the record's lock
    /// (`C_InitToken`).
    pub fn reset_token_record(&self, label: &str) -> Result<()> {
        let key = self.require_token_key(Op::Login)?;
        let _held = crate::token::TokenRecord::lock(&self.config.kmdata, Op::Login)?;
        crate::token::TokenRecord::new(label).save(&self.config.kmdata, &key, &self.config.faults)
    }

    /// Checks the token's user PIN (a wrong one is counted, across processes).
    pub fn check_user_pin(&self, pin: &hsmkit_backend::Pin) -> Result<()> {
        let key = self.require_token_key(Op::Login)?;
        crate::token::check_user_pin(&self.config.kmdata, &key, pin, &self.config.faults)
    }

    /// Sets the token's user PIN with the authority of the world's quorum (the security officer).
    pub fn init_user_pin(&self, quorum: &crate::world::QuorumAuth, pin: &hsmkit_backend::Pin) -> Result<()> {
        let world = self.require_world(Op::Login)?;
        if quorum.hknso() != world.hknso() {
            return Err(Error::new(ErrorKind::TokenNotRecognized, Op::Login)
                .detail("the quorum was collected for another security world"));
        }
        let salt = self.salt()?;
        let key = self.require_token_key(Op::Login)?;
        crate::token::init_user_pin(
            &self.config.kmdata,
            &key,
            pin,
            salt,
            &format!("hsmkit {}", world.name()),
            &self.config.faults,
        )
    }

    /// Changes the token's user PIN (the old one is checked first).
    pub fn change_user_pin(&self, old: &hsmkit_backend::Pin, new: &hsmkit_backend::Pin) -> Result<()> {
        let salt = self.salt()?;
        let key = self.require_token_key(Op::Login)?;
        crate::token::change_user_pin(&self.config.kmdata, &key, old, new, salt, &self.config.faults)
    }

    fn salt(&self) -> Result<[u8; 16]> {
        Ok(self.rng(Op::Login)?.array::<16>())
    }

    /// Whether randomness is seeded (reproducible, not for real keys).
    pub fn is_seeded(&self) -> bool {
        self.config.seed.is_some()
    }

    pub(crate) fn rng(&self, op: Op) -> Result<MutexGuard<'_, HsmRng>> {
        self.rng.lock().map_err(|_| poisoned(op))
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
    }

    fn local(&self) -> PathBuf {
        self.config.kmdata.join("local")
    }

    /// The module's serial number.
    pub fn esn(&self) -> Result<String> {
        Ok(self.nvram.lock().map_err(|_| poisoned(Op::Module))?.0.esn.clone())
    }

    /// The module's mode.
    pub fn mode(&self) -> Result<Mode> {
        Ok(self.nvram.lock().map_err(|_| poisoned(Op::Module))?.0.mode)
    }

    /// Switches the module's mode (`nopclearfail`).
    pub fn set_mode(&self, mode: Mode) -> Result<()> {
        let mut nv = self.nvram.lock().map_err(|_| poisoned(Op::Module))?;
        let mut next = nv.0.clone();
        next.mode = mode;
        module::save(&next, &nv.1, &self.config.faults)?;
        nv.0 = next;
        self.operational.store(mode == Mode::Operational, Ordering::Release);
        Ok(())
    }

    /// The loaded world, if kmdata has one.
    pub fn world(&self) -> Result<Option<World>> {
        Ok(self.world.read().map_err(|_| poisoned(Op::LoadWorld))?.clone())
    }

    /// The loaded world, or an error saying how to make one.
    pub fn require_world(&self, op: Op) -> Result<World> {
        self.world()?.ok_or_else(|| {
            Error::new(ErrorKind::TokenNotPresent, op)
                .detail(format!("there is no security world in {}", self.config.kmdata.display()))
                .hint("create one with `hsmkit new-world --initialize --cipher-suite=… --acs-quorum=K/N`")
        })
    }

    /// KM, checking that the module is operational and in the loaded world.
    pub(crate) fn module_key(&self, op: Op) -> Result<(World, Zeroizing<Vec<u8>>)> {
        let world = self.require_world(op)?;
        let nv = self.nvram.lock().map_err(|_| poisoned(op))?;
        if nv.0.mode != Mode::Operational {
            return Err(Error::new(ErrorKind::ModuleMode, op)
                .detail(format!("module {} is in {} mode", nv.0.esn, nv.0.mode.describe()))
                .hint("put it back in operational mode (`hsmkit nopclearfail -O`)"));
        }
        if nv.0.hknso.as_ref().is_some_and(|h| *h != hex::encode(world.hknso())) {
            return Err(forged_world(&nv.0.esn, op));
        }
        match (&nv.0.km, &nv.0.hkm) {
            (Some(km), Some(hkm)) if *hkm == hex::encode(world.hkm()) => {
                if world.suite().hash(&[b"hsmkit KM", km]) != world.hkm() {
                    return Err(Error::new(ErrorKind::Corrupt, op)
                        .detail(format!("the module key in module {}'s NVRAM is damaged", nv.0.esn))
                        .hint("program the module again with the quorum: `hsmkit new-world --program`"));
                }
                Ok((world, km.clone()))
            }
            _ => Err(Error::new(ErrorKind::TokenNotRecognized, op)
                .detail(format!("module {} is not programmed with the world {} in kmdata", nv.0.esn, world.name()))
                .hint("program the module into this world with its Administrator cards: `hsmkit new-world --program`")),
        }
    }

    /// `new-world --initialize`: makes a world with `quorum` Administrator cards, one PIN each,
    /// and programs the module into it. Refuses to replace an existing world file.
    pub fn create_world(&self, suite: CipherSuite, quorum: Quorum, pins: &[Pin]) -> Result<WorldCreated> {
        let local = self.local();
        let world_path = local.join("world");
        if world_path.exists() {
            return Err(Error::new(ErrorKind::AlreadyExists, Op::CreateWorld)
                .detail(format!("a security world already exists at {}", world_path.display()))
                .hint("move the existing kmdata away (keep a backup) before creating a new world"));
        }
        if pins.len() != usize::from(quorum.n) || quorum.k == 0 || quorum.k > quorum.n {
            return Err(Error::new(ErrorKind::ArgumentsBad, Op::CreateWorld)
                .detail(format!("{} PINs for a {}/{} card set", pins.len(), quorum.k, quorum.n))
                .hint("give one PIN per card, card by card"));
        }
        let made_local = !local.exists();
        let undo_local = || {
            if made_local {
                let _ = fs::remove_dir(&local);
            }
        };
        crate::fsio::create_private_dir(&local).map_err(|e| {
            Error::new(ErrorKind::Io, Op::CreateWorld)
                .detail(format!("cannot create {}: {e}", local.display()))
                .hint("check that the kmdata folder is writable")
        })?;
        if let Err(e) = probe_writable(&local, Op::CreateWorld) {
            undo_local();
            return Err(e);
        }
        // The module is in initialisation mode while the world is made; the mode reaches NVRAM
        // only with the new world, so a failure leaves the module as it was.
        let previous = {
            let mut nv = self.nvram.lock().map_err(|_| poisoned(Op::CreateWorld))?;
            std::mem::replace(&mut nv.0.mode, Mode::Initialisation)
        };
        self.operational.store(false, Ordering::Release);
        let created = {
            let mut rng = self.rng(Op::CreateWorld)?;
            World::create(
                suite,
                quorum,
                pins,
                &self.config.cards,
                &world_path,
                &mut rng,
                self.now_ms(),
                &self.config.faults,
            )
        };
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                if let Ok(mut nv) = self.nvram.lock() {
                    nv.0.mode = previous;
                }
                self.operational.store(previous == Mode::Operational, Ordering::Release);
                if !world_path.exists() {
                    undo_local();
                }
                return Err(e);
            }
        };
        {
            let mut nv = self.nvram.lock().map_err(|_| poisoned(Op::CreateWorld))?;
            let mut next = nv.0.clone();
            next.km = Some(created.km.clone());
            next.hkm = Some(hex::encode(created.world.hkm()));
            next.hknso = Some(hex::encode(created.world.hknso()));
            next.world_sha256 = Some(hex::encode(created.world.file_sha256()?));
            next.mode = Mode::Operational;
            module::save(&next, &nv.1, &self.config.faults)?;
            self.operational.store(true, Ordering::Release);
            let public =
                serde_json::json!({ "esn": next.esn, "hkm": next.hkm, "world": hex::encode(created.world.hknso()) });
            let _ = write_atomic(
                &local.join(format!("module_{}", next.esn)),
                public.to_string().as_bytes(),
                &self.config.faults,
            );
            nv.0 = next;
        }
        *self.world.write().map_err(|_| poisoned(Op::CreateWorld))? = Some(created.world.clone());
        Ok(WorldCreated { world: created.world, cards: created.cards })
    }

    /// `new-world --program`: programs the module into the world in kmdata with the quorum's
    /// authority (KM is unsealed from the world file and kept in NVRAM). This is how a module
    /// joins an existing world, and how one recovers from a crash between writing the world file
    /// and the NVRAM.
    pub fn program_module(&self, quorum: &QuorumAuth) -> Result<()> {
        let world = self.require_world(Op::Module)?;
        if quorum.hknso() != world.hknso() {
            return Err(Error::new(ErrorKind::TokenNotRecognized, Op::Module)
                .detail("the quorum was collected for another security world"));
        }
        let km = quorum.module_key(&world)?;
        if world.suite().hash(&[b"hsmkit KM", &km]) != world.hkm() {
            return Err(
                Error::new(ErrorKind::Corrupt, Op::Module).detail("the world's module key does not match its hash")
            );
        }
        let mut nv = self.nvram.lock().map_err(|_| poisoned(Op::Module))?;
        let mut next = nv.0.clone();
        next.km = Some(km);
        next.hkm = Some(hex::encode(world.hkm()));
        next.hknso = Some(hex::encode(world.hknso()));
        next.world_sha256 = Some(hex::encode(world.file_sha256()?));
        next.mode = Mode::Operational;
        module::save(&next, &nv.1, &self.config.faults)?;
        nv.0 = next;
        self.operational.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether the module holds the module key of the world in kmdata.
    pub fn is_programmed(&self) -> Result<bool> {
        let Some(world) = self.world()? else { return Ok(false) };
        let nv = self.nvram.lock().map_err(|_| poisoned(Op::Module))?;
        Ok(nv.0.hkm.as_deref() == Some(hex::encode(world.hkm()).as_str()))
    }

    /// Collects the ACS quorum from card files and their PINs.
    pub fn authorize(&self, cards: &[(PathBuf, Pin)]) -> Result<QuorumAuth> {
        let world = self.require_world(Op::Quorum)?;
        // A quorum is collected for the world the module joined, never for a file put in its place.
        {
            let nv = self.nvram.lock().map_err(|_| poisoned(Op::Quorum))?;
            if nv.0.hknso.as_ref().is_some_and(|h| *h != hex::encode(world.hknso())) {
                return Err(forged_world(&nv.0.esn, Op::Quorum));
            }
        }
        let presented: Vec<CardPresentation<'_>> =
            cards.iter().map(|(path, pin)| CardPresentation { path, pin }).collect();
        world.authorize(&presented, &self.config.faults)
    }

    /// The path of key `ident` of `appname` in kmdata.
    pub fn key_path(&self, appname: &str, ident: &str) -> PathBuf {
        self.local().join(key_file_name(appname, ident))
    }

    /// `generatekey`: a module-protected RSA key with the default ACL, saved as
    /// `key_<appname>_<ident>`. Refuses to overwrite an existing key.
    pub fn generate_rsa(&self, appname: &str, ident: &str, name: &str, bits: u32, pubexp: u64) -> Result<KeyHeader> {
        self.generate_rsa_with_acl(appname, ident, name, bits, pubexp, None)
    }

    /// A key protected by the Operator Card Set whose hash is `cardset` (nShield `protect=token`).
    /// Such keys exist in the model so that tools can be tested against them; loading one needs
    /// its card set, which hsmkit does not emulate, so every use (and every transfer) is refused.
    pub fn generate_rsa_card_set(&self, appname: &str, ident: &str, bits: u32, cardset: &[u8]) -> Result<KeyHeader> {
        check_appname(appname, Op::GenerateKeyPair)?;
        check_ident(ident, Op::GenerateKeyPair)?;
        let (world, km) = self.module_key(Op::GenerateKeyPair)?;
        let path = self.key_path(appname, ident);
        let acl = Acl::generatekey_default(true, world.hkm(), world.hkre(), world.hknso());
        let pkcs8 = self.new_rsa_pkcs8(bits, 65537)?;
        let mut header = self.private_header(&world, appname, ident, ident, &[], &pkcs8, acl, None)?;
        header.protection = Protection::CardSet { hash: cardset.to_vec() };
        let file = self.seal_key(&world, &km, header, &pkcs8, false)?;
        file.write_new(&path, &self.config.faults)?;
        Ok(file.header)
    }

    /// `generatekey` with a chosen ACL (`None`: the default of [`Acl::generatekey_default`]).
    pub fn generate_rsa_with_acl(
        &self,
        appname: &str,
        ident: &str,
        name: &str,
        bits: u32,
        pubexp: u64,
        acl: Option<Acl>,
    ) -> Result<KeyHeader> {
        check_rsa_params(bits, pubexp)?;
        self.generate_named(appname, ident, name, acl, || self.new_rsa_pkcs8(bits, pubexp))
    }

    /// `generatekey type=ECDSA curve=NISTP256` (or `type=Ed25519`): a module-protected EC key with
    /// the default ACL, saved as `key_<appname>_<ident>`. Refuses to overwrite an existing key.
    pub fn generate_ec(
        &self,
        appname: &str,
        ident: &str,
        name: &str,
        curve: hsmkit_backend::EcCurve,
    ) -> Result<KeyHeader> {
        self.generate_named(appname, ident, name, None, || {
            crate::ec::EcPrivate::generate(curve, &mut *self.rng(Op::GenerateKeyPair)?)
        })
    }

    fn generate_named(
        &self,
        appname: &str,
        ident: &str,
        name: &str,
        acl: Option<Acl>,
        make: impl FnOnce() -> Result<Zeroizing<Vec<u8>>>,
    ) -> Result<KeyHeader> {
        check_appname(appname, Op::GenerateKeyPair)?;
        check_ident(ident, Op::GenerateKeyPair)?;
        let (world, km) = self.module_key(Op::GenerateKeyPair)?;
        let path = self.key_path(appname, ident);
        if path.exists() {
            return Err(Error::new(ErrorKind::AlreadyExists, Op::GenerateKeyPair)
                .detail(format!("key {appname}/{ident} already exists ({})", path.display()))
                .hint("choose another ident, or move the existing key file away first"));
        }
        let acl = acl.unwrap_or_else(|| Acl::generatekey_default(true, world.hkm(), world.hkre(), world.hknso()));
        let pkcs8 = make()?;
        let header = self.private_header(&world, appname, ident, name, &[], &pkcs8, acl, None)?;
        let file = self.seal_key(&world, &km, header, &pkcs8, true)?;
        file.write_new(&path, &self.config.faults)?;
        Ok(file.header)
    }

    pub(crate) fn new_rsa_pkcs8(&self, bits: u32, pubexp: u64) -> Result<Zeroizing<Vec<u8>>> {
        use rsa::pkcs8::EncodePrivateKey;
        check_rsa_params(bits, pubexp)?;
        let mut child = self.rng(Op::GenerateKeyPair)?.fork();
        let key =
            rsa::PrivateKey::new_with_exp(&mut child, bits as usize, rsa::BoxedUint::from(pubexp)).map_err(|e| {
                Error::new(ErrorKind::FunctionFailed, Op::GenerateKeyPair)
                    .detail(format!("RSA key generation failed: {e}"))
            })?;
        let der = key.to_pkcs8_der().map_err(|e| {
            Error::new(ErrorKind::FunctionFailed, Op::GenerateKeyPair).detail(format!("PKCS#8 encoding failed: {e}"))
        })?;
        Ok(Zeroizing::new(der.as_bytes().to_vec()))
    }

    /// The header of an asymmetric private key given as PKCS#8 (RSA, EC or Ed25519): its type,
    /// size and public key read from the key itself.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn private_header(
        &self,
        world: &World,
        appname: &str,
        ident: &str,
        name: &str,
        id: &[u8],
        pkcs8: &[u8],
        acl: Acl,
        allowed: Option<&[MechanismKind]>,
    ) -> Result<KeyHeader> {
        use rsa::pkcs8::EncodePublicKey;
        use rsa::traits::PublicKeyParts;
        let (key_type, bits, pubexp, spki) = if hsmkit_backend::EcCurve::of_pkcs8(pkcs8).is_some() {
            let private = crate::ec::EcPrivate::from_pkcs8(pkcs8, Op::GenerateKeyPair)?;
            let curve = private.curve();
            let key_type =
                if curve == hsmkit_backend::EcCurve::Ed25519 { BlobKeyType::Ed25519 } else { BlobKeyType::Ec };
            (key_type, curve.bits(), 0, private.public().spki())
        } else {
            let private = RsaPrivate::from_pkcs8(pkcs8, Op::GenerateKeyPair)?;
            let public = private.public();
            let e = public.e().to_be_bytes_trimmed_vartime();
            let e = e.iter().fold(0u64, |acc, b| acc.saturating_mul(256).saturating_add(u64::from(*b)));
            check_rsa_params(public.n().bit_width(), e)?;
            let spki = public
                .to_public_key_der()
                .map_err(|e| Error::new(ErrorKind::FunctionFailed, Op::GenerateKeyPair).detail(e.to_string()))?
                .as_bytes()
                .to_vec();
            (BlobKeyType::Rsa, public.n().bit_width(), e, spki)
        };
        Ok(KeyHeader {
            format: KEY_FORMAT.into(),
            version: 1,
            appname: appname.into(),
            ident: ident.into(),
            name: name.into(),
            id: id.to_vec(),
            key_type,
            bits,
            pubexp,
            has_private: true,
            protection: Protection::Module,
            hkm: world.hkm().to_vec(),
            gentime_ms: self.now_ms(),
            acl,
            allowed_mechanisms: allowed.map(|m| m.iter().map(|k| k.ckm()).collect()),
            hash: world.suite().hash(&[&spki]),
            public: spki,
            cng: None,
            acl_certificate: None,
            origin: None,
            wrap_with_trusted: false,
            public_apart: false,
            public_object: false,
            start_date: String::new(),
            end_date: String::new(),
            always_authenticate: false,
        })
    }

    /// Seals a key under KM; with `archive`, also makes its recovery blob under KRE if the ACL
    /// allows MakeArchiveBlob.
    pub(crate) fn seal_key(
        &self,
        world: &World,
        km: &[u8],
        header: KeyHeader,
        private: &[u8],
        archive: bool,
    ) -> Result<KeyFile> {
        // Recoverable: an uncertified group makes archive blobs under this world's KRE.
        let archive_here = crate::acl::Action::MakeArchiveBlob { kahash: world.hkre().to_vec() };
        let recoverable = header.acl.groups.iter().any(|g| g.certifier.is_none() && g.actions.contains(&archive_here));
        let mut rng = self.rng(Op::SaveKey)?;
        let nonce = rng.array();
        let mut recovery = None;
        if archive && recoverable && !private.is_empty() {
            let eph_seed = Zeroizing::new(rng.array::<32>());
            let eph = world.suite().dl_key_from_seed(&eph_seed[..])?;
            let shared = eph.agree(world.kre()?);
            let k = derive_key(&shared, "hsmkit archive blob")?;
            let blob = seal(k.as_ref(), rng.array(), &header.hash, private)?;
            recovery = Some(ArchiveBlob { eph: eph.public_bytes(), blob });
        }
        KeyFile::seal(header, km, nonce, private, recovery)
    }

    /// The key blobs in kmdata, sorted by file name.
    pub fn list_keys(&self) -> Result<Vec<KeyListing>> {
        Ok(self.list_keys_and_damage()?.0)
    }

    /// The key blobs in kmdata, sorted by file name, and the `key_*` files that are not readable
    /// blobs (damaged, truncated, renamed, stray), each with why: one bad file is reported, and
    /// the others stay usable.
    pub fn list_keys_and_damage(&self) -> Result<(Vec<KeyListing>, Vec<Error>)> {
        let local = self.local();
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        let entries = match fs::read_dir(&local) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, damaged)),
            Err(e) => {
                return Err(
                    Error::new(ErrorKind::Io, Op::FindKeys).detail(format!("cannot list {}: {e}", local.display()))
                );
            }
        };
        let mut index = self.key_index.lock().map_err(|_| poisoned(Op::FindKeys))?;
        let mut seen = std::collections::HashSet::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("key_") {
                continue;
            }
            let path = entry.path();
            let stamp = fs::metadata(&path).ok().map(|m| file_stamp(&m));
            if let (Some(stamp), Some((known, header))) = (stamp, index.get(&path))
                && *known == stamp
            {
                out.push(KeyListing { path: path.clone(), header: header.clone() });
                seen.insert(path);
                continue;
            }
            match KeyFile::read(&path) {
                Ok(file) => {
                    if let Some(stamp) = stamp {
                        index.insert(path.clone(), (stamp, file.header.clone()));
                    }
                    seen.insert(path.clone());
                    out.push(KeyListing { path, header: file.header });
                }
                Err(e) => damaged.push(e),
            }
        }
        index.retain(|p, _| seen.contains(p));
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((out, damaged))
    }

    /// Loads a blob from `path`: checks it belongs to this world and opens it under KM.
    pub fn load_blob(&self, path: &Path) -> Result<Arc<LoadedKey>> {
        let (world, km) = self.module_key(Op::LoadKey)?;
        let file = KeyFile::read(path)?;
        if file.header.hkm != world.hkm() {
            return Err(Error::new(ErrorKind::TokenNotRecognized, Op::LoadKey)
                .detail(format!(
                    "{} is sealed under module key {}, not this world's {}",
                    path.display(),
                    crate::card::short_hash(&file.header.hkm),
                    crate::card::short_hash(world.hkm())
                ))
                .hint("the key belongs to another security world"));
        }
        if let Protection::CardSet { hash } = &file.header.protection {
            return Err(Error::new(ErrorKind::NotLoggedIn, Op::LoadKey)
                .detail(format!(
                    "{} is protected by Operator Card Set {}, which must be loaded first",
                    path.display(),
                    crate::card::short_hash(hash)
                ))
                .hint("hsmkit does not load Operator Card Sets, and the BYOK toolset does not support OCS-protected keys: use a module-protected key (protect=module)"));
        }
        let private = file.open(&km, path)?;
        self.loaded_from(file.header, &private, Some(path.to_path_buf()))
    }

    pub(crate) fn loaded_from(
        &self,
        header: KeyHeader,
        private: &[u8],
        path: Option<PathBuf>,
    ) -> Result<Arc<LoadedKey>> {
        let material = match (header.key_type, header.has_private) {
            (BlobKeyType::Rsa, true) => Material::Rsa(Box::new(RsaPrivate::from_pkcs8(private, Op::LoadKey)?)),
            (BlobKeyType::Ec | BlobKeyType::Ed25519, true) => {
                Material::Ec(Box::new(crate::ec::EcPrivate::from_pkcs8(private, Op::LoadKey)?))
            }
            (BlobKeyType::Aes | BlobKeyType::Generic | BlobKeyType::Des3, true) => {
                Material::Aes(Zeroizing::new(private.to_vec()))
            }
            (_, false) => Material::PublicOnly,
        };
        let public = match header.key_type {
            BlobKeyType::Rsa => Some(PublicKey::Rsa(crate::keys::public_from_spki(&header.public, Op::LoadKey)?)),
            BlobKeyType::Ec | BlobKeyType::Ed25519 => {
                Some(PublicKey::Ec(crate::ec::EcPublic::from_spki(&header.public, Op::LoadKey)?))
            }
            BlobKeyType::Aes | BlobKeyType::Generic | BlobKeyType::Des3 => None,
        };
        let allowed =
            header.allowed_mechanisms.as_ref().map(|v| v.iter().filter_map(|c| MechanismKind::from_ckm(*c)).collect());
        Ok(Arc::new(LoadedKey {
            counters: UseCounters::new(header.acl.groups.len()),
            header,
            path,
            material,
            public,
            loaded_ms: self.now_ms(),
            allowed,
        }))
    }

    /// Loads key `appname`/`ident` from kmdata and returns handles to it: (private or secret,
    /// public) as the key has them.
    pub fn load_key(&self, appname: &str, ident: &str) -> Result<Vec<KeyHandle>> {
        let key = self.load_named(appname, ident)?;
        Ok(self.register(key, None))
    }

    /// Loads key `appname`/`ident` from kmdata without registering a handle (to inspect it).
    pub fn load_named(&self, appname: &str, ident: &str) -> Result<Arc<LoadedKey>> {
        check_appname(appname, Op::LoadKey)?;
        check_ident(ident, Op::LoadKey)?;
        let path = self.key_path(appname, ident);
        if !path.exists() {
            return Err(Error::new(ErrorKind::NotFound, Op::LoadKey)
                .detail(format!("there is no key {appname}/{ident} ({} does not exist)", path.display()))
                .hint("list the keys with `hsmkit nkminfo -k`"));
        }
        self.load_blob(&path)
    }

    /// Registers a loaded key as objects; returns the handles (private/secret first).
    pub(crate) fn register(&self, key: Arc<LoadedKey>, owner: Option<u64>) -> Vec<KeyHandle> {
        self.register_in(key, owner, None)
    }

    /// Registers a loaded key as objects of session `owner` in application `group`.
    pub(crate) fn register_in(&self, key: Arc<LoadedKey>, owner: Option<u64>, group: Option<u64>) -> Vec<KeyHandle> {
        let classes: &[ObjectClass] = match (&key.material, key.header.key_type) {
            // A PKCS#11 pair: the public half is its own blob.
            (Material::Rsa(_) | Material::Ec(_), _) if key.header.public_apart => &[ObjectClass::PrivateKey],
            (Material::Rsa(_) | Material::Ec(_), _) => &[ObjectClass::PrivateKey, ObjectClass::PublicKey],
            (Material::Aes(_), _) => &[ObjectClass::SecretKey],
            (Material::PublicOnly, _) => &[ObjectClass::PublicKey],
        };
        let mut handles = Vec::new();
        if let Ok(mut objects) = self.objects.write() {
            for class in classes {
                let h = self.next_handle.fetch_add(1, Ordering::Relaxed);
                objects.insert(h, Object { key: key.clone(), class: *class, owner, group });
                handles.push(KeyHandle(h));
            }
        }
        handles
    }

    /// The object behind `handle`, if `session` (of application `group`) may use it: a token
    /// object, its own session object, or a session object of its application.
    pub(crate) fn object_in(
        &self,
        handle: KeyHandle,
        session: Option<u64>,
        group: Option<u64>,
        op: Op,
    ) -> Result<Object> {
        let objects = self.objects.read().map_err(|_| poisoned(op))?;
        match objects.get(&handle.0) {
            Some(o) if o.owner.is_none() || o.owner == session || (group.is_some() && o.group == group) => {
                Ok(o.clone())
            }
            _ => Err(Error::new(ErrorKind::KeyHandleInvalid, op)
                .detail(format!("handle {} names no key of this session", handle.0))),
        }
    }

    pub(crate) fn remove_objects(&self, pred: impl Fn(&Object) -> bool) -> Vec<Object> {
        let mut removed = Vec::new();
        if let Ok(mut objects) = self.objects.write() {
            let keys: Vec<u64> = objects.iter().filter(|(_, o)| pred(o)).map(|(k, _)| *k).collect();
            for k in keys {
                if let Some(o) = objects.remove(&k) {
                    removed.push(o);
                }
            }
        }
        removed
    }

    /// Points every handle of `old` at `new` (both halves of a pair keep their handles); for a
    /// token key, every handle of the same blob file.
    pub(crate) fn replace_key(&self, old: &Arc<LoadedKey>, new: &Arc<LoadedKey>) {
        if let Ok(mut objects) = self.objects.write() {
            let same = |o: &Object| Arc::ptr_eq(&o.key, old) || (old.path.is_some() && o.key.path == old.path);
            for o in objects.values_mut().filter(|o| same(o)) {
                o.key = new.clone();
            }
        }
    }

    /// Held while the set of loaded keys changes (see the field).
    pub(crate) fn key_changes(&self, op: Op) -> Result<MutexGuard<'_, ()>> {
        self.key_changes.lock().map_err(|_| poisoned(op))
    }

    pub(crate) fn all_objects(&self) -> Vec<(u64, Object)> {
        self.objects.read().map(|o| o.iter().map(|(k, v)| (*k, v.clone())).collect()).unwrap_or_default()
    }

    pub(crate) fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Enforces the ACL (and use limits) of `key` for `need`, with an optional quorum
    /// certificate. The error names the missing permission.
    pub fn enforce(&self, key: &LoadedKey, need: &Need<'_>, certified_by: Option<&[u8]>, op: Op) -> Result<()> {
        if !self.operational.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::ModuleMode, op)
                .detail("the module is not in operational mode")
                .hint("put it back in operational mode (`hsmkit nopclearfail -O`)"));
        }
        let now = self.now_ms();
        // Called for the group that would grant `need`: false (and one use taken) if it may.
        let exhausted = |i: usize| {
            let limits = &key.header.acl.groups[i].limits;
            let expired = limits.iter().any(|l| match *l {
                crate::acl::UseLimit::Time { seconds } => {
                    now.saturating_sub(key.loaded_ms) > seconds.saturating_mul(1000)
                }
                crate::acl::UseLimit::Global { .. } => false,
            });
            let max = limits
                .iter()
                .filter_map(|l| match *l {
                    crate::acl::UseLimit::Global { max } => Some(max),
                    crate::acl::UseLimit::Time { .. } => None,
                })
                .min();
            expired || max.is_some_and(|max| !key.counters.take(i, max))
        };
        key.header.acl.check(need, certified_by, exhausted).map(|_| ()).map_err(|denied| denial(key, denied, op))
    }

    /// `cngimport --import`: copies key `appname`/`ident` to the CNG key storage provider as
    /// `key_caping_machine--<hash>` (with `machine`) or `key_caping_<user>--<hash>`.
    pub fn cng_import(
        &self,
        appname: &str,
        ident: &str,
        container: &str,
        machine: bool,
        user: &str,
    ) -> Result<(PathBuf, KeyHeader)> {
        check_appname(appname, Op::ImportKey)?;
        check_ident(ident, Op::ImportKey)?;
        if container.is_empty() || container.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
            return Err(Error::new(ErrorKind::ArgumentsBad, Op::ImportKey)
                .detail(format!("invalid CNG container name '{container}'")));
        }
        let (world, km) = self.module_key(Op::ImportKey)?;
        let source = self.key_path(appname, ident);
        if !source.exists() {
            return Err(Error::new(ErrorKind::NotFound, Op::ImportKey)
                .detail(format!("there is no key {appname}/{ident} to import ({})", source.display()))
                .hint("generate it first with `hsmkit generatekey --generate simple … ident=…`"));
        }
        let file = KeyFile::read(&source)?;
        let private = file.open(&km, &source)?;
        // The CNG copy is a new blob: the key's ACL must allow blobs under this world's KM.
        let loaded = self.loaded_from(file.header.clone(), &private, None)?;
        self.enforce(&loaded, &Need::MakeBlob(world.hkm()), None, Op::ImportKey)?;
        let owner = if machine { "machine".to_string() } else { sanitize_user(user) };
        let digest = world.suite().hash(&[b"hsmkit cng", owner.as_bytes(), container.as_bytes(), &file.header.hash]);
        let hash = hex::encode(sha1_of(&digest));
        let new_ident = format!("{owner}--{hash}");
        let path = self.key_path("caping", &new_ident);
        if path.exists() {
            return Err(Error::new(ErrorKind::AlreadyExists, Op::ImportKey)
                .detail(format!("the CNG key already exists: {}", path.display())));
        }
        let mut header = file.header.clone();
        header.appname = "caping".into();
        header.ident = new_ident;
        header.name = container.into();
        header.cng = Some(CngInfo {
            container: container.into(),
            machine,
            user: (!machine).then(|| user.to_string()),
            source_app: appname.into(),
            source_ident: ident.into(),
        });
        // The copy keeps the source's recovery blob (made for the same key hash), bound in anew.
        let nonce = self.rng(Op::ImportKey)?.array();
        let out = KeyFile::seal(header, &km, nonce, &private, file.archive.clone())?;
        out.write_new(&path, &self.config.faults)?;
        Ok((path, out.header))
    }

    /// Copies key `appname`/`ident` to `new_appname`/`new_ident` with a new ACL.
    ///
    /// A reduction of the ACL needs ReduceACL; anything else (adding rights, binding the key to
    /// another world's module key) needs ExpandACL, granted only by the quorum's certificate.
    pub fn copy_with_acl(
        &self,
        source: (&str, &str),
        target: (&str, &str),
        acl: Acl,
        quorum: Option<&QuorumAuth>,
    ) -> Result<(PathBuf, KeyHeader)> {
        self.copy_with_acl_as(source, target, None, acl, quorum)
    }

    /// [`Self::copy_with_acl`], the copy named `name` (its plain name, `CKA_LABEL`) instead of the
    /// source's name when one is given.
    pub fn copy_with_acl_as(
        &self,
        (appname, ident): (&str, &str),
        (new_appname, new_ident): (&str, &str),
        name: Option<&str>,
        acl: Acl,
        quorum: Option<&QuorumAuth>,
    ) -> Result<(PathBuf, KeyHeader)> {
        check_appname(new_appname, Op::ChangeAcl)?;
        check_ident(new_ident, Op::ChangeAcl)?;
        let (world, km) = self.module_key(Op::ChangeAcl)?;
        let key = self.load_named(appname, ident)?;
        let target = self.key_path(new_appname, new_ident);
        if target.exists() {
            return Err(Error::new(ErrorKind::AlreadyExists, Op::ChangeAcl)
                .detail(format!("{} already exists", target.display()))
                .hint("move the existing key file away first"));
        }
        let mut certificate = Vec::new();
        let certified_by = match quorum {
            Some(q) => {
                let statement = acl_statement(&key.header, &acl)?;
                certificate = q.certify(&statement)?;
                if !world.verify_certificate(&statement, &certificate) {
                    return Err(Error::new(ErrorKind::TokenNotRecognized, Op::ChangeAcl)
                        .detail("the quorum's certificate is not from this world's KNSO"));
                }
                Some(world.hknso())
            }
            None => None,
        };
        match acl.check_reduction_of(&key.header.acl) {
            Ok(()) => self.enforce(&key, &Need::Op(crate::acl::OpPerms::ReduceACL), certified_by, Op::ChangeAcl)?,
            Err(added) => self
                .enforce(&key, &Need::Op(crate::acl::OpPerms::ExpandACL), certified_by, Op::ChangeAcl)
                .map_err(|e| {
                    let hint = if quorum.is_none() {
                        "present the Administrator Card Set quorum"
                    } else {
                        "the key's ACL does not allow expansion"
                    };
                    Error::new(e.kind().clone(), Op::ChangeAcl)
                        .detail(format!("the new ACL adds {added}, which needs ExpandACL"))
                        .hint(hint)
                })?,
        }
        let mut header = key.header.clone();
        header.appname = new_appname.into();
        header.ident = new_ident.into();
        header.acl = acl;
        header.cng = None;
        if let Some(name) = name {
            header.name = name.to_string();
        }
        header.acl_certificate = quorum.map(|_| crate::keyblob::AclCertificate {
            cipher_suite: world.suite(),
            knso_pub: world.body().knso_pub.clone(),
            signature: certificate.clone(),
        });
        let private = match &key.material {
            Material::Rsa(r) => Zeroizing::new(r.pkcs8().to_vec()),
            Material::Ec(k) => Zeroizing::new(k.pkcs8().to_vec()),
            Material::Aes(a) => a.clone(),
            Material::PublicOnly => Zeroizing::new(Vec::new()),
        };
        let file = self.seal_key(&world, &km, header, &private, true)?;
        file.write_new(&target, &self.config.faults)?;
        Ok((target, file.header))
    }
}

/// The statement the quorum certifies to change a key's ACL.
fn acl_statement(header: &KeyHeader, acl: &Acl) -> Result<Vec<u8>> {
    crate::keyblob::AclCertificate::statement(&header.hash, acl)
}

fn denial(key: &LoadedKey, denied: Denied, op: Op) -> Error {
    let name = format!("{}/{}", key.header.appname, key.header.ident);
    match denied {
        Denied::Missing(p) => Error::new(ErrorKind::KeyFunctionNotPermitted { missing: p }, op)
            .detail(format!("key {name} has no ACL group granting {p}")),
        Denied::NeedsQuorum(p) => Error::new(ErrorKind::KeyFunctionNotPermitted { missing: p }, op)
            .detail(format!("key {name} grants {p} only with the Administrator Card Set quorum"))
            .hint("present the ACS quorum"),
        Denied::LimitExhausted => Error::new(ErrorKind::UseLimitExceeded, op)
            .detail(format!("key {name} has used up its use limit"))
            .hint("reload the key, or use a key without limits"),
    }
}

fn sha1_of(data: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(data).into()
}

fn sanitize_user(user: &str) -> String {
    let s: String = user.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    if s.is_empty() { "user".into() } else { format!("user-{s}") }
}

fn probe_writable(dir: &Path, op: Op) -> Result<()> {
    let probe = dir.join(".hsmkit-write-probe");
    match fs::write(&probe, b"") {
        Ok(()) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::new(ErrorKind::Io, op)
            .detail(format!("{} is not writable: {e}", dir.display()))
            .hint("check the folder's permissions, or choose another --kmdata")),
    }
}

/// Checks an RSA key size and public exponent: 1024 to 4096 bits in steps of 8, an odd exponent
/// from 3 to 2^32 - 1.
pub fn check_rsa_params(bits: u32, pubexp: u64) -> Result<()> {
    if !(1024..=4096).contains(&bits) || !bits.is_multiple_of(8) {
        return Err(Error::new(ErrorKind::KeySizeRange, Op::GenerateKeyPair)
            .detail(format!("RSA keys are 1024 to 4096 bits (a multiple of 8), not {bits}"))
            .hint("use size=2048 (recommended) or size=1024 for AD RMS migrations"));
    }
    if pubexp < 3 || pubexp.is_multiple_of(2) || pubexp > u64::from(u32::MAX) {
        return Err(Error::new(ErrorKind::ArgumentsBad, Op::GenerateKeyPair)
            .detail(format!("the public exponent {pubexp} is not an odd number from 3 to 2^32-1"))
            .hint("leave pubexp= empty for 65537"));
    }
    Ok(())
}

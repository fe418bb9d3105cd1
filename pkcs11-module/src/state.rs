//! The library's state between `C_Initialize` and `C_Finalize`: the only global of the workspace.
//!
//! A [`Library`] holds the slots of the configuration, each with its emulated module and token
//! state, and the table of open sessions. Entry points take a clone of the `Arc` and release the
//! global lock at once, so a long key generation never blocks other threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cryptoki_sys as ck;
use cryptoki_sys::{CK_SESSION_HANDLE, CK_SLOT_ID, CK_USER_TYPE};

use hsmkit_backend::KeyHandle;
use hsmkit_emulator::world::QuorumAuth;
use hsmkit_emulator::{Config, Emulator, EmulatorSession};

use crate::config::ModuleConfig;
use crate::ffi::{Result, Rv, rv};
use crate::ops::Ops;
use crate::token::TokenRecord;

static LIBRARY: RwLock<Option<Arc<Library>>> = RwLock::new(None);

/// Session handles are unique for the life of the process, so a handle kept across `C_Finalize`
/// and `C_Initialize` never names a new session by accident.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Each `C_Initialize` starts a new application: its sessions share their session objects.
static NEXT_APPLICATION: AtomicU64 = AtomicU64::new(1);

/// The initialised library.
///
/// Lock order: a slot's PIN-check mutex, then its token lock, then the sessions map, never the
/// reverse. A token lock may be taken (to read) while a session's mutex is held; no code takes a
/// session's mutex while it holds a token lock.
pub struct Library {
    /// The slots, in configuration order.
    pub slots: Vec<Slot>,
    /// This application's number in the emulator (sessions of one application see each other's
    /// session objects).
    pub application: u64,
    sessions: RwLock<HashMap<CK_SESSION_HANDLE, Arc<Session>>>,
    /// Handles of the data and certificate objects (token and session).
    stored: Mutex<crate::storage::StoredTable>,
    /// The fork generation the library was initialised in: a child made by `fork` (a new
    /// generation) sees the library as not initialised, and its `C_Initialize` starts its own (new
    /// random generators, no sessions).
    generation: u64,
}

/// A slot and the token in it.
pub struct Slot {
    /// `CK_SLOT_ID`.
    pub id: CK_SLOT_ID,
    /// Its kmdata folder.
    pub kmdata: PathBuf,
    /// Its other emulator settings.
    pub settings: crate::config::SlotSettings,
    /// The token: module, record and login state.
    pub token: RwLock<Token>,
    /// Held while a PIN is checked and its failure count updated, so parallel guesses are
    /// counted one by one (the slow check runs without the token lock).
    pub pin_check: Mutex<()>,
}

/// The token in a slot.
pub struct Token {
    /// The emulated module.
    pub emu: Arc<Emulator>,
    /// Who is logged in (`CKU_USER` or `CKU_SO`), for every session of the slot.
    pub login: Option<CK_USER_TYPE>,
    /// The world's quorum, while the security officer (who presented the cards) is logged in.
    pub quorum: Option<Arc<QuorumAuth>>,
}

impl Token {
    /// Ends the login; the security officer's cards are withdrawn.
    pub fn logout(&mut self) {
        self.login = None;
        self.quorum = None;
    }

    /// Whether the token has a world (`CKF_TOKEN_INITIALIZED`).
    pub fn initialized(&self) -> bool {
        self.emu.world().ok().flatten().is_some()
    }

    /// The PKCS#11 token record (label, user PIN), read from kmdata now (another process may
    /// have changed it); `None` until `C_InitToken` or `C_InitPIN`, or for a world made by the CLI.
    pub fn record(&self) -> Result<Option<TokenRecord>> {
        self.emu.token_record().map_err(|e| {
            crate::log_error(&e);
            Rv::from(e)
        })
    }

    /// The label shown in `CK_TOKEN_INFO`, from the token's `record` as just read.
    pub fn label(&self, record: Option<&TokenRecord>) -> String {
        match (record, self.emu.world().ok().flatten()) {
            (Some(r), _) => r.label.clone(),
            (None, Some(w)) => format!("hsmkit {}", w.name()),
            (None, None) => String::new(),
        }
    }
}

/// An open session.
pub struct Session {
    /// Its handle.
    pub handle: CK_SESSION_HANDLE,
    /// Index of its slot in [`Library::slots`].
    pub slot: usize,
    /// `CKF_RW_SESSION`.
    pub rw: bool,
    state: Mutex<SessionState>,
}

/// What a session holds: its emulator session (which owns its session objects) and its active
/// operations.
pub struct SessionState {
    /// The emulator's session.
    pub emu: EmulatorSession<'static>,
    /// Active operations.
    pub ops: Ops,
}

impl Session {
    /// Locks the session's state.
    pub fn lock(&self) -> Result<MutexGuard<'_, SessionState>> {
        self.state.lock().map_err(|_| rv::GENERAL_ERROR)
    }
}

fn poisoned<T>(_: T) -> Rv {
    rv::GENERAL_ERROR
}

impl Slot {
    /// Reads the token state.
    pub fn token(&self) -> Result<RwLockReadGuard<'_, Token>> {
        self.token.read().map_err(poisoned)
    }

    /// Changes the token state.
    pub fn token_mut(&self) -> Result<RwLockWriteGuard<'_, Token>> {
        self.token.write().map_err(poisoned)
    }

    /// Serialises PIN checks on this slot.
    pub fn pin_check(&self) -> Result<MutexGuard<'_, ()>> {
        self.pin_check.lock().map_err(poisoned)
    }

    /// Opens the emulated module of `kmdata`. A missing folder is an uninitialised token: nothing
    /// is made until `C_InitToken` creates a world there.
    pub fn open_module(kmdata: &std::path::Path, settings: &crate::config::SlotSettings) -> Result<Emulator> {
        if !kmdata.exists() {
            crate::log(&format!(
                "the kmdata folder {} does not exist: the token is uninitialised until C_InitToken makes it",
                kmdata.display()
            ));
        }
        let config = settings.apply(Config { kmdata_may_be_missing: true, ..Config::beside(kmdata) });
        Emulator::open(config).map_err(|e| {
            crate::log_error(&e);
            Rv::from(e)
        })
    }
}

impl Library {
    /// Opens every slot of `config`.
    pub fn open(config: &ModuleConfig) -> Result<Library> {
        let mut slots = Vec::new();
        for s in &config.slots {
            let emu = Slot::open_module(&s.kmdata, &s.settings)?;
            // A damaged record is reported at once rather than at the first login.
            emu.token_record().map_err(|e| {
                crate::log_error(&e);
                Rv::from(e)
            })?;
            slots.push(Slot {
                id: s.id,
                kmdata: s.kmdata.clone(),
                settings: s.settings.clone(),
                token: RwLock::new(Token { emu: Arc::new(emu), login: None, quorum: None }),
                pin_check: Mutex::new(()),
            });
        }
        let application = NEXT_APPLICATION.fetch_add(1, Ordering::Relaxed);
        Ok(Library {
            slots,
            application,
            sessions: RwLock::new(HashMap::new()),
            stored: Mutex::new(Default::default()),
            generation: FORKS.load(Ordering::Acquire),
        })
    }

    /// The slot with id `id`.
    pub fn slot(&self, id: CK_SLOT_ID) -> Result<(usize, &Slot)> {
        self.slots.iter().enumerate().find(|(_, s)| s.id == id).ok_or(rv::SLOT_ID_INVALID)
    }

    /// The data and certificate object handles.
    pub fn stored(&self) -> Result<MutexGuard<'_, crate::storage::StoredTable>> {
        self.stored.lock().map_err(poisoned)
    }

    /// The session `h`.
    pub fn session(&self, h: CK_SESSION_HANDLE) -> Result<Arc<Session>> {
        self.sessions.read().map_err(poisoned)?.get(&h).cloned().ok_or(rv::SESSION_HANDLE_INVALID)
    }

    /// Adds a session on slot index `slot`.
    pub fn add_session(&self, slot: usize, rw: bool, emu: EmulatorSession<'static>) -> Result<CK_SESSION_HANDLE> {
        let handle = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let s = Session { handle, slot, rw, state: Mutex::new(SessionState { emu, ops: Ops::default() }) };
        self.sessions.write().map_err(poisoned)?.insert(handle, Arc::new(s));
        Ok(handle)
    }

    /// Removes sessions matching `pred`; returns them (their session objects go when the last
    /// reference does). When a slot's last session closes, its login ends (PKCS#11 §5.6).
    pub fn remove_sessions(&self, pred: impl Fn(&Session) -> bool) -> Result<Vec<Arc<Session>>> {
        let removed: Vec<Arc<Session>> = {
            let mut map = self.sessions.write().map_err(poisoned)?;
            let gone: Vec<CK_SESSION_HANDLE> = map.values().filter(|s| pred(s)).map(|s| s.handle).collect();
            gone.iter().filter_map(|h| map.remove(h)).collect()
        };
        // Their session objects that are not keys go with them.
        let handles: Vec<CK_SESSION_HANDLE> = removed.iter().map(|s| s.handle).collect();
        self.stored()?.drop_sessions(&handles);
        for (i, slot) in self.slots.iter().enumerate() {
            if removed.iter().any(|s| s.slot == i) {
                // Decided under the token lock (which `C_OpenSession` holds while it adds a
                // session), so a session opened meanwhile keeps its login.
                let mut t = slot.token_mut()?;
                if self.session_counts(i)?.0 == 0 {
                    t.logout();
                }
            }
        }
        Ok(removed)
    }

    /// The sessions of slot index `slot`: (all, read-write).
    pub fn session_counts(&self, slot: usize) -> Result<(usize, usize)> {
        let map = self.sessions.read().map_err(poisoned)?;
        let of_slot = map.values().filter(|s| s.slot == slot);
        Ok(of_slot.fold((0, 0), |(all, rw), s| (all + 1, rw + usize::from(s.rw))))
    }
}

// The global holds only an `Option<Arc<_>>`, which is consistent whatever a panicking thread was
// doing: a poisoned lock is used as it is, so one caught panic cannot disable the library.
fn global_read() -> RwLockReadGuard<'static, Option<Arc<Library>>> {
    LIBRARY.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn global_write() -> RwLockWriteGuard<'static, Option<Arc<Library>>> {
    LIBRARY.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Forks seen in this process's line: a `pthread_atfork` child handler counts them, so telling a
/// child from its parent costs an atomic load per call (not a `getpid` system call).
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked_child() {
    FORKS.fetch_add(1, Ordering::AcqRel);
}

unsafe extern "C" {
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> std::ffi::c_int;
}

/// Registers the fork handler once. The library is linked `-z nodelete`, so the handler's code
/// stays mapped for the life of the process.
fn watch_forks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic (async-signal-safe); the
        // function lives as long as the process (the library is never unmapped).
        let rv = unsafe { pthread_atfork(None, None, Some(forked_child)) };
        if rv != 0 {
            crate::log("pthread_atfork failed: a forked child may not be told from its parent");
        }
    });
}

/// The library a parent process initialised, in a child made by `fork`: forgotten, never
/// dropped (a lock another parent thread held at the fork stays held in the child's copy, and
/// dropping the state would wait for it). Its sessions are the parent's.
fn forget_parents() {
    let mut g = global_write();
    if g.as_ref().is_some_and(|lib| lib.generation != FORKS.load(Ordering::Acquire)) {
        std::mem::forget(g.take());
    }
}

/// Makes the library live (`C_Initialize`). The slots are opened without the global lock held.
/// In a child process (after `fork`) the parent's library is forgotten and a new one starts, with
/// random generators of its own.
pub fn initialize() -> Result<()> {
    watch_forks();
    forget_parents();
    if global_read().is_some() {
        return Err(Rv(ck::CKR_CRYPTOKI_ALREADY_INITIALIZED));
    }
    let config = ModuleConfig::from_env().map_err(|e| {
        crate::log(&e.0);
        Rv(ck::CKR_GENERAL_ERROR)
    })?;
    let lib = Arc::new(Library::open(&config)?);
    let mut g = global_write();
    if g.is_some() {
        // Another thread initialised the library meanwhile.
        return Err(Rv(ck::CKR_CRYPTOKI_ALREADY_INITIALIZED));
    }
    *g = Some(lib);
    Ok(())
}

/// Ends the library (`C_Finalize`): every session closes, every session object goes.
pub fn finalize() -> Result<()> {
    forget_parents();
    let lib = global_write().take().ok_or(rv::NOT_INITIALIZED)?;
    lib.remove_sessions(|_| true)?;
    Ok(())
}

/// The live library. A child made by `fork` must call `C_Initialize` first (PKCS#11 §6.7.8): the
/// parent's library is not its own.
pub fn library() -> Result<Arc<Library>> {
    match global_read().as_ref() {
        Some(lib) if lib.generation == FORKS.load(Ordering::Acquire) => Ok(lib.clone()),
        _ => Err(rv::NOT_INITIALIZED),
    }
}

/// The session `h` and its slot.
pub fn session(h: CK_SESSION_HANDLE) -> Result<(Arc<Library>, Arc<Session>)> {
    let lib = library()?;
    let s = lib.session(h)?;
    Ok((lib, s))
}

/// A key handle as the emulator names it.
pub fn key(h: ck::CK_OBJECT_HANDLE) -> KeyHandle {
    KeyHandle(h)
}

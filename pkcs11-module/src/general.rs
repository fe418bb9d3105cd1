//! General purpose, slot and token, session and login functions (PKCS#11 §5.4 to §5.6).

use std::path::PathBuf;
use std::sync::Arc;

use cryptoki_sys as ck;
use cryptoki_sys::{CK_FLAGS, CK_SESSION_HANDLE, CK_SLOT_ID, CK_ULONG, CK_USER_TYPE};

use hsmkit_backend::{Pin, Session as _, SessionMode};
use hsmkit_emulator::card::card_path;
use hsmkit_emulator::suite::CipherSuite;
use hsmkit_emulator::world::Quorum;
use hsmkit_emulator::{Emulator, EmulatorSession};

use crate::ffi::{Result, Rv, padded, rv};
use crate::ops::mechanisms;
use crate::state::{self, Library, Session, Slot, Token};
use crate::token::{self, MAX_PIN_LEN, MAX_USER_FAILURES, MIN_PIN_LEN};

const MANUFACTURER: &str = "hsmkit";

fn version() -> ck::CK_VERSION {
    let part = |s: &str| s.parse::<u8>().unwrap_or(0);
    let mut it = env!("CARGO_PKG_VERSION").split('.');
    ck::CK_VERSION { major: part(it.next().unwrap_or("0")), minor: part(it.next().unwrap_or("0")) }
}

fn emu_err(e: hsmkit_backend::Error) -> Rv {
    crate::log_error(&e);
    Rv::from(e)
}

/// `C_GetInfo`, reporting `interface` (the version of the interface the caller called through).
pub fn get_info(info: &mut ck::CK_INFO, interface: ck::CK_VERSION) -> Result<()> {
    state::library()?;
    info.cryptokiVersion = interface;
    info.manufacturerID = padded(MANUFACTURER);
    info.flags = 0;
    info.libraryDescription = padded("hsmkit nShield-style emulator");
    info.libraryVersion = version();
    Ok(())
}

/// `C_GetSlotList`: every slot of the configuration (each always holds its token).
pub fn slot_list(lib: &Library) -> Vec<CK_SLOT_ID> {
    lib.slots.iter().map(|s| s.id).collect()
}

/// `C_GetSlotInfo`.
pub fn get_slot_info(slot: CK_SLOT_ID, info: &mut ck::CK_SLOT_INFO) -> Result<()> {
    let lib = state::library()?;
    let (_, s) = lib.slot(slot)?;
    let esn = s.token()?.emu.esn().unwrap_or_default();
    info.slotDescription = padded(&format!("hsmkit emulated module {esn}"));
    info.manufacturerID = padded(MANUFACTURER);
    info.flags = ck::CKF_TOKEN_PRESENT;
    info.hardwareVersion = version();
    info.firmwareVersion = version();
    Ok(())
}

/// `C_GetTokenInfo`.
pub fn get_token_info(slot: CK_SLOT_ID, info: &mut ck::CK_TOKEN_INFO) -> Result<()> {
    let lib = state::library()?;
    let (index, s) = lib.slot(slot)?;
    let (all, rw) = lib.session_counts(index)?;
    let t = s.token()?;
    let mut flags = ck::CKF_RNG;
    if t.initialized() {
        flags |= ck::CKF_TOKEN_INITIALIZED;
    }
    let record = t.record()?;
    if let Some(r) = &record {
        if r.user_pin.is_some() {
            // A user PIN makes the private keys need the user's login; a world without one is
            // module protection alone.
            flags |= ck::CKF_USER_PIN_INITIALIZED | ck::CKF_LOGIN_REQUIRED;
        }
        if r.user_failures > 0 {
            flags |= ck::CKF_USER_PIN_COUNT_LOW;
        }
        if r.user_failures == MAX_USER_FAILURES - 1 {
            flags |= ck::CKF_USER_PIN_FINAL_TRY;
        }
        if r.user_locked() {
            flags |= ck::CKF_USER_PIN_LOCKED;
        }
    }
    info.label = padded(&t.label(record.as_ref()));
    info.manufacturerID = padded(MANUFACTURER);
    info.model = padded("nShield emulator");
    info.serialNumber = padded(&t.emu.esn().unwrap_or_default().replace('-', ""));
    info.flags = flags;
    info.ulMaxSessionCount = ck::CK_EFFECTIVELY_INFINITE;
    info.ulSessionCount = all as CK_ULONG;
    info.ulMaxRwSessionCount = ck::CK_EFFECTIVELY_INFINITE;
    info.ulRwSessionCount = rw as CK_ULONG;
    info.ulMaxPinLen = MAX_PIN_LEN as CK_ULONG;
    info.ulMinPinLen = MIN_PIN_LEN as CK_ULONG;
    info.ulTotalPublicMemory = ck::CK_UNAVAILABLE_INFORMATION;
    info.ulFreePublicMemory = ck::CK_UNAVAILABLE_INFORMATION;
    info.ulTotalPrivateMemory = ck::CK_UNAVAILABLE_INFORMATION;
    info.ulFreePrivateMemory = ck::CK_UNAVAILABLE_INFORMATION;
    info.hardwareVersion = version();
    info.firmwareVersion = version();
    info.utcTime = [b' '; 16];
    Ok(())
}

/// `C_GetMechanismList`.
pub fn mechanism_list(slot: CK_SLOT_ID) -> Result<Vec<ck::CK_MECHANISM_TYPE>> {
    let lib = state::library()?;
    let emu = lib.slot(slot)?.1.token()?.emu.clone();
    Ok(mechanisms(&emu)?.iter().map(|m| m.ty).collect())
}

/// `C_GetMechanismInfo`.
pub fn mechanism_info(slot: CK_SLOT_ID, ty: ck::CK_MECHANISM_TYPE, info: &mut ck::CK_MECHANISM_INFO) -> Result<()> {
    let lib = state::library()?;
    let emu = lib.slot(slot)?.1.token()?.emu.clone();
    let m = mechanisms(&emu)?.into_iter().find(|m| m.ty == ty).ok_or(rv::MECHANISM_INVALID)?;
    info.ulMinKeySize = m.min;
    info.ulMaxKeySize = m.max;
    info.flags = m.flags;
    Ok(())
}

/// The card files of cards 1 to k of the world, with the SO PIN's parts.
fn so_cards(emu: &Emulator, pin: &Pin) -> Result<Vec<(PathBuf, Pin)>> {
    let world = emu.world().map_err(emu_err)?.ok_or(Rv(ck::CKR_TOKEN_NOT_RECOGNIZED))?;
    let k = world.body().acs.k;
    let pins = token::so_pins(pin, k);
    if pins.len() != usize::from(k) {
        crate::log(&format!("the SO PIN of this world is the PINs of its cards 1 to {k}, joined by commas"));
        return Err(rv::PIN_INCORRECT);
    }
    Ok(pins
        .into_iter()
        .enumerate()
        .map(|(i, p)| (card_path(&emu.config().cards, world.hknso(), i as u8 + 1), p))
        .collect())
}

/// `C_InitToken`: on a slot without a world, makes one whose Administrator Card Set is one card
/// protected by the SO PIN; on a slot with a world, checks the SO PIN (the card quorum), destroys
/// the token objects made through PKCS#11 and resets the user PIN. The world and the keys other
/// applications made stay.
pub fn init_token(slot: CK_SLOT_ID, pin: &[u8], label: &[u8; 32]) -> Result<()> {
    let lib = state::library()?;
    let (index, s) = lib.slot(slot)?;
    let pin = token::check_pin_shape(pin)?;
    let label = std::str::from_utf8(label).map_err(|_| rv::ARGUMENTS_BAD)?.trim_end_matches(' ');
    // PIN checks on the slot run one at a time (the card's failure count included); the token lock
    // is held from the session check on, so no session can open meanwhile.
    let _one_at_a_time = s.pin_check()?;
    let mut t = s.token_mut()?;
    if lib.session_counts(index)?.0 > 0 {
        return Err(Rv(ck::CKR_SESSION_EXISTS));
    }
    if t.initialized() {
        let cards = so_cards(&t.emu, &pin)?;
        t.emu.authorize(&cards).map_err(emu_err)?;
        let remove = |path: &std::path::Path| {
            std::fs::remove_file(path).map_err(|e| {
                crate::log(&format!("cannot remove {}: {e}", path.display()));
                Rv(ck::CKR_DEVICE_ERROR)
            })
        };
        for k in t.emu.list_keys().map_err(emu_err)? {
            if k.header.appname == "pkcs11" {
                remove(&k.path)?;
            }
        }
        // The data objects and certificates stored through PKCS#11 go too (listed by name, so a
        // damaged one is removed rather than left to stop the reset).
        let local = s.kmdata.join("local");
        let objects = std::fs::read_dir(&local).map_err(|e| {
            crate::log(&format!("cannot list {}: {e}", local.display()));
            Rv(ck::CKR_DEVICE_ERROR)
        })?;
        for entry in objects.flatten() {
            if entry.file_name().to_string_lossy().starts_with(hsmkit_emulator::store::OBJECT_PREFIX) {
                remove(&entry.path())?;
            }
        }
        lib.stored()?.drop_slot(index);
        // A fresh module instance forgets every loaded object of the old token.
        t.emu = Arc::new(Slot::open_module(&s.kmdata, &s.settings)?);
    } else {
        t.emu.create_world(CipherSuite::DLf3072s256mAEScSP800131Ar1, Quorum { k: 1, n: 1 }, &[pin]).map_err(emu_err)?;
    }
    {
        // Under the record's lock, so no PIN check in another process writes over the reset.
        t.emu.reset_token_record(label).map_err(emu_err)?;
    }
    t.logout();
    Ok(())
}

/// `C_OpenSession`.
pub fn open_session(slot: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE> {
    let lib = state::library()?;
    let (index, s) = lib.slot(slot)?;
    if flags & ck::CKF_SERIAL_SESSION == 0 {
        return Err(Rv(ck::CKR_SESSION_PARALLEL_NOT_SUPPORTED));
    }
    let rw = flags & ck::CKF_RW_SESSION != 0;
    let t = s.token()?;
    if !t.initialized() {
        return Err(Rv(ck::CKR_TOKEN_NOT_RECOGNIZED));
    }
    if !rw && t.login == Some(ck::CKU_SO) {
        return Err(Rv(ck::CKR_SESSION_READ_WRITE_SO_EXISTS));
    }
    let mode = if rw { SessionMode::ReadWrite } else { SessionMode::ReadOnly };
    let emu = EmulatorSession::shared(t.emu.clone(), mode, lib.application).map_err(emu_err)?;
    // Added with the token lock held, so `C_InitToken` and the last session's logout see it.
    let h = lib.add_session(index, rw, emu);
    drop(t);
    h
}

/// `C_CloseSession`.
pub fn close_session(h: CK_SESSION_HANDLE) -> Result<()> {
    let lib = state::library()?;
    let removed = lib.remove_sessions(|s| s.handle == h)?;
    if removed.is_empty() {
        return Err(rv::SESSION_HANDLE_INVALID);
    }
    Ok(())
}

/// `C_CloseAllSessions`.
pub fn close_all_sessions(slot: CK_SLOT_ID) -> Result<()> {
    let lib = state::library()?;
    let (index, _) = lib.slot(slot)?;
    lib.remove_sessions(|s| s.slot == index)?;
    Ok(())
}

/// The PKCS#11 session state (`CKS_*`) of `s`.
pub fn session_state(s: &Session, t: &Token) -> ck::CK_STATE {
    match (t.login, s.rw) {
        (Some(ck::CKU_SO), _) => ck::CKS_RW_SO_FUNCTIONS,
        (Some(_), true) => ck::CKS_RW_USER_FUNCTIONS,
        (Some(_), false) => ck::CKS_RO_USER_FUNCTIONS,
        (None, true) => ck::CKS_RW_PUBLIC_SESSION,
        (None, false) => ck::CKS_RO_PUBLIC_SESSION,
    }
}

/// `C_GetSessionInfo`.
pub fn get_session_info(h: CK_SESSION_HANDLE, info: &mut ck::CK_SESSION_INFO) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let t = lib.slots[s.slot].token()?;
    info.slotID = lib.slots[s.slot].id;
    info.state = session_state(&s, &t);
    info.flags = ck::CKF_SERIAL_SESSION | if s.rw { ck::CKF_RW_SESSION } else { 0 };
    info.ulDeviceError = 0;
    Ok(())
}

/// `C_Login`.
pub fn login(h: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let slot = &lib.slots[s.slot];
    match user {
        ck::CKU_USER | ck::CKU_SO => {}
        ck::CKU_CONTEXT_SPECIFIC => {
            let pin = token::check_pin_shape(pin).map_err(|_| rv::PIN_INCORRECT)?;
            return crate::crypto::context_login(h, &pin);
        }
        _ => return Err(Rv(ck::CKR_USER_TYPE_INVALID)),
    }
    let emu = {
        let t = slot.token()?;
        match t.login {
            Some(u) if u == user => return Err(Rv(ck::CKR_USER_ALREADY_LOGGED_IN)),
            Some(_) => return Err(Rv(ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN)),
            None => {}
        }
        t.emu.clone()
    };
    if user == ck::CKU_SO && read_only_open(&lib, s.slot)? {
        return Err(Rv(ck::CKR_SESSION_READ_ONLY_EXISTS));
    }
    // The slow PIN check runs without the token lock, so other sessions keep working; PIN checks
    // on the slot run one at a time, so every wrong guess is counted before the next is tried
    // (and, through the record's lock file, across processes too).
    let _one_at_a_time = slot.pin_check()?;
    let pin = token::check_pin_shape(pin).map_err(|_| rv::PIN_INCORRECT)?;
    let quorum = if user == ck::CKU_SO {
        emu.authorize(&so_cards(&emu, &pin)?).map_err(emu_err)?
    } else {
        emu.check_user_pin(&pin).map_err(emu_err)?;
        let mut t = slot.token_mut()?;
        still_open(&lib, h)?;
        if t.login.is_some() {
            return Err(Rv(if t.login == Some(user) {
                ck::CKR_USER_ALREADY_LOGGED_IN
            } else {
                ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN
            }));
        }
        t.login = Some(user);
        return Ok(());
    };
    let mut t = slot.token_mut()?;
    // Checked again under the token lock, which C_OpenSession and the last C_CloseSession hold:
    // the login must not outlive its session, nor meet a read-only session.
    still_open(&lib, h)?;
    if read_only_open(&lib, s.slot)? {
        return Err(Rv(ck::CKR_SESSION_READ_ONLY_EXISTS));
    }
    if t.login.is_some() {
        return Err(Rv(ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN));
    }
    t.login = Some(user);
    // The cards stay presented while the security officer is logged in.
    t.quorum = Some(Arc::new(quorum));
    Ok(())
}

/// Whether a read-only session is open on slot index `slot`.
fn read_only_open(lib: &Library, slot: usize) -> Result<bool> {
    let (all, read_write) = lib.session_counts(slot)?;
    Ok(read_write < all)
}

/// The session still exists (checked with the token lock held, after a slow PIN check).
fn still_open(lib: &Library, h: CK_SESSION_HANDLE) -> Result<()> {
    lib.session(h).map(|_| ())
}

/// `C_Logout`.
pub fn logout(h: CK_SESSION_HANDLE) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let mut t = lib.slots[s.slot].token_mut()?;
    if t.login.is_none() {
        return Err(rv::USER_NOT_LOGGED_IN);
    }
    t.logout();
    Ok(())
}

/// `C_InitPIN`: the security officer sets the user PIN (and unlocks it).
pub fn init_pin(h: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let slot = &lib.slots[s.slot];
    let pin = token::check_pin_shape(pin)?;
    let (emu, quorum) = {
        let t = slot.token()?;
        match (t.login, &t.quorum) {
            (Some(ck::CKU_SO), Some(q)) => (t.emu.clone(), q.clone()),
            _ => return Err(rv::USER_NOT_LOGGED_IN),
        }
    };
    // Set with the quorum held: done, even if the session closed meanwhile.
    emu.init_user_pin(&quorum, &pin).map_err(emu_err)
}

/// `C_SetPIN`: the user changes the user PIN. The security officer's PIN is the Administrator
/// cards' PINs, changed with the cards, not here.
pub fn set_pin(h: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
    let (lib, s) = state::session(h)?;
    let slot = &lib.slots[s.slot];
    if !s.rw {
        return Err(rv::SESSION_READ_ONLY);
    }
    let (login, emu) = {
        let t = slot.token()?;
        (t.login, t.emu.clone())
    };
    if login == Some(ck::CKU_SO) {
        crate::log("the SO PIN is the Administrator cards' PINs; change it on the cards");
        return Err(rv::FUNCTION_NOT_SUPPORTED);
    }
    let _one_at_a_time = slot.pin_check()?;
    let old = token::check_pin_shape(old).map_err(|_| rv::PIN_INCORRECT)?;
    let new = token::check_pin_shape(new)?;
    emu.change_user_pin(&old, &new).map_err(emu_err)
}

/// `C_GenerateRandom`.
pub fn generate_random(h: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<()> {
    let (_, s) = state::session(h)?;
    s.lock()?.emu.random(out).map_err(emu_err)
}

/// `C_SeedRandom`: `seed` is mixed into the module's generator (which stays seeded from the
/// operating system: a caller's seed adds to it, never replaces it).
pub fn seed_random(h: CK_SESSION_HANDLE, seed: &[u8]) -> Result<()> {
    let (_, s) = state::session(h)?;
    s.lock()?.emu.seed_random(seed).map_err(emu_err)
}

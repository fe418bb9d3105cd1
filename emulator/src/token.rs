//! The PKCS#11 token record of a slot: its label and the user PIN's verifier, kept in kmdata as
//! `local/pkcs11_token` beside the world.
//!
//! The security officer of the token is the world's Administrator Card Set: the SO PIN is the PIN
//! of card 1 (for a world whose quorum is one card) or the PINs of cards 1 to k joined by commas.
//! The user PIN is checked against an Argon2id verifier; ten wrong PINs in a row lock it until the
//! security officer sets a new one with `C_InitPIN`.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::card::KdfParams;
use crate::fsio::{FaultHook, write_atomic};
use hsmkit_backend::{Error, ErrorKind, Op, Pin, Result};

/// The record's `format`.
pub const TOKEN_FORMAT: &str = "hsmkit-pkcs11-token";
/// Wrong user PINs in a row before the PIN locks.
pub const MAX_USER_FAILURES: u32 = 10;
/// The shortest PIN accepted.
pub const MIN_PIN_LEN: usize = 4;
/// The longest PIN accepted.
pub const MAX_PIN_LEN: usize = 255;

/// A PIN's verifier: Argon2id parameters and SHA-256 of the derived key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinCheck {
    kdf: KdfParams,
    #[serde(with = "hex")]
    check: Vec<u8>,
}

impl std::fmt::Debug for PinCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The verifier would let a reader try PINs offline: it never appears in messages.
        f.write_str("PinCheck(<redacted>)")
    }
}

impl PinCheck {
    /// A verifier for `pin` with a fresh `salt`.
    pub fn new(pin: &Pin, salt: [u8; 16]) -> Result<PinCheck> {
        let kdf = KdfParams::recommended(salt);
        let check = digest(&*kdf.derive(pin)?);
        Ok(PinCheck { kdf, check })
    }

    /// Whether `pin` matches, compared in constant time.
    pub fn matches(&self, pin: &Pin) -> Result<bool> {
        let got = digest(&*self.kdf.derive(pin)?);
        Ok(got.len() == self.check.len() && got.iter().zip(&self.check).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
    }
}

fn digest(key: &[u8; 32]) -> Vec<u8> {
    Sha256::new().chain_update(b"hsmkit pkcs11 user PIN\0").chain_update(key).finalize().to_vec()
}

/// The key a token record is authenticated under: derived from the world's module key KM, so only
/// a module of the world can make or change a record it will accept.
pub type RecordKey = zeroize::Zeroizing<[u8; 32]>;

/// The token record. Every field is authenticated by `mac` (HMAC-SHA-256 under the world's
/// [`RecordKey`]): a record edited by hand (a verifier replaced, a lock cleared) is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Always [`TOKEN_FORMAT`].
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// `CK_TOKEN_INFO.label` (at most 32 bytes).
    pub label: String,
    /// The user PIN's verifier, once `C_InitPIN` has set one.
    pub user_pin: Option<PinCheck>,
    /// Wrong user PINs since the last right one.
    pub user_failures: u32,
    /// HMAC-SHA-256 of the record (with this field empty) under the world's record key (hex).
    #[serde(with = "hex", default)]
    pub mac: Vec<u8>,
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Corrupt, Op::Info)
        .detail(format!("the token record {} is damaged: {why}", path.display()))
        .hint("restore it from a backup, or move it away and initialise the token again")
}

impl TokenRecord {
    /// A new record with `label` and no user PIN.
    pub fn new(label: &str) -> TokenRecord {
        TokenRecord {
            format: TOKEN_FORMAT.into(),
            version: 1,
            label: label.into(),
            user_pin: None,
            user_failures: 0,
            mac: Vec::new(),
        }
    }

    /// Where the record of the world in `kmdata` lives.
    pub fn path(kmdata: &Path) -> PathBuf {
        kmdata.join("local").join("pkcs11_token")
    }

    /// The record's MAC under `key`: HMAC-SHA-256 over its JSON with the `mac` field empty.
    fn mac_under(&self, key: &RecordKey) -> Result<Vec<u8>> {
        let bare = TokenRecord { mac: Vec::new(), ..self.clone() };
        let json = serde_json::to_vec(&bare).map_err(|e| {
            Error::new(ErrorKind::Device, Op::Info).detail(format!("cannot encode the token record: {e}"))
        })?;
        Ok(aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key[..]), &json)
            .as_ref()
            .to_vec())
    }

    /// Parses a record and checks its MAC under `key`, refusing what it cannot trust.
    pub fn parse(bytes: &[u8], path: &Path, key: &RecordKey) -> Result<TokenRecord> {
        let r = Self::parse_unchecked(bytes, path)?;
        let want = r.mac_under(key)?;
        if r.mac.len() != want.len() || aws_lc_rs::constant_time::verify_slices_are_equal(&r.mac, &want).is_err() {
            return Err(corrupt(
                path,
                "its MAC does not verify under this world's module key (edited, or of another world)",
            ));
        }
        Ok(r)
    }

    fn parse_unchecked(bytes: &[u8], path: &Path) -> Result<TokenRecord> {
        let r: TokenRecord = serde_json::from_slice(bytes).map_err(|e| corrupt(path, e))?;
        if r.format != TOKEN_FORMAT || r.version != 1 {
            return Err(corrupt(path, format!("format {:?} version {} is not {TOKEN_FORMAT} 1", r.format, r.version)));
        }
        if r.label.len() > 32 {
            return Err(corrupt(path, "the label is longer than 32 bytes"));
        }
        if let Some(p) = &r.user_pin {
            if p.check.len() != 32 {
                return Err(corrupt(path, "the user PIN verifier is not 32 bytes"));
            }
            p.kdf.check().map_err(|_| corrupt(path, "the user PIN's key-derivation parameters are out of range"))?;
        }
        Ok(r)
    }

    /// Reads the record of `kmdata`, checked under `key`; `None` when there is none.
    pub fn load(kmdata: &Path, key: &RecordKey) -> Result<Option<TokenRecord>> {
        let path = Self::path(kmdata);
        match crate::fsio::read_bounded(&path, 64 * 1024) {
            Ok(bytes) => Self::parse(&bytes, &path, key).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Writes the record with its MAC under `key` (atomically: the old one or the new one, never a
    /// torn one).
    pub fn save(&self, kmdata: &Path, key: &RecordKey, hook: &FaultHook) -> Result<()> {
        let path = Self::path(kmdata);
        let sealed = TokenRecord { mac: self.mac_under(key)?, ..self.clone() };
        let bytes = serde_json::to_vec_pretty(&sealed).map_err(|e| {
            Error::new(ErrorKind::Device, Op::Info).detail(format!("cannot encode the token record: {e}"))
        })?;
        write_atomic(&path, &bytes, hook)
            .map_err(|e| Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot write {}: {e}", path.display())))
    }

    /// Whether the user PIN is locked.
    pub fn user_locked(&self) -> bool {
        self.user_failures >= MAX_USER_FAILURES
    }
}

/// The exclusive hold of a token record's lock file (`local/pkcs11_token.lock`): every
/// read-modify-write of the record, in any process, runs under it, so parallel PIN guesses are
/// counted one by one and a PIN set in one process is the PIN in every other.
#[derive(Debug)]
pub struct RecordLock(#[allow(dead_code)] std::fs::File);

fn io_err(op: Op, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, op).detail(format!("cannot use {}: {e}", path.display()))
}

impl TokenRecord {
    /// Takes the record's lock (blocking until other processes release it).
    pub fn lock(kmdata: &Path, op: Op) -> Result<RecordLock> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = kmdata.join("local").join("pkcs11_token.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err(op, &path, e))?;
        file.lock().map_err(|e| io_err(op, &path, e))?;
        Ok(RecordLock(file))
    }
}

fn not_initialized(op: Op) -> Error {
    Error::new(ErrorKind::UserPinNotInitialized, op)
        .detail("the token has no user PIN yet")
        .hint("the security officer sets one: `hsmkit init-pin`, or C_InitPIN after logging in as the SO")
}

/// Whether the token of `kmdata` has a user PIN, which makes its private objects need the user's
/// login. A world without one is module protection alone (nShield's default: the module is the
/// protection, no login).
pub fn login_required(kmdata: &Path, key: &RecordKey) -> Result<bool> {
    Ok(TokenRecord::load(kmdata, key)?.is_some_and(|r| r.user_pin.is_some()))
}

/// Checks the user PIN of the token of `kmdata`, counting a wrong one (under the record's lock):
/// `PinIncorrect` for a wrong PIN, `PinLocked` after [`MAX_USER_FAILURES`] in a row,
/// `UserPinNotInitialized` when none is set.
pub fn check_user_pin(kmdata: &Path, key: &RecordKey, pin: &Pin, hook: &FaultHook) -> Result<()> {
    let op = Op::Login;
    let _held = TokenRecord::lock(kmdata, op)?;
    let mut r = TokenRecord::load(kmdata, key)?.filter(|r| r.user_pin.is_some()).ok_or_else(|| not_initialized(op))?;
    if r.user_locked() {
        return Err(Error::new(ErrorKind::PinLocked, op)
            .detail(format!("the user PIN is locked after {MAX_USER_FAILURES} wrong PINs in a row"))
            .hint("the security officer sets a new one (`hsmkit init-pin`, C_InitPIN)"));
    }
    // A verifier that cannot be computed is damage, not a wrong PIN: reported, never counted.
    let ok = match &r.user_pin {
        Some(c) => c.matches(pin)?,
        None => false,
    };
    let before = r.user_failures;
    r.user_failures = if ok { 0 } else { r.user_failures.saturating_add(1) };
    if r.user_failures != before {
        r.save(kmdata, key, hook)?;
    }
    if ok {
        Ok(())
    } else {
        let left = MAX_USER_FAILURES.saturating_sub(r.user_failures);
        Err(Error::new(ErrorKind::PinIncorrect, op)
            .detail(format!("wrong user PIN ({left} tries left before it locks)")))
    }
}

fn check_len(pin: &Pin, op: Op) -> Result<()> {
    let n = pin.expose_secret().len();
    if !(MIN_PIN_LEN..=MAX_PIN_LEN).contains(&n) {
        return Err(Error::new(ErrorKind::PinLenRange, op)
            .detail(format!("a user PIN is {MIN_PIN_LEN} to {MAX_PIN_LEN} bytes, not {n}")));
    }
    Ok(())
}

/// Sets the user PIN of the token of `kmdata` (the security officer's `C_InitPIN`), unlocking it;
/// a token without a record gets one labelled `label`.
pub fn init_user_pin(
    kmdata: &Path,
    key: &RecordKey,
    pin: &Pin,
    salt: [u8; 16],
    label: &str,
    hook: &FaultHook,
) -> Result<()> {
    let op = Op::Login;
    check_len(pin, op)?;
    let check = PinCheck::new(pin, salt)?;
    let _held = TokenRecord::lock(kmdata, op)?;
    let mut r = TokenRecord::load(kmdata, key)?.unwrap_or_else(|| TokenRecord::new(label));
    r.user_pin = Some(check);
    r.user_failures = 0;
    r.save(kmdata, key, hook)
}

/// Changes the user PIN (the user's `C_SetPIN`): the old PIN is checked (and a wrong one counted)
/// first.
pub fn change_user_pin(
    kmdata: &Path,
    key: &RecordKey,
    old: &Pin,
    new: &Pin,
    salt: [u8; 16],
    hook: &FaultHook,
) -> Result<()> {
    let op = Op::Login;
    check_len(new, op)?;
    let check = PinCheck::new(new, salt)?;
    let _held = TokenRecord::lock(kmdata, op)?;
    let mut r = TokenRecord::load(kmdata, key)?.filter(|r| r.user_pin.is_some()).ok_or_else(|| not_initialized(op))?;
    if r.user_locked() {
        return Err(Error::new(ErrorKind::PinLocked, op).detail("the user PIN is locked"));
    }
    let matches = match &r.user_pin {
        Some(c) => c.matches(old)?,
        None => false,
    };
    if !matches {
        r.user_failures = r.user_failures.saturating_add(1);
        r.save(kmdata, key, hook)?;
        return Err(Error::new(ErrorKind::PinIncorrect, op).detail("wrong user PIN"));
    }
    r.user_pin = Some(check);
    r.user_failures = 0;
    r.save(kmdata, key, hook)
}

/// Splits an SO PIN into the card PINs of cards 1 to `k`.
pub fn so_pins(pin: &Pin, k: u8) -> Vec<Pin> {
    if k <= 1 {
        return vec![pin.clone()];
    }
    pin.expose_secret().split(',').map(|p| Pin::from(p.to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_accepts_its_pin_only() {
        let c = PinCheck::new(&Pin::from("1234".to_owned()), [7; 16]).expect("verifier");
        assert!(c.matches(&Pin::from("1234".to_owned())).expect("check"));
        assert!(!c.matches(&Pin::from("1235".to_owned())).expect("check"));
    }

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("local")).expect("local");
        let key: RecordKey = zeroize::Zeroizing::new([9u8; 32]);
        assert_eq!(TokenRecord::load(dir.path(), &key).expect("none"), None);
        let mut r = TokenRecord::new("ci token");
        r.user_pin = Some(PinCheck::new(&Pin::from("abcd".to_owned()), [1; 16]).expect("verifier"));
        r.user_failures = 3;
        r.save(dir.path(), &key, &FaultHook::default()).expect("save");
        let back = TokenRecord::load(dir.path(), &key).expect("load").expect("some");
        assert_eq!(TokenRecord { mac: Vec::new(), ..back }, r);
        let bytes = std::fs::read(TokenRecord::path(dir.path())).expect("read");
        let p = Path::new("t");
        for cut in 0..bytes.len() {
            assert!(TokenRecord::parse(&bytes[..cut], p, &key).is_err(), "truncated at {cut}");
        }
        // Every single-bit flip that still parses is caught by the MAC (JSON whitespace aside,
        // which carries nothing).
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                if let Ok(changed) = TokenRecord::parse(&b, p, &key) {
                    assert_eq!(TokenRecord { mac: Vec::new(), ..changed }, r, "flip at {i}.{bit} went unnoticed");
                }
            }
        }
        // Hand edits are refused: a cleared lock, another verifier; and a record of another world.
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        let cleared = text.replace("\"user_failures\": 3", "\"user_failures\": 0");
        assert_ne!(cleared, text);
        assert!(TokenRecord::parse(cleared.as_bytes(), p, &key).is_err(), "a cleared failure count");
        let other: RecordKey = zeroize::Zeroizing::new([8u8; 32]);
        assert!(TokenRecord::parse(&bytes, p, &other).is_err(), "another world's key");
        for hostile in [
            &br#"{"format":"hsmkit-pkcs11-token","version":2,"label":"x","user_pin":null,"user_failures":0}"#[..],
            br#"{"format":"other","version":1,"label":"x","user_pin":null,"user_failures":0}"#,
            br#"{"format":"hsmkit-pkcs11-token","version":1,"label":"0123456789012345678901234567890123","user_pin":null,"user_failures":0}"#,
            br#"{"format":"hsmkit-pkcs11-token","version":1,"label":"x","user_pin":null,"user_failures":0,"extra":1}"#,
            br#"{"format":"hsmkit-pkcs11-token","version":1,"label":"x","user_pin":{"kdf":{"m_kib":4194304,"t":1,"p":1,"salt":"0000000000000000"},"check":"0000000000000000000000000000000000000000000000000000000000000000"},"user_failures":0}"#,
        ] {
            let e = TokenRecord::parse(hostile, p, &key).expect_err("hostile record");
            assert_eq!(*e.kind(), ErrorKind::Corrupt);
        }
    }

    #[test]
    fn debug_never_shows_the_verifier() {
        let c = PinCheck::new(&Pin::from("1234".to_owned()), [7; 16]).expect("verifier");
        let text = format!("{:?}", TokenRecord { user_pin: Some(c.clone()), ..TokenRecord::new("t") });
        assert!(!text.contains(&hex::encode(&c.check)) && !text.contains("1234"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn so_pins_split_on_commas() {
        let split = so_pins(&Pin::from("a1,b2".to_owned()), 2);
        assert_eq!(split.iter().map(|p| p.expose_secret().to_owned()).collect::<Vec<_>>(), ["a1", "b2"]);
    }
}

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

use hsmkit_backend::{Error, ErrorKind, Op, Pin, Result};
use hsmkit_emulator::card::KdfParams;
use hsmkit_emulator::fsio::{FaultHook, write_atomic};

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

/// The token record.
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
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Corrupt, Op::Info)
        .detail(format!("the token record {} is damaged: {why}", path.display()))
        .hint("restore it from a backup, or move it away and initialise the token again")
}

impl TokenRecord {
    /// A new record with `label` and no user PIN.
    pub fn new(label: &str) -> TokenRecord {
        TokenRecord { format: TOKEN_FORMAT.into(), version: 1, label: label.into(), user_pin: None, user_failures: 0 }
    }

    /// Where the record of the world in `kmdata` lives.
    pub fn path(kmdata: &Path) -> PathBuf {
        kmdata.join("local").join("pkcs11_token")
    }

    /// Parses a record, refusing what it cannot trust.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<TokenRecord> {
        let r: TokenRecord = serde_json::from_slice(bytes).map_err(|e| corrupt(path, e))?;
        if r.format != TOKEN_FORMAT || r.version != 1 {
            return Err(corrupt(path, format!("format {:?} version {} is not {TOKEN_FORMAT} 1", r.format, r.version)));
        }
        if r.label.len() > 32 {
            return Err(corrupt(path, "the label is longer than 32 bytes"));
        }
        if r.user_pin.as_ref().is_some_and(|p| p.check.len() != 32) {
            return Err(corrupt(path, "the user PIN verifier is not 32 bytes"));
        }
        Ok(r)
    }

    /// Reads the record of `kmdata`; `None` when there is none.
    pub fn load(kmdata: &Path) -> Result<Option<TokenRecord>> {
        let path = Self::path(kmdata);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Writes the record (atomically: the old one or the new one, never a torn one).
    pub fn save(&self, kmdata: &Path) -> Result<()> {
        let path = Self::path(kmdata);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| {
            Error::new(ErrorKind::Device, Op::Info).detail(format!("cannot encode the token record: {e}"))
        })?;
        write_atomic(&path, &bytes, &FaultHook::default())
            .map_err(|e| Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot write {}: {e}", path.display())))
    }

    /// Whether the user PIN is locked.
    pub fn user_locked(&self) -> bool {
        self.user_failures >= MAX_USER_FAILURES
    }
}

/// Checks a PIN's length and encoding (`CKR_PIN_LEN_RANGE`, `CKR_PIN_INVALID`).
pub fn check_pin_shape(pin: &[u8]) -> std::result::Result<Pin, crate::ffi::Rv> {
    use crate::ffi::{Rv, rv};
    if !(MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
        return Err(rv::PIN_LEN_RANGE);
    }
    let text = std::str::from_utf8(pin).map_err(|_| Rv(cryptoki_sys::CKR_PIN_INVALID))?;
    Ok(Pin::from(text.to_owned()))
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
        assert_eq!(TokenRecord::load(dir.path()).expect("none"), None);
        let mut r = TokenRecord::new("ci token");
        r.user_pin = Some(PinCheck::new(&Pin::from("abcd".to_owned()), [1; 16]).expect("verifier"));
        r.save(dir.path()).expect("save");
        assert_eq!(TokenRecord::load(dir.path()).expect("load"), Some(r.clone()));
        let bytes = std::fs::read(TokenRecord::path(dir.path())).expect("read");
        let p = Path::new("t");
        for cut in 0..bytes.len() {
            assert!(TokenRecord::parse(&bytes[..cut], p).is_err(), "truncated at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            // A flip either breaks the JSON or changes a value; it never panics, and a changed
            // verifier never accepts the old PIN by accident of parsing.
            if let Ok(changed) = TokenRecord::parse(&b, p) {
                assert_ne!(changed, r, "flip at {i} went unnoticed");
            }
        }
        for hostile in [
            &br#"{"format":"hsmkit-pkcs11-token","version":2,"label":"x","user_pin":null,"user_failures":0}"#[..],
            br#"{"format":"other","version":1,"label":"x","user_pin":null,"user_failures":0}"#,
            br#"{"format":"hsmkit-pkcs11-token","version":1,"label":"0123456789012345678901234567890123","user_pin":null,"user_failures":0}"#,
            br#"{"format":"hsmkit-pkcs11-token","version":1,"label":"x","user_pin":null,"user_failures":0,"extra":1}"#,
            br#"{"format":"hsmkit-pkcs11-token","version":1,"label":"x","user_pin":{"kdf":{"m_kib":4194304,"t":1,"p":1,"salt":"0000000000000000"},"check":"00"},"user_failures":0}"#,
        ] {
            let e = TokenRecord::parse(hostile, p).expect_err("hostile record");
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
    fn pin_shapes() {
        assert!(check_pin_shape(b"123").is_err());
        assert!(check_pin_shape(&[b'1'; 256]).is_err());
        assert!(check_pin_shape(&[0xff, 0xfe, 0x31, 0x32]).is_err());
        assert!(check_pin_shape(b"1234").is_ok());
        let split = so_pins(&Pin::from("a1,b2".to_owned()), 2);
        assert_eq!(split.iter().map(|p| p.expose_secret().to_owned()).collect::<Vec<_>>(), ["a1", "b2"]);
    }
}

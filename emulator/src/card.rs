//! Administrator cards: each a file holding one share of the ACS secret, encrypted under a key
//! derived from the card's PIN with Argon2id, with a failure counter that locks the card.
//!
//! The counter lives in the card file, as it lives on a real smartcard. Unlike a smartcard, a file
//! can be restored from a copy; the emulator models the card, not its tamper resistance.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use zeroize::Zeroizing;

use hsmkit_backend::{Error, ErrorKind, Op, Pin, Result};
use secrecy::ExposeSecret;

use crate::fsio::{FaultHook, write_atomic};
use crate::suite::{Sealed, open, seal};

/// File format name of a card.
pub const CARD_FORMAT: &str = "hsmkit-card";

/// Wrong PINs before a card locks.
pub const DEFAULT_MAX_FAILURES: u32 = 5;

/// Argon2id parameters of a card's PIN key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// Salt (hex).
    #[serde(with = "hex")]
    pub salt: Vec<u8>,
}

impl KdfParams {
    /// OWASP's Argon2id minimum (19 MiB, 2 passes, 1 lane) with a fresh salt.
    pub fn recommended(salt: [u8; 16]) -> Self {
        KdfParams { m_kib: 19 * 1024, t: 2, p: 1, salt: salt.to_vec() }
    }

    /// The Argon2 parameters, refusing those a hostile file could use to exhaust memory or time.
    fn params(&self) -> Result<argon2::Params> {
        // At most 64 MiB, 8 passes and 4 lanes (a second or so): a file cannot make a try cost
        // more. The recommended settings are 19 MiB and 2 passes.
        if self.m_kib > 64 * 1024 || self.t > 8 || self.p > 4 || !(8..=64).contains(&self.salt.len()) {
            return Err(bad_kdf());
        }
        argon2::Params::new(self.m_kib, self.t, self.p, Some(32)).map_err(|_| bad_kdf())
    }

    /// Refuses parameters a hostile file could use to exhaust memory or time (checked before any
    /// derivation, so a damaged file is reported as such).
    pub fn check(&self) -> Result<()> {
        self.params().map(|_| ())
    }

    /// The 32-byte key these parameters derive from `pin`.
    pub fn derive(&self, pin: &Pin) -> Result<Zeroizing<[u8; 32]>> {
        let bad = bad_kdf;
        let params = self.params()?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon.hash_password_into(pin.expose_secret().as_bytes(), &self.salt, out.as_mut()).map_err(|_| bad())?;
        Ok(out)
    }
}

fn bad_kdf() -> Error {
    Error::new(ErrorKind::Corrupt, Op::ReadCard).detail("the card's key-derivation parameters are invalid")
}

/// What a card says about itself; bound into the share's encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardHeader {
    /// Always [`CARD_FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The world this card belongs to: hash of its KNSO (hex).
    #[serde(with = "hex")]
    pub world: Vec<u8>,
    /// Card number, 1 to n.
    pub card: u8,
    /// Cards in the set.
    pub of: u8,
    /// Cards needed.
    pub quorum: u8,
    /// PIN key derivation.
    pub kdf: KdfParams,
}

/// A card file.
///
/// The header is bound into the share's encryption (a changed header makes the share unopenable);
/// `header_sha256` tells a damaged header from a wrong PIN before anything is tried, so damage
/// costs no try. The counters are the card's own: the module never allows more than
/// [`DEFAULT_MAX_FAILURES`] wrong PINs, whatever `max_failures` says, and counts each try under the
/// card's lock file before it is made. Like any file, a card can be copied and its PIN attacked
/// offline: Argon2id sets the price of each guess there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardFile {
    /// The authenticated header.
    pub header: CardHeader,
    /// SHA-256 of the header as it is bound in (hex).
    #[serde(with = "hex")]
    pub header_sha256: Vec<u8>,
    /// The share, sealed under the PIN key.
    pub share: Sealed,
    /// Wrong PINs so far.
    pub failures: u32,
    /// Wrong PINs allowed before the card locks (at most [`DEFAULT_MAX_FAILURES`]).
    pub max_failures: u32,
}

impl CardFile {
    /// Seals `share` for card `card` of `of` under `pin`.
    pub fn new(header: CardHeader, pin: &Pin, nonce: [u8; 12], share: &[u8]) -> Result<Self> {
        let key = header.kdf.derive(pin)?;
        let aad = aad(&header)?;
        let share = seal(key.as_ref(), nonce, &aad, share)?;
        let header_sha256 = sha2::Sha256::digest(&aad).to_vec();
        Ok(CardFile { header, header_sha256, share, failures: 0, max_failures: DEFAULT_MAX_FAILURES })
    }

    /// The card file name for card `card` of the world `hknso`: `acs_<first 10 hex>_card<N>`.
    pub fn file_name(hknso: &[u8], card: u8) -> String {
        format!("acs_{}_card{card}", short_hash(hknso))
    }

    /// Reads and parses a card file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_CARD_BYTES).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
            Error::new(kind, Op::ReadCard)
                .detail(format!("cannot read card file {}: {e}", path.display()))
                .hint("check the --cards folder and the card file name")
        })?;
        CardFile::from_bytes(&bytes, path)
    }

    /// Parses a card file's bytes and checks its header (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let card: CardFile = serde_json::from_slice(bytes).map_err(|_| {
            Error::new(ErrorKind::Corrupt, Op::ReadCard)
                .detail(format!("{} is not a readable hsmkit card (truncated or damaged)", path.display()))
        })?;
        if card.header.format != CARD_FORMAT || card.header.version != 1 {
            return Err(Error::new(ErrorKind::Corrupt, Op::ReadCard)
                .detail(format!("{} is not an hsmkit card of a known version", path.display())));
        }
        if card.header.card == 0
            || card.header.card > card.header.of
            || card.header.quorum == 0
            || card.header.quorum > card.header.of
        {
            return Err(Error::new(ErrorKind::Corrupt, Op::ReadCard)
                .detail(format!("{} has an impossible card number or quorum", path.display())));
        }
        if sha2::Sha256::digest(aad(&card.header)?).as_slice() != card.header_sha256.as_slice() {
            return Err(Error::new(ErrorKind::Corrupt, Op::ReadCard)
                .detail(format!("{}'s header is damaged (its checksum does not match)", path.display()))
                .hint("restore the card file from its backup; no PIN was tried"));
        }
        card.header.kdf.check().map_err(|e| {
            Error::new(ErrorKind::Corrupt, Op::ReadCard).detail(format!(
                "{}: {}",
                path.display(),
                e.detail_text().unwrap_or("bad key-derivation settings")
            ))
        })?;
        Ok(card)
    }

    /// Writes the card crash-safely.
    pub fn write(&self, path: &Path, hook: &FaultHook) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Device, Op::ReadCard).detail(e.to_string()))?;
        write_atomic(path, &bytes, hook).map_err(|e| {
            Error::new(ErrorKind::Io, Op::ReadCard).detail(format!("cannot write card {}: {e}", path.display()))
        })
    }

    /// Unlocks the share with `pin`. A wrong PIN is counted in the file (written crash-safely)
    /// and, at the limit, locks the card. The whole check runs under the card's lock file, with
    /// the card read again under it: guesses made in parallel, by any number of processes, are
    /// counted one by one, so no more than the limit are ever tried.
    pub fn unlock(&mut self, path: &Path, pin: &Pin, hook: &FaultHook) -> Result<Zeroizing<Vec<u8>>> {
        let _held = lock(path)?;
        *self = CardFile::read(path)?;
        let label = format!("card {} of {} ({})", self.header.card, self.header.of, path.display());
        let max = self.max_failures.min(DEFAULT_MAX_FAILURES);
        if self.failures >= max {
            return Err(Error::new(ErrorKind::PinLocked, Op::ReadCard)
                .detail(format!("{label} is locked after {} wrong PINs", self.failures))
                .hint("use another card of the set; a locked card must be replaced with the quorum"));
        }
        // Count the attempt before trying the PIN, so that a crash, a read-only card or a
        // parallel attempt can never yield a free guess; a right PIN resets the count.
        self.header.kdf.params()?;
        let tried = self.failures;
        self.failures = tried.saturating_add(1);
        if let Err(e) = self.write(path, hook) {
            self.failures = tried;
            return Err(e.hint("the card file must be writable: the card counts wrong PINs"));
        }
        let key = self.header.kdf.derive(pin)?;
        if let Some(share) = open(key.as_ref(), &aad(&self.header)?, &self.share) {
            self.failures = 0;
            self.write(path, hook)?;
            return Ok(share);
        }
        let left = max.saturating_sub(self.failures);
        let (kind, what) = if left == 0 {
            (ErrorKind::PinLocked, format!("wrong PIN for {label}; the card is now locked"))
        } else {
            (ErrorKind::PinIncorrect, format!("wrong PIN for {label}; {left} tries left before it locks"))
        };
        Err(Error::new(kind, Op::ReadCard).detail(what))
    }
}

/// Holds the lock file of the card at `path` (`.<name>.lock` beside it) until dropped.
fn lock(path: &Path) -> Result<fs::File> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lock_path = path.with_file_name(format!(".{name}.lock"));
    let io = |e: std::io::Error| {
        Error::new(ErrorKind::Io, Op::ReadCard).detail(format!("cannot lock {}: {e}", lock_path.display()))
    };
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
    file.lock().map_err(io)?;
    Ok(file)
}

fn aad(header: &CardHeader) -> Result<Vec<u8>> {
    serde_json::to_vec(header).map_err(|e| Error::new(ErrorKind::Device, Op::ReadCard).detail(e.to_string()))
}

/// The first 10 hex digits of a hash: a short, readable world name.
pub fn short_hash(h: &[u8]) -> String {
    hex::encode(&h[..h.len().min(5)])
}

/// Where card `card` of world `hknso` lives in `dir`.
pub fn card_path(dir: &Path, hknso: &[u8], card: u8) -> PathBuf {
    dir.join(CardFile::file_name(hknso, card))
}

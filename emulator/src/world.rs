//! The security world: its file (`kmdata/local/world`), its keys and the Administrator Card Set.
//!
//! At creation a random ACS secret is split k-of-n with Shamir's scheme over GF(256); each share
//! goes to a card under its PIN. The world's security-officer key KNSO and recovery key KRE are
//! derived from the secret, so only a quorum can re-create their private halves; the module key
//! KM is random and kept in the world file sealed under a key derived from the same secret (so a
//! quorum can program another module), and in the module's NVRAM. The world file is signed by
//! KNSO: any edit is detected.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use hsmkit_backend::{Error, ErrorKind, Op, Pin, Result};

use crate::card::{CardFile, CardHeader, KdfParams, card_path, short_hash};
use crate::fsio::FaultHook;
use crate::rng::HsmRng;
use crate::suite::{CipherSuite, DlKey, DlPublic, Sealed, derive_key, open, seal};

/// File format name of a world file.
pub const WORLD_FORMAT: &str = "hsmkit-world";

/// The largest Administrator Card Set.
pub const MAX_CARDS: u8 = 64;

/// A k-of-n quorum, parsed from `K/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quorum {
    /// Cards needed.
    pub k: u8,
    /// Cards in the set.
    pub n: u8,
}

impl Quorum {
    /// Parses `K/N` with 1 <= K <= N <= 64.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Err(Error::new(ErrorKind::ArgumentsBad, Op::CreateWorld)
                .detail(format!("invalid quorum '{s}': {why}"))
                .hint("write K/N with 1 <= K <= N <= 64, for example --acs-quorum=2/3"))
        };
        let Some((k, n)) = s.split_once('/') else {
            return bad("expected K/N");
        };
        let (Ok(k), Ok(n)) = (k.trim().parse::<u8>(), n.trim().parse::<u8>()) else {
            return bad("K and N must be whole numbers");
        };
        if k == 0 {
            return bad("K must be at least 1");
        }
        if n > MAX_CARDS {
            return bad("N must be at most 64");
        }
        if k > n {
            return bad("K cannot exceed N");
        }
        Ok(Quorum { k, n })
    }
}

/// The signed part of a world file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldBody {
    /// Always [`WORLD_FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The cipher suite.
    pub cipher_suite: CipherSuite,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// The ACS quorum.
    pub acs: Quorum,
    /// Hash of KNSO's public key: the world's identity (hex).
    #[serde(with = "hex")]
    pub hknso: Vec<u8>,
    /// KNSO's public value (hex).
    #[serde(with = "hex")]
    pub knso_pub: Vec<u8>,
    /// Hash of the module key KM (hex).
    #[serde(with = "hex")]
    pub hkm: Vec<u8>,
    /// Hash of the recovery key KRE's public value (hex).
    #[serde(with = "hex")]
    pub hkre: Vec<u8>,
    /// KRE's public value (hex).
    #[serde(with = "hex")]
    pub kre_pub: Vec<u8>,
    /// KM sealed under a key derived from the ACS secret.
    pub km_blob: Sealed,
    /// Made with seeded randomness (`--seed`): a world of test keys, never for real use. Only
    /// seeded runs open it, and seeded runs open nothing else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seeded: bool,
}

/// A world file: the body and KNSO's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldFile {
    /// What is signed.
    pub body: WorldBody,
    /// KNSO's DSA signature over the body's JSON (hex, `r || s`).
    #[serde(with = "hex")]
    pub signature: Vec<u8>,
}

/// A loaded, verified world. Its public keys are parsed when first used (a world the module
/// verified before, [`World::from_bytes_verified_before`], is not parsed again at every load).
#[derive(Debug, Clone)]
pub struct World {
    file: WorldFile,
    knso: std::sync::OnceLock<DlPublic>,
    kre: std::sync::OnceLock<DlPublic>,
}

/// A card to present: its file and PIN.
pub struct CardPresentation<'a> {
    /// The card file.
    pub path: &'a Path,
    /// Its PIN.
    pub pin: &'a Pin,
}

/// The quorum's authority: KNSO's private key, re-created from k shares. Zeroized on drop.
pub struct QuorumAuth {
    knso: DlKey,
    kre: DlKey,
    hknso: Vec<u8>,
    acs_secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for QuorumAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuorumAuth(world {})", short_hash(&self.hknso))
    }
}

impl QuorumAuth {
    /// Signs `statement` with KNSO: a certificate the module checks before a privileged change.
    pub fn certify(&self, statement: &[u8]) -> Result<Vec<u8>> {
        self.knso.sign(statement)
    }

    /// The hash of the key that certifies (the world's KNSO).
    pub fn hknso(&self) -> &[u8] {
        &self.hknso
    }

    /// The recovery key's private half.
    pub fn kre(&self) -> &DlKey {
        &self.kre
    }

    /// KM, unsealed from the world file (to program a module into the world).
    pub fn module_key(&self, world: &World) -> Result<Zeroizing<Vec<u8>>> {
        let k = derive_key(&self.acs_secret, "hsmkit world KM wrap")?;
        open(k.as_ref(), &world.file.body.hknso, &world.file.body.km_blob).ok_or_else(|| {
            Error::new(ErrorKind::Corrupt, Op::LoadWorld).detail("the world's sealed module key does not open")
        })
    }
}

fn body_bytes(body: &WorldBody) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::new(ErrorKind::Device, Op::LoadWorld).detail(e.to_string()))
}

/// What [`World::create`] returns: the world, KM (for the module's NVRAM) and the card paths.
pub struct NewWorld {
    /// The world.
    pub world: World,
    /// The module key, for NVRAM.
    pub km: Zeroizing<Vec<u8>>,
    /// Where each card was written.
    pub cards: Vec<std::path::PathBuf>,
}

impl World {
    /// Creates a world: KM, KNSO, KRE and the ACS. `pins` has one PIN per card (n of them).
    /// Cards are written to `cards_dir` first, the world file last, so a failure leaves no world.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        suite: CipherSuite,
        quorum: Quorum,
        pins: &[Pin],
        cards_dir: &Path,
        world_path: &Path,
        rng: &mut HsmRng,
        now_ms: u64,
        hook: &FaultHook,
    ) -> Result<NewWorld> {
        if pins.len() != usize::from(quorum.n) {
            return Err(Error::new(ErrorKind::ArgumentsBad, Op::CreateWorld)
                .detail(format!("{} PINs given for {} cards", pins.len(), quorum.n))
                .hint("give one PIN per card, card by card"));
        }
        let acs_secret = Zeroizing::new(rng.array::<32>().to_vec());
        let knso = suite.dl_key_from_seed(&derive_key(&acs_secret, "hsmkit KNSO")?[..])?;
        let kre = suite.dl_key_from_seed(&derive_key(&acs_secret, "hsmkit KRE")?[..])?;
        let km = Zeroizing::new(rng.array::<32>().to_vec());
        let knso_pub = knso.public_bytes();
        let hknso = suite.hash(&[b"hsmkit KNSO", &knso_pub]);
        let kre_pub = kre.public_bytes();
        let hkre = suite.hash(&[b"hsmkit KRE", &kre_pub]);
        let hkm = suite.hash(&[b"hsmkit KM", &km]);
        let km_key = derive_key(&acs_secret, "hsmkit world KM wrap")?;
        let km_blob = seal(km_key.as_ref(), rng.array(), &hknso, &km)?;
        let body = WorldBody {
            format: WORLD_FORMAT.into(),
            version: 1,
            cipher_suite: suite,
            created_ms: now_ms,
            acs: quorum,
            hknso: hknso.clone(),
            knso_pub,
            hkm,
            hkre,
            kre_pub,
            km_blob,
            seeded: rng.is_seeded(),
        };
        let signature = knso.sign(&body_bytes(&body)?)?;
        let file = WorldFile { body, signature };

        // Split the ACS secret and write the cards.
        let mut share_rng = rng.fork();
        let shares: Vec<blahaj::Share> =
            blahaj::Sharks(quorum.k).dealer_rng(&acs_secret, &mut share_rng).take(usize::from(quorum.n)).collect();
        crate::fsio::create_private_dir(cards_dir).map_err(|e| {
            Error::new(ErrorKind::Io, Op::CreateWorld)
                .detail(format!("cannot create card folder {}: {e}", cards_dir.display()))
        })?;
        let mut paths = Vec::new();
        let result = Self::write_cards(&file, &shares, pins, quorum, cards_dir, world_path, rng, hook, &mut paths);
        if let Err(e) = result {
            // A world whose file was never committed is no world: leave none of its cards behind.
            // Once the file is in place (the failure came after the rename) the cards are its
            // only Administrator cards and are kept (and finished moving by the next open).
            let ours = World::load(world_path).is_ok_and(|w| w.hknso() == file.body.hknso.as_slice());
            if !ours {
                let _ = fs::remove_dir_all(pending_dir(cards_dir, &file.body.hknso));
            }
            return Err(e);
        }
        let world = World::from_file(file, true)?;
        Ok(NewWorld { world, km, cards: paths })
    }

    #[allow(clippy::too_many_arguments)]
    fn write_cards(
        file: &WorldFile,
        shares: &[blahaj::Share],
        pins: &[Pin],
        quorum: Quorum,
        cards_dir: &Path,
        world_path: &Path,
        rng: &mut HsmRng,
        hook: &FaultHook,
        paths: &mut Vec<std::path::PathBuf>,
    ) -> Result<()> {
        // The cards are written into a folder of their own first, the world file commits the
        // world, then the cards move into place: a crash before the commit leaves no card of a
        // world that never was (only the dot-named folder, which no reader takes for cards), and
        // one after it leaves cards that the next open of the module moves into place.
        let hknso = &file.body.hknso;
        let pending = pending_dir(cards_dir, hknso);
        crate::fsio::create_private_dir(&pending).map_err(|e| {
            Error::new(ErrorKind::Io, Op::CreateWorld).detail(format!("cannot create {}: {e}", pending.display()))
        })?;
        for (i, (share, pin)) in shares.iter().zip(pins).enumerate() {
            let card = i as u8 + 1;
            let header = CardHeader {
                format: crate::card::CARD_FORMAT.into(),
                version: 1,
                world: hknso.clone(),
                card,
                of: quorum.n,
                quorum: quorum.k,
                kdf: KdfParams::recommended(rng.array()),
            };
            let bytes = Zeroizing::new(Vec::from(share));
            let card_file = CardFile::new(header, pin, rng.array(), &bytes)?;
            paths.push(card_path(cards_dir, hknso, card));
            card_file.write(&card_path(&pending, hknso, card), hook)?;
        }
        let bytes = serde_json::to_vec_pretty(file)
            .map_err(|e| Error::new(ErrorKind::Device, Op::CreateWorld).detail(e.to_string()))?;
        // Never over another world: of two new-worlds at once, the second commit fails.
        crate::fsio::write_atomic_new(world_path, &bytes, hook).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(ErrorKind::AlreadyExists, Op::CreateWorld)
                    .detail(format!("another security world was made at {} meanwhile", world_path.display()))
                    .hint("use that world, or move its kmdata away (keep a backup) before creating a new one")
            } else {
                Error::new(ErrorKind::Io, Op::CreateWorld)
                    .detail(format!("cannot write world file {}: {e}", world_path.display()))
            }
        })?;
        finish_pending_cards(cards_dir, hknso)
    }

    /// Reads and verifies a world file.
    pub fn load(path: &Path) -> Result<Self> {
        World::load_remembered(path, None)
    }

    /// Reads a world file; when its bytes hash to `verified` (hex SHA-256, what the module's
    /// NVRAM keeps of the world it verified, [`World::file_sha256`]), the signature check is
    /// skipped ([`World::from_bytes_verified_before`]); any other bytes are verified in full.
    pub fn load_remembered(path: &Path, verified: Option<&str>) -> Result<Self> {
        use sha2::Digest as _;
        let bytes = crate::fsio::read_bounded(path, crate::fsio::MAX_WORLD_BYTES).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::TokenNotPresent } else { ErrorKind::Io };
            Error::new(kind, Op::LoadWorld)
                .detail(format!("cannot read the world file {}: {e}", path.display()))
                .hint("create a world with `hsmkit new-world --initialize`, or point --kmdata / NFAST_KMDATA at an existing one")
        })?;
        if verified.is_some_and(|v| hex::encode(sha2::Sha256::digest(&bytes)) == v) {
            return World::from_bytes_verified_before(&bytes, path);
        }
        World::from_bytes(&bytes, path)
    }

    /// Parses and verifies a world file's bytes (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let file: WorldFile =
            serde_json::from_slice(bytes).map_err(|_| corrupt(path, "it is truncated or not a world file"))?;
        World::from_file(file, true)
            .map_err(|e| if e.kind() == &ErrorKind::Corrupt { corrupt(path, e.detail_text().unwrap_or("")) } else { e })
    }

    /// Parses a world file's bytes that the module verified before: `bytes` hash to what its
    /// NVRAM keeps ([`World::file_sha256`], recorded when it made or joined the world), so the
    /// KNSO signature and the public keys are not checked again (the discrete-log arithmetic is
    /// most of a PKCS#11 application's start-up). Everything else is checked as in
    /// [`World::from_bytes`].
    pub fn from_bytes_verified_before(bytes: &[u8], path: &Path) -> Result<Self> {
        let file: WorldFile =
            serde_json::from_slice(bytes).map_err(|_| corrupt(path, "it is truncated or not a world file"))?;
        World::from_file(file, false)
            .map_err(|e| if e.kind() == &ErrorKind::Corrupt { corrupt(path, e.detail_text().unwrap_or("")) } else { e })
    }

    fn from_file(file: WorldFile, verify: bool) -> Result<Self> {
        let b = &file.body;
        let bad = |why: &str| Error::new(ErrorKind::Corrupt, Op::LoadWorld).detail(why.to_string());
        if b.format != WORLD_FORMAT || b.version != 1 {
            return Err(bad("not an hsmkit world of a known version"));
        }
        if b.acs.k == 0 || b.acs.k > b.acs.n || b.acs.n > MAX_CARDS {
            return Err(bad("impossible quorum"));
        }
        let suite = b.cipher_suite;
        if suite.hash(&[b"hsmkit KNSO", &b.knso_pub]) != b.hknso {
            return Err(bad("KNSO does not match the world's hash"));
        }
        if suite.hash(&[b"hsmkit KRE", &b.kre_pub]) != b.hkre {
            return Err(bad("KRE does not match its hash"));
        }
        let (knso, kre) = (std::sync::OnceLock::new(), std::sync::OnceLock::new());
        if verify {
            let k = suite.dl_public(&b.knso_pub).map_err(|_| bad("KNSO is malformed"))?;
            let r = suite.dl_public(&b.kre_pub).map_err(|_| bad("KRE is malformed"))?;
            if !k.verify(&body_bytes(b)?, &file.signature) {
                return Err(bad("its signature by KNSO does not verify: the file was edited or damaged"));
            }
            let _ = knso.set(k);
            let _ = kre.set(r);
        }
        Ok(World { file, knso, kre })
    }

    /// The signed body.
    pub fn body(&self) -> &WorldBody {
        &self.file.body
    }

    /// The cipher suite.
    pub fn suite(&self) -> CipherSuite {
        self.file.body.cipher_suite
    }

    /// The world's identity, hash of KNSO.
    pub fn hknso(&self) -> &[u8] {
        &self.file.body.hknso
    }

    /// Hash of KM.
    pub fn hkm(&self) -> &[u8] {
        &self.file.body.hkm
    }

    /// Hash of KRE.
    pub fn hkre(&self) -> &[u8] {
        &self.file.body.hkre
    }

    /// The recovery key's public half.
    pub fn kre(&self) -> Result<&DlPublic> {
        Self::parsed(&self.kre, self.file.body.cipher_suite, &self.file.body.kre_pub)
    }

    fn knso(&self) -> Result<&DlPublic> {
        Self::parsed(&self.knso, self.file.body.cipher_suite, &self.file.body.knso_pub)
    }

    fn parsed<'w>(cell: &'w std::sync::OnceLock<DlPublic>, suite: CipherSuite, y: &[u8]) -> Result<&'w DlPublic> {
        if let Some(k) = cell.get() {
            return Ok(k);
        }
        let k = suite.dl_public(y)?;
        Ok(cell.get_or_init(|| k))
    }

    /// SHA-256 of the world file as this module writes it: what the module's NVRAM keeps of the
    /// world it verified, so the next load of the same bytes skips the signature check.
    pub fn file_sha256(&self) -> Result<Vec<u8>> {
        use sha2::Digest as _;
        let bytes = serde_json::to_vec_pretty(&self.file)
            .map_err(|e| Error::new(ErrorKind::Device, Op::LoadWorld).detail(e.to_string()))?;
        Ok(sha2::Sha256::digest(bytes).to_vec())
    }

    /// A short name for messages: the first 10 hex digits of hknso.
    pub fn name(&self) -> String {
        short_hash(self.hknso())
    }

    /// Whether `cert` is KNSO's certificate over `statement`.
    pub fn verify_certificate(&self, statement: &[u8], cert: &[u8]) -> bool {
        self.knso().is_ok_and(|k| k.verify(statement, cert))
    }

    /// Collects the ACS quorum from `cards` and re-creates KNSO. Wrong PINs are counted on the
    /// cards; nothing else on disk changes.
    pub fn authorize(&self, cards: &[CardPresentation<'_>], hook: &FaultHook) -> Result<QuorumAuth> {
        let need = usize::from(self.file.body.acs.k);
        let mut shares = Vec::new();
        let mut seen = Vec::new();
        for c in cards {
            let mut card = CardFile::read(c.path)?;
            if card.header.world != self.hknso() {
                return Err(Error::new(ErrorKind::TokenNotRecognized, Op::ReadCard)
                    .detail(format!(
                        "{} is card {} of world {}, not of this world {}",
                        c.path.display(),
                        card.header.card,
                        short_hash(&card.header.world),
                        self.name()
                    ))
                    .hint("present cards of this world's Administrator Card Set"));
            }
            if seen.contains(&card.header.card) {
                return Err(Error::new(ErrorKind::ArgumentsBad, Op::Quorum)
                    .detail(format!("card {} of world {} was presented twice", card.header.card, self.name()))
                    .hint(format!("present {need} different cards of the set")));
            }
            seen.push(card.header.card);
            let bytes = card.unlock(c.path, c.pin, hook)?;
            let share = blahaj::Share::try_from(bytes.as_slice())
                .map_err(|_| Error::new(ErrorKind::Corrupt, Op::ReadCard).detail("the card's share is malformed"))?;
            shares.push(share);
        }
        if shares.len() < need {
            return Err(Error::new(ErrorKind::QuorumNotMet { have: shares.len(), need }, Op::Quorum)
                .detail(format!("world {} needs {need} of its {} cards", self.name(), self.file.body.acs.n))
                .hint(format!("present {} more card(s) of the set", need - shares.len())));
        }
        let secret = Zeroizing::new(
            blahaj::Sharks(self.file.body.acs.k)
                .recover(shares.iter())
                .map_err(|_| Error::new(ErrorKind::Corrupt, Op::Quorum).detail("the shares do not combine"))?,
        );
        let suite = self.suite();
        let knso = suite.dl_key_from_seed(&derive_key(&secret, "hsmkit KNSO")?[..])?;
        if knso.public_bytes() != self.file.body.knso_pub {
            return Err(Error::new(ErrorKind::Corrupt, Op::Quorum)
                .detail("the cards' shares do not re-create this world's KNSO (a card was damaged or replaced)"));
        }
        let kre = suite.dl_key_from_seed(&derive_key(&secret, "hsmkit KRE")?[..])?;
        Ok(QuorumAuth { knso, kre, hknso: self.hknso().to_vec(), acs_secret: secret })
    }
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::new(ErrorKind::Corrupt, Op::LoadWorld)
        .detail(format!("the world file {} is damaged: {why}", path.display()))
        .hint("restore the world file from your backup (kmdata/local/world)")
}

/// The folder a new world's cards are written to before the world file commits it.
fn pending_dir(cards_dir: &Path, hknso: &[u8]) -> std::path::PathBuf {
    cards_dir.join(format!(".pending-{}", crate::card::short_hash(hknso)))
}

/// Moves the cards of the committed world `hknso` from their pending folder into `cards_dir`
/// (after a crash, the rest of them); nothing to do when there is no such folder.
pub fn finish_pending_cards(cards_dir: &Path, hknso: &[u8]) -> Result<()> {
    let pending = pending_dir(cards_dir, hknso);
    let entries = match fs::read_dir(&pending) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(
                Error::new(ErrorKind::Io, Op::CreateWorld).detail(format!("cannot read {}: {e}", pending.display()))
            );
        }
    };
    let io = |e: std::io::Error| {
        Error::new(ErrorKind::Io, Op::CreateWorld)
            .detail(format!("cannot move the new world's cards from {}: {e}", pending.display()))
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        // Half-written temporary files of a crashed write are debris; whole cards move.
        if name.to_string_lossy().starts_with('.') {
            let _ = fs::remove_file(entry.path());
            continue;
        }
        crate::fsio::rename_into(&entry.path(), &cards_dir.join(&name)).map_err(io)?;
    }
    fs::remove_dir(&pending)
        .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_strings() {
        assert_eq!(Quorum::parse("2/3").expect("2/3"), Quorum { k: 2, n: 3 });
        assert_eq!(Quorum::parse("64/64").expect("64/64"), Quorum { k: 64, n: 64 });
        for bad in ["3/2", "0/3", "a/b", "2", "1/65", "-1/3", "", "2/3/4"] {
            let e = Quorum::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), &ErrorKind::ArgumentsBad, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}

//! Which slots the module shows and which kmdata folder each one is.
//!
//! `HSMKIT_CONF` names a file of lines `slot <number> <kmdata folder>`; `#` starts a comment and
//! blank lines are ignored. Without `HSMKIT_CONF`, the module shows one slot, number 0, over
//! `$XDG_DATA_HOME/hsmkit/kmdata` (or `~/.local/share/hsmkit/kmdata`), made on first use. The
//! module's NVRAM and card files go beside each kmdata folder (`nvram/`, `cards/`), as for the CLI.

use std::path::{Path, PathBuf};

/// One slot of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotConfig {
    /// The slot number (`CK_SLOT_ID`).
    pub id: u64,
    /// The kmdata folder.
    pub kmdata: PathBuf,
    /// What differs from the defaults beside kmdata (set only in process).
    pub settings: SlotSettings,
}

/// A slot's emulator settings other than kmdata: by default NVRAM and cards beside it, the
/// system's randomness and clock. Only a process that links the module sets them
/// ([`ModuleConfig::in_process`]), so its ABI level drives the module its own commands drive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotSettings {
    /// The NVRAM folder, if not `nvram/` beside kmdata.
    pub nvram: Option<PathBuf>,
    /// The card folder, if not `cards/` beside kmdata.
    pub cards: Option<PathBuf>,
    /// A seed for the module's randomness (reproducible output, not for real keys).
    pub seed: Option<u64>,
    /// The clock, if not the system's.
    pub clock: Option<hsmkit_emulator::rng::Clock>,
}

impl SlotSettings {
    /// `config` with these settings applied.
    pub fn apply(&self, mut config: hsmkit_emulator::Config) -> hsmkit_emulator::Config {
        if let Some(d) = &self.nvram {
            config.nvram = d.clone();
        }
        if let Some(d) = &self.cards {
            config.cards = d.clone();
        }
        if self.seed.is_some() {
            config.seed = self.seed;
        }
        if let Some(c) = self.clock {
            config.clock = c;
        }
        config
    }
}

/// The module's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleConfig {
    /// The slots, in file order.
    pub slots: Vec<SlotConfig>,
    /// Where the configuration came from, for messages.
    pub source: String,
}

/// The most slots a configuration may list.
pub const MAX_SLOTS: usize = 64;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The configuration a process that links the module (rather than loading the `.so`) gave it.
static IN_PROCESS: std::sync::Mutex<Option<ModuleConfig>> = std::sync::Mutex::new(None);

impl ModuleConfig {
    /// Makes `config` the configuration the next `C_Initialize` of this process reads, instead of
    /// `HSMKIT_CONF` (`None` goes back to it): for a process that links the module and calls its
    /// function list itself, such as the conformance kit's ABI level on the in-process emulator.
    /// There is one such configuration a process: the last one set.
    pub fn set_in_process(config: Option<ModuleConfig>) {
        *IN_PROCESS.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// One slot, number 0, configured as `config` (its kmdata, NVRAM, cards, seed and clock).
    pub fn in_process(config: &hsmkit_emulator::Config) -> ModuleConfig {
        let settings = SlotSettings {
            nvram: Some(config.nvram.clone()),
            cards: Some(config.cards.clone()),
            seed: config.seed,
            clock: Some(config.clock),
        };
        ModuleConfig {
            slots: vec![SlotConfig { id: 0, kmdata: config.kmdata.clone(), settings }],
            source: format!("the in-process configuration (slot 0 over {})", config.kmdata.display()),
        }
    }

    /// Parses a configuration file's text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<ModuleConfig, ConfigError> {
        let mut slots: Vec<SlotConfig> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let at = |what: String| ConfigError(format!("{source} line {}: {what}", n + 1));
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.splitn(3, char::is_whitespace);
            match (words.next(), words.next(), words.next().map(str::trim)) {
                (Some("slot"), Some(id), Some(path)) if !path.is_empty() => {
                    let id: u64 = id.parse().map_err(|_| {
                        at(format!("slot number {id:?} is not a number (write `slot 0 /path/to/kmdata`)"))
                    })?;
                    if slots.iter().any(|s| s.id == id) {
                        return Err(at(format!("slot {id} is listed twice")));
                    }
                    if slots.len() == MAX_SLOTS {
                        return Err(at(format!("more than {MAX_SLOTS} slots")));
                    }
                    let kmdata = PathBuf::from(path);
                    if !kmdata.is_absolute() {
                        return Err(at(format!("the kmdata folder {path:?} must be an absolute path")));
                    }
                    slots.push(SlotConfig { id, kmdata, settings: SlotSettings::default() });
                }
                (Some("slot"), _, _) => return Err(at("write `slot <number> <kmdata folder>`".into())),
                (Some(word), _, _) => {
                    return Err(at(format!(
                        "unknown setting {word:?}; the only setting is `slot <number> <kmdata folder>`"
                    )));
                }
                (None, _, _) => {}
            }
        }
        if slots.is_empty() {
            return Err(ConfigError(format!("{source} lists no slot; add a line `slot 0 /path/to/kmdata`")));
        }
        Ok(ModuleConfig { slots, source: source.into() })
    }

    /// Reads the configuration `HSMKIT_CONF` names, or the default one; in a process that set
    /// one with [`ModuleConfig::set_in_process`], that one.
    pub fn from_env() -> Result<ModuleConfig, ConfigError> {
        if let Some(config) =
            IN_PROCESS.lock().map_err(|_| ConfigError("the in-process configuration's lock".into()))?.clone()
        {
            return Ok(config);
        }
        match std::env::var_os("HSMKIT_CONF") {
            Some(path) => {
                let path = Path::new(&path);
                let text = hsmkit_emulator::fsio::read_text_bounded(path, hsmkit_emulator::fsio::MAX_TEXT_BYTES)
                    .map_err(|e| ConfigError(format!("cannot read HSMKIT_CONF file {}: {e}", path.display())))?;
                ModuleConfig::parse(&text, &path.display().to_string())
            }
            None => {
                let kmdata = default_kmdata().ok_or_else(|| {
                    ConfigError("neither HSMKIT_CONF, XDG_DATA_HOME nor HOME is set; set HSMKIT_CONF".into())
                })?;
                Ok(ModuleConfig {
                    slots: vec![SlotConfig { id: 0, kmdata, settings: SlotSettings::default() }],
                    source: "the default configuration".into(),
                })
            }
        }
    }
}

/// `$XDG_DATA_HOME/hsmkit/kmdata`, or `~/.local/share/hsmkit/kmdata`.
pub fn default_kmdata() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".local").join("share"),
    };
    Some(base.join("hsmkit").join("kmdata"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_slots_comments_and_paths_with_spaces() {
        let c = ModuleConfig::parse("# two modules\nslot 0 /a/kmdata\n\n  slot 7   /b/my kmdata  # second\n", "t")
            .expect("parses");
        assert_eq!(c.slots.len(), 2);
        assert_eq!(
            c.slots[1],
            SlotConfig { id: 7, kmdata: PathBuf::from("/b/my kmdata"), settings: SlotSettings::default() }
        );
    }

    #[test]
    fn refuses_what_it_cannot_use_and_says_where() {
        for (text, needle) in [
            ("", "lists no slot"),
            ("slot x /a", "line 1: slot number \"x\""),
            ("slot 0 /a\nslot 0 /b", "line 2: slot 0 is listed twice"),
            ("slot 0 relative", "absolute"),
            ("slot 0", "write `slot"),
            ("seed 4", "unknown setting \"seed\""),
            ("slot 99999999999999999999 /a", "not a number"),
        ] {
            let e = ModuleConfig::parse(text, "t").expect_err(text);
            assert!(e.0.contains(needle), "{text:?}: {e}");
        }
        let many: String = (0..=MAX_SLOTS).map(|i| format!("slot {i} /k{i}\n")).collect();
        assert!(ModuleConfig::parse(&many, "t").expect_err("too many").0.contains("more than"));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let base = b"slot 0 /a/kmdata\nslot 1 /b\n".to_vec();
        for cut in 0..base.len() {
            let _ = ModuleConfig::parse(&String::from_utf8_lossy(&base[..cut]), "t");
        }
        for i in 0..base.len() {
            for bit in 0..8 {
                let mut b = base.clone();
                b[i] ^= 1 << bit;
                let _ = ModuleConfig::parse(&String::from_utf8_lossy(&b), "t");
            }
        }
    }
}

//! Shared test fixtures: a fresh emulator in a temporary folder.
#![allow(dead_code, missing_docs)]

use std::path::PathBuf;

use hsmkit_backend::Pin;
use hsmkit_emulator::suite::CipherSuite;
use hsmkit_emulator::world::Quorum;
use hsmkit_emulator::{Config, Emulator};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub emu: Emulator,
    pub cards: Vec<PathBuf>,
}

pub fn pins(n: usize) -> Vec<Pin> {
    (1..=n).map(|i| Pin::from(format!("pin-{i}"))).collect()
}

pub fn config(dir: &std::path::Path, seed: Option<u64>) -> Config {
    let kmdata = dir.join("kmdata");
    std::fs::create_dir_all(&kmdata).expect("kmdata");
    let mut c = Config::beside(kmdata);
    c.seed = seed;
    if seed.is_some() {
        c.clock = hsmkit_emulator::rng::Clock::Fixed(1_700_000_000_000);
    }
    c
}

/// An emulator with a fresh world of `suite` and quorum `k/n`.
pub fn world(suite: CipherSuite, k: u8, n: u8, seed: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::open(config(dir.path(), Some(seed))).expect("open");
    let created = emu.create_world(suite, Quorum { k, n }, &pins(n as usize)).expect("create world");
    Fixture { dir, emu, cards: created.cards }
}

pub fn legacy_2_of_3() -> Fixture {
    world(CipherSuite::DLf1024s160mRijndael, 2, 3, 42)
}

impl Fixture {
    pub fn card(&self, i: usize, pin: &str) -> (PathBuf, Pin) {
        (self.cards[i].clone(), Pin::from(pin.to_string()))
    }

    pub fn good_card(&self, i: usize) -> (PathBuf, Pin) {
        self.card(i, &format!("pin-{}", i + 1))
    }

    pub fn kmdata(&self) -> PathBuf {
        self.dir.path().join("kmdata")
    }

    /// Every file under the fixture's folder with its bytes, to check that nothing changed.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if e.file_name().to_string_lossy().ends_with(".lock") {
                    // Lock files (empty, made on first use) are no state.
                    continue;
                } else {
                    out.push((p.clone(), std::fs::read(&p).expect("read")));
                }
            }
        }
        out.sort();
        out
    }
}

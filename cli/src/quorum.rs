//! Presenting Administrator cards: the card files of the world in `--cards`, PINs in order.

use hsmkit_backend::{Error, ErrorKind, Op, Result};
use hsmkit_emulator::Emulator;
use hsmkit_emulator::card::card_path;
use hsmkit_emulator::world::QuorumAuth;

use crate::Global;
use crate::pins::PinSource;

/// Collects the quorum: cards `numbers` (default: the first K of the set), each with its PIN from
/// the PIN file or the prompt.
pub fn collect(g: &Global, emu: &Emulator, numbers: &[u8]) -> Result<QuorumAuth> {
    let world = emu.require_world(Op::Quorum)?;
    let acs = world.body().acs;
    let numbers: Vec<u8> = if numbers.is_empty() { (1..=acs.k).collect() } else { numbers.to_vec() };
    if let Some(n) = numbers.iter().find(|n| **n == 0 || **n > acs.n) {
        return Err(Error::new(ErrorKind::ArgumentsBad, Op::Quorum).detail(format!(
            "world {} has cards 1 to {}, not {n}",
            world.name(),
            acs.n
        )));
    }
    let mut source = PinSource::from(g)?;
    let mut cards = Vec::new();
    for n in numbers {
        let path = card_path(&emu.config().cards, world.hknso(), n);
        println!("Presenting card {n} of {} ({})", acs.n, path.display());
        let pin = source.next(&format!("card {n} of {}", acs.n), false)?;
        cards.push((path, pin));
    }
    emu.authorize(&cards)
}

//! Injectable randomness: a ChaCha20 generator, seeded from the OS or, for reproducible runs, from
//! a number.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng};

use hsmkit_backend::{Error, ErrorKind, Op, Result};

/// The module's random number generator.
///
/// The default draws its seed from the operating system (`getrandom`). A
/// seeded generator makes worlds, cards and keys byte-identical from run to run: right for golden
/// vectors and tests, wrong for real keys, and [`HsmRng::is_seeded`] lets callers say so loudly.
pub struct HsmRng {
    inner: ChaCha20Rng,
    seeded: bool,
}

impl HsmRng {
    /// A generator seeded from the operating system's generator (`getrandom(2)`), not through
    /// AWS-LC: its CPU-jitter entropy source takes tens of milliseconds to start, which every
    /// process loading the PKCS#11 module would pay at `C_Initialize`.
    pub fn from_os() -> Result<Self> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| {
            Error::new(ErrorKind::Device, Op::Initialize).detail("the operating system's random source failed")
        })?;
        Ok(HsmRng { inner: ChaCha20Rng::from_seed(*seed), seeded: false })
    }

    /// A deterministic generator: the same seed gives the same bytes. Not for real keys.
    pub fn from_seed(seed: u64) -> Self {
        HsmRng { inner: ChaCha20Rng::seed_from_u64(seed), seeded: true }
    }

    /// Whether this generator is deterministic.
    pub fn is_seeded(&self) -> bool {
        self.seeded
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        self.inner.fill_bytes(out);
    }

    /// Mixes `seed` into the generator (PKCS#11 `C_SeedRandom`): the new state is SHA-256 of 32
    /// bytes of the current stream and the seed, so the caller's bytes add to the state, never
    /// replace it.
    pub fn mix(&mut self, seed: &[u8]) {
        use sha2::Digest as _;
        let current = zeroize::Zeroizing::new(self.array::<32>());
        let mut next: [u8; 32] = sha2::Sha256::new()
            .chain_update(b"hsmkit seed random\0")
            .chain_update(*current)
            .chain_update(seed)
            .finalize()
            .into();
        self.inner = ChaCha20Rng::from_seed(next);
        zeroize::Zeroize::zeroize(&mut next);
    }

    /// `N` random bytes.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }

    /// A child generator for one consumer, seeded from this one.
    pub fn fork(&mut self) -> ChaCha20Rng {
        let seed = zeroize::Zeroizing::new(self.array::<32>());
        ChaCha20Rng::from_seed(*seed)
    }

    /// A generator of its own for one operation, seeded from this one: the caller releases this
    /// one's lock before the operation runs (threads then do not queue behind a public-key
    /// operation), and seeded runs stay reproducible.
    pub fn child(&mut self) -> HsmRng {
        HsmRng { inner: self.fork(), seeded: self.seeded }
    }

    /// The generator itself, for crates that take a `rand_core` RNG.
    pub fn as_rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.inner
    }
}

impl std::fmt::Debug for HsmRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmRng").field("seeded", &self.seeded).finish_non_exhaustive()
    }
}

/// The module's clock: the system's, or fixed for reproducible output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed time, in milliseconds since the Unix epoch.
    Fixed(u64),
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Clock::Fixed(ms) => ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_generators_repeat_and_differ_by_seed() {
        let a: [u8; 16] = HsmRng::from_seed(7).array();
        let b: [u8; 16] = HsmRng::from_seed(7).array();
        let c: [u8; 16] = HsmRng::from_seed(8).array();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(HsmRng::from_seed(7).is_seeded());
    }

    #[test]
    fn os_generators_differ() {
        let a: [u8; 16] = HsmRng::from_os().expect("os rng").array();
        let b: [u8; 16] = HsmRng::from_os().expect("os rng").array();
        assert_ne!(a, b);
    }
}

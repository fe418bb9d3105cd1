//! An nShield-style hardware security module, emulated in process.
//!
//! - A [`module`] with a serial number, a mode and NVRAM of its own.
//! - A security [`world`] with cipher suite, KNSO, KRE, KM and an Administrator Card Set of
//!   n [`card`]s with quorum k, the ACS secret split by Shamir's scheme.
//! - Module-protected keys stored as [`keyblob`]s in kmdata, sealed under KM with their
//!   nCore-shaped [`acl`] bound in, enforced on every operation.
//! - Crash-safe writes ([`fsio`]), injectable randomness and time ([`rng`]).
//!
//! [`Emulator`] implements [`hsmkit_backend::Backend`]; its nShield-only operations (worlds,
//! cards, quorum, ACL changes) are methods of its own.

pub mod acl;
pub mod card;
pub mod derive;
mod dl_params;
pub mod ec;
mod emulator;
pub mod fsio;
pub mod fuzz;
pub mod generate;
pub mod keyblob;
pub mod keys;
pub mod lab;
pub mod module;
pub mod mutate;
pub mod rng;
mod session;
pub mod store;
pub mod suite;
pub mod token;
pub mod world;

pub use emulator::{
    Config, Emulator, KeyListing, LoadedKey, Material, Object, PublicKey, WorldCreated, check_rsa_params,
};
pub use session::{EmulatorSession, KeyDetails, MAX_GENERIC_SECRET, MacStream, SLOT, TRANSFER_APP};

//! The hsmkit BYOK transfer engine.
//!
//! Written against the seam ([`hsmkit_backend::Session`]) only: the provider module that signs
//! packages, and the customer module that narrows and wraps the key, can be any backend.
//!
//! - [`packages`]: the provider's KEK and Security World packages, signed in a chain up to a
//!   vendor root whose hash the verifier pins; [`packages::verify`] is `verifykeypackage`.
//! - [`byok`]: the transfer package a narrowed key travels in.
//! - [`engine`]: the customer's side: find, narrow, wrap, package, export, public key.
//! - [`provider`]: the provider's side: check an uploaded package and unwrap it in its module.
//! - [`formats`]: today's formats (Azure Key Vault, AWS KMS, Google Cloud KMS).
//! - [`tenant`]: the tenant key store.
//!
//! The crate depends on the seam only, never on a concrete backend (a test checks its
//! manifest), so the same functions run on the emulator and on any PKCS#11 module.

pub mod packages;

/// The transfer package (`TransferPackage-<name>.byok`).
pub mod byok;

/// The tenant key store (SQLite).
pub mod tenant;

/// Today's formats: Azure Key Vault, AWS KMS, Google Cloud KMS.
pub mod formats;

/// The customer's side, against the seam.
pub mod engine;

/// The provider's side, against the seam.
pub mod provider;

/// Entry points for fuzzing the transfer formats.
pub mod fuzz;

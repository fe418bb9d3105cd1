//! The hsmkit BYOK transfer engine.
//!
//! Written against the seam ([`hsmkit_backend::Session`]) only: the provider module that signs
//! packages, and the customer module that narrows and wraps the key, can be any backend.
//!
//! - [`packages`]: the provider's KEK and Security World packages, signed in a chain up to a
//!   vendor root whose hash the verifier pins; [`packages::verify`] is `verifykeypackage`.
//! - [`byok`]: the transfer package a narrowed key travels in.

pub mod packages;

/// The transfer package (`TransferPackage-<name>.byok`).
pub mod byok;

/// The tenant key store (SQLite).
pub mod tenant;

/// Today's formats: Azure Key Vault, AWS KMS, Google Cloud KMS.
pub mod formats;

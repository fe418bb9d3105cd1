//! A hsmkit [`Backend`] over any PKCS#11 module loaded at run time (SoftHSM2, a vendor's module,
//! hsmkit's own), through the `cryptoki` crate.
//!
//! - Every `CKR_*` becomes the semantic [`hsmkit_backend::ErrorKind`], with the PKCS#11 function
//!   that returned it in the detail.
//! - [`KeyPolicy`](hsmkit_backend::KeyPolicy) maps to and from `CKA_*` in one table ([`convert`]).
//! - `CKM_RSA_AES_KEY_WRAP` on a module that does not list it is composed inside the module: an
//!   ephemeral extractable AES-256 key, the target wrapped under it with RFC 5649, the AES key wrapped
//!   with RSA-OAEP, the ephemeral key destroyed. The capability list says which path is used
//!   ([`MechanismInfo::composed`](hsmkit_backend::MechanismInfo::composed)). On a module that lists
//!   it, the single mechanism is called natively with `CK_RSA_AES_KEY_WRAP_PARAMS`, through the
//!   module's own function list (`cryptoki` has no type for it).

pub mod convert;
mod error;
mod raw;
mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::slot::Slot;
use hsmkit_backend::{
    Backend, BackendInfo, Capabilities, Error, ErrorKind, MechanismFlags, MechanismInfo, MechanismKind, Op, Result,
    Session, SessionMode, SlotId,
};

pub use error::map as map_error;
pub use session::Pkcs11Session;

use error::OrOp;

/// Which token to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChoice {
    /// The token with this label (trailing blanks ignored).
    Label(String),
    /// The token in this slot.
    Slot(u64),
    /// The first slot with a token.
    First,
}

/// A PKCS#11 module and one of its tokens.
pub struct Pkcs11Backend {
    ctx: Pkcs11,
    path: PathBuf,
    slot: Slot,
    capabilities: Capabilities,
    raw: Arc<raw::Raw>,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend").field("path", &self.path).field("slot", &self.slot.id()).finish()
    }
}

impl Pkcs11Backend {
    /// Loads the module at `path`, initialises it and selects a token.
    pub fn open(path: impl AsRef<Path>, token: TokenChoice) -> Result<Self> {
        Self::open_with(path, token, None)
    }

    /// As [`Pkcs11Backend::open`], passing `init_args` in `C_Initialize`'s `pReserved`: the
    /// initialisation string some modules need (NSS softokn's
    /// `configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=noModDB`).
    pub fn open_with(path: impl AsRef<Path>, token: TokenChoice, init_args: Option<&str>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(Error::new(ErrorKind::NotFound, Op::Initialize)
                .detail(format!("there is no PKCS#11 module at {}", path.display()))
                .hint("give the path of a module (.so), for example /usr/lib/softhsm/libsofthsm2.so"));
        }
        let ctx = Pkcs11::new(&path).or_op(Op::Initialize)?;
        let reserved = init_args
            .map(|a| {
                std::ffi::CString::new(a).map_err(|_| {
                    Error::new(ErrorKind::ArgumentsBad, Op::Initialize)
                        .detail("the initialisation string has a NUL byte")
                })
            })
            .transpose()?;
        let args = match &reserved {
            Some(r) => {
                let ptr = std::ptr::NonNull::new(r.as_ptr().cast_mut().cast::<std::ffi::c_void>())
                    .ok_or_else(|| Error::new(ErrorKind::ArgumentsBad, Op::Initialize))?;
                // SAFETY: a NUL-terminated string that outlives the C_Initialize call below, which
                // is all a module may read it for (NSS copies what it parses).
                #[allow(unsafe_code)]
                unsafe {
                    CInitializeArgs::new_with_reserved(CInitializeFlags::OS_LOCKING_OK, ptr)
                }
            }
            None => CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK),
        };
        match ctx.initialize(args) {
            Ok(()) => {}
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(map_error(e, Op::Initialize)),
        }
        let slot = Self::choose(&ctx, &token)?;
        let raw = Arc::new(raw::Raw::open(&path)?);
        let capabilities = Self::read_capabilities(&raw, slot)?;
        Ok(Pkcs11Backend { ctx, path, slot, capabilities, raw })
    }

    fn choose(ctx: &Pkcs11, token: &TokenChoice) -> Result<Slot> {
        let slots = ctx.get_slots_with_token().or_op(Op::Initialize)?;
        let found = match token {
            TokenChoice::First => slots.first().copied(),
            TokenChoice::Slot(id) => slots.iter().copied().find(|s| s.id() == *id),
            TokenChoice::Label(label) => {
                let mut found = None;
                for s in &slots {
                    let info = ctx.get_token_info(*s).or_op(Op::Initialize)?;
                    if info.label().trim_end() == label.trim_end() {
                        found = Some(*s);
                        break;
                    }
                }
                found
            }
        };
        found.ok_or_else(|| {
            let labels: Vec<String> = slots
                .iter()
                .filter_map(|s| ctx.get_token_info(*s).ok().map(|i| i.label().trim_end().to_string()))
                .collect();
            Error::new(ErrorKind::TokenNotPresent, Op::Initialize)
                .detail(format!("no token {token:?} in the module"))
                .hint(format!("tokens present: {}", if labels.is_empty() { "none".into() } else { labels.join(", ") }))
        })
    }

    /// The module's mechanisms, read raw: `cryptoki` drops types it has no name for, among them
    /// `CKM_RSA_AES_KEY_WRAP` and `CKM_AES_KEY_WRAP_KWP`.
    fn read_capabilities(raw: &raw::Raw, slot: Slot) -> Result<Capabilities> {
        use cryptoki_sys as ck;
        let mut mechanisms = Vec::new();
        for t in raw.mechanism_list(slot.id())? {
            let Some(kind) = MechanismKind::from_ckm(t) else { continue };
            let Ok(info) = raw.mechanism_info(slot.id(), t) else { continue };
            let flags = MechanismFlags::from_ckf(info.flags);
            let bits = |n: ck::CK_ULONG| u32::try_from(n).unwrap_or(u32::MAX);
            mechanisms.push(MechanismInfo {
                kind,
                min_bits: bits(info.ulMinKeySize),
                max_bits: bits(info.ulMaxKeySize),
                flags,
                composed: false,
            });
        }
        // CKM_SHA224_RSA_PKCS_PSS: cryptoki has no type for it, so the client hashes with SHA-224
        // and signs with CKM_RSA_PKCS_PSS and the SHA-224 parameters (the same signature). Listed
        // as composed, with what CKM_RSA_PKCS_PSS can do; dropped where the module lacks that.
        let raw_pss = mechanisms.iter().find(|m| m.kind == MechanismKind::RsaPkcsPss).map(|m| m.flags);
        mechanisms.retain_mut(|m| {
            if m.kind != MechanismKind::Sha224RsaPkcsPss {
                return true;
            }
            match raw_pss {
                Some(f) => {
                    m.composed = true;
                    m.flags &= f;
                    true
                }
                None => false,
            }
        });
        // CKM_RSA_AES_KEY_WRAP composed from what the module has: OAEP and RFC 5649 wrap (_KWP, else _PAD).
        let has = |k: MechanismKind, f: MechanismFlags| mechanisms.iter().any(|m| m.kind == k && m.flags.contains(f));
        let wrap_unwrap = MechanismFlags::WRAP | MechanismFlags::UNWRAP;
        if !has(MechanismKind::RsaAesKeyWrap, MechanismFlags::WRAP)
            && has(MechanismKind::RsaPkcsOaep, wrap_unwrap)
            && (has(MechanismKind::AesKeyWrapKwp, wrap_unwrap) || has(MechanismKind::AesKeyWrapPad, wrap_unwrap))
            && has(MechanismKind::AesKeyGen, MechanismFlags::GENERATE)
        {
            let (min_bits, max_bits) = mechanisms
                .iter()
                .find(|m| m.kind == MechanismKind::RsaPkcsOaep)
                .map_or((1024, 4096), |m| (m.min_bits, m.max_bits));
            mechanisms.push(MechanismInfo {
                kind: MechanismKind::RsaAesKeyWrap,
                min_bits,
                max_bits,
                flags: wrap_unwrap,
                composed: true,
            });
        }
        Ok(Capabilities { mechanisms })
    }

    /// The module's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The selected slot.
    pub fn slot(&self) -> SlotId {
        SlotId(self.slot.id())
    }

    /// Opens a concrete session (the trait's `open_session` boxes this).
    pub fn session(&self, mode: SessionMode) -> Result<Pkcs11Session> {
        let s = match mode {
            SessionMode::ReadOnly => self.ctx.open_ro_session(self.slot),
            SessionMode::ReadWrite => self.ctx.open_rw_session(self.slot),
        }
        .or_op(Op::OpenSession)?;
        Ok(Pkcs11Session::new(s, self.capabilities.clone(), self.raw.clone()))
    }
}

impl Backend for Pkcs11Backend {
    fn info(&self) -> Result<BackendInfo> {
        let lib = self.ctx.get_library_info().or_op(Op::Info)?;
        let token = self.ctx.get_token_info(self.slot).or_op(Op::Info)?;
        let v = token.firmware_version();
        Ok(BackendInfo {
            vendor: lib.manufacturer_id().trim_end().to_string(),
            model: format!("{} ({})", token.model().trim_end(), lib.library_description().trim_end()),
            firmware: format!("{}.{}", v.major(), v.minor()),
            serial: token.serial_number().trim_end().to_string(),
            login_required: token.login_required(),
        })
    }

    fn capabilities(&self) -> Result<Capabilities> {
        Ok(self.capabilities.clone())
    }

    fn slots(&self) -> Result<Vec<SlotId>> {
        Ok(vec![SlotId(self.slot.id())])
    }

    fn open_session(&self, slot: SlotId, mode: SessionMode) -> Result<Box<dyn Session + '_>> {
        if slot.0 != self.slot.id() {
            return Err(Error::new(ErrorKind::SlotIdInvalid, Op::OpenSession).detail(format!(
                "this backend uses slot {}, not {}",
                self.slot.id(),
                slot.0
            )));
        }
        Ok(Box::new(self.session(mode)?))
    }
}

//! Semantic errors, the operation that failed, and the one `ErrorKind` <-> `CKR_*` table.

use std::error::Error as StdError;
use std::fmt;

use cryptoki_sys as ck;

/// Defines [`ErrorKind`] and its mapping to and from `CKR_*` in one place.
///
/// Each row is `Variant [ { field: Type, .. } ] => CKR_CONSTANT, "what it means"`. Several kinds
/// may share one `CKR_*`; [`ErrorKind::from_ckr`] returns the first row that names it, with its
/// fields at their default values.
macro_rules! error_kinds {
    ($(
        $(#[$doc:meta])*
        $variant:ident $({ $($field:ident : $ty:ty),* $(,)? })? => $ckr:ident, $text:literal;
    )*) => {
        /// What went wrong, independent of the backend that reported it.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $(
                $(#[$doc])*
                $variant $({ $(
                    #[allow(missing_docs)]
                    $field: $ty
                ),* })?,
            )*
            /// A `CKR_*` value that this table does not know.
            Unrecognized {
                /// The raw return value.
                ckr: ck::CK_RV,
            },
        }

        impl ErrorKind {
            /// The `CKR_*` value this kind becomes at a PKCS#11 edge.
            pub fn ckr(&self) -> ck::CK_RV {
                match self {
                    $( ErrorKind::$variant $({ $($field: _),* })? => ck::$ckr, )*
                    ErrorKind::Unrecognized { ckr } => *ckr,
                }
            }

            /// The kind a `CKR_*` value stands for (the first row of the table that names it).
            pub fn from_ckr(ckr: ck::CK_RV) -> ErrorKind {
                $(
                    if ckr == ck::$ckr {
                        return ErrorKind::$variant $({ $($field: <$ty>::default()),* })?;
                    }
                )*
                ErrorKind::Unrecognized { ckr }
            }

            /// The name of the `CKR_*` constant this kind maps to.
            pub fn ckr_name(&self) -> &'static str {
                match self {
                    $( ErrorKind::$variant $({ $($field: _),* })? => stringify!($ckr), )*
                    ErrorKind::Unrecognized { .. } => "CKR_?",
                }
            }

            fn text(&self) -> &'static str {
                match self {
                    $( ErrorKind::$variant $({ $($field: _),* })? => $text, )*
                    ErrorKind::Unrecognized { .. } => "unrecognized return value",
                }
            }
        }
    };
}

error_kinds! {
    /// A PIN (user, security officer or card PIN) was wrong.
    PinIncorrect => CKR_PIN_INCORRECT, "the PIN is incorrect";
    /// Too many wrong PINs: the card or user is locked.
    PinLocked => CKR_PIN_LOCKED, "the card is locked after too many wrong PINs";
    /// The operation needs a login first.
    NotLoggedIn => CKR_USER_NOT_LOGGED_IN, "not logged in";
    /// nShield: fewer distinct Administrator cards than the quorum were presented.
    QuorumNotMet { have: usize, need: usize } => CKR_USER_NOT_LOGGED_IN, "the card quorum is not met";
    /// A user is already logged in (login state is shared by every session of an application).
    UserAlreadyLoggedIn => CKR_USER_ALREADY_LOGGED_IN, "a user is already logged in";
    /// The other user (security officer or user) is logged in.
    UserAnotherAlreadyLoggedIn => CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "another user is already logged in";
    /// The token's user PIN has not been set.
    UserPinNotInitialized => CKR_USER_PIN_NOT_INITIALIZED, "the user PIN is not initialized";
    /// A new PIN is too short or too long.
    PinLenRange => CKR_PIN_LEN_RANGE, "the PIN's length is out of range";
    /// The user type is not one this backend knows.
    UserTypeInvalid => CKR_USER_TYPE_INVALID, "invalid user type";
    /// A token or card belongs to another security world or token.
    TokenNotRecognized => CKR_TOKEN_NOT_RECOGNIZED, "the card or token belongs to another world";
    /// No token (or no security world) is present.
    TokenNotPresent => CKR_TOKEN_NOT_PRESENT, "no token or security world present";
    /// nShield: the module is not in the mode this operation needs.
    ModuleMode => CKR_TOKEN_NOT_PRESENT, "the module is in the wrong mode";
    /// The slot does not exist.
    SlotIdInvalid => CKR_SLOT_ID_INVALID, "invalid slot";
    /// The session does not exist or was closed.
    SessionHandleInvalid => CKR_SESSION_HANDLE_INVALID, "invalid session";
    /// The key handle does not name a key of this session.
    KeyHandleInvalid => CKR_KEY_HANDLE_INVALID, "invalid key handle";
    /// The object handle does not name an object of this session.
    ObjectHandleInvalid => CKR_OBJECT_HANDLE_INVALID, "invalid object handle";
    /// A named object (world, key, card) does not exist.
    NotFound => CKR_OBJECT_HANDLE_INVALID, "not found";
    /// The mechanism is not supported for this operation.
    MechanismInvalid => CKR_MECHANISM_INVALID, "mechanism not supported";
    /// The mechanism's parameters are not supported.
    MechanismParamInvalid => CKR_MECHANISM_PARAM_INVALID, "mechanism parameters not supported";
    /// The key's policy (nShield ACL, PKCS#11 usage attributes) forbids the operation;
    /// `missing` names the permission that would allow it.
    KeyFunctionNotPermitted { missing: &'static str } => CKR_KEY_FUNCTION_NOT_PERMITTED, "the key's ACL does not permit this";
    /// nShield: a use limit (count or time) of the key's ACL is exhausted.
    UseLimitExceeded => CKR_KEY_FUNCTION_NOT_PERMITTED, "the key's use limit is exhausted";
    /// The key may not leave the module (not extractable).
    KeyUnextractable => CKR_KEY_UNEXTRACTABLE, "the key is not extractable";
    /// The key may be exported only wrapped under a trusted or named key.
    KeyNotWrappable => CKR_KEY_NOT_WRAPPABLE, "the key cannot be wrapped by this key";
    /// The wrapping key is of the wrong type for the mechanism.
    WrappingKeyTypeInconsistent => CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "wrong wrapping key type";
    /// The key is of the wrong type for the mechanism.
    KeyTypeInconsistent => CKR_KEY_TYPE_INCONSISTENT, "wrong key type for this mechanism";
    /// The key size is outside what the mechanism or backend supports.
    KeySizeRange => CKR_KEY_SIZE_RANGE, "key size out of range";
    /// A sensitive attribute cannot be read.
    AttributeSensitive => CKR_ATTRIBUTE_SENSITIVE, "the attribute is sensitive";
    /// The attribute does not exist for this object.
    AttributeTypeInvalid => CKR_ATTRIBUTE_TYPE_INVALID, "no such attribute";
    /// An attribute value is invalid.
    AttributeValueInvalid => CKR_ATTRIBUTE_VALUE_INVALID, "invalid attribute value";
    /// The requested attributes contradict each other.
    TemplateInconsistent => CKR_TEMPLATE_INCONSISTENT, "inconsistent template";
    /// The change would widen a key's policy or is otherwise forbidden.
    ActionProhibited => CKR_ACTION_PROHIBITED, "the action is prohibited";
    /// The input has the wrong length for the mechanism.
    DataLenRange => CKR_DATA_LEN_RANGE, "data length out of range";
    /// The input is invalid for the mechanism.
    DataInvalid => CKR_DATA_INVALID, "invalid data";
    /// A signature did not verify.
    SignatureInvalid => CKR_SIGNATURE_INVALID, "the signature does not verify";
    /// A signature has the wrong length.
    SignatureLenRange => CKR_SIGNATURE_LEN_RANGE, "the signature has the wrong length";
    /// Decryption failed (deliberately without detail: no padding oracle).
    EncryptedDataInvalid => CKR_ENCRYPTED_DATA_INVALID, "decryption failed";
    /// The ciphertext has the wrong length for the mechanism.
    EncryptedDataLenRange => CKR_ENCRYPTED_DATA_LEN_RANGE, "the ciphertext has the wrong length";
    /// Unwrapping failed (deliberately without detail: no padding oracle).
    WrappedKeyInvalid => CKR_WRAPPED_KEY_INVALID, "the wrapped key is invalid";
    /// The caller's buffer is too small; `required` bytes are needed.
    BufferTooSmall { required: usize } => CKR_BUFFER_TOO_SMALL, "buffer too small";
    /// Bad arguments (a malformed quorum, size, name, path).
    ArgumentsBad => CKR_ARGUMENTS_BAD, "bad arguments";
    /// The backend does not implement this function.
    Unsupported => CKR_FUNCTION_NOT_SUPPORTED, "not supported";
    /// The object already exists.
    AlreadyExists => CKR_FUNCTION_FAILED, "already exists";
    /// The function failed for a reason given in the detail.
    FunctionFailed => CKR_FUNCTION_FAILED, "the function failed";
    /// The module failed in a way it did not describe (`CKR_GENERAL_ERROR`).
    GeneralError => CKR_GENERAL_ERROR, "the module reported a general error";
    /// The device (module, token) failed.
    Device => CKR_DEVICE_ERROR, "device error";
    /// Stored data (world, card, key blob) failed its integrity check: truncated, bit-flipped or edited.
    Corrupt => CKR_DEVICE_ERROR, "stored data failed its integrity check";
    /// Reading or writing a file failed.
    Io => CKR_DEVICE_ERROR, "file error";
    /// Out of host memory.
    HostMemory => CKR_HOST_MEMORY, "out of host memory";
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())?;
        match self {
            ErrorKind::QuorumNotMet { have, need } => write!(f, " ({have} of {need} cards)"),
            ErrorKind::KeyFunctionNotPermitted { missing } if !missing.is_empty() => {
                write!(f, " (missing permission: {missing})")
            }
            ErrorKind::BufferTooSmall { required } => write!(f, " ({required} bytes needed)"),
            ErrorKind::Unrecognized { ckr } => write!(f, " (0x{ckr:08x})"),
            _ => Ok(()),
        }
    }
}

/// The operation that failed: a `Session` method, or an nShield administrative step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Loading or initialising a backend.
    Initialize,
    /// Reading backend, slot or mechanism information.
    Info,
    /// `C_OpenSession`.
    OpenSession,
    /// `C_Login`.
    Login,
    /// `C_Logout`.
    Logout,
    /// `C_GenerateKey`.
    GenerateKey,
    /// `C_GenerateKeyPair`; nShield `generatekey`.
    GenerateKeyPair,
    /// `C_CreateObject` with key material.
    ImportKey,
    /// `C_FindObjects`.
    FindKeys,
    /// `C_GetAttributeValue`.
    GetAttributes,
    /// `C_CopyObject`; nShield ACL narrowing.
    CopyKey,
    /// `C_DestroyObject`.
    DestroyKey,
    /// `C_Sign`.
    Sign,
    /// `C_Verify`.
    Verify,
    /// `C_Encrypt`.
    Encrypt,
    /// `C_Decrypt`.
    Decrypt,
    /// `C_WrapKey`.
    WrapKey,
    /// `C_UnwrapKey`.
    UnwrapKey,
    /// `C_DeriveKey`.
    DeriveKey,
    /// `C_GenerateRandom`.
    Random,
    /// nShield `new-world --initialize`.
    CreateWorld,
    /// Loading the security world file.
    LoadWorld,
    /// Reading, unlocking or writing an Administrator or Operator card.
    ReadCard,
    /// Collecting an Administrator Card Set quorum.
    Quorum,
    /// Reading a key blob (`key_<app>_<ident>`).
    LoadKey,
    /// Writing a key blob.
    SaveKey,
    /// Changing a key's ACL.
    ChangeAcl,
    /// Module state: mode, NVRAM.
    Module,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Op::Initialize => "initialize",
            Op::Info => "read information",
            Op::OpenSession => "open session",
            Op::Login => "log in",
            Op::Logout => "log out",
            Op::GenerateKey => "generate key",
            Op::GenerateKeyPair => "generate key pair",
            Op::ImportKey => "import key",
            Op::FindKeys => "find keys",
            Op::GetAttributes => "read attributes",
            Op::CopyKey => "copy key",
            Op::DestroyKey => "destroy key",
            Op::Sign => "sign",
            Op::Verify => "verify",
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
            Op::WrapKey => "wrap key",
            Op::UnwrapKey => "unwrap key",
            Op::DeriveKey => "derive key",
            Op::Random => "generate random",
            Op::CreateWorld => "create security world",
            Op::LoadWorld => "load security world",
            Op::ReadCard => "read card",
            Op::Quorum => "collect the card quorum",
            Op::LoadKey => "load key blob",
            Op::SaveKey => "save key blob",
            Op::ChangeAcl => "change ACL",
            Op::Module => "module",
        };
        f.write_str(s)
    }
}

/// An error from a backend: what went wrong, in which operation, and what to do about it.
///
/// The detail and hint never contain secrets (key material, PINs, shares).
pub struct Error {
    kind: ErrorKind,
    op: Op,
    detail: Option<String>,
    hint: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` in `op`.
    pub fn new(kind: ErrorKind, op: Op) -> Self {
        Error { kind, op, detail: None, hint: None, source: None }
    }

    /// Adds what exactly was wrong (a name, a path, a value that is not secret).
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Appends more detail (for example the mechanism in use) to what is already said.
    #[must_use]
    pub fn context(mut self, more: impl fmt::Display) -> Self {
        self.detail = Some(match self.detail.take() {
            Some(d) => format!("{d} ({more})"),
            None => more.to_string(),
        });
        self
    }

    /// Adds what the user can do about it.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The semantic kind.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The operation that failed.
    pub fn op(&self) -> Op {
        self.op
    }

    /// What exactly was wrong, if known.
    pub fn detail_text(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// What to do about it, if known.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The `CKR_*` value for a PKCS#11 edge.
    pub fn ckr(&self) -> cryptoki_sys::CK_RV {
        self.kind.ckr()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.kind)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("op", &self.op)
            .field("detail", &self.detail)
            .field("hint", &self.hint)
            .finish_non_exhaustive()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_the_first_row_of_each_ckr() {
        for kind in [
            ErrorKind::PinIncorrect,
            ErrorKind::KeyUnextractable,
            ErrorKind::MechanismInvalid,
            ErrorKind::WrappedKeyInvalid,
            ErrorKind::BufferTooSmall { required: 0 },
            ErrorKind::KeyFunctionNotPermitted { missing: "" },
        ] {
            assert_eq!(ErrorKind::from_ckr(kind.ckr()), kind, "{}", kind.ckr_name());
        }
    }

    #[test]
    fn shared_ckr_values_map_back_to_the_first_row() {
        assert_eq!(ErrorKind::QuorumNotMet { have: 1, need: 2 }.ckr(), ck::CKR_USER_NOT_LOGGED_IN);
        assert_eq!(ErrorKind::from_ckr(ck::CKR_USER_NOT_LOGGED_IN), ErrorKind::NotLoggedIn);
        assert_eq!(ErrorKind::from_ckr(ck::CKR_DEVICE_ERROR), ErrorKind::Device);
        assert_eq!(ErrorKind::Corrupt.ckr_name(), "CKR_DEVICE_ERROR");
    }

    #[test]
    fn unknown_ckr_is_kept() {
        let k = ErrorKind::from_ckr(0x8000_1234);
        assert_eq!(k, ErrorKind::Unrecognized { ckr: 0x8000_1234 });
        assert_eq!(k.ckr(), 0x8000_1234);
    }

    #[test]
    fn display_names_operation_kind_and_detail() {
        let e = Error::new(ErrorKind::KeyFunctionNotPermitted { missing: "Sign" }, Op::Sign)
            .detail("key simple/contosokey");
        assert_eq!(
            e.to_string(),
            "sign failed: the key's ACL does not permit this (missing permission: Sign): key simple/contosokey"
        );
        assert_eq!(e.ckr(), ck::CKR_KEY_FUNCTION_NOT_PERMITTED);
    }
}

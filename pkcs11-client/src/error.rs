//! `cryptoki` errors to hsmkit's semantic errors, carrying the PKCS#11 function that failed.

use cryptoki::error::{Error as CkError, Rv, RvError};
use cryptoki_sys::CK_RV;
use hsmkit_backend::{Error, ErrorKind, Op};

/// The `CKR_*` value behind a `cryptoki` return-value error. `cryptoki` keeps only the decoded
/// form, so a standard value is found by decoding the standard range (`CKR_*` below 0x400) the
/// same way; vendor-defined and unknown values carry their number and are kept as they are.
fn ckr_of(rv: RvError) -> Option<CK_RV> {
    match rv {
        RvError::VendorDefined(v) | RvError::UnknownErrorCode(v) => Some(v),
        _ => (0..0x400).find(|&v| Rv::from(v) == Rv::Error(rv)),
    }
}

/// Converts a `cryptoki` error in operation `op`.
pub fn map(e: CkError, op: Op) -> Error {
    match e {
        CkError::Pkcs11(rv, function) => {
            let kind = ckr_of(rv).map_or(ErrorKind::Device, ErrorKind::from_ckr);
            let name = match kind {
                ErrorKind::Unrecognized { ckr } if ckr >= cryptoki_sys::CKR_VENDOR_DEFINED => {
                    format!("the vendor-defined value {ckr:#x}")
                }
                ErrorKind::Unrecognized { ckr } => format!("the unknown value {ckr:#x}"),
                _ => kind.ckr_name().to_string(),
            };
            let err = Error::new(kind, op).detail(format!("C_{function:?} returned {name}"));
            match rv {
                RvError::PinIncorrect => err.hint("check the PIN; repeated failures may lock the token"),
                RvError::PinLocked => err.hint("the PIN is locked; the security officer must reset it"),
                RvError::UserNotLoggedIn => err.hint("log in first"),
                _ => err,
            }
        }
        CkError::LibraryLoading(l) if l.to_string().contains("undefined symbol") => {
            Error::new(ErrorKind::ArgumentsBad, op)
                .detail(format!("the shared library is not a PKCS#11 module: {l}"))
                .hint("give the path of a PKCS#11 module (.so), which exports C_GetFunctionList")
        }
        CkError::LibraryLoading(l) => Error::new(ErrorKind::ArgumentsBad, op)
            .detail(format!("the file is not a loadable shared library: {l}"))
            .hint("give the path of a PKCS#11 module (.so), for example /usr/lib/softhsm/libsofthsm2.so"),
        CkError::MissingSymbol(s) => Error::new(ErrorKind::ArgumentsBad, op)
            .detail(format!("the shared library is not a PKCS#11 module: it has no {s}"))
            .hint("give the path of a PKCS#11 module (.so)"),
        CkError::NullFunctionPointer => {
            Error::new(ErrorKind::Unsupported, op).detail("the module does not implement this function")
        }
        CkError::NotSupported => Error::new(ErrorKind::Unsupported, op).detail("not supported by the PKCS#11 wrapper"),
        other => Error::new(ErrorKind::Device, op).detail(other.to_string()),
    }
}

/// `Result` conversion with the operation.
pub trait OrOp<T> {
    /// Maps the error, naming the operation.
    fn or_op(self, op: Op) -> Result<T, Error>;
}

impl<T> OrOp<T> for Result<T, CkError> {
    fn or_op(self, op: Op) -> Result<T, Error> {
        self.map_err(|e| map(e, op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn vendor_defined_and_unknown_return_values_are_kept() {
        let e = map(CkError::Pkcs11(RvError::VendorDefined(0x8000_0123), Function::Sign), Op::Sign);
        assert_eq!(e.kind(), &ErrorKind::Unrecognized { ckr: 0x8000_0123 });
        assert_eq!(e.kind().ckr(), 0x8000_0123);
        assert!(e.to_string().contains("0x80000123"), "{e}");
        let e = map(CkError::Pkcs11(RvError::UnknownErrorCode(0x3ff), Function::Sign), Op::Sign);
        assert_eq!(e.kind().ckr(), 0x3ff);
        let e = map(CkError::Pkcs11(RvError::PinIncorrect, Function::Login), Op::Login);
        assert_eq!(e.kind(), &ErrorKind::PinIncorrect);
    }
}

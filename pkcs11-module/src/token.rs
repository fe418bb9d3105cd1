//! PIN shapes at the PKCS#11 boundary. The token record itself (label, user PIN verifier,
//! lockout) is the emulator's ([`hsmkit_emulator::token`]), shared with the in-process emulator.

use hsmkit_backend::Pin;
pub use hsmkit_emulator::token::{MAX_PIN_LEN, MAX_USER_FAILURES, MIN_PIN_LEN, TokenRecord, so_pins};

/// Checks a PIN's length and encoding (`CKR_PIN_LEN_RANGE`, `CKR_PIN_INVALID`).
pub fn check_pin_shape(pin: &[u8]) -> std::result::Result<Pin, crate::ffi::Rv> {
    use crate::ffi::{Rv, rv};
    if !(MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
        return Err(rv::PIN_LEN_RANGE);
    }
    let text = std::str::from_utf8(pin).map_err(|_| Rv(cryptoki_sys::CKR_PIN_INVALID))?;
    Ok(Pin::from(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_shapes() {
        assert!(check_pin_shape(b"123").is_err());
        assert!(check_pin_shape(&[b'1'; 256]).is_err());
        assert!(check_pin_shape(&[0xff, 0xfe, 0x31, 0x32]).is_err());
        assert!(check_pin_shape(b"1234").is_ok());
    }
}

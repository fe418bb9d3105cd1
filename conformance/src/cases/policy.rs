//! The `policy` profile's attacks on key management, after the Tookan paper (Bortolozzo,
//! Centenaro, Focardi, Steel, "Attacking and fixing PKCS#11 security tokens", CCS 2010): each
//! case plays an attacker who holds a user session and wants a sensitive key's value.

use hsmkit_backend::{Attr, AttrKind, AttrValue, ErrorKind, KeyHandle, KeyPolicy, Mechanism, Session, Usage};

use super::{R, ensure, err, expect_kind, import_aes, pair, policy};
use crate::{Case, Ctx, Profile};

/// The target: a sensitive AES key whose value the attacker knows only for judging.
const SECRET: [u8; 32] = *b"the sensitive key's 32-byte valu";

fn target(s: &dyn Session, p: KeyPolicy) -> Result<KeyHandle, String> {
    import_aes(s, &SECRET, &p)
}

/// Refusals a module may answer an attack with.
const REFUSED: &[ErrorKind] = &[
    ErrorKind::ActionProhibited,
    ErrorKind::KeyFunctionNotPermitted { missing: "" },
    ErrorKind::KeyUnextractable,
    ErrorKind::KeyNotWrappable,
    ErrorKind::WrappingKeyTypeInconsistent,
    ErrorKind::TemplateInconsistent,
    ErrorKind::AttributeValueInvalid,
    ErrorKind::MechanismInvalid,
    ErrorKind::KeyTypeInconsistent,
    ErrorKind::NotLoggedIn,
];

fn refused(e: &hsmkit_backend::Error) -> bool {
    super::kind_in(e.kind(), REFUSED)
}

/// Wrap then decrypt: a key that may both wrap and decrypt wraps the sensitive key, then decrypts
/// the result with the same mechanism, which is the key's value in the clear. A module separates
/// the roles (refuses such a key, or one of the two calls), or its wrap and decrypt differ.
fn wrap_then_decrypt(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let both = Usage::WRAP | Usage::UNWRAP | Usage::ENCRYPT | Usage::DECRYPT;
    let k =
        match s.import_key(&hsmkit_backend::KeyMaterial::Aes(zeroize::Zeroizing::new(vec![0x6b; 32])), &policy(both)) {
            Ok(k) => k,
            Err(e) if refused(&e) => return Ok(()),
            Err(e) => return Err(format!("import a key that wraps and decrypts: {e}")),
        };
    let secret = target(s.as_ref(), policy(Usage::ENCRYPT).extractable(true))?;
    for mech in [Mechanism::AesEcb, Mechanism::AesCbc { iv: [0u8; 16] }, Mechanism::AesKeyWrap] {
        let Ok(blob) = s.wrap_key(&mech, k, secret) else { continue };
        if let Ok(clear) = s.decrypt(&mech, k, &blob)
            && clear.windows(SECRET.len()).any(|w| w == SECRET)
        {
            return Err(format!(
                "wrapping the sensitive key with {} and decrypting the result with the same key gives its value (Tookan's wrap/decrypt attack)",
                mech.describe()
            ));
        }
    }
    Ok(())
}

/// Trusted-wrap bypass: the attacker makes a wrapping key of its own and marks it trusted, then
/// exports a key that may leave only under trusted keys. Only the security officer grants
/// `CKA_TRUSTED`.
fn trusted_wrap_bypass(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let mut p = policy(Usage::WRAP | Usage::UNWRAP);
    p.trusted = true;
    let attacker = s.import_key(&hsmkit_backend::KeyMaterial::Aes(zeroize::Zeroizing::new(vec![0xa7; 32])), &p);
    let attacker = match attacker {
        Err(_) => return Ok(()),
        // Accepted: the module may have dropped the flag; the export must still be refused.
        Ok(k) => k,
    };
    let mut guarded = policy(Usage::ENCRYPT).extractable(true);
    guarded.wrap_with_trusted = true;
    let secret = target(s.as_ref(), guarded)?;
    match s.wrap_key(&Mechanism::AesKeyWrapPad, attacker, secret) {
        Ok(_) => Err(
            "a user made a wrapping key CKA_TRUSTED and exported a CKA_WRAP_WITH_TRUSTED key under it (trusted-wrap bypass)".into(),
        ),
        Err(_) => Ok(()),
    }
}

/// A sensitive key exported under a key the attacker made: the attacker wraps it under an AES
/// key whose value it knows, and unwraps the result off the module. Allowed for an extractable
/// key (that is what extractable means); refused for a key that is not extractable, and for one
/// that may leave only under trusted keys.
fn export_under_attacker_key(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let known = [0x3au8; 32];
    let attacker = import_aes(s.as_ref(), &known, &policy(Usage::WRAP | Usage::UNWRAP))?;
    let unwrap_off_module = |blob: &[u8]| -> bool {
        let kwp = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(&known).ok();
        let mut buf = vec![0u8; blob.len()];
        kwp.and_then(|k| k.unwrap_key(blob, &mut buf).ok().map(|v| v == SECRET)).unwrap_or(false)
    };
    let locked = target(s.as_ref(), policy(Usage::ENCRYPT))?;
    if let Ok(blob) = s.wrap_key(&Mechanism::AesKeyWrapPad, attacker, locked) {
        return Err(if unwrap_off_module(&blob) {
            "a sensitive, non-extractable key was exported under the attacker's key and unwrapped off the module".into()
        } else {
            "a non-extractable key was wrapped (under the attacker's key)".into()
        });
    }
    let mut guarded = policy(Usage::ENCRYPT).extractable(true);
    guarded.wrap_with_trusted = true;
    let guarded = target(s.as_ref(), guarded)?;
    if s.wrap_key(&Mechanism::AesKeyWrapPad, attacker, guarded).is_ok() {
        return Err("a CKA_WRAP_WITH_TRUSTED key was wrapped under the attacker's untrusted key".into());
    }
    Ok(())
}

/// A narrowed copy regaining rights: a copy narrowed to signing is copied again with decryption
/// and extraction back. Rights only ever narrow along a chain of copies.
fn narrowed_copy_regains(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (_, private) = pair(s.as_ref(), &policy(super::SIGNING | Usage::DECRYPT | Usage::ENCRYPT))?;
    let narrow = s.copy_narrowed(private, &policy(Usage::SIGN)).map_err(err("copy narrowed to signing"))?;
    expect_kind(
        s.copy_narrowed(narrow, &policy(Usage::SIGN | Usage::DECRYPT)),
        &[ErrorKind::ActionProhibited],
        "a copy of the narrowed copy with decryption back",
    )?;
    expect_kind(
        s.copy_narrowed(narrow, &policy(Usage::SIGN).extractable(true)),
        &[ErrorKind::ActionProhibited],
        "an extractable copy of the narrowed copy",
    )?;
    // The narrowed copy still cannot decrypt.
    let attrs = s.attributes(narrow, &[AttrKind::Policy]).map_err(err("the copy's policy"))?;
    match attrs.first() {
        Some(Attr::Value(_, AttrValue::Policy(p))) => {
            ensure(!p.usage.contains(Usage::DECRYPT), "the narrowed copy can decrypt")
        }
        other => Err(format!("the copy's policy reads as {other:?}")),
    }
}

/// The profile's seam-level cases.
pub fn cases() -> Vec<Case> {
    let tookan = "Tookan (CCS 2010)";
    vec![
        Case::seam(
            Profile::Policy,
            "policy-wrap-then-decrypt",
            format!("{tookan} §3 wrap/decrypt; PKCS#11 base §4 CKA_WRAP, CKA_DECRYPT"),
            wrap_then_decrypt,
        ),
        Case::seam(
            Profile::Policy,
            "policy-trusted-wrap-bypass",
            format!("{tookan}; PKCS#11 base §4 CKA_TRUSTED (security officer only), CKA_WRAP_WITH_TRUSTED"),
            trusted_wrap_bypass,
        ),
        Case::seam(
            Profile::Policy,
            "policy-export-under-attacker-key",
            format!("{tookan}; PKCS#11 base §4 CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED; §5.18 C_WrapKey"),
            export_under_attacker_key,
        ),
        Case::seam(
            Profile::Policy,
            "policy-narrowed-copy-regains-rights",
            "PKCS#11 base §5.7 C_CopyObject (rights only narrow); nShield ACLs without ExpandACL",
            narrowed_copy_regains,
        ),
    ]
}

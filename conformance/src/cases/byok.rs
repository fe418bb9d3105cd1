//! The `byok` profile: the transfer engine on this backend, judged off the module. A tenant key
//! is generated for transfer, narrowed for a provider's KEK (the kit's RSA-3072 test key, whose
//! private half only RustCrypto holds) with the security officer's approval, and wrapped with
//! `CKM_RSA_AES_KEY_WRAP`; RustCrypto unwraps the result and the key must be the one the module
//! made. Everything the case made on the token is destroyed again.

use hsmkit_backend::{KeyFilter, TransferTarget};
use hsmkit_transfer::engine::{Engine, KeyRef, Officer, kek_label};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};

use super::{R, ensure, err};
use crate::{Case, Ctx, Profile};

/// The provider's KEK: the kit's RSA-3072 test key.
fn kek() -> Result<rsa::PrivateKey, String> {
    rsa::PrivateKey::from_pkcs8_der(include_bytes!("../../keys/rsa-3072.pk8")).map_err(err("the KEK test key"))
}

/// Token objects the case made, destroyed when it ends (pass or fail).
struct Cleanup<'a> {
    s: &'a dyn hsmkit_backend::Session,
    labels: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for label in &self.labels {
            for h in
                self.s.find_keys(&KeyFilter { label: Some(label.clone()), ..KeyFilter::default() }).unwrap_or_default()
            {
                let _ = self.s.destroy(h);
            }
        }
    }
}

/// RFC 5649 unwrap under `key`.
fn kwp_unwrap(key: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, String> {
    let kwp = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(key).map_err(err("the ephemeral AES key"))?;
    let mut buf = vec![0u8; wrapped.len()];
    let out = kwp
        .unwrap_key(wrapped, &mut buf)
        .map_err(|_| "RustCrypto's RFC 5649 unwrap refuses the second part".to_string())?;
    Ok(out.to_vec())
}

fn transfer_wraps_for_the_kek_only(ctx: &Ctx<'_>) -> R {
    let Some(so_pin) = ctx.so_pin.clone() else {
        return Err(crate::skipped("the narrowing needs the security officer (--so-pin-file), which was not given"));
    };
    let s = ctx.session()?;
    let caps = ctx.backend.capabilities().map_err(err("the mechanism list"))?;
    let engine = Engine::with_capabilities(&caps, s.as_ref());
    let kek = kek()?;
    let kek_spki = kek.to_public_key().to_public_key_der().map_err(err("the KEK's SPKI"))?.as_bytes().to_vec();
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let label = format!("hsmkit-conformance-byok-{n:x}");
    let mut cleanup = Cleanup { s: s.as_ref(), labels: vec![label.clone(), format!("xferacld-{label}")] };
    let kek_filter = KeyFilter { label: Some(kek_label(&kek_spki)), ..KeyFilter::default() };
    if s.find_keys(&kek_filter).map_err(err("look for the KEK"))?.is_empty() {
        // The trusted KEK the officer imports is this case's to remove.
        cleanup.labels.push(kek_label(&kek_spki));
    }
    let (_, spki) = engine
        .generate(&label, None, &hsmkit_backend::KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 })
        .map_err(err("generate the tenant key"))?;
    let target = TransferTarget { kek_spki: kek_spki.clone(), provider_hkm: None, label: None };
    let key = KeyRef::Label(label.clone());
    if ctx.user_pin.is_some() {
        // The officer's login needs the user logged out; the narrowing logs the user in again.
        s.logout().map_err(err("log the user out for the officer"))?;
    }
    let narrowed = engine.narrow(&key, &target, &Officer::Pin(so_pin), ctx.user_pin.as_ref()).map_err(err("narrow"))?;
    // On a world the narrowing ends logged out (the cards were presented, not logged in): the
    // user logs in again to wrap, as the next command of the ceremony would.
    if let Some(pin) = &ctx.user_pin {
        match s.login(hsmkit_backend::UserKind::User, pin) {
            Ok(()) => {}
            Err(e) if e.kind() == &hsmkit_backend::ErrorKind::UserAlreadyLoggedIn => {}
            Err(e) => return Err(format!("log the user in again: {e}")),
        }
    }
    let wrapped = engine.wrap(narrowed.copy, &target, &hsmkit_transfer::byok::WRAP).map_err(err("wrap for the KEK"))?;
    // Off the module: OAEP (SHA-1) under the KEK, then RFC 5649 under the ephemeral key.
    let k = rsa::traits::PublicKeyParts::size(&kek.to_public_key());
    ensure(wrapped.wrapped.len() > k, "the wrapped key is shorter than the KEK's modulus")?;
    let (head, tail) = wrapped.wrapped.split_at(k);
    let aes = kek
        .decrypt(rsa::Oaep::<sha1::Sha1>::new(), head)
        .map_err(|_| "RustCrypto cannot decrypt the first part under the KEK".to_string())?;
    ensure(aes.len() == 32, "the ephemeral key is not AES-256")?;
    let pkcs8 = kwp_unwrap(&aes, tail)?;
    let (der, _) = super::split_der(&pkcs8)?;
    let key = rsa::PrivateKey::from_pkcs8_der(der).map_err(err("the unwrapped key is not a PKCS#8 RSA key"))?;
    let got = key.to_public_key().to_public_key_der().map_err(err("SPKI"))?.as_bytes().to_vec();
    ensure(got == spki, "the key unwrapped off the module is not the tenant key the module generated")?;
    ensure(wrapped.public == spki, "the engine reports another public key than the module generated")
}

/// The profile's cases.
pub fn cases() -> Vec<Case> {
    vec![Case::seam(
        Profile::Byok,
        "byok-transfer-unwraps-off-the-module",
        "the BYOK ceremony (KeyTransferRemote -ModifyAcls, -Package): CKM_RSA_AES_KEY_WRAP (PKCS#11 2.40 §2.1.21) of the narrowed copy, unwrapped with RustCrypto",
        transfer_wraps_for_the_kek_only,
    )]
}

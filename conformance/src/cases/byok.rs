//! The `byok` profile: the transfer engine on this backend, judged off the module. A tenant key
//! is generated for transfer, narrowed for a provider's KEK (the kit's RSA-3072 test key, whose
//! private half only RustCrypto holds) with the security officer's approval, and wrapped with
//! `CKM_RSA_AES_KEY_WRAP`; RustCrypto unwraps the result and the key must be the one the module
//! made. Everything the case made on the token is destroyed again.

use hsmkit_backend::{HashAlg, KeyFilter, Mechanism, TransferTarget};
use hsmkit_transfer::engine::{Engine, KeyRef, Officer, kek_label};
use hsmkit_transfer::formats::{AwsAlgorithm, Format};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};

use super::{R, ensure, err};
use crate::{Case, Ctx, Profile};

/// The provider's KEK: the kit's RSA-3072 test key.
fn kek() -> Result<rsa::PrivateKey, String> {
    rsa::PrivateKey::from_pkcs8_der(include_bytes!("../../keys/rsa-3072.pk8")).map_err(err("the KEK test key"))
}

/// Token objects the case made, destroyed when it ends (pass or fail). A failed narrowing can
/// leave the application logged out, where the private tenant key cannot be seen: the user logs in
/// again first.
struct Cleanup<'a> {
    ctx: &'a Ctx<'a>,
    s: &'a dyn hsmkit_backend::Session,
    labels: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.ctx.login_user(self.s);
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

/// How the narrowed copy leaves the module.
#[derive(Clone, Copy)]
enum Way {
    /// The engine's wrap for the hsmkit transfer package (`CKM_RSA_AES_KEY_WRAP`, OAEP SHA-1).
    Package,
    /// A cloud service's import format.
    Export(Format),
}

/// The key identifier the Azure case gives its KEK.
const KID: &str = "https://hsmkit-conformance.vault.azure.net/keys/kek/0";

/// The RSA-AES blob inside an export, after checking the format's envelope, and its OAEP hash.
fn blob_of(format: Format, bytes: &[u8], mech: &Mechanism) -> Result<(Vec<u8>, HashAlg), String> {
    let Mechanism::RsaAesKeyWrap { aes_bits: 256, hash } = mech else {
        return Err(format!(
            "{} exported an RSA key with {}, not RSA-AES with AES-256",
            format.name(),
            mech.describe()
        ));
    };
    if format != Format::AzureKeyVault {
        return Ok((bytes.to_vec(), *hash));
    }
    // The .byok file: JSON with the KEK's kid, "dir" and CKM_RSA_AES_KEY_WRAP, and the blob in
    // unpadded base64url.
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(err("the .byok file is not JSON"))?;
    ensure(doc["schema_version"] == "1.0.0", "the .byok file's schema_version is not 1.0.0")?;
    ensure(doc["header"]["kid"] == KID, "the .byok header names another KEK")?;
    ensure(doc["header"]["alg"] == "dir", "the .byok header's alg is not dir")?;
    ensure(doc["header"]["enc"] == "CKM_RSA_AES_KEY_WRAP", "the .byok header's enc is not CKM_RSA_AES_KEY_WRAP")?;
    let text = doc["ciphertext"].as_str().ok_or("the .byok file has no ciphertext")?;
    use base64ct::Encoding as _;
    let blob =
        base64ct::Base64UrlUnpadded::decode_vec(text).map_err(err("the ciphertext is not unpadded base64url"))?;
    Ok((blob, *hash))
}

fn transfer_wraps_for_the_kek_only(ctx: &Ctx<'_>) -> R {
    transfer(ctx, Way::Package)
}

fn transfer(ctx: &Ctx<'_>, way: Way) -> R {
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
    let mut cleanup = Cleanup { ctx, s: s.as_ref(), labels: vec![label.clone(), format!("xferacld-{label}")] };
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
    ctx.login_user(s.as_ref()).map_err(|e| format!("log the user in again: {e}"))?;
    let (blob, hash, public) = match way {
        Way::Package => {
            let w =
                engine.wrap(narrowed.copy, &target, &hsmkit_transfer::byok::WRAP).map_err(err("wrap for the KEK"))?;
            (w.wrapped, HashAlg::Sha1, w.public)
        }
        Way::Export(format) => {
            let kid = (format == Format::AzureKeyVault).then_some(KID);
            let (bytes, mech, w) = engine
                .export(&key, format, &kek_spki, kid, "hsmkit conformance kit")
                .map_err(err(&format!("export for {}", format.name())))?;
            let (blob, hash) = blob_of(format, &bytes, &mech)?;
            (blob, hash, w.public)
        }
    };
    // Off the module: OAEP under the KEK, then RFC 5649 under the ephemeral key.
    let k = rsa::traits::PublicKeyParts::size(&kek.to_public_key());
    ensure(blob.len() > k, "the wrapped key is shorter than the KEK's modulus")?;
    let (head, tail) = blob.split_at(k);
    let aes = match hash {
        HashAlg::Sha1 => kek.decrypt(rsa::Oaep::<sha1::Sha1>::new(), head),
        _ => kek.decrypt(rsa::Oaep::<sha2::Sha256>::new(), head),
    }
    .map_err(|_| format!("RustCrypto cannot decrypt the first part under the KEK with OAEP {}", hash.name()))?;
    ensure(aes.len() == 32, "the ephemeral key is not AES-256")?;
    let pkcs8 = kwp_unwrap(&aes, tail)?;
    let (der, _) = super::split_der(&pkcs8)?;
    let key = rsa::PrivateKey::from_pkcs8_der(der).map_err(err("the unwrapped key is not a PKCS#8 RSA key"))?;
    let got = key.to_public_key().to_public_key_der().map_err(err("SPKI"))?.as_bytes().to_vec();
    ensure(got == spki, "the key unwrapped off the module is not the tenant key the module generated")?;
    ensure(public == spki, "the engine reports another public key than the module generated")
}

/// The profile's cases.
pub fn cases() -> Vec<Case> {
    let mut out = vec![Case::seam(
        Profile::Byok,
        "byok-transfer-unwraps-off-the-module",
        "the BYOK ceremony (KeyTransferRemote -ModifyAcls, -Package): CKM_RSA_AES_KEY_WRAP (PKCS#11 2.40 §2.1.21) of the narrowed copy, unwrapped with RustCrypto",
        transfer_wraps_for_the_kek_only,
    )];
    let exports: [(&str, &str, Format); 3] = [
        (
            "byok-export-azure-kv",
            "Azure Key Vault BYOK: the .byok file (schema 1.0.0, kid, alg dir, enc CKM_RSA_AES_KEY_WRAP, OAEP SHA-1), unwrapped with RustCrypto",
            Format::AzureKeyVault,
        ),
        (
            "byok-export-aws-rsa-aes-sha256",
            "AWS KMS ImportKeyMaterial: RSA_AES_KEY_WRAP_SHA_256 key material, unwrapped with RustCrypto",
            Format::Aws(AwsAlgorithm::RsaAesKeyWrapSha256),
        ),
        (
            "byok-export-gcp-method-3",
            "Google Cloud KMS import method RSA_OAEP_3072_SHA256_AES_256, unwrapped with RustCrypto",
            Format::Gcp(3),
        ),
    ];
    for (id, clause, format) in exports {
        out.push(Case::seam(Profile::Byok, id, clause, move |ctx| transfer(ctx, Way::Export(format))));
    }
    out
}

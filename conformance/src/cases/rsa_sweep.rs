//! The `rsa` profile's sweep: PKCS#1 v1.5 and PSS signing and verification, and OAEP encryption
//! and decryption, at 2048, 3072 and 4096 bits with each hash, one case each. The keys are the
//! kit's fixed test keys (`conformance/keys/`), imported as session objects; every result is
//! checked with RustCrypto. A case whose mechanism the module does not list, or lists for other
//! key sizes, is skipped with the reason.

use hsmkit_backend::{ErrorKind, HashAlg, KeyHandle, KeyMaterial, Mechanism, MechanismKind, Session, Usage};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use zeroize::Zeroizing;

use super::{R, ensure, err, expect_kind, policy, seeded_rng};
use crate::{Case, Ctx, Profile};

/// The sizes and hashes swept.
const SIZES: [u32; 3] = [2048, 3072, 4096];
const HASHES: [HashAlg; 5] = [HashAlg::Sha1, HashAlg::Sha224, HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];

/// The kit's test key of `bits`, as PKCS#8 DER.
fn test_key(bits: u32) -> &'static [u8] {
    match bits {
        2048 => include_bytes!("../../keys/rsa-2048.pk8"),
        3072 => include_bytes!("../../keys/rsa-3072.pk8"),
        _ => include_bytes!("../../keys/rsa-4096.pk8"),
    }
}

/// Runs `$body` with `$h` the RustCrypto digest type of `$hash`.
macro_rules! with_hash {
    ($hash:expr, $h:ident => $body:expr) => {
        match $hash {
            HashAlg::Sha1 => {
                type $h = sha1::Sha1;
                $body
            }
            HashAlg::Sha224 => {
                type $h = sha2::Sha224;
                $body
            }
            HashAlg::Sha256 => {
                type $h = sha2::Sha256;
                $body
            }
            HashAlg::Sha384 => {
                type $h = sha2::Sha384;
                $body
            }
            HashAlg::Sha512 => {
                type $h = sha2::Sha512;
                $body
            }
        }
    };
}

fn short(hash: HashAlg) -> &'static str {
    match hash {
        HashAlg::Sha1 => "sha1",
        HashAlg::Sha224 => "sha224",
        HashAlg::Sha256 => "sha256",
        HashAlg::Sha384 => "sha384",
        HashAlg::Sha512 => "sha512",
    }
}

/// Skips unless the backend lists `kind` for `bits`-bit keys.
pub(super) fn listed_for(ctx: &Ctx<'_>, kind: MechanismKind, bits: u32) -> R {
    let caps = ctx.backend.capabilities().map_err(err("read the mechanism list"))?;
    let ckm = format!("CKM_{}", kind.name().replace('-', "_"));
    let Some(m) = caps.mechanism(kind) else { return Err(crate::not_listed(&ckm)) };
    // A module that lists no range (0..0) is taken at its word for every size.
    if m.max_bits != 0 && !(m.min_bits..=m.max_bits).contains(&bits) {
        return Err(crate::skipped(&format!(
            "the backend lists {ckm} for {}..{} bits, not {bits}",
            m.min_bits, m.max_bits
        )));
    }
    Ok(())
}

pub(super) fn private(bits: u32) -> Result<rsa::PrivateKey, String> {
    rsa::PrivateKey::from_pkcs8_der(test_key(bits)).map_err(err("the kit's test key"))
}

pub(super) fn import_private(s: &dyn Session, bits: u32, usage: Usage) -> Result<KeyHandle, String> {
    let material = KeyMaterial::RsaPrivatePkcs8(Zeroizing::new(test_key(bits).to_vec()));
    s.import_key(&material, &policy(usage)).map_err(err(&format!("import the RSA-{bits} test key")))
}

pub(super) fn import_public(s: &dyn Session, key: &rsa::PrivateKey, usage: Usage) -> Result<KeyHandle, String> {
    let spki = key.to_public_key().to_public_key_der().map_err(err("SPKI"))?;
    s.import_key(&KeyMaterial::RsaPublicSpki(spki.as_bytes().to_vec()), &policy(usage))
        .map_err(err("import the public key"))
}

const MESSAGE: &[u8] = b"hsmkit conformance: the rsa profile signs and encrypts this";

/// The module signs with PKCS#1 v1.5; RustCrypto verifies; the module verifies its own
/// signature and refuses it for another message.
fn sign_pkcs1(ctx: &Ctx<'_>, bits: u32, hash: HashAlg) -> R {
    let mech = Mechanism::RsaPkcs1v15 { hash };
    listed_for(ctx, mech.kind(), bits)?;
    let s = ctx.session()?;
    let key = private(bits)?;
    let handle = import_private(s.as_ref(), bits, Usage::SIGN)?;
    let sig = s.sign(&mech, handle, MESSAGE).map_err(err("sign"))?;
    ensure(sig.len() == (bits / 8) as usize, "the signature is not as long as the modulus")?;
    let parsed = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).map_err(err("signature encoding"))?;
    let ok = with_hash!(hash, H => rsa::pkcs1v15::VerifyingKey::<H>::new(key.to_public_key()).verify(MESSAGE, &parsed));
    ok.map_err(|_| format!("RustCrypto refuses the module's {} signature", hash.name()))?;
    // PKCS#1 v1.5 is deterministic: RustCrypto's own signature is the same bytes.
    let theirs = with_hash!(hash, H => rsa::pkcs1v15::SigningKey::<H>::new(key.clone()).sign(MESSAGE).to_vec());
    ensure(theirs == sig, "the module's PKCS#1 v1.5 signature differs from RustCrypto's (it is deterministic)")?;
    let public = import_public(s.as_ref(), &key, Usage::VERIFY)?;
    s.verify(&mech, public, MESSAGE, &sig).map_err(err("the module verifies its signature"))?;
    expect_kind(s.verify(&mech, public, b"another message", &sig), &[ErrorKind::SignatureInvalid], "another message")
}

/// The module signs with PSS (salt as long as the hash); RustCrypto verifies; two signatures of
/// one message differ (the salt is random).
fn sign_pss(ctx: &Ctx<'_>, bits: u32, hash: HashAlg) -> R {
    let mech = Mechanism::RsaPss { hash };
    listed_for(ctx, mech.kind(), bits)?;
    let s = ctx.session()?;
    let key = private(bits)?;
    let handle = import_private(s.as_ref(), bits, Usage::SIGN)?;
    let sig = s.sign(&mech, handle, MESSAGE).map_err(err("sign"))?;
    let again = s.sign(&mech, handle, MESSAGE).map_err(err("sign again"))?;
    ensure(sig != again, "two PSS signatures of one message are the same: the salt is not random")?;
    let parsed = rsa::pss::Signature::try_from(sig.as_slice()).map_err(err("signature encoding"))?;
    let ok = with_hash!(hash, H => rsa::pss::VerifyingKey::<H>::new(key.to_public_key()).verify(MESSAGE, &parsed));
    ok.map_err(|_| format!("RustCrypto refuses the module's PSS {} signature", hash.name()))
}

/// RustCrypto signs (PKCS#1 v1.5 and PSS); the module verifies, and refuses a flipped bit.
fn verify(ctx: &Ctx<'_>, bits: u32, hash: HashAlg) -> R {
    let pkcs1 = Mechanism::RsaPkcs1v15 { hash };
    let pss = Mechanism::RsaPss { hash };
    listed_for(ctx, pkcs1.kind(), bits)?;
    let s = ctx.session()?;
    let key = private(bits)?;
    let public = import_public(s.as_ref(), &key, Usage::VERIFY)?;
    let sig = with_hash!(hash, H => rsa::pkcs1v15::SigningKey::<H>::new(key.clone()).sign(MESSAGE).to_vec());
    s.verify(&pkcs1, public, MESSAGE, &sig).map_err(err("verify RustCrypto's PKCS#1 v1.5 signature"))?;
    let mut bad = sig.clone();
    bad[sig.len() / 3] ^= 0x10;
    expect_kind(s.verify(&pkcs1, public, MESSAGE, &bad), &[ErrorKind::SignatureInvalid], "a flipped bit")?;
    if listed_for(ctx, pss.kind(), bits).is_ok() {
        let mut rng = seeded_rng(u64::from(bits));
        let sig = with_hash!(hash, H => {
            use rsa::signature::RandomizedSigner as _;
            rsa::pss::SigningKey::<H>::new(key.clone()).sign_with_rng(&mut rng, MESSAGE).to_vec()
        });
        s.verify(&pss, public, MESSAGE, &sig).map_err(err("verify RustCrypto's PSS signature"))?;
        expect_kind(
            s.verify(&pss, public, b"another message", &sig),
            &[ErrorKind::SignatureInvalid],
            "PSS, another message",
        )?;
    }
    Ok(())
}

/// RustCrypto encrypts with OAEP (label empty, MGF1 with the same hash); the module decrypts.
fn oaep_decrypt(ctx: &Ctx<'_>, bits: u32, hash: HashAlg) -> R {
    listed_for(ctx, MechanismKind::RsaPkcsOaep, bits)?;
    let s = ctx.session()?;
    let key = private(bits)?;
    let handle = import_private(s.as_ref(), bits, Usage::DECRYPT)?;
    let secret = b"a 32-byte key transported by OAE";
    let mut rng = seeded_rng(u64::from(bits) + 1);
    let ct = with_hash!(hash, H => key.to_public_key().encrypt(&mut rng, rsa::Oaep::<H>::new(), secret))
        .map_err(err("OAEP in RustCrypto"))?;
    let pt =
        s.decrypt(&Mechanism::RsaOaep { hash }, handle, &ct).map_err(err(&format!("OAEP {} decrypt", hash.name())))?;
    ensure(pt == secret, "the module's OAEP decryption differs from the plaintext")
}

/// The module encrypts with OAEP; RustCrypto decrypts; two encryptions differ (the seed is
/// random).
fn oaep_encrypt(ctx: &Ctx<'_>, bits: u32, hash: HashAlg) -> R {
    listed_for(ctx, MechanismKind::RsaPkcsOaep, bits)?;
    let s = ctx.session()?;
    let key = private(bits)?;
    let public = import_public(s.as_ref(), &key, Usage::ENCRYPT)?;
    let secret = b"a secret for RustCrypto";
    let mech = Mechanism::RsaOaep { hash };
    let ct = s.encrypt(&mech, public, secret).map_err(err(&format!("OAEP {} encrypt", hash.name())))?;
    let again = s.encrypt(&mech, public, secret).map_err(err("encrypt again"))?;
    ensure(ct != again, "two OAEP encryptions of one secret are the same: the seed is not random")?;
    let pt = with_hash!(hash, H => key.decrypt(rsa::Oaep::<H>::new(), &ct)).map_err(err("RustCrypto decrypts"))?;
    ensure(pt == secret, "RustCrypto decrypts the module's OAEP to something else")
}

/// The sweep's cases.
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    type F = fn(&Ctx<'_>, u32, HashAlg) -> R;
    let kinds: [(&str, &str, F); 5] = [
        ("sign-pkcs1", "PKCS#11 base §6.1 CKM_SHAx_RSA_PKCS signing; RFC 8017 §8.2", sign_pkcs1),
        ("sign-pss", "PKCS#11 base §6.1 CKM_SHAx_RSA_PKCS_PSS signing; RFC 8017 §8.1", sign_pss),
        ("verify", "PKCS#11 base §5.13 C_Verify, CKM_SHAx_RSA_PKCS(_PSS); RFC 8017 §8", verify),
        ("oaep-decrypt", "PKCS#11 base §6.1 CKM_RSA_PKCS_OAEP decryption; RFC 8017 §7.1.2", oaep_decrypt),
        ("oaep-encrypt", "PKCS#11 base §6.1 CKM_RSA_PKCS_OAEP encryption; RFC 8017 §7.1.1", oaep_encrypt),
    ];
    for bits in SIZES {
        for hash in HASHES {
            for (name, clause, f) in kinds {
                out.push(Case::seam(Profile::Rsa, format!("rsa-{bits}-{name}-{}", short(hash)), clause, move |ctx| {
                    f(ctx, bits, hash)
                }));
            }
        }
    }
    out
}

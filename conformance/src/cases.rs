//! The cases. Each exercises one behaviour through the seam and checks results independently.

use std::sync::atomic::{AtomicU64, Ordering};

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, ErrorKind, HashAlg, KeyFilter, KeyHandle, KeyMaterial, KeyPairSpec, KeyPolicy, KeySpec,
    KeyType, Mechanism, Session, Usage,
};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use crate::{Case, Ctx, Profile};

mod byok;
mod derive;
mod ec;
mod policy;
mod rsa_sweep;
mod sweep;
mod world;

pub use sweep::uncovered;
mod vectors;

type R = Result<(), String>;

/// A case written as a plain function.
struct Listed {
    id: &'static str,
    clause: &'static str,
    run: fn(&Ctx<'_>) -> R,
}

/// The profile of a listed case, by what it checks.
fn profile_of(id: &str) -> Profile {
    const KEYWRAP: &[&str] =
        &["generic-secret", "unwrapped-key-value-len", "wrapped-pkcs8-is-der", "aes-kwp-aligned-key"];
    const OBJECTS: &[&str] = &["attributes-sensitive", "find-and-destroy", "foreign-handle", "logout-ends-private-use"];
    if id.starts_with("policy-") {
        Profile::Policy
    } else if id.starts_with("aes-key-wrap") || id.starts_with("rsa-aes-key-") || KEYWRAP.contains(&id) {
        Profile::Keywrap
    } else if id.starts_with("rsa-") {
        Profile::Rsa
    } else if OBJECTS.contains(&id) {
        Profile::Objects
    } else {
        Profile::Mechanisms
    }
}

/// Every case of the suite.
pub fn cases() -> Vec<Case> {
    let mut out: Vec<Case> =
        listed().into_iter().map(|l| Case::seam(profile_of(l.id), l.id, l.clause, l.run)).collect();
    out.extend(rsa_sweep::cases());
    out.extend(policy::cases());
    out.extend(vectors::cases());
    out.extend(byok::cases());
    out.extend(sweep::cases());
    out.extend(world::cases());
    out
}

/// The cases written as plain functions.
fn listed() -> Vec<Listed> {
    vec![
        Listed {
            id: "rsa-sign-pkcs1v15",
            clause: "PKCS#11 3.1 §2.1.6 CKM_SHA256_RSA_PKCS; RFC 8017 §8.2",
            run: rsa_sign_pkcs1v15,
        },
        Listed {
            id: "rsa-sign-pss",
            clause: "PKCS#11 3.1 §2.1.10 CKM_SHA256_RSA_PKCS_PSS; RFC 8017 §8.1",
            run: rsa_sign_pss,
        },
        Listed {
            id: "rsa-sign-pkcs1-digestinfo",
            clause: "PKCS#11 3.1 §2.1.6 CKM_RSA_PKCS (signing a DigestInfo); RFC 8017 §9.2",
            run: rsa_sign_pkcs1_digestinfo,
        },
        Listed {
            id: "rsa-sign-pkcs1-too-long",
            clause: "PKCS#11 3.1 §2.1.6 CKM_RSA_PKCS: input over k - 11 bytes is CKR_DATA_LEN_RANGE",
            run: rsa_sign_pkcs1_too_long,
        },
        Listed { id: "rsa-verify", clause: "PKCS#11 3.1 §5.13 C_Verify", run: rsa_verify },
        Listed {
            id: "generic-secret",
            clause: "PKCS#11 3.1 §6.8 generic secret keys; CKM_GENERIC_SECRET_KEY_GEN; RFC 5649",
            run: generic_secret,
        },
        Listed {
            id: "rsa-oaep-decrypt",
            clause: "PKCS#11 3.1 §2.1.8 CKM_RSA_PKCS_OAEP; RFC 8017 §7.1",
            run: rsa_oaep_decrypt,
        },
        Listed {
            id: "rsa-oaep-decrypt-damaged",
            clause: "PKCS#11 3.1 §5.9 C_Decrypt: CKR_ENCRYPTED_DATA_INVALID",
            run: rsa_oaep_decrypt_damaged,
        },
        Listed { id: "aes-key-wrap", clause: "PKCS#11 3.1 §2.14.3 CKM_AES_KEY_WRAP; RFC 3394", run: aes_key_wrap },
        Listed {
            id: "unwrapped-key-value-len",
            clause: "PKCS#11 3.1 §2.14.1 CKA_VALUE_LEN of an AES key",
            run: unwrapped_key_value_len,
        },
        Listed { id: "aes-key-wrap-pad", clause: "RFC 5649 (CKM_AES_KEY_WRAP_PAD / _KWP)", run: aes_key_wrap_pad },
        Listed {
            id: "aes-kwp-aligned-key",
            clause: "RFC 5649 §4.1 (KWP) for a key whose length is a multiple of 8; not RFC 3394, not PKCS#7 + RFC 3394",
            run: aes_kwp_aligned_key,
        },
        Listed {
            id: "wrapped-pkcs8-is-der",
            clause: "PKCS#11 3.1 §2.1.21 (the wrapped private key is a PKCS#8 PrivateKeyInfo, DER)",
            run: wrapped_pkcs8_is_der,
        },
        Listed { id: "rsa-aes-key-wrap", clause: "PKCS#11 2.40 §2.1.21 CKM_RSA_AES_KEY_WRAP", run: rsa_aes_key_wrap },
        Listed {
            id: "rsa-aes-key-unwrap",
            clause: "PKCS#11 2.40 §2.1.21 CKM_RSA_AES_KEY_WRAP",
            run: rsa_aes_key_unwrap,
        },
        Listed {
            id: "rsa-aes-key-unwrap-damaged",
            clause: "PKCS#11 3.1 §5.18 C_UnwrapKey: CKR_WRAPPED_KEY_INVALID",
            run: rsa_aes_key_unwrap_damaged,
        },
        Listed {
            id: "policy-sign-not-permitted", clause: "PKCS#11 3.1 §4.9 CKA_SIGN", run: policy_sign_not_permitted
        },
        Listed { id: "policy-unextractable", clause: "PKCS#11 3.1 §4.9 CKA_EXTRACTABLE", run: policy_unextractable },
        Listed {
            id: "policy-wrap-with-trusted",
            clause: "PKCS#11 3.1 §4.9 CKA_WRAP_WITH_TRUSTED",
            run: policy_wrap_with_trusted,
        },
        Listed { id: "policy-narrowed-copy", clause: "PKCS#11 3.1 §5.7 C_CopyObject", run: policy_narrowed_copy },
        Listed {
            id: "policy-no-widening",
            clause: "PKCS#11 3.1 §4.1.2 (attributes change only to the safer value)",
            run: policy_no_widening,
        },
        Listed {
            id: "attributes-sensitive",
            clause: "PKCS#11 3.1 §5.7 C_GetAttributeValue",
            run: attributes_sensitive,
        },
        Listed {
            id: "find-and-destroy",
            clause: "PKCS#11 3.1 §5.7 C_FindObjects, C_DestroyObject",
            run: find_and_destroy,
        },
        Listed { id: "foreign-handle", clause: "PKCS#11 3.1 §2.3 session objects", run: foreign_handle },
        Listed { id: "random", clause: "PKCS#11 3.1 §5.15 C_GenerateRandom", run: random },
        Listed {
            id: "rsa-oaep-encrypt",
            clause: "PKCS#11 3.1 §2.1.8 CKM_RSA_PKCS_OAEP (C_Encrypt)",
            run: rsa_oaep_encrypt,
        },
        Listed {
            id: "rsa-pkcs1-decrypt",
            clause: "PKCS#11 3.1 §2.1.6 CKM_RSA_PKCS (C_Decrypt), RFC 8017 §7.2",
            run: rsa_pkcs1_decrypt,
        },
        Listed {
            id: "rsa-pkcs1-decrypt-damaged",
            clause: "PKCS#11 3.1 §5.9 C_Decrypt: CKR_ENCRYPTED_DATA_INVALID, one answer for every failure",
            run: rsa_pkcs1_decrypt_damaged,
        },
        Listed {
            id: "rsa-pkcs1-encrypt",
            clause: "PKCS#11 3.1 §2.1.6 CKM_RSA_PKCS (C_Encrypt)",
            run: rsa_pkcs1_encrypt,
        },
        Listed { id: "rsa-x509", clause: "PKCS#11 3.1 §2.1.7 CKM_RSA_X_509", run: rsa_x509 },
        Listed { id: "rsa-pss-raw", clause: "PKCS#11 3.1 §2.1.14 CKM_RSA_PKCS_PSS over a digest", run: rsa_pss_raw },
        Listed { id: "hmac-sha256", clause: "PKCS#11 3.1 §2.20 CKM_SHA256_HMAC, RFC 2104", run: hmac_sha256 },
        Listed {
            id: "rsa-oaep-sha2",
            clause: "PKCS#11 3.1 §2.1.8 CKM_RSA_PKCS_OAEP with SHA-256, SHA-384 and SHA-512 (MGF1 alike)",
            run: rsa_oaep_sha2,
        },
        Listed { id: "aes-ecb", clause: "PKCS#11 3.1 §2.15.3 CKM_AES_ECB, SP 800-38A F.1.1", run: aes_ecb },
        Listed { id: "aes-cbc", clause: "PKCS#11 3.1 §2.15.4 CKM_AES_CBC, SP 800-38A F.2.1", run: aes_cbc },
        Listed { id: "aes-cbc-pad", clause: "PKCS#11 3.1 §2.15.5 CKM_AES_CBC_PAD (PKCS #7)", run: aes_cbc_pad },
        Listed {
            id: "rsa-oaep-label",
            clause: "PKCS#11 3.1 §2.1.8 CKM_RSA_PKCS_OAEP with CKZ_DATA_SPECIFIED (a label)",
            run: rsa_oaep_label,
        },
        Listed {
            id: "aes-gcm-sizes",
            clause: "PKCS#11 3.1 §2.15.9 CK_GCM_PARAMS: IVs of other lengths and tags of 96 and 64 bits (SP 800-38D §5.2.1)",
            run: aes_gcm_sizes,
        },
        Listed {
            id: "des3",
            clause: "PKCS#11 3.1 §2.16 CKK_DES3, CKM_DES3_KEY_GEN, CKM_DES3_ECB/CBC/CBC_PAD (legacy); SP 800-67 Rev 2's example",
            run: des3,
        },
        Listed {
            id: "des3-cbc-pad-damaged",
            clause: "PKCS#11 3.1 §5.9 C_Decrypt: a bad CKM_DES3_CBC_PAD pad is CKR_ENCRYPTED_DATA_INVALID",
            run: des3_cbc_pad_damaged,
        },
        Listed { id: "aes-cmac", clause: "PKCS#11 3.1 §2.15.11 CKM_AES_CMAC, RFC 4493 §4", run: aes_cmac },
        Listed { id: "aes-ctr", clause: "PKCS#11 3.1 §2.15.8 CKM_AES_CTR, SP 800-38A F.5.1", run: aes_ctr },
        Listed {
            id: "aes-gcm",
            clause: "PKCS#11 3.1 §2.15.9 CKM_AES_GCM, the GCM specification's test case 4 (with AAD)",
            run: aes_gcm,
        },
        Listed { id: "logout-ends-private-use", clause: "PKCS#11 3.1 §5.6 C_Logout", run: logout_ends_private_use },
        Listed {
            id: "ecdsa-p256",
            clause: "PKCS#11 3.1 §2.3 CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKM_ECDSA_SHA256; CKA_EC_PARAMS, CKA_EC_POINT; FIPS 186-5",
            run: ec::ecdsa_p256,
        },
        Listed { id: "ecdsa-p384", clause: "PKCS#11 3.1 §2.3 ECDSA on P-384 (CKM_ECDSA_SHA384)", run: ec::ecdsa_p384 },
        Listed { id: "ecdsa-p521", clause: "PKCS#11 3.1 §2.3 ECDSA on P-521 (CKM_ECDSA_SHA512)", run: ec::ecdsa_p521 },
        Listed {
            id: "ec-import",
            clause: "PKCS#11 3.1 §2.3.3-4 EC public and private key objects (C_CreateObject); RFC 6979 A.2.5's key",
            run: ec::ec_import,
        },
        Listed {
            id: "ed25519",
            clause: "PKCS#11 3.1 §2.3.5-6 CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA; RFC 8032 §7.1 tests 1-2",
            run: ec::ed25519,
        },
        Listed {
            id: "ecdh-p256",
            clause: "PKCS#11 3.1 §2.3.9 CKM_ECDH1_DERIVE (CKD_NULL); SP 800-56A; CKA_DERIVE",
            run: derive::ecdh_p256,
        },
        Listed {
            id: "ecdh-x963-kdf",
            clause: "PKCS#11 3.1 §2.3.9 CKM_ECDH1_DERIVE with CKD_SHA256_KDF (ANSI X9.63, SEC 1 §3.6.1)",
            run: derive::ecdh_x963_kdf,
        },
        Listed { id: "hkdf", clause: "PKCS#11 3.0 §2.43 CKM_HKDF_DERIVE; RFC 5869 A.1", run: derive::hkdf },
        Listed {
            id: "sp800-108-counter",
            clause: "PKCS#11 3.0 §2.42 CKM_SP800_108_COUNTER_KDF; SP 800-108 §5.1",
            run: derive::sp800_108_counter,
        },
        Listed {
            id: "aes-cbc-encrypt-data",
            clause: "PKCS#11 3.1 §2.15.14 CKM_AES_CBC_ENCRYPT_DATA; SP 800-38A F.2.1",
            run: derive::aes_cbc_encrypt_data,
        },
    ]
}

fn hmac_sha256(ctx: &Ctx<'_>) -> R {
    use hmac::{KeyInit as _, Mac as _};
    let s = ctx.session()?;
    let secret = [0x3cu8; 32];
    let key = s
        .import_key(&KeyMaterial::GenericSecret(Zeroizing::new(secret.to_vec())), &policy(Usage::SIGN | Usage::VERIFY))
        .map_err(err("import a generic secret"))?;
    let mech = Mechanism::Hmac { hash: HashAlg::Sha256 };
    let message = b"authenticated by the module";
    let tag = s.sign(&mech, key, message).map_err(err("HMAC sign"))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).map_err(err("RustCrypto HMAC key"))?;
    mac.update(message);
    let want = mac.finalize().into_bytes();
    ensure(tag.as_slice() == want.as_slice(), "the module's HMAC-SHA256 differs from RustCrypto's")?;
    s.verify(&mech, key, message, &want).map_err(err("the module verifies RustCrypto's tag"))?;
    let mut bad = want.to_vec();
    bad[0] ^= 1;
    expect_kind(s.verify(&mech, key, message, &bad), &[ErrorKind::SignatureInvalid], "a wrong tag")?;
    // HMAC-SHA224, where the backend lists it.
    let listed = ctx.backend.capabilities().map_err(err("read the mechanism list"))?;
    if listed.mechanism(hsmkit_backend::MechanismKind::Sha224Hmac).is_some() {
        let tag = s.sign(&Mechanism::Hmac { hash: HashAlg::Sha224 }, key, message).map_err(err("HMAC-SHA224"))?;
        let mut mac = hmac::Hmac::<sha2::Sha224>::new_from_slice(&secret).map_err(err("RustCrypto HMAC key"))?;
        mac.update(message);
        ensure(
            tag.as_slice() == mac.finalize().into_bytes().as_slice(),
            "the module's HMAC-SHA224 differs from RustCrypto's",
        )?;
    }
    Ok(())
}

fn rsa_pkcs1_decrypt(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::ENCRYPT | Usage::DECRYPT))?;
    let key = public_of(s.as_ref(), public)?;
    let ct = key.encrypt(&mut seeded_rng(3), rsa::Pkcs1v15Encrypt, b"a v1.5 secret").map_err(err("RustCrypto"))?;
    let pt = s.decrypt(&Mechanism::RsaPkcs1v15Raw, private, &ct).map_err(err("decrypt"))?;
    ensure(pt == b"a v1.5 secret", "the module's PKCS#1 v1.5 decryption differs from the plaintext")
}

fn rsa_pkcs1_decrypt_damaged(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::ENCRYPT | Usage::DECRYPT))?;
    let key = public_of(s.as_ref(), public)?;
    let ct = key.encrypt(&mut seeded_rng(3), rsa::Pkcs1v15Encrypt, b"a v1.5 secret").map_err(err("RustCrypto"))?;
    // A damaged block, a wrong length and a number above the modulus all get the one answer.
    let mut flipped = ct.clone();
    flipped[ct.len() / 2] ^= 0x01;
    let short = ct[1..].to_vec();
    let above = vec![0xff; ct.len()];
    for (what, bad) in [("a damaged ciphertext", flipped), ("a short ciphertext", short), ("a number above n", above)] {
        let r = s.decrypt(&Mechanism::RsaPkcs1v15Raw, private, &bad);
        // A flip may, rarely, still decode (padding is not a MAC); then the plaintext must differ.
        if let Ok(pt) = &r {
            ensure(pt.as_slice() != b"a v1.5 secret", &format!("{what} decrypted to the plaintext"))?;
            continue;
        }
        expect_kind(r, &[ErrorKind::EncryptedDataInvalid, ErrorKind::EncryptedDataLenRange], what)?;
    }
    Ok(())
}

fn rsa_pkcs1_encrypt(ctx: &Ctx<'_>) -> R {
    // The module encrypts under a public key whose private half RustCrypto holds.
    let s = ctx.session()?;
    let key = rsa::PrivateKey::new(&mut seeded_rng(4), 2048).map_err(err("RustCrypto key"))?;
    let spki = rsa::pkcs8::EncodePublicKey::to_public_key_der(&key.to_public_key()).map_err(err("SPKI"))?;
    let public = s
        .import_key(&KeyMaterial::RsaPublicSpki(spki.as_bytes().to_vec()), &policy(Usage::ENCRYPT))
        .map_err(err("import the public key"))?;
    let ct = s.encrypt(&Mechanism::RsaPkcs1v15Raw, public, b"to RustCrypto").map_err(err("encrypt"))?;
    let pt = key.decrypt(rsa::Pkcs1v15Encrypt, &ct).map_err(err("RustCrypto decrypts"))?;
    ensure(pt == b"to RustCrypto", "RustCrypto decrypts something else")
}

fn rsa_x509(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::SIGN | Usage::VERIFY))?;
    let key = public_of(s.as_ref(), public)?;
    let k = rsa::traits::PublicKeyParts::size(&key);
    // A number below the modulus (leading zero), signed raw; RustCrypto raises it to e.
    let mut m = vec![0u8; k];
    m[1..].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 + 3) as u8);
    let sig = s.sign(&Mechanism::RsaX509, private, &m).map_err(err("raw sign"))?;
    ensure(sig.len() == k, "a raw RSA output is as long as the modulus")?;
    let n_bits = rsa::traits::PublicKeyParts::n(&key).as_ref().bits_precision();
    let sig_n = rsa::BoxedUint::from_be_slice(&sig, n_bits).map_err(err("the output as a number"))?;
    let back = rsa::hazmat::rsa_encrypt(&key, &sig_n).map_err(err("RustCrypto raw RSA"))?;
    let back = back.to_be_bytes_trimmed_vartime();
    ensure(back.as_ref() == &m[1..], "the signature raised to e is not the input")?;
    s.verify(&Mechanism::RsaX509, public, &m, &sig).map_err(err("the module verifies its raw signature"))
}

fn rsa_pss_raw(ctx: &Ctx<'_>) -> R {
    use rsa::signature::Verifier as _;
    use sha2::Digest as _;
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::SIGN | Usage::VERIFY))?;
    let key = public_of(s.as_ref(), public)?;
    let message = b"signed as a digest";
    let digest = sha2::Sha256::digest(message);
    let mech = Mechanism::RsaPssRaw { hash: HashAlg::Sha256 };
    let sig = s.sign(&mech, private, &digest).map_err(err("PSS over a digest"))?;
    let sig_rc = rsa::pss::Signature::try_from(sig.as_slice()).map_err(err("signature"))?;
    rsa::pss::VerifyingKey::<sha2::Sha256>::new(key)
        .verify(message, &sig_rc)
        .map_err(|_| "RustCrypto's PSS verification refuses the module's signature".to_string())?;
    expect_kind(
        s.sign(&mech, private, &digest[1..]),
        &[ErrorKind::DataLenRange, ErrorKind::DataInvalid],
        "a short digest",
    )
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A session key's policy with a label no other case uses.
fn policy(usage: Usage) -> KeyPolicy {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut p = KeyPolicy::new(usage).with_label(format!("hsmkit-conformance-{t:x}-{n}"));
    p.token = false;
    p
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A signing pair's usages: the public half verifies what the private half signs. (A module may
/// test a new pair before returning it, as NSS's pairwise consistency check does; a public half
/// that cannot verify fails that test, which is not what the cases check.)
pub(crate) const SIGNING: Usage = Usage::SIGN.union(Usage::VERIFY);

fn pair(s: &dyn Session, p: &KeyPolicy) -> Result<(KeyHandle, KeyHandle), String> {
    s.generate_key_pair(&KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, p).map_err(err("generate RSA-2048"))
}

/// The public key of `public`, read as modulus and exponent and rebuilt in RustCrypto.
fn public_of(s: &dyn Session, public: KeyHandle) -> Result<rsa::PublicKey, String> {
    let attrs =
        s.attributes(public, &[AttrKind::Modulus, AttrKind::PublicExponent]).map_err(err("read the public key"))?;
    let bytes = |a: &Attr| match a {
        Attr::Value(_, AttrValue::Bytes(b)) => Ok(b.clone()),
        other => Err(format!("the public key attribute is {other:?}")),
    };
    let n = bytes(&attrs[0])?;
    let e = bytes(&attrs[1])?;
    rsa::PublicKey::new(rsa::BoxedUint::from_be_slice_vartime(&n), rsa::BoxedUint::from_be_slice_vartime(&e))
        .map_err(err("rebuild the public key"))
}

/// Fails unless `r` is an error of one of `kinds`.
/// Whether `kind` is one of `kinds`, by variant (a variant's fields, such as `QuorumNotMet`'s
/// counts, are detail, not identity).
fn kind_in(kind: &ErrorKind, kinds: &[ErrorKind]) -> bool {
    kinds.iter().any(|k| std::mem::discriminant(k) == std::mem::discriminant(kind))
}

/// Fails unless `r` failed with one of `kinds` (by variant).
fn expect_kind<T>(r: hsmkit_backend::Result<T>, kinds: &[ErrorKind], what: &str) -> R {
    match r {
        Ok(_) => Err(format!("{what}: succeeded, expected {kinds:?}")),
        Err(e) if kind_in(e.kind(), kinds) => Ok(()),
        Err(e) => Err(format!("{what}: expected {kinds:?}, got {e}")),
    }
}

fn ensure(cond: bool, what: &str) -> R {
    if cond { Ok(()) } else { Err(what.to_string()) }
}

fn seeded_rng(seed: u64) -> rand_chacha::ChaCha20Rng {
    <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(seed)
}

fn rsa_sign_pkcs1v15(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::SIGN | Usage::VERIFY))?;
    let key = public_of(s.as_ref(), public)?;
    for hash in [HashAlg::Sha1, HashAlg::Sha224, HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
        let sig = s.sign(&Mechanism::RsaPkcs1v15 { hash }, private, b"conformance").map_err(err("sign"))?;
        let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).map_err(err("signature encoding"))?;
        let ok = match hash {
            HashAlg::Sha1 => rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(key.clone()).verify(b"conformance", &sig),
            HashAlg::Sha224 => {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha224>::new(key.clone()).verify(b"conformance", &sig)
            }
            HashAlg::Sha256 => {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone()).verify(b"conformance", &sig)
            }
            HashAlg::Sha384 => {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key.clone()).verify(b"conformance", &sig)
            }
            HashAlg::Sha512 => {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(key.clone()).verify(b"conformance", &sig)
            }
        };
        ok.map_err(|_| format!("the {} signature does not verify in RustCrypto", hash.name()))?;
    }
    Ok(())
}

/// `CKM_RSA_PKCS` over a SHA-256 `DigestInfo` made outside (as OpenSSL's PKCS#11 engine does) is
/// the same signature RustCrypto checks as RSASSA-PKCS1-v1_5 with SHA-256.
fn rsa_sign_pkcs1_digestinfo(ctx: &Ctx<'_>) -> R {
    use sha2::Digest as _;
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::SIGN | Usage::VERIFY))?;
    let key = public_of(s.as_ref(), public)?;
    // DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2, note 1).
    let mut info = hex_bytes("3031300d060960864801650304020105000420");
    info.extend_from_slice(&sha2::Sha256::digest(b"conformance"));
    let raw = s.sign(&Mechanism::RsaPkcs1v15Raw, private, &info).map_err(err("sign"))?;
    let sig = rsa::pkcs1v15::Signature::try_from(raw.as_slice()).map_err(err("signature encoding"))?;
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone())
        .verify(b"conformance", &sig)
        .map_err(|_| "the CKM_RSA_PKCS signature does not verify as SHA-256 RSASSA-PKCS1-v1_5 in RustCrypto")?;
    s.verify(&Mechanism::RsaPkcs1v15Raw, public, &info, &raw).map_err(err("verify"))
}

/// `CKM_RSA_PKCS` refuses input longer than its padding allows, with the specification's code.
fn rsa_sign_pkcs1_too_long(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::SIGN | Usage::VERIFY))?;
    let key = public_of(s.as_ref(), public)?;
    let too_long = vec![1u8; key.size() - 10];
    match s.sign(&Mechanism::RsaPkcs1v15Raw, private, &too_long) {
        Err(e) if matches!(e.kind(), ErrorKind::DataLenRange) => Ok(()),
        Err(e) => Err(format!("input longer than k - 11 bytes gave {:?}, not CKR_DATA_LEN_RANGE", e.kind())),
        Ok(_) => Err("input longer than k - 11 bytes was signed".into()),
    }
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).filter_map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok()).collect()
}

fn rsa_sign_pss(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::SIGN | Usage::VERIFY))?;
    let key = public_of(s.as_ref(), public)?;
    let sig = s.sign(&Mechanism::RsaPss { hash: HashAlg::Sha256 }, private, b"pss").map_err(err("sign"))?;
    let sig = rsa::pss::Signature::try_from(sig.as_slice()).map_err(err("signature encoding"))?;
    rsa::pss::VerifyingKey::<sha2::Sha256>::new(key)
        .verify(b"pss", &sig)
        .map_err(|_| "the PSS signature does not verify in RustCrypto".into())
}

fn rsa_verify(ctx: &Ctx<'_>) -> R {
    use rsa::signature::{SignatureEncoding, Signer};
    let s = ctx.session()?;
    let soft = rsa::PrivateKey::new(&mut seeded_rng(1), 2048).map_err(err("software key"))?;
    let spki = soft.to_public_key().to_public_key_der().map_err(err("spki"))?.as_bytes().to_vec();
    let public =
        s.import_key(&KeyMaterial::RsaPublicSpki(spki), &policy(Usage::VERIFY)).map_err(err("import public key"))?;
    let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(soft).sign(b"signed in software").to_vec();
    let mech = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 };
    s.verify(&mech, public, b"signed in software", &sig).map_err(err("a RustCrypto signature"))?;
    let mut bad = sig.clone();
    bad[7] ^= 0x01;
    expect_kind(s.verify(&mech, public, b"signed in software", &bad), &[ErrorKind::SignatureInvalid], "a flipped bit")?;
    expect_kind(s.verify(&mech, public, b"another message", &sig), &[ErrorKind::SignatureInvalid], "another message")
}

fn rsa_oaep_decrypt(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::ENCRYPT | Usage::DECRYPT))?;
    let key = public_of(s.as_ref(), public)?;
    let ct = key
        .encrypt(&mut seeded_rng(2), rsa::Oaep::<sha1::Sha1>::new(), b"a secret")
        .map_err(err("OAEP in RustCrypto"))?;
    let pt = s.decrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha1 }, private, &ct).map_err(err("decrypt"))?;
    ensure(pt == b"a secret", "the module's OAEP decryption differs from the plaintext")
}

fn rsa_oaep_decrypt_damaged(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::ENCRYPT | Usage::DECRYPT))?;
    let key = public_of(s.as_ref(), public)?;
    let mut ct = key
        .encrypt(&mut seeded_rng(2), rsa::Oaep::<sha1::Sha1>::new(), b"a secret")
        .map_err(err("OAEP in RustCrypto"))?;
    ct[0] ^= 0x80;
    expect_kind(
        s.decrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha1 }, private, &ct),
        &[ErrorKind::EncryptedDataInvalid],
        "a damaged ciphertext",
    )
}

fn import_aes(s: &dyn Session, bytes: &[u8], p: &KeyPolicy) -> Result<KeyHandle, String> {
    s.import_key(&KeyMaterial::Aes(Zeroizing::new(bytes.to_vec())), p).map_err(err("import AES key"))
}

fn aes_key_wrap(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let kek_bytes = [0x11u8; 32];
    let kek = import_aes(s.as_ref(), &kek_bytes, &policy(Usage::WRAP | Usage::UNWRAP))?;
    let target_bytes = [0x5au8; 32];
    let target = import_aes(s.as_ref(), &target_bytes, &policy(Usage::ENCRYPT).extractable(true))?;
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, kek, target).map_err(err("wrap"))?;
    let mut buf = [0u8; 32];
    let kw = <aes_kw::KwAes256 as aes_kw::KeyInit>::new_from_slice(&kek_bytes).map_err(err("kek"))?;
    let unwrapped =
        kw.unwrap_key(&wrapped, &mut buf).map_err(|_| "RustCrypto's RFC 3394 unwrap refuses the output".to_string())?;
    ensure(unwrapped == target_bytes, "RFC 3394 output unwraps to other bytes")?;
    s.unwrap_key(&Mechanism::AesKeyWrap, kek, &wrapped, KeyType::Aes, &policy(Usage::ENCRYPT))
        .map_err(err("unwrap"))?;
    Ok(())
}

fn unwrapped_key_value_len(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let kek_bytes = [0x12u8; 32];
    let kek = import_aes(s.as_ref(), &kek_bytes, &policy(Usage::WRAP | Usage::UNWRAP))?;
    let kw = <aes_kw::KwAes256 as aes_kw::KeyInit>::new_from_slice(&kek_bytes).map_err(err("kek"))?;
    let mut buf = [0u8; 40];
    let wrapped = kw.wrap_key(&[0x77u8; 32], &mut buf).map_err(|_| "RFC 3394 in software".to_string())?;
    let back = s
        .unwrap_key(&Mechanism::AesKeyWrap, kek, wrapped, KeyType::Aes, &policy(Usage::ENCRYPT))
        .map_err(err("unwrap"))?;
    let again = s.attributes(back, &[AttrKind::Bits]).map_err(err("attributes"))?;
    ensure(
        again == vec![Attr::Value(AttrKind::Bits, AttrValue::Number(256))],
        &format!("the unwrapped key should read as AES-256 (CKA_VALUE_LEN 32), reads {again:?}"),
    )
}

fn rsa_private_pkcs8(seed: u64) -> Result<(rsa::PrivateKey, Zeroizing<Vec<u8>>), String> {
    let key = rsa::PrivateKey::new(&mut seeded_rng(seed), 2048).map_err(err("software key"))?;
    let der = Zeroizing::new(key.to_pkcs8_der().map_err(err("pkcs8"))?.as_bytes().to_vec());
    Ok((key, der))
}

/// The DER element at the start of `bytes` and what follows it.
fn split_der(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let bad = || "the unwrapped bytes are not a DER SEQUENCE".to_string();
    if bytes.len() < 2 || bytes[0] != 0x30 {
        return Err(bad());
    }
    let (header, len) = match bytes[1] {
        n if n < 0x80 => (2, usize::from(n)),
        0x81 if bytes.len() >= 3 => (3, usize::from(bytes[2])),
        0x82 if bytes.len() >= 4 => (4, usize::from(bytes[2]) << 8 | usize::from(bytes[3])),
        _ => return Err(bad()),
    };
    let end = header + len;
    if end > bytes.len() {
        return Err(bad());
    }
    Ok(bytes.split_at(end))
}

/// A PKCS#8 key from unwrapped bytes; bytes after the DER element are tolerated here (the
/// `wrapped-pkcs8-is-der` case is the strict one).
fn pkcs8_key(bytes: &[u8]) -> Result<rsa::PrivateKey, String> {
    let (der, _) = split_der(bytes)?;
    rsa::PrivateKey::from_pkcs8_der(der).map_err(err("the unwrapped bytes are not PKCS#8"))
}

/// A software key, its PKCS#8 as imported, and the bytes the backend wrapped for it.
type Wrapped = (rsa::PrivateKey, Zeroizing<Vec<u8>>, Vec<u8>);

/// Wraps an extractable RSA key under a known AES key with RFC 5649 and unwraps it in software.
fn wrap_known_rsa(s: &dyn Session, kek_bytes: &[u8; 32], seed: u64) -> Result<Wrapped, String> {
    let kek = import_aes(s, kek_bytes, &policy(Usage::WRAP | Usage::UNWRAP))?;
    let (soft, der) = rsa_private_pkcs8(seed)?;
    let target = s
        .import_key(&KeyMaterial::RsaPrivatePkcs8(der.clone()), &policy(Usage::SIGN).extractable(true))
        .map_err(err("import RSA private key"))?;
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, target).map_err(err("wrap"))?;
    let mut buf = vec![0u8; wrapped.len()];
    let kwp = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(kek_bytes).map_err(err("kek"))?;
    let out = kwp
        .unwrap_key(&wrapped, &mut buf)
        .map_err(|_| "RustCrypto's RFC 5649 unwrap refuses the output".to_string())?
        .to_vec();
    Ok((soft, der, out))
}

fn wrapped_pkcs8_is_der(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (_, der, unwrapped) = wrap_known_rsa(s.as_ref(), &[0x23u8; 32], 13)?;
    let (_, rest) = split_der(&unwrapped)?;
    ensure(
        rest.is_empty(),
        &format!("{} bytes follow the PKCS#8 DER ({} bytes wrapped)", rest.len(), unwrapped.len()),
    )?;
    ensure(unwrapped.len() == der.len(), "the wrapped PKCS#8 is not the imported encoding")
}

fn aes_key_wrap_pad(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (soft, _, unwrapped) = wrap_known_rsa(s.as_ref(), &[0x22u8; 32], 3)?;
    ensure(pkcs8_key(&unwrapped)?.to_public_key() == soft.to_public_key(), "RFC 5649 output unwraps to another key")
}

/// KWP of a key whose length is a multiple of 8 (an AES-256 key): the one case where RFC 3394
/// (KW) could pass for RFC 5649 (KWP) by length, and where NSS's `CKM_AES_KEY_WRAP_PAD` (PKCS#7
/// padding, then RFC 3394) differs by eight bytes. The output must unwrap under RustCrypto's KWP,
/// and a confusion is named.
fn aes_kwp_aligned_key(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let kek_bytes = [0x3du8; 32];
    let kek = import_aes(s.as_ref(), &kek_bytes, &policy(Usage::WRAP | Usage::UNWRAP))?;
    let target_bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(11).wrapping_add(5)).collect();
    let target = import_aes(s.as_ref(), &target_bytes, &policy(Usage::ENCRYPT).extractable(true))?;
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, target).map_err(err("KWP wrap"))?;
    let kwp = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(&kek_bytes).map_err(err("kek"))?;
    let mut buf = [0u8; 48];
    if let Ok(out) = kwp.unwrap_key(&wrapped, &mut buf) {
        return ensure(out == target_bytes.as_slice(), "RFC 5649 output unwraps to other bytes");
    }
    let kw = <aes_kw::KwAes256 as aes_kw::KeyInit>::new_from_slice(&kek_bytes).map_err(err("kek"))?;
    let mut buf = [0u8; 48];
    match kw.unwrap_key(&wrapped, &mut buf) {
        Ok(out) if out == target_bytes.as_slice() => {
            Err("the KWP output is RFC 3394 (KW): the module wrapped with CKM_AES_KEY_WRAP where RFC 5649 was asked"
                .into())
        }
        Ok(out) if out.len() == 40 && out[..32] == target_bytes[..] && out[32..].iter().all(|b| *b == 8) => {
            Err("the KWP output is PKCS#7 padding then RFC 3394 (CKM_AES_KEY_WRAP_PAD as NSS defines it), not RFC 5649"
                .into())
        }
        _ => Err("RustCrypto's RFC 5649 unwrap refuses the output, and it is not RFC 3394 either".into()),
    }
}

/// A generic secret is generated with its length, and a known one wraps under RFC 5649 to what
/// RustCrypto unwraps, then unwraps back into the backend as a generic secret of the same length.
fn generic_secret(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let bits_of = |h: KeyHandle| -> Result<(Option<KeyType>, Option<u64>), String> {
        let attrs = s.attributes(h, &[AttrKind::KeyType, AttrKind::Bits]).map_err(err("attributes"))?;
        let (mut t, mut b) = (None, None);
        for a in attrs {
            match a {
                Attr::Value(_, AttrValue::KeyType(k)) => t = Some(k),
                Attr::Value(_, AttrValue::Number(n)) => b = Some(n),
                _ => {}
            }
        }
        Ok((t, b))
    };
    let made =
        s.generate_key(&KeySpec::GenericSecret { bytes: 32 }, &policy(Usage::empty())).map_err(err("generate"))?;
    ensure(bits_of(made)? == (Some(KeyType::GenericSecret), Some(256)), "a generated 32-byte generic secret")?;
    let kek_bytes = [0x5au8; 32];
    let kek = s
        .import_key(&KeyMaterial::Aes(Zeroizing::new(kek_bytes.to_vec())), &policy(Usage::WRAP | Usage::UNWRAP))
        .map_err(err("import KEK"))?;
    let secret: Vec<u8> = (1..=20).collect();
    let known = s
        .import_key(
            &KeyMaterial::GenericSecret(Zeroizing::new(secret.clone())),
            &policy(Usage::empty()).extractable(true),
        )
        .map_err(err("import secret"))?;
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, known).map_err(err("wrap"))?;
    let kwp = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(&kek_bytes).map_err(err("kek"))?;
    let mut buf = vec![0u8; wrapped.len()];
    let plain = kwp.unwrap_key(&wrapped, &mut buf).map_err(|_| "the wrapped secret is not RFC 5649".to_string())?;
    if plain != &secret[..] {
        return Err(format!(
            "the wrapped 20-byte generic secret unwraps to {} other bytes ({}the original followed by {:02x?})",
            plain.len(),
            if plain.starts_with(&secret) { "" } else { "not " },
            plain.get(secret.len()..).unwrap_or_default()
        ));
    }
    let back = s
        .unwrap_key(&Mechanism::AesKeyWrapPad, kek, &wrapped, KeyType::GenericSecret, &policy(Usage::empty()))
        .map_err(err("unwrap"))?;
    ensure(bits_of(back)? == (Some(KeyType::GenericSecret), Some(160)), "the unwrapped secret is 20 bytes")
}

fn rsa_aes_key_wrap(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let provider = rsa::PrivateKey::new(&mut seeded_rng(4), 2048).map_err(err("KEK"))?;
    let spki = provider.to_public_key().to_public_key_der().map_err(err("spki"))?.as_bytes().to_vec();
    let kek = s
        .import_key(&KeyMaterial::RsaPublicSpki(spki), &policy(Usage::WRAP | Usage::ENCRYPT))
        .map_err(err("import KEK"))?;
    let (soft, der) = rsa_private_pkcs8(5)?;
    let target = s
        .import_key(&KeyMaterial::RsaPrivatePkcs8(der), &policy(Usage::SIGN).extractable(true))
        .map_err(err("import target"))?;
    let blob = s
        .wrap_key(&Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 }, kek, target)
        .map_err(err("wrap"))?;
    let n = provider.size();
    ensure(blob.len() > n, "the wrapped blob is shorter than the KEK's modulus")?;
    let (head, tail) = blob.split_at(n);
    let eph = provider
        .decrypt(rsa::Oaep::<sha1::Sha1>::new(), head)
        .map_err(|_| "the first part is not RSA-OAEP(SHA-1) to the KEK".to_string())?;
    ensure(eph.len() == 32, "the ephemeral key is not AES-256")?;
    let mut buf = vec![0u8; tail.len()];
    let kwp = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(&eph).map_err(err("eph"))?;
    let pkcs8 = kwp
        .unwrap_key(tail, &mut buf)
        .map_err(|_| "the second part is not RFC 5649 under the ephemeral key".to_string())?;
    let back = pkcs8_key(pkcs8)?;
    ensure(back.to_public_key() == soft.to_public_key(), "the blob holds another key")
}

/// An RSA-AES blob made in software: the KEK's private half imported into the session for
/// unwrapping, the wrapped key's software copy, and OAEP(SHA-1) of an AES-256 key followed by
/// RFC 5649 of the key's PKCS#8.
fn software_rsa_aes_blob(s: &dyn Session) -> Result<(KeyHandle, rsa::PrivateKey, Vec<u8>), String> {
    let (provider, provider_der) = rsa_private_pkcs8(6)?;
    let kek = s
        .import_key(&KeyMaterial::RsaPrivatePkcs8(provider_der), &policy(Usage::UNWRAP | Usage::DECRYPT))
        .map_err(err("import KEK private key"))?;
    let (soft, der) = rsa_private_pkcs8(7)?;
    let eph = [0x33u8; 32];
    let mut blob = provider
        .to_public_key()
        .encrypt(&mut seeded_rng(8), rsa::Oaep::<sha1::Sha1>::new(), &eph)
        .map_err(err("oaep"))?;
    let kwp = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(&eph).map_err(err("eph"))?;
    let mut buf = vec![0u8; der.len() + 16];
    blob.extend_from_slice(kwp.wrap_key(&der, &mut buf).map_err(|_| "KWP in software".to_string())?);
    Ok((kek, soft, blob))
}

fn rsa_aes_key_unwrap(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (kek, soft, blob) = software_rsa_aes_blob(s.as_ref())?;
    let mech = Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 };
    let key = s.unwrap_key(&mech, kek, &blob, KeyType::Rsa, &policy(Usage::SIGN)).map_err(err("unwrap"))?;
    let sig =
        s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, key, b"unwrapped").map_err(err("sign with it"))?;
    let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).map_err(err("sig"))?;
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(soft.to_public_key())
        .verify(b"unwrapped", &sig)
        .map_err(|_| "the unwrapped key is not the one wrapped".to_string())?;
    Ok(())
}

fn rsa_aes_key_unwrap_damaged(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (kek, _, mut blob) = software_rsa_aes_blob(s.as_ref())?;
    let last = blob.len() - 1;
    blob[last] ^= 0x01;
    let mech = Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 };
    expect_kind(
        s.unwrap_key(&mech, kek, &blob, KeyType::Rsa, &policy(Usage::SIGN)),
        &[ErrorKind::WrappedKeyInvalid],
        "a damaged blob",
    )
}

fn policy_sign_not_permitted(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (_, private) = pair(s.as_ref(), &policy(Usage::DECRYPT | Usage::ENCRYPT))?;
    expect_kind(
        s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, private, b"m"),
        &[ErrorKind::KeyFunctionNotPermitted { missing: "Sign" }],
        "signing with a key without sign permission",
    )
}

fn policy_unextractable(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let kek = import_aes(s.as_ref(), &[0x44; 32], &policy(Usage::WRAP | Usage::UNWRAP))?;
    let (_, private) = pair(s.as_ref(), &policy(SIGNING))?;
    expect_kind(
        s.wrap_key(&Mechanism::AesKeyWrapPad, kek, private),
        &[ErrorKind::KeyUnextractable],
        "wrapping a non-extractable key",
    )
}

fn policy_wrap_with_trusted(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let kek = import_aes(s.as_ref(), &[0x55; 32], &policy(Usage::WRAP | Usage::UNWRAP))?;
    let mut p = policy(SIGNING).extractable(true);
    p.wrap_with_trusted = true;
    let (_, private) = pair(s.as_ref(), &p)?;
    expect_kind(
        s.wrap_key(&Mechanism::AesKeyWrapPad, kek, private),
        &[ErrorKind::KeyNotWrappable, ErrorKind::WrappingKeyTypeInconsistent],
        "wrapping a wrap-with-trusted key under an untrusted key",
    )
}

fn policy_narrowed_copy(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(SIGNING | Usage::DECRYPT | Usage::ENCRYPT))?;
    let narrow = policy(Usage::SIGN);
    let copy = s.copy_narrowed(private, &narrow).map_err(err("copy with fewer rights"))?;
    s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, copy, b"m").map_err(err("the copy signs"))?;
    let ct = public_of(s.as_ref(), public)?
        .encrypt(&mut seeded_rng(9), rsa::Oaep::<sha1::Sha1>::new(), b"x")
        .map_err(err("oaep"))?;
    s.decrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha1 }, private, &ct).map_err(err("the original decrypts"))?;
    expect_kind(
        s.decrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha1 }, copy, &ct),
        &[
            ErrorKind::KeyFunctionNotPermitted { missing: "Decrypt" },
            ErrorKind::KeyFunctionNotPermitted { missing: "" },
        ],
        "the narrowed copy decrypting",
    )
}

fn policy_no_widening(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (_, private) = pair(s.as_ref(), &policy(SIGNING))?;
    let wider = policy(SIGNING | Usage::DECRYPT);
    expect_kind(s.copy_narrowed(private, &wider), &[ErrorKind::ActionProhibited], "a copy with more rights")?;
    let extractable = policy(SIGNING).extractable(true);
    expect_kind(
        s.copy_narrowed(private, &extractable),
        &[ErrorKind::ActionProhibited],
        "an extractable copy of a non-extractable key",
    )
}

fn attributes_sensitive(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let p = policy(Usage::SIGN | Usage::VERIFY);
    let (public, private) = pair(s.as_ref(), &p)?;
    let attrs =
        s.attributes(private, &[AttrKind::Value, AttrKind::Label, AttrKind::Policy]).map_err(err("attributes"))?;
    ensure(attrs.len() == 3, "one answer per attribute")?;
    ensure(
        matches!(attrs[0], Attr::Sensitive(AttrKind::Value) | Attr::Invalid(AttrKind::Value)),
        "the private value is not reported as sensitive",
    )?;
    ensure(
        attrs[1] == Attr::Value(AttrKind::Label, AttrValue::Text(p.label.clone().unwrap_or_default())),
        "the label reads back",
    )?;
    match &attrs[2] {
        Attr::Value(_, AttrValue::Policy(read)) => {
            ensure(read.usage.contains(Usage::SIGN) && !read.usage.contains(Usage::DECRYPT), "usage reads back")?;
            ensure(read.sensitive && !read.extractable, "sensitive, not extractable")?;
        }
        other => return Err(format!("policy: {other:?}")),
    }
    let bits = s.attributes(public, &[AttrKind::Bits]).map_err(err("bits"))?;
    ensure(bits == vec![Attr::Value(AttrKind::Bits, AttrValue::Number(2048))], "the public key is 2048 bits")
}

fn find_and_destroy(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let p = policy(Usage::WRAP);
    let key = s.generate_key(&KeySpec::Aes { bits: 128 }, &p).map_err(err("generate AES"))?;
    let filter = KeyFilter { label: p.label.clone(), ..KeyFilter::default() };
    let found = s.find_keys(&filter).map_err(err("find"))?;
    ensure(found == vec![key], "find returns the key, once")?;
    s.destroy(key).map_err(err("destroy"))?;
    ensure(s.find_keys(&filter).map_err(err("find"))?.is_empty(), "the key is gone")?;
    expect_kind(
        s.attributes(key, &[AttrKind::Bits]),
        &[ErrorKind::KeyHandleInvalid, ErrorKind::ObjectHandleInvalid],
        "a destroyed key",
    )
}

fn foreign_handle(ctx: &Ctx<'_>) -> R {
    let a = ctx.session()?;
    let b = ctx.session()?;
    let key = a.generate_key(&KeySpec::Aes { bits: 128 }, &policy(Usage::WRAP)).map_err(err("generate"))?;
    expect_kind(
        b.destroy(key),
        &[ErrorKind::KeyHandleInvalid, ErrorKind::ObjectHandleInvalid],
        "another session's handle",
    )?;
    a.destroy(key).map_err(err("the owner destroys it"))
}

fn random(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
    s.random(&mut x).map_err(err("random"))?;
    s.random(&mut y).map_err(err("random"))?;
    ensure(x != [0u8; 32] && x != y, "two draws of 32 random bytes are equal or zero")
}

fn rsa_oaep_encrypt(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let soft = rsa::PrivateKey::new(&mut seeded_rng(10), 2048).map_err(err("software key"))?;
    let spki = soft.to_public_key().to_public_key_der().map_err(err("spki"))?.as_bytes().to_vec();
    let public =
        s.import_key(&KeyMaterial::RsaPublicSpki(spki), &policy(Usage::ENCRYPT)).map_err(err("import public key"))?;
    let ct = s.encrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha1 }, public, b"to the KEK").map_err(err("encrypt"))?;
    let pt = soft
        .decrypt(rsa::Oaep::<sha1::Sha1>::new(), &ct)
        .map_err(|_| "RustCrypto cannot decrypt the module's OAEP".to_string())?;
    ensure(pt == b"to the KEK", "RustCrypto decrypts the module's OAEP to other bytes")
}

fn logout_ends_private_use(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (_, private) = pair(s.as_ref(), &policy(SIGNING))?;
    let mech = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 };
    s.sign(&mech, private, b"m").map_err(err("sign while logged in"))?;
    s.logout().map_err(err("logout"))?;
    let after = s.sign(&mech, private, b"m");
    // Log back in for whatever runs next, before judging.
    drop(ctx.session()?);
    expect_kind(
        after,
        &[ErrorKind::NotLoggedIn, ErrorKind::KeyHandleInvalid, ErrorKind::ObjectHandleInvalid],
        "signing after C_Logout",
    )
}

/// SP 800-38A's AES-128 key and four plaintext blocks.
const SP800_38A_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const SP800_38A_PT: &str = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
const SP800_38A_IV: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_default()
}

/// An AES key with the standard's value, usable to encrypt and decrypt.
fn sp800_38a_key(s: &dyn Session) -> Result<KeyHandle, String> {
    import_aes(s, &unhex(SP800_38A_KEY), &policy(Usage::ENCRYPT | Usage::DECRYPT))
}

/// Encrypts `pt` with `mech`, compares with `want`, and decrypts back.
fn aes_known_answer(s: &dyn Session, mech: &Mechanism, pt: &[u8], want: &[u8]) -> R {
    let key = sp800_38a_key(s)?;
    let ct = s.encrypt(mech, key, pt).map_err(err("encrypt"))?;
    ensure(ct == want, &format!("{} differs from the standard's known answer", mech.describe()))?;
    let back = s.decrypt(mech, key, &ct).map_err(err("decrypt"))?;
    ensure(back == pt, "decrypting the known answer does not give the plaintext")
}

fn aes_ecb(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let want = unhex(
        "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4",
    );
    aes_known_answer(s.as_ref(), &Mechanism::AesEcb, &unhex(SP800_38A_PT), &want)?;
    let key = sp800_38a_key(s.as_ref())?;
    expect_kind(s.encrypt(&Mechanism::AesEcb, key, &[0u8; 15]), &[ErrorKind::DataLenRange], "a partial block")
}

fn aes_cbc(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let want = unhex(
        "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
    );
    aes_known_answer(s.as_ref(), &Mechanism::AesCbc { iv: SP800_38A_IV }, &unhex(SP800_38A_PT), &want)
}

fn aes_cbc_pad(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let key = sp800_38a_key(s.as_ref())?;
    let mech = Mechanism::AesCbcPad { iv: SP800_38A_IV };
    let pt = unhex(SP800_38A_PT);
    let ct = s.encrypt(&mech, key, &pt).map_err(err("encrypt"))?;
    // Whole blocks gain one block of padding; before it, CBC's known answer.
    ensure(ct.len() == pt.len() + 16, "a full padding block follows whole blocks")?;
    let cbc = unhex(
        "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
    );
    ensure(ct[..64] == cbc[..], "the blocks before the padding differ from CBC's known answer")?;
    ensure(s.decrypt(&mech, key, &ct).map_err(err("decrypt"))? == pt, "the padding is not removed")?;
    let short = s.encrypt(&mech, key, b"abc").map_err(err("encrypt 3 bytes"))?;
    ensure(short.len() == 16, "three bytes pad to one block")?;
    ensure(s.decrypt(&mech, key, &short).map_err(err("decrypt 3 bytes"))? == b"abc", "three bytes come back")?;
    // Without its padding block the last block ends in 0x10 but is not padding.
    expect_kind(s.decrypt(&mech, key, &ct[..64]), &[ErrorKind::EncryptedDataInvalid], "a bad pad")
}

fn rsa_oaep_sha2(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::ENCRYPT | Usage::DECRYPT))?;
    let key = public_of(s.as_ref(), public)?;
    let mut rng = seeded_rng(5);
    for hash in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
        let ct = match hash {
            HashAlg::Sha256 => key.encrypt(&mut rng, rsa::Oaep::<sha2::Sha256>::new(), b"sha-2 oaep"),
            HashAlg::Sha384 => key.encrypt(&mut rng, rsa::Oaep::<sha2::Sha384>::new(), b"sha-2 oaep"),
            _ => key.encrypt(&mut rng, rsa::Oaep::<sha2::Sha512>::new(), b"sha-2 oaep"),
        }
        .map_err(err("OAEP in RustCrypto"))?;
        let pt = s.decrypt(&Mechanism::RsaOaep { hash }, private, &ct).map_err(err(hash.name()))?;
        ensure(pt == b"sha-2 oaep", &format!("OAEP with {} decrypts to something else", hash.name()))?;
    }
    Ok(())
}

fn aes_ctr(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let mut counter = [0u8; 16];
    counter.copy_from_slice(&unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
    let want = unhex(
        "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee",
    );
    aes_known_answer(s.as_ref(), &Mechanism::AesCtr { counter, counter_bits: 128 }, &unhex(SP800_38A_PT), &want)
}

fn aes_gcm(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let key =
        import_aes(s.as_ref(), &unhex("feffe9928665731c6d6a8f9467308308"), &policy(Usage::ENCRYPT | Usage::DECRYPT))?;
    let mech = Mechanism::AesGcm {
        iv: unhex("cafebabefacedbaddecaf888"),
        aad: unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
        tag_bits: 128,
    };
    let pt = unhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    );
    let want = unhex(
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e0915bc94fbc3221a5db94fae95ae7121a47",
    );
    let ct = s.encrypt(&mech, key, &pt).map_err(err("encrypt"))?;
    ensure(ct == want, "AES-GCM differs from the known answer (ciphertext and tag)")?;
    ensure(s.decrypt(&mech, key, &ct).map_err(err("decrypt"))? == pt, "AES-GCM does not decrypt its known answer")?;
    // A changed tag, a changed ciphertext byte and other AAD are all refused, with nothing out.
    let mut tag = ct.clone();
    *tag.last_mut().unwrap_or(&mut 0) ^= 1;
    let mut body = ct.clone();
    body[0] ^= 1;
    let other_aad = Mechanism::AesGcm { iv: unhex("cafebabefacedbaddecaf888"), aad: b"other".to_vec(), tag_bits: 128 };
    for (what, m, c) in
        [("a changed tag", &mech, &tag), ("a changed byte", &mech, &body), ("other AAD", &other_aad, &ct)]
    {
        expect_kind(s.decrypt(m, key, c), &[ErrorKind::EncryptedDataInvalid], what)?;
    }
    Ok(())
}

fn rsa_oaep_label(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (public, private) = pair(s.as_ref(), &policy(Usage::ENCRYPT | Usage::DECRYPT))?;
    let key = public_of(s.as_ref(), public)?;
    let label = b"hsmkit label \x00\xff".to_vec();
    let ct = key
        .encrypt(&mut seeded_rng(6), rsa::Oaep::<sha1::Sha1>::new_with_label(label.clone()), b"labelled")
        .map_err(err("OAEP with a label in RustCrypto"))?;
    let mech = Mechanism::RsaOaepLabel { hash: HashAlg::Sha1, label: label.clone() };
    let pt = s.decrypt(&mech, private, &ct).map_err(err("decrypt with the label"))?;
    ensure(pt == b"labelled", "OAEP with a label decrypts to something else")?;
    // Another label, or none, is refused like any damaged ciphertext.
    let other = Mechanism::RsaOaepLabel { hash: HashAlg::Sha1, label: b"another".to_vec() };
    expect_kind(s.decrypt(&other, private, &ct), &[ErrorKind::EncryptedDataInvalid], "another label")?;
    expect_kind(
        s.decrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha1 }, private, &ct),
        &[ErrorKind::EncryptedDataInvalid],
        "no label",
    )?;
    // The module encrypts with a label, under a key whose private half RustCrypto holds.
    let rc = rsa::PrivateKey::new(&mut seeded_rng(7), 2048).map_err(err("RustCrypto key"))?;
    let spki = rsa::pkcs8::EncodePublicKey::to_public_key_der(&rc.to_public_key()).map_err(err("SPKI"))?;
    let theirs = s
        .import_key(&KeyMaterial::RsaPublicSpki(spki.as_bytes().to_vec()), &policy(Usage::ENCRYPT))
        .map_err(err("import the public key"))?;
    let sealed = s.encrypt(&mech, theirs, b"back").map_err(err("encrypt with the label"))?;
    let back = rc
        .decrypt(rsa::Oaep::<sha1::Sha1>::new_with_label(label), &sealed)
        .map_err(|_| "RustCrypto cannot open the module's labelled OAEP".to_string())?;
    ensure(back == b"back", "RustCrypto opens the module's labelled OAEP to something else")
}

fn aes_cmac(ctx: &Ctx<'_>) -> R {
    let s = ctx.session()?;
    let key = import_aes(s.as_ref(), &unhex(SP800_38A_KEY), &policy(Usage::SIGN | Usage::VERIFY))?;
    // RFC 4493's examples 1 and 2 (the same key as SP 800-38A).
    for (message, tag) in [
        (Vec::new(), "bb1d6929e95937287fa37d129b756746"),
        (unhex("6bc1bee22e409f96e93d7e117393172a"), "070a16b46b4d4144f79bdd9dd04a287c"),
    ] {
        let got = s.sign(&Mechanism::AesCmac, key, &message).map_err(err("CMAC"))?;
        ensure(got == unhex(tag), "AES-CMAC differs from RFC 4493's known answer")?;
        s.verify(&Mechanism::AesCmac, key, &message, &got).map_err(err("verify the known answer"))?;
    }
    let mut bad = unhex("070a16b46b4d4144f79bdd9dd04a287c");
    bad[15] ^= 1;
    expect_kind(
        s.verify(&Mechanism::AesCmac, key, &unhex("6bc1bee22e409f96e93d7e117393172a"), &bad),
        &[ErrorKind::SignatureInvalid],
        "a wrong tag",
    )
}

/// Triple DES (legacy): SP 800-67's worked example in ECB, CBC checked with RustCrypto's `des`,
/// a CBC-PAD round trip, and a generated key of odd parity and three distinct DES keys.
fn des3(ctx: &Ctx<'_>) -> R {
    use des::cipher::{BlockCipherEncrypt as _, KeyInit as _};
    let listed = ctx.backend.capabilities().map_err(err("read the mechanism list"))?;
    if listed.mechanism(hsmkit_backend::MechanismKind::Des3Ecb).is_none() {
        return Err(crate::not_listed("CKM_DES3_ECB"));
    }
    let s = ctx.session()?;
    let key_bytes = unhex("0123456789abcdef23456789abcdef01456789abcdef0123");
    let key = s
        .import_key(&KeyMaterial::Des3(Zeroizing::new(key_bytes.clone())), &policy(Usage::ENCRYPT | Usage::DECRYPT))
        .map_err(err("import a DES3 key"))?;
    let pt = b"The qufck brown fox jump".to_vec();
    let ct = s.encrypt(&Mechanism::Des3Ecb, key, &pt).map_err(err("DES3-ECB"))?;
    ensure(
        ct == unhex("a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900"),
        "DES3-ECB differs from SP 800-67's example",
    )?;
    ensure(s.decrypt(&Mechanism::Des3Ecb, key, &ct).map_err(err("DES3-ECB decrypt"))? == pt, "DES3-ECB round trip")?;
    let iv = [7u8; 8];
    let cbc = s.encrypt(&Mechanism::Des3Cbc { iv }, key, &pt).map_err(err("DES3-CBC"))?;
    let rc = des::TdesEde3::new_from_slice(&key_bytes).map_err(err("RustCrypto DES3"))?;
    let mut chain = iv;
    let mut want = Vec::new();
    for block in pt.chunks(8) {
        let mut b = des::cipher::Array::<u8, des::cipher::consts::U8>::default();
        b.iter_mut().zip(block.iter().zip(chain)).for_each(|(o, (p, c))| *o = p ^ c);
        rc.encrypt_block(&mut b);
        chain.copy_from_slice(&b);
        want.extend_from_slice(&b);
    }
    ensure(cbc == want, "DES3-CBC differs from RustCrypto's")?;
    let padded = s.encrypt(&Mechanism::Des3CbcPad { iv }, key, b"seven!!").map_err(err("DES3-CBC-PAD"))?;
    ensure(padded.len() == 8, "seven bytes pad to one block")?;
    ensure(
        s.decrypt(&Mechanism::Des3CbcPad { iv }, key, &padded).map_err(err("DES3-CBC-PAD decrypt"))? == b"seven!!",
        "DES3-CBC-PAD round trip",
    )?;
    let readable = KeyPolicy { sensitive: false, extractable: true, ..policy(Usage::ENCRYPT | Usage::DECRYPT) };
    let made = s.generate_key(&KeySpec::Des3, &readable).map_err(err("generate a DES3 key"))?;
    let value = match s.attributes(made, &[AttrKind::Value]).map_err(err("read the value"))?.pop() {
        Some(Attr::Value(_, AttrValue::Secret(v))) => v.to_vec(),
        other => return Err(format!("the generated key's CKA_VALUE is {other:?}")),
    };
    ensure(value.len() == 24, "a DES3 key is 24 bytes")?;
    ensure(value.iter().all(|b| b.count_ones() % 2 == 1), "a generated DES3 key has odd parity")?;
    ensure(value[..8] != value[8..16] && value[8..16] != value[16..], "a generated DES3 key is three distinct keys")
}

/// A DES3-CBC-PAD ciphertext whose pad is wrong is refused as invalid encrypted data.
fn des3_cbc_pad_damaged(ctx: &Ctx<'_>) -> R {
    let listed = ctx.backend.capabilities().map_err(err("read the mechanism list"))?;
    if listed.mechanism(hsmkit_backend::MechanismKind::Des3CbcPad).is_none() {
        return Err(crate::not_listed("CKM_DES3_CBC_PAD"));
    }
    let s = ctx.session()?;
    let key = s
        .import_key(
            &KeyMaterial::Des3(Zeroizing::new(unhex("0123456789abcdef23456789abcdef01456789abcdef0123"))),
            &policy(Usage::ENCRYPT | Usage::DECRYPT),
        )
        .map_err(err("import a DES3 key"))?;
    let iv = [7u8; 8];
    // A whole block of data encrypted without padding: its last byte is not a valid pad.
    let ct = s.encrypt(&Mechanism::Des3Cbc { iv }, key, b"eight!!\x00").map_err(err("DES3-CBC"))?;
    expect_kind(
        s.decrypt(&Mechanism::Des3CbcPad { iv }, key, &ct),
        &[ErrorKind::EncryptedDataInvalid],
        "a block whose pad is wrong",
    )
}

/// AES-GCM with an 8-byte and a 60-byte IV and 96- and 64-bit tags, as RustCrypto's `aes-gcm`
/// computes them; a changed tag is refused.
fn aes_gcm_sizes(ctx: &Ctx<'_>) -> R {
    use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
    let s = ctx.session()?;
    let key_bytes = unhex("feffe9928665731c6d6a8f9467308308");
    let key = import_aes(s.as_ref(), &key_bytes, &policy(Usage::ENCRYPT | Usage::DECRYPT))?;
    let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let pt = unhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    );
    // The GCM specification's test case 5 (an 8-byte IV) and 6 (a 60-byte IV).
    let iv8 = unhex("cafebabefacedbad");
    let iv60 = unhex(
        "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b",
    );
    macro_rules! rc {
        ($nonce:ty, $tag:ty, $iv:expr) => {{
            let c = aes_gcm::AesGcm::<aes_gcm::aes::Aes128, $nonce, $tag>::new_from_slice(&key_bytes)
                .map_err(err("RustCrypto AES-GCM key"))?;
            let nonce = aes_gcm::Nonce::<$nonce>::try_from(&$iv[..]).map_err(|_| "the IV's length".to_string())?;
            c.encrypt(&nonce, Payload { msg: &pt, aad: &aad }).map_err(|_| "RustCrypto AES-GCM failed".to_string())?
        }};
    }
    use aes_gcm::aead::consts::{U8, U12, U16, U60};
    for (iv, tag_bits, want) in
        [(&iv8, 128u16, rc!(U8, U16, &iv8)), (&iv60, 128, rc!(U60, U16, &iv60)), (&iv60, 96, rc!(U60, U12, &iv60))]
    {
        let mech = Mechanism::AesGcm { iv: iv.clone(), aad: aad.clone(), tag_bits };
        let ct =
            s.encrypt(&mech, key, &pt).map_err(err(&format!("AES-GCM, {}-byte IV, {tag_bits}-bit tag", iv.len())))?;
        ensure(
            ct == want,
            &format!("AES-GCM with a {}-byte IV and a {tag_bits}-bit tag differs from RustCrypto's", iv.len()),
        )?;
        ensure(s.decrypt(&mech, key, &ct).map_err(err("decrypt"))? == pt, "AES-GCM does not decrypt its own output")?;
        let mut bad = ct.clone();
        *bad.last_mut().unwrap_or(&mut 0) ^= 1;
        expect_kind(s.decrypt(&mech, key, &bad), &[ErrorKind::EncryptedDataInvalid], "a changed tag")?;
    }
    // A 64-bit tag is the full tag's left half.
    let full = s
        .encrypt(&Mechanism::AesGcm { iv: iv8.clone(), aad: aad.clone(), tag_bits: 128 }, key, &pt)
        .map_err(err("128-bit tag"))?;
    let short = s
        .encrypt(&Mechanism::AesGcm { iv: iv8.clone(), aad: aad.clone(), tag_bits: 64 }, key, &pt)
        .map_err(err("64-bit tag"))?;
    ensure(short.as_slice() == &full[..full.len() - 8], "a 64-bit tag is not the full tag's left half")
}

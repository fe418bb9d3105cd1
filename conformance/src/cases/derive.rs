//! Key derivation cases (`C_DeriveKey`): ECDH checked against RustCrypto's agreement, HKDF against
//! RFC 5869, the SP 800-108 counter-mode KDF against an HMAC computed here, AES-CBC encryption of
//! data against SP 800-38A, and `CKA_DERIVE` honoured. Cases need only what the backend lists.

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, EcCurve, ErrorKind, HashAlg, KdfParam, KdfPrf, KeyHandle, KeyMaterial, KeyPairSpec,
    KeyPolicy, KeySpec, Mechanism, MechanismKind, Session, Usage,
};
use zeroize::Zeroizing;

use super::{R, SP800_38A_IV, SP800_38A_KEY, SP800_38A_PT, ensure, err, expect_kind, import_aes, policy, unhex};

/// Whether the backend lists `kind`; a case that needs it says so when it does not.
fn need(ctx: &super::Ctx<'_>, kind: MechanismKind) -> Result<bool, String> {
    Ok(ctx.backend.capabilities().map_err(err("read the mechanism list"))?.mechanism(kind).is_some())
}

/// A derived key's policy: readable, so its value can be checked.
pub(super) fn readable() -> KeyPolicy {
    KeyPolicy { sensitive: false, extractable: true, ..policy(Usage::ENCRYPT | Usage::DECRYPT) }
}

pub(super) fn value_of(s: &dyn Session, key: KeyHandle) -> Result<Zeroizing<Vec<u8>>, String> {
    match s.attributes(key, &[AttrKind::Value]).map_err(err("read CKA_VALUE"))?.pop() {
        Some(Attr::Value(_, AttrValue::Secret(v))) => Ok(v),
        Some(Attr::Value(_, AttrValue::Bytes(v))) => Ok(Zeroizing::new(v)),
        other => Err(format!("the derived key's CKA_VALUE is {other:?}")),
    }
}

fn import_secret(s: &dyn Session, bytes: &[u8], usage: Usage) -> Result<KeyHandle, String> {
    s.import_key(&KeyMaterial::GenericSecret(Zeroizing::new(bytes.to_vec())), &policy(usage))
        .map_err(err("import a generic secret"))
}

/// A P-256 pair on the module with `CKA_DERIVE`, a RustCrypto key, their shared secret as
/// RustCrypto computes it, and RustCrypto's public point.
type Agreement = (KeyHandle, Vec<u8>, Vec<u8>);

fn agreement(ctx: &super::Ctx<'_>, s: &dyn Session) -> Result<Agreement, String> {
    if !need(ctx, MechanismKind::Ecdh1Derive)? {
        return Err(crate::not_listed("CKM_ECDH1_DERIVE"));
    }
    let (public, private) = s
        .generate_key_pair(&KeyPairSpec::Ec { curve: EcCurve::P256 }, &policy(Usage::DERIVE | Usage::VERIFY))
        .map_err(err("generate a P-256 pair with CKA_DERIVE"))?;
    let point = match s.attributes(public, &[AttrKind::EcPoint]).map_err(err("read CKA_EC_POINT"))?.pop() {
        Some(Attr::Value(_, AttrValue::Bytes(b))) => {
            EcCurve::P256.point_from_attribute(&b).ok_or("CKA_EC_POINT is not a P-256 point")?
        }
        other => return Err(format!("CKA_EC_POINT is {other:?}")),
    };
    let theirs = p256::SecretKey::from_slice(&[0x5a; 32]).map_err(err("RustCrypto's key"))?;
    let their_point = p256::ecdsa::VerifyingKey::from(theirs.public_key()).to_sec1_point(false).as_bytes().to_vec();
    let module_public = p256::PublicKey::from_sec1_bytes(&point).map_err(err("the module's point"))?;
    let z = p256::ecdh::diffie_hellman(theirs.to_nonzero_scalar(), module_public.as_affine());
    let z = z.raw_secret_bytes().to_vec();
    Ok((private, z, their_point))
}

/// ECDH on P-256 without a KDF: the module's key and a RustCrypto key agree on the same secret (a
/// shorter key takes the secret's trailing bytes); a point off the curve and a base key without
/// `CKA_DERIVE` are refused.
pub(super) fn ecdh_p256(ctx: &super::Ctx<'_>) -> R {
    let s = ctx.session()?;
    let (private, z, their_point) = agreement(ctx, s.as_ref())?;
    let theirs = p256::SecretKey::from_slice(&[0x5a; 32]).map_err(err("RustCrypto's key"))?;
    let plain = Mechanism::Ecdh1Derive { kdf: None, shared_data: Vec::new(), public: their_point.clone() };
    let k = s
        .derive_key(&plain, private, &KeySpec::GenericSecret { bytes: 32 }, &readable())
        .map_err(err("ECDH without a KDF"))?;
    ensure(value_of(s.as_ref(), k)?.as_slice() == z.as_slice(), "ECDH's secret differs from RustCrypto's")?;
    let short = s
        .derive_key(&plain, private, &KeySpec::GenericSecret { bytes: 16 }, &readable())
        .map_err(err("a 16-byte key from ECDH"))?;
    ensure(
        value_of(s.as_ref(), short)?.as_slice() == &z[16..],
        "a shorter key is not the secret's trailing bytes (PKCS#11 3.1 §2.3.9 truncates from the leading end)",
    )?;

    let mut off = p256::ecdsa::VerifyingKey::from(theirs.public_key()).to_sec1_point(false).as_bytes().to_vec();
    off[64] ^= 1;
    let bad = Mechanism::Ecdh1Derive { kdf: None, shared_data: Vec::new(), public: off };
    expect_kind(
        s.derive_key(&bad, private, &KeySpec::GenericSecret { bytes: 32 }, &readable()),
        &[ErrorKind::MechanismParamInvalid, ErrorKind::DataInvalid, ErrorKind::FunctionFailed],
        "a point off the curve",
    )?;
    let (_, no_derive) = s
        .generate_key_pair(&KeyPairSpec::Ec { curve: EcCurve::P256 }, &policy(Usage::SIGN | Usage::VERIFY))
        .map_err(err("generate a pair without CKA_DERIVE"))?;
    match s.derive_key(&plain, no_derive, &KeySpec::GenericSecret { bytes: 32 }, &readable()) {
        Err(e) if matches!(e.kind(), ErrorKind::KeyFunctionNotPermitted { .. }) => Ok(()),
        Err(e) => {
            Err(format!("ECDH with a key whose CKA_DERIVE is false: expected CKR_KEY_FUNCTION_NOT_PERMITTED, got {e}"))
        }
        Ok(_) => Err("ECDH with a key whose CKA_DERIVE is false succeeded".into()),
    }
}

/// ECDH on P-256 through the ANSI X9.63 KDF with SHA-256 and shared info (`CKD_SHA256_KDF`).
pub(super) fn ecdh_x963_kdf(ctx: &super::Ctx<'_>) -> R {
    use sha2::Digest as _;
    let s = ctx.session()?;
    let (private, z, their_point) = agreement(ctx, s.as_ref())?;
    let shared = b"hsmkit shared info".to_vec();
    let kdf = Mechanism::Ecdh1Derive { kdf: Some(HashAlg::Sha256), shared_data: shared.clone(), public: their_point };
    let k = s
        .derive_key(&kdf, private, &KeySpec::GenericSecret { bytes: 48 }, &readable())
        .map_err(err("ECDH with the X9.63 KDF"))?;
    let mut want = Vec::new();
    for counter in 1u32..=2 {
        let mut h = sha2::Sha256::new();
        h.update(&z);
        h.update(counter.to_be_bytes());
        h.update(&shared);
        want.extend(h.finalize());
    }
    ensure(value_of(s.as_ref(), k)?.as_slice() == &want[..48], "the X9.63 KDF's output differs")
}

/// HKDF-SHA256, RFC 5869 §A.1 (test case 1), and the extract step alone (its PRK).
pub(super) fn hkdf(ctx: &super::Ctx<'_>) -> R {
    if !need(ctx, MechanismKind::HkdfDerive)? {
        return Err(crate::not_listed("CKM_HKDF_DERIVE"));
    }
    let s = ctx.session()?;
    let ikm = import_secret(s.as_ref(), &[0x0b; 22], Usage::DERIVE)?;
    let mech = |extract, expand| Mechanism::HkdfDerive {
        hash: HashAlg::Sha256,
        extract,
        expand,
        salt: unhex("000102030405060708090a0b0c"),
        info: unhex("f0f1f2f3f4f5f6f7f8f9"),
    };
    let okm = s
        .derive_key(&mech(true, true), ikm, &KeySpec::GenericSecret { bytes: 42 }, &readable())
        .map_err(err("HKDF"))?;
    ensure(
        value_of(s.as_ref(), okm)?.as_slice()
            == unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
        "HKDF differs from RFC 5869's OKM",
    )?;
    let prk = s
        .derive_key(&mech(true, false), ikm, &KeySpec::GenericSecret { bytes: 32 }, &readable())
        .map_err(err("HKDF's extract step"))?;
    ensure(
        value_of(s.as_ref(), prk)?.as_slice()
            == unhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"),
        "HKDF's extract step differs from RFC 5869's PRK",
    )
}

/// The SP 800-108 KDF in counter mode with HMAC-SHA256 (a 32-bit big-endian counter, label, 0x00,
/// context, a 32-bit length), checked against HMAC computed here.
pub(super) fn sp800_108_counter(ctx: &super::Ctx<'_>) -> R {
    use hmac::{KeyInit as _, Mac as _};
    if !need(ctx, MechanismKind::Sp800108CounterKdf)? {
        return Err(crate::not_listed("CKM_SP800_108_COUNTER_KDF"));
    }
    let s = ctx.session()?;
    let key_bytes = unhex("dff1e50ac0b69dc40f1051d46c2b069c");
    let base = import_secret(s.as_ref(), &key_bytes, Usage::DERIVE)?;
    let (label, context) = (b"hsmkit label".to_vec(), b"hsmkit context".to_vec());
    let params = vec![
        KdfParam::Counter { little_endian: false, bits: 32 },
        KdfParam::Bytes(label.clone()),
        KdfParam::Bytes(vec![0]),
        KdfParam::Bytes(context.clone()),
        KdfParam::DkmLength { little_endian: false, bits: 32 },
    ];
    let mech = Mechanism::Sp800108Counter { prf: KdfPrf::Hmac(HashAlg::Sha256), params };
    let k = s
        .derive_key(&mech, base, &KeySpec::GenericSecret { bytes: 40 }, &readable())
        .map_err(err("the counter-mode KDF"))?;
    let mut want = Vec::new();
    for i in 1u32..=2 {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key_bytes).map_err(err("HMAC key"))?;
        mac.update(&i.to_be_bytes());
        mac.update(&label);
        mac.update(&[0]);
        mac.update(&context);
        mac.update(&(40u32 * 8).to_be_bytes());
        want.extend(mac.finalize().into_bytes());
    }
    ensure(value_of(s.as_ref(), k)?.as_slice() == &want[..40], "the SP 800-108 KDF's output differs")?;
    let no_counter =
        Mechanism::Sp800108Counter { prf: KdfPrf::Hmac(HashAlg::Sha256), params: vec![KdfParam::Bytes(label)] };
    expect_kind(
        s.derive_key(&no_counter, base, &KeySpec::GenericSecret { bytes: 16 }, &readable()),
        &[ErrorKind::MechanismParamInvalid],
        "counter mode without a counter",
    )
}

/// `CKM_AES_CBC_ENCRYPT_DATA`: the derived key is SP 800-38A F.2.1's first ciphertext block.
pub(super) fn aes_cbc_encrypt_data(ctx: &super::Ctx<'_>) -> R {
    if !need(ctx, MechanismKind::AesCbcEncryptData)? {
        return Err(crate::not_listed("CKM_AES_CBC_ENCRYPT_DATA"));
    }
    let s = ctx.session()?;
    let base = import_aes(s.as_ref(), &unhex(SP800_38A_KEY), &policy(Usage::DERIVE))?;
    let mech = Mechanism::AesCbcEncryptData { iv: SP800_38A_IV, data: unhex(SP800_38A_PT)[..16].to_vec() };
    let k = s.derive_key(&mech, base, &KeySpec::Aes { bits: 128 }, &readable()).map_err(err("derive"))?;
    ensure(
        value_of(s.as_ref(), k)?.as_slice() == unhex("7649abac8119b246cee98e9b12e9197d"),
        "the derived key is not the AES-CBC encryption of the data",
    )
}

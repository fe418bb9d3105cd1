//! Elliptic-curve cases: key pairs on P-256, P-384 and P-521 and their attributes, ECDSA with
//! and without hashing inside, imports, and Ed25519, each signature checked with RustCrypto
//! (`p256`, `p384`, `p521`) or against RFC 8032's known answers, never with the module itself.

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, EcCurve, ErrorKind, HashAlg, KeyHandle, KeyMaterial, KeyPairSpec, KeyType, Mechanism,
    Session, Usage,
};
use zeroize::Zeroizing;

use super::{R, ensure, err, expect_kind, policy, unhex};

/// The bytes of attribute `kind` of `key`.
pub(super) fn bytes_of(s: &dyn Session, key: KeyHandle, kind: AttrKind) -> Result<Vec<u8>, String> {
    match s.attributes(key, &[kind]).map_err(err("read an attribute"))?.as_slice() {
        [Attr::Value(_, AttrValue::Bytes(b))] => Ok(b.clone()),
        other => Err(format!("{kind:?} is {other:?}")),
    }
}

/// The public point of `public`, after checking `CKA_EC_PARAMS` names `curve` and `CKA_EC_POINT`
/// is the DER OCTET STRING of an uncompressed point (PKCS#11 3.1 §2.3.3).
pub(super) fn point_of(s: &dyn Session, public: KeyHandle, curve: EcCurve) -> Result<Vec<u8>, String> {
    let params = bytes_of(s, public, AttrKind::EcParams)?;
    ensure(params == curve.params(), &format!("CKA_EC_PARAMS is not the DER of {}'s OID", curve.name()))?;
    let point = bytes_of(s, public, AttrKind::EcPoint)?;
    ensure(point.first() == Some(&0x04), "CKA_EC_POINT is not a DER OCTET STRING")?;
    let inner = curve.point_from_attribute(&point).ok_or("CKA_EC_POINT does not hold a point of the curve's size")?;
    ensure(EcCurve::point_attribute(&inner) == point, "CKA_EC_POINT is a bare point, not a DER OCTET STRING")?;
    Ok(inner)
}

/// Checks an ECDSA signature `r || s` over `prehash` with RustCrypto.
pub(super) fn rc_verify(curve: EcCurve, point: &[u8], prehash: &[u8], sig: &[u8]) -> R {
    use signature::hazmat::PrehashVerifier as _;
    // ECDSA reads a digest shorter than the order as the same integer with zeros in front
    // (FIPS 186-5 §6.4.1); RustCrypto takes only digests of at least half the field's length.
    // (Zeros up to whole bytes within the order's length: 65 bytes on P-521.)
    let mut padded = vec![0u8; (curve.bits() as usize / 8).saturating_sub(prehash.len())];
    padded.extend_from_slice(prehash);
    let prehash = &padded[..];
    macro_rules! check {
        ($m:ident) => {{
            let key = $m::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(err("the point is not on the curve"))?;
            let s = $m::ecdsa::Signature::from_slice(sig).map_err(err("the signature is not r || s"))?;
            key.verify_prehash(prehash, &s).map_err(|_| "RustCrypto refuses the module's ECDSA signature".to_string())
        }};
    }
    match curve {
        EcCurve::P256 => check!(p256),
        EcCurve::P384 => check!(p384),
        EcCurve::P521 => check!(p521),
        EcCurve::Ed25519 => Err("not an ECDSA curve".into()),
    }
}

pub(super) fn digest(hash: HashAlg, data: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    match hash {
        HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
        HashAlg::Sha224 => sha2::Sha224::digest(data).to_vec(),
        HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
        HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
        HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
    }
}

/// A generated pair on `curve`: attributes as the specification encodes them; ECDSA with the
/// curve's hash inside, with SHA-1, and over the caller's digest, each checked by RustCrypto;
/// the module's verification of its own signatures, and its refusal of a damaged one.
fn ecdsa_generated(ctx: &super::Ctx<'_>, curve: EcCurve, hash: HashAlg) -> R {
    let s = ctx.session()?;
    let p = policy(Usage::SIGN | Usage::VERIFY);
    let (public, private) = s
        .generate_key_pair(&KeyPairSpec::Ec { curve }, &p)
        .map_err(err(&format!("generate an EC key pair on {}", curve.name())))?;
    let point = point_of(s.as_ref(), public, curve)?;
    for (key, class) in [(public, "public"), (private, "private")] {
        match s.attributes(key, &[AttrKind::KeyType]).map_err(err("read CKA_KEY_TYPE"))?.as_slice() {
            [Attr::Value(_, AttrValue::KeyType(KeyType::Ec))] => {}
            other => return Err(format!("the {class} key's CKA_KEY_TYPE is {other:?}, not CKK_EC")),
        }
    }
    ensure(
        bytes_of(s.as_ref(), private, AttrKind::EcParams)? == curve.params(),
        "the private key's CKA_EC_PARAMS differs from the curve's",
    )?;
    let data = b"hsmkit conformance: ECDSA";
    // CKM_ECDSA is checked always; the mechanisms that hash inside, where the backend lists them.
    let listed = listed(ctx)?;
    for (mech, prehash) in [
        (Mechanism::Ecdsa { hash: None }, digest(hash, data)),
        (Mechanism::Ecdsa { hash: Some(hash) }, digest(hash, data)),
        (Mechanism::Ecdsa { hash: Some(HashAlg::Sha1) }, digest(HashAlg::Sha1, data)),
        (Mechanism::Ecdsa { hash: Some(HashAlg::Sha224) }, digest(HashAlg::Sha224, data)),
        // A digest shorter than the order (SHA-1 with CKM_ECDSA), which ECDSA reads as it is, and a
        // longer one (SHA-512), whose right-hand bits it drops.
        (Mechanism::Ecdsa { hash: None }, digest(HashAlg::Sha1, data)),
        (Mechanism::Ecdsa { hash: None }, digest(HashAlg::Sha512, data)),
    ]
    .into_iter()
    .filter(|(m, _)| listed.contains(&m.kind()))
    {
        let input: &[u8] = if matches!(mech, Mechanism::Ecdsa { hash: None }) { &prehash } else { data };
        let sig = s.sign(&mech, private, input).map_err(err(&format!("sign with {}", mech.describe())))?;
        ensure(sig.len() == curve.signature_len(), "the signature is not r || s of the curve's size")?;
        rc_verify(curve, &point, &prehash, &sig).map_err(|e| format!("{}: {e}", mech.describe()))?;
        s.verify(&mech, public, input, &sig).map_err(err("the module's verification of its own signature"))?;
        let mut bad = sig.clone();
        bad[sig.len() / 2] ^= 1;
        expect_kind(s.verify(&mech, public, input, &bad), &[ErrorKind::SignatureInvalid], "a damaged signature")?;
    }
    Ok(())
}

/// The mechanisms the backend lists.
fn listed(ctx: &super::Ctx<'_>) -> Result<Vec<hsmkit_backend::MechanismKind>, String> {
    Ok(ctx.backend.capabilities().map_err(err("read the mechanism list"))?.mechanisms.iter().map(|m| m.kind).collect())
}

pub(super) fn ecdsa_p256(ctx: &super::Ctx<'_>) -> R {
    ecdsa_generated(ctx, EcCurve::P256, HashAlg::Sha256)
}

pub(super) fn ecdsa_p384(ctx: &super::Ctx<'_>) -> R {
    ecdsa_generated(ctx, EcCurve::P384, HashAlg::Sha384)
}

pub(super) fn ecdsa_p521(ctx: &super::Ctx<'_>) -> R {
    ecdsa_generated(ctx, EcCurve::P521, HashAlg::Sha512)
}

/// A P-256 key made by RustCrypto, imported whole (PKCS#8) and as its public half alone: the
/// module signs with the private key what RustCrypto verifies, and verifies what RustCrypto signs.
pub(super) fn ec_import(ctx: &super::Ctx<'_>) -> R {
    use p256::pkcs8::EncodePrivateKey as _;
    use signature::Signer as _;
    let s = ctx.session()?;
    let secret =
        p256::SecretKey::from_slice(&unhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"))
            .map_err(err("the known P-256 key"))?;
    let pkcs8 = Zeroizing::new(secret.to_pkcs8_der().map_err(err("PKCS#8"))?.as_bytes().to_vec());
    let private = s
        .import_key(&KeyMaterial::EcPrivatePkcs8(pkcs8), &policy(Usage::SIGN))
        .map_err(err("import the P-256 private key"))?;
    let point = p256::ecdsa::VerifyingKey::from(secret.public_key()).to_sec1_point(false).as_bytes().to_vec();
    ensure(
        bytes_of(s.as_ref(), private, AttrKind::EcParams)? == EcCurve::P256.params(),
        "the imported key's CKA_EC_PARAMS is not P-256's",
    )?;
    let data = b"sample";
    let sig = s.sign(&Mechanism::Ecdsa { hash: None }, private, &digest(HashAlg::Sha256, data)).map_err(err("sign"))?;
    rc_verify(EcCurve::P256, &point, &digest(HashAlg::Sha256, data), &sig)?;

    let public = s
        .import_key(&KeyMaterial::EcPublicSpki(EcCurve::P256.spki(&point)), &policy(Usage::VERIFY))
        .map_err(err("import the P-256 public key"))?;
    ensure(point_of(s.as_ref(), public, EcCurve::P256)? == point, "the imported public key has another point")?;
    let theirs: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(&secret).sign(data);
    let mech = Mechanism::Ecdsa { hash: None };
    let d = digest(HashAlg::Sha256, data);
    s.verify(&mech, public, &d, &theirs.to_bytes()).map_err(err("verify RustCrypto's signature"))?;
    expect_kind(
        s.verify(&mech, public, &digest(HashAlg::Sha256, b"other"), &theirs.to_bytes()),
        &[ErrorKind::SignatureInvalid],
        "a signature over other data",
    )?;
    expect_kind(
        s.verify(&mech, public, &d, &theirs.to_bytes()[..63]),
        &[ErrorKind::SignatureLenRange, ErrorKind::SignatureInvalid],
        "a short signature",
    )?;
    // A point that is not on the curve is refused at import.
    let mut off = point.clone();
    off[64] ^= 1;
    expect_kind(
        s.import_key(&KeyMaterial::EcPublicSpki(EcCurve::P256.spki(&off)), &policy(Usage::VERIFY)),
        &[ErrorKind::DataInvalid, ErrorKind::AttributeValueInvalid, ErrorKind::TemplateInconsistent],
        "a point off the curve",
    )
}

/// RFC 8032 §7.1 test 1 (the empty message) and test 2: an imported Ed25519 key signs exactly the
/// known signatures (EdDSA is deterministic), and a generated key's signatures verify.
pub(super) fn ed25519(ctx: &super::Ctx<'_>) -> R {
    let s = ctx.session()?;
    for (seed, public, message, want) in [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ] {
        // RFC 8410's PrivateKeyInfo: version 0, id-Ed25519, the seed as an OCTET STRING.
        let mut pkcs8 = Zeroizing::new(unhex("302e020100300506032b657004220420"));
        pkcs8.extend(unhex(seed));
        let key = s
            .import_key(&KeyMaterial::EcPrivatePkcs8(pkcs8), &policy(Usage::SIGN))
            .map_err(err("import the RFC 8032 key"))?;
        let sig = s.sign(&Mechanism::Eddsa, key, &unhex(message)).map_err(err("sign with CKM_EDDSA"))?;
        ensure(sig == unhex(want), "Ed25519 differs from RFC 8032's known answer")?;
        let pk = s
            .import_key(&KeyMaterial::EcPublicSpki(EcCurve::Ed25519.spki(&unhex(public))), &policy(Usage::VERIFY))
            .map_err(err("import the RFC 8032 public key"))?;
        s.verify(&Mechanism::Eddsa, pk, &unhex(message), &sig).map_err(err("verify the known answer"))?;
        expect_kind(
            s.verify(&Mechanism::Eddsa, pk, b"other", &sig),
            &[ErrorKind::SignatureInvalid],
            "a signature over other data",
        )?;
    }
    let (public, private) = s
        .generate_key_pair(&KeyPairSpec::Ec { curve: EcCurve::Ed25519 }, &policy(Usage::SIGN | Usage::VERIFY))
        .map_err(err("generate an Ed25519 key pair"))?;
    match s.attributes(public, &[AttrKind::KeyType]).map_err(err("read CKA_KEY_TYPE"))?.as_slice() {
        [Attr::Value(_, AttrValue::KeyType(KeyType::EcEdwards))] => {}
        other => return Err(format!("an Ed25519 key's CKA_KEY_TYPE is {other:?}, not CKK_EC_EDWARDS")),
    }
    let params = bytes_of(s.as_ref(), public, AttrKind::EcParams)?;
    ensure(EcCurve::from_params(&params) == Some(EcCurve::Ed25519), "CKA_EC_PARAMS does not name Ed25519")?;
    let point = bytes_of(s.as_ref(), public, AttrKind::EcPoint)?;
    ensure(EcCurve::Ed25519.point_from_attribute(&point).is_some(), "CKA_EC_POINT is not a 32-byte Ed25519 key")?;
    let sig = s.sign(&Mechanism::Eddsa, private, b"generated").map_err(err("sign with a generated key"))?;
    s.verify(&Mechanism::Eddsa, public, b"generated", &sig).map_err(err("verify with the generated key"))
}

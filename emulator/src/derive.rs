//! Key derivation (`C_DeriveKey`): ECDH (SP 800-56A) with the ANSI X9.63 KDF or none, HKDF
//! (RFC 5869), the SP 800-108 KDF in counter mode, and AES-CBC encryption of data.
//!
//! Each function returns exactly `len` bytes of keying material or a clear error; the material is
//! zeroized when dropped.

use zeroize::Zeroizing;

use hsmkit_backend::{EcCurve, Error, ErrorKind, HashAlg, KdfParam, KdfPrf, Mechanism, Op, Result};

use crate::keys;

const OP: Op = Op::DeriveKey;

fn param_invalid(why: impl Into<String>) -> Error {
    Error::new(ErrorKind::MechanismParamInvalid, OP).detail(why.into())
}

fn too_long(what: &str, max: usize, len: usize) -> Error {
    Error::new(ErrorKind::KeySizeRange, OP).detail(format!("{what} makes at most {max} bytes, not {len}"))
}

/// The ECDH shared secret (the shared point's x-coordinate) of `private` on `curve` and the peer
/// point `peer` (uncompressed, bare or as a DER OCTET STRING); a point off the curve is refused.
pub fn ecdh_secret(curve: EcCurve, private_pkcs8: &[u8], peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    use p256::pkcs8::DecodePrivateKey as _;
    let point = curve.point_from_attribute(peer).ok_or_else(|| {
        param_invalid(format!("the other party's public data is not an uncompressed point on {}", curve.name()))
    })?;
    let off = || param_invalid(format!("the other party's point is not on {}", curve.name()));
    let bad_key = || Error::new(ErrorKind::KeyTypeInconsistent, OP).detail("the base key does not load as an EC key");
    macro_rules! agree {
        ($m:ident) => {{
            let secret = $m::SecretKey::from_pkcs8_der(private_pkcs8).map_err(|_| bad_key())?;
            let peer = $m::PublicKey::from_sec1_bytes(&point).map_err(|_| off())?;
            let shared = $m::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
            Zeroizing::new(shared.raw_secret_bytes().to_vec())
        }};
    }
    Ok(match curve {
        EcCurve::P256 => agree!(p256),
        EcCurve::P384 => agree!(p384),
        EcCurve::P521 => agree!(p521),
        EcCurve::Ed25519 => {
            return Err(Error::new(ErrorKind::KeyTypeInconsistent, OP)
                .detail("an Ed25519 key signs; it agrees no keys (CKM_ECDH1_DERIVE takes CKK_EC keys)"));
        }
    })
}

fn digest(hash: HashAlg, parts: &[&[u8]]) -> Vec<u8> {
    use aws_lc_rs::digest;
    let alg = match hash {
        HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha224 => &digest::SHA224,
        HashAlg::Sha256 => &digest::SHA256,
        HashAlg::Sha384 => &digest::SHA384,
        HashAlg::Sha512 => &digest::SHA512,
    };
    let mut ctx = digest::Context::new(alg);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

/// The ANSI X9.63 KDF (SEC 1 §3.6.1): `Hash(Z || counter || SharedInfo)` for counter = 1, 2, …
pub fn x963_kdf(hash: HashAlg, z: &[u8], shared_info: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + hash.output_len()));
    let mut counter: u32 = 1;
    while out.len() < len {
        out.extend(digest(hash, &[z, &counter.to_be_bytes(), shared_info]));
        counter += 1;
    }
    out.truncate(len);
    out
}

/// HKDF (RFC 5869): extract with `salt` (empty: a hash-length of zeros), expand with `info`;
/// either step may be left out, as `CK_HKDF_PARAMS` allows.
pub fn hkdf(
    hash: HashAlg,
    ikm: &[u8],
    salt: &[u8],
    info: &[u8],
    extract: bool,
    expand: bool,
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let h = hash.output_len();
    if !extract && !expand {
        return Err(param_invalid("HKDF needs the extract step, the expand step, or both"));
    }
    let prk = if extract {
        let zeros = vec![0u8; h];
        Zeroizing::new(keys::hmac_sign(hash, if salt.is_empty() { &zeros } else { salt }, ikm))
    } else {
        Zeroizing::new(ikm.to_vec())
    };
    if !expand {
        if len > prk.len() {
            return Err(too_long("HKDF's extract step", prk.len(), len));
        }
        return Ok(Zeroizing::new(prk[..len].to_vec()));
    }
    if len > 255 * h {
        return Err(too_long("HKDF", 255 * h, len));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len + h));
    let mut t: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    let mut i: u8 = 1;
    while out.len() < len {
        let mut input = Zeroizing::new(t.to_vec());
        input.extend_from_slice(info);
        input.push(i);
        t = Zeroizing::new(keys::hmac_sign(hash, &prk, &input));
        out.extend_from_slice(&t);
        i = i.wrapping_add(1);
    }
    out.truncate(len);
    Ok(out)
}

/// `value` in `bits` bits (whole bytes), big- or little-endian; refused if it does not fit.
fn encode(value: u64, bits: u8, little_endian: bool, what: &str) -> Result<Vec<u8>> {
    if bits == 0 || !bits.is_multiple_of(8) || bits > 64 {
        return Err(param_invalid(format!("the {what} is {bits} bits wide; use 8 to 64 bits in whole bytes")));
    }
    if bits < 64 && value >> bits != 0 {
        return Err(param_invalid(format!("the {what} ({value}) does not fit in {bits} bits")));
    }
    let bytes = usize::from(bits / 8);
    let be = value.to_be_bytes();
    let mut out = be[8 - bytes..].to_vec();
    if little_endian {
        out.reverse();
    }
    Ok(out)
}

/// The SP 800-108 KDF in counter mode: `K(i) = PRF(key, fixed input with i and L)`, the blocks
/// concatenated and cut to `len` bytes. The fixed input needs exactly one counter.
pub fn sp800_108_counter(prf: KdfPrf, key: &[u8], params: &[KdfParam], len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let counters = params.iter().filter(|p| matches!(p, KdfParam::Counter { .. })).count();
    if counters != 1 {
        return Err(param_invalid(format!(
            "the counter-mode KDF's fixed input has exactly one iteration counter, not {counters}"
        )));
    }
    let block = match prf {
        KdfPrf::Hmac(h) => h.output_len(),
        KdfPrf::AesCmac => 16,
    };
    let blocks = len.div_ceil(block);
    let mut out = Zeroizing::new(Vec::with_capacity(blocks * block));
    for i in 1..=blocks {
        let mut input = Zeroizing::new(Vec::new());
        for p in params {
            match p {
                KdfParam::Counter { little_endian, bits } => {
                    input.extend(encode(i as u64, *bits, *little_endian, "iteration counter")?);
                }
                KdfParam::DkmLength { little_endian, bits } => {
                    input.extend(encode((len as u64).saturating_mul(8), *bits, *little_endian, "length")?);
                }
                KdfParam::Bytes(b) => input.extend_from_slice(b),
            }
        }
        let k = match prf {
            KdfPrf::Hmac(h) => keys::hmac_sign(h, key, &input),
            KdfPrf::AesCmac => keys::cmac_sign(key, &input, OP)?,
        };
        out.extend(k);
    }
    out.truncate(len);
    Ok(out)
}

/// `CKM_AES_CBC_ENCRYPT_DATA`: the first `len` bytes of AES-CBC(`key`, `iv`, `data`).
pub fn aes_cbc_encrypt_data(key: &[u8], iv: [u8; 16], data: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>> {
    if data.is_empty() || !data.len().is_multiple_of(16) {
        return Err(param_invalid(format!("CKM_AES_CBC_ENCRYPT_DATA takes whole 16-byte blocks, not {}", data.len())));
    }
    if len > data.len() {
        return Err(too_long("CKM_AES_CBC_ENCRYPT_DATA with this data", data.len(), len));
    }
    let mut out = keys::aes_crypt(key, &Mechanism::AesCbc { iv }, data, true)?;
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    #[test]
    fn hkdf_matches_rfc_5869_test_case_1() {
        let okm = hkdf(
            HashAlg::Sha256,
            &[0x0b; 22],
            &unhex("000102030405060708090a0b0c"),
            &unhex("f0f1f2f3f4f5f6f7f8f9"),
            true,
            true,
            42,
        )
        .expect("hkdf");
        assert_eq!(
            hex::encode(&okm[..]),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn the_counter_kdf_with_cmac_is_cmac_over_each_block_input() {
        let key = unhex("2b7e151628aed2a6abf7158809cf4f3c");
        let params = [
            KdfParam::Counter { little_endian: true, bits: 16 },
            KdfParam::Bytes(b"label".to_vec()),
            KdfParam::DkmLength { little_endian: false, bits: 24 },
        ];
        let out = sp800_108_counter(KdfPrf::AesCmac, &key, &params, 20).expect("kdf");
        let block = |i: u8| {
            let mut input = vec![i, 0];
            input.extend_from_slice(b"label");
            input.extend_from_slice(&[0, 0, 160]);
            keys::cmac_sign(&key, &input, OP).expect("cmac")
        };
        let mut want = block(1);
        want.extend(block(2));
        assert_eq!(&out[..], &want[..20]);
    }

    #[test]
    fn counters_refuse_what_does_not_fit() {
        assert_eq!(encode(258, 16, false, "x").expect("fits"), vec![1, 2]);
        assert_eq!(encode(258, 16, true, "x").expect("fits"), vec![2, 1]);
        assert!(encode(256, 8, false, "x").is_err());
        assert!(encode(1, 12, false, "x").is_err());
        let none = sp800_108_counter(KdfPrf::Hmac(HashAlg::Sha256), b"k", &[KdfParam::Bytes(vec![1])], 32);
        assert!(none.is_err(), "no counter");
    }
}

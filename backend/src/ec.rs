//! Elliptic curves as PKCS#11 names and encodes them: `CKA_EC_PARAMS` (the DER of the curve's
//! object identifier), `CKA_EC_POINT` (the DER OCTET STRING of the public point), and the
//! SubjectPublicKeyInfo and PKCS#8 forms the seam carries EC keys in.

use crate::types::KeyType;

/// The DER of `id-ecPublicKey` (1.2.840.10045.2.1), the algorithm of NIST-curve keys.
const ID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// An elliptic curve hsmkit knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EcCurve {
    /// NIST P-256 (`prime256v1`, `secp256r1`).
    P256,
    /// NIST P-384 (`secp384r1`).
    P384,
    /// NIST P-521 (`secp521r1`).
    P521,
    /// Edwards25519, for Ed25519 signatures (`CKK_EC_EDWARDS`, RFC 8032).
    Ed25519,
}

impl EcCurve {
    /// Every curve.
    pub const ALL: [EcCurve; 4] = [EcCurve::P256, EcCurve::P384, EcCurve::P521, EcCurve::Ed25519];

    /// `CKA_EC_PARAMS`: the DER of the curve's object identifier (a named curve).
    pub fn params(self) -> &'static [u8] {
        match self {
            EcCurve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            EcCurve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            EcCurve::P521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
            EcCurve::Ed25519 => &[0x06, 0x03, 0x2b, 0x65, 0x70],
        }
    }

    /// The curve `CKA_EC_PARAMS` names: the DER of a named curve's object identifier, or, for
    /// Ed25519, the PrintableString `edwards25519` PKCS#11 3.0 also allows. Explicit curve
    /// parameters are not taken.
    pub fn from_params(der: &[u8]) -> Option<EcCurve> {
        if der == b"\x13\x0cedwards25519" {
            return Some(EcCurve::Ed25519);
        }
        EcCurve::ALL.into_iter().find(|c| c.params() == der)
    }

    /// The curve a name given on a command line or in a template means: `P-256`, `NISTP256`,
    /// `prime256v1`, `secp256r1`, `Ed25519` and their kin, in any case.
    pub fn from_name(name: &str) -> Option<EcCurve> {
        let n = name.to_ascii_lowercase().replace(['-', '_'], "");
        match n.as_str() {
            "p256" | "nistp256" | "prime256v1" | "secp256r1" => Some(EcCurve::P256),
            "p384" | "nistp384" | "secp384r1" => Some(EcCurve::P384),
            "p521" | "nistp521" | "secp521r1" => Some(EcCurve::P521),
            "ed25519" | "edwards25519" => Some(EcCurve::Ed25519),
            _ => None,
        }
    }

    /// The conventional name (`P-256`, `Ed25519`).
    pub fn name(self) -> &'static str {
        match self {
            EcCurve::P256 => "P-256",
            EcCurve::P384 => "P-384",
            EcCurve::P521 => "P-521",
            EcCurve::Ed25519 => "Ed25519",
        }
    }

    /// The size PKCS#11 gives keys on this curve, in bits (the order's length; 255 for Ed25519).
    pub fn bits(self) -> u32 {
        match self {
            EcCurve::P256 => 256,
            EcCurve::P384 => 384,
            EcCurve::P521 => 521,
            EcCurve::Ed25519 => 255,
        }
    }

    /// The key type of keys on this curve (`CKK_EC`, or `CKK_EC_EDWARDS` for Ed25519).
    pub fn key_type(self) -> KeyType {
        match self {
            EcCurve::Ed25519 => KeyType::EcEdwards,
            _ => KeyType::Ec,
        }
    }

    /// Length of a field element or private scalar in bytes.
    pub fn field_len(self) -> usize {
        match self {
            EcCurve::P256 | EcCurve::Ed25519 => 32,
            EcCurve::P384 => 48,
            EcCurve::P521 => 66,
        }
    }

    /// Length of an encoded public point: uncompressed SEC 1 (`04 || x || y`) for NIST curves,
    /// 32 bytes for Ed25519.
    pub fn point_len(self) -> usize {
        match self {
            EcCurve::Ed25519 => 32,
            c => 1 + 2 * c.field_len(),
        }
    }

    /// Length of a signature (`r || s` for ECDSA as PKCS#11 gives it, `R || S` for Ed25519).
    pub fn signature_len(self) -> usize {
        2 * self.field_len()
    }

    /// `CKA_EC_POINT` for `point`: a DER OCTET STRING around it.
    pub fn point_attribute(point: &[u8]) -> Vec<u8> {
        let mut out = vec![0x04];
        push_len(&mut out, point.len());
        out.extend_from_slice(point);
        out
    }

    /// The point a `CKA_EC_POINT` value carries on this curve: a DER OCTET STRING around the
    /// encoded point, as the specification has it, or the bare point, as some applications send
    /// it. `None` if it is neither, or the point has the wrong length or form.
    pub fn point_from_attribute(self, value: &[u8]) -> Option<Vec<u8>> {
        let inner = match read_tlv(value, 0x04) {
            Some((inner, [])) => inner,
            _ => value,
        };
        let ok = inner.len() == self.point_len() && (self == EcCurve::Ed25519 || inner[0] == 0x04);
        // A bare uncompressed point of the right length also parses as an OCTET STRING when its
        // second byte happens to match; the length check above settles which reading is right.
        if ok {
            return Some(inner.to_vec());
        }
        let bare_ok = value.len() == self.point_len() && (self == EcCurve::Ed25519 || value[0] == 0x04);
        bare_ok.then(|| value.to_vec())
    }

    /// The SubjectPublicKeyInfo DER of the public key `point` on this curve.
    pub fn spki(self, point: &[u8]) -> Vec<u8> {
        let mut alg = Vec::new();
        match self {
            EcCurve::Ed25519 => alg.extend_from_slice(self.params()),
            _ => {
                alg.extend_from_slice(ID_EC_PUBLIC_KEY);
                alg.extend_from_slice(self.params());
            }
        }
        let mut body = tlv(0x30, &alg);
        let mut bits = vec![0u8];
        bits.extend_from_slice(point);
        body.extend(tlv(0x03, &bits));
        tlv(0x30, &body)
    }

    /// The curve and public point of an EC or Ed25519 SubjectPublicKeyInfo; `None` for anything
    /// else (another algorithm, explicit parameters, trailing bytes, a point of the wrong size).
    pub fn parse_spki(spki: &[u8]) -> Option<(EcCurve, Vec<u8>)> {
        let (body, rest) = read_tlv(spki, 0x30)?;
        if !rest.is_empty() {
            return None;
        }
        let (alg, rest) = read_tlv(body, 0x30)?;
        let (bits, rest) = read_tlv(rest, 0x03)?;
        if !rest.is_empty() {
            return None;
        }
        let curve = curve_of_algorithm(alg)?;
        let (unused, point) = bits.split_first()?;
        (*unused == 0 && curve.point_from_attribute(point).as_deref() == Some(point)).then(|| (curve, point.to_vec()))
    }

    /// The curve of a PKCS#8 `PrivateKeyInfo` holding an EC or Ed25519 key; `None` for another
    /// algorithm or a structure that does not parse this far.
    pub fn of_pkcs8(der: &[u8]) -> Option<EcCurve> {
        let (body, _) = read_tlv(der, 0x30)?;
        let (_version, rest) = read_tlv(body, 0x02)?;
        let (alg, _) = read_tlv(rest, 0x30)?;
        curve_of_algorithm(alg)
    }
}

impl EcCurve {
    /// The curve and private value of a PKCS#8 `PrivateKeyInfo` holding an EC key (the scalar
    /// of its RFC 5915 `ECPrivateKey`, left-padded to the field's length) or an Ed25519 key (its
    /// 32-byte seed, RFC 8410): what PKCS#11 carries in `CKA_VALUE`. `None` for anything else.
    pub fn parse_pkcs8(der: &[u8]) -> Option<(EcCurve, zeroize::Zeroizing<Vec<u8>>)> {
        let curve = EcCurve::of_pkcs8(der)?;
        let (body, _) = read_tlv(der, 0x30)?;
        let (_version, rest) = read_tlv(body, 0x02)?;
        let (_alg, rest) = read_tlv(rest, 0x30)?;
        let (private, _) = read_tlv(rest, 0x04)?;
        let value = match curve {
            EcCurve::Ed25519 => {
                let (seed, tail) = read_tlv(private, 0x04)?;
                (tail.is_empty() && seed.len() == 32).then_some(seed)?
            }
            _ => {
                let (inner, _) = read_tlv(private, 0x30)?;
                let (version, rest) = read_tlv(inner, 0x02)?;
                let (d, _) = read_tlv(rest, 0x04)?;
                (version == [1] && !d.is_empty() && d.len() <= curve.field_len()).then_some(d)?
            }
        };
        let mut out = zeroize::Zeroizing::new(vec![0u8; curve.field_len() - value.len()]);
        out.extend_from_slice(value);
        Some((curve, out))
    }
}

/// The curve an `AlgorithmIdentifier`'s contents name: `id-ecPublicKey` with a named curve, or
/// `id-Ed25519` (with no parameters).
fn curve_of_algorithm(alg: &[u8]) -> Option<EcCurve> {
    if alg == EcCurve::Ed25519.params() {
        return Some(EcCurve::Ed25519);
    }
    let params = alg.strip_prefix(ID_EC_PUBLIC_KEY)?;
    EcCurve::from_params(params).filter(|c| *c != EcCurve::Ed25519)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// Reads one DER element with tag `tag` (definite, minimal lengths up to 64 KiB): its contents and
/// what follows it.
fn read_tlv(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = der.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81 => {
            let (&n, rest) = rest.split_first()?;
            (n >= 0x80).then_some((usize::from(n), rest))?
        }
        0x82 => {
            let [hi, lo, rest @ ..] = rest else { return None };
            let n = usize::from(*hi) << 8 | usize::from(*lo);
            (n >= 0x100).then_some((n, rest))?
        }
        _ => return None,
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_and_names() {
        for c in EcCurve::ALL {
            assert_eq!(EcCurve::from_params(c.params()), Some(c));
            assert_eq!(EcCurve::from_name(c.name()), Some(c));
        }
        assert_eq!(EcCurve::from_params(b"\x13\x0cedwards25519"), Some(EcCurve::Ed25519));
        assert_eq!(EcCurve::from_name("NISTP256"), Some(EcCurve::P256));
        assert_eq!(EcCurve::from_name("secp384r1"), Some(EcCurve::P384));
        assert_eq!(EcCurve::from_params(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]), None, "secp256k1");
        assert_eq!(EcCurve::from_name("brainpoolP256r1"), None);
    }

    #[test]
    fn points_are_octet_strings_and_bare_points_are_taken() {
        let mut p = vec![0x04];
        p.extend([7u8; 132]);
        let attr = EcCurve::point_attribute(&p);
        assert_eq!(&attr[..3], &[0x04, 0x81, 133]);
        assert_eq!(EcCurve::P521.point_from_attribute(&attr), Some(p.clone()));
        assert_eq!(EcCurve::P521.point_from_attribute(&p), Some(p.clone()));
        assert_eq!(EcCurve::P256.point_from_attribute(&attr), None, "wrong curve");
        assert_eq!(EcCurve::P521.point_from_attribute(&attr[..attr.len() - 1]), None, "truncated");
        let mut compressed = p.clone();
        compressed[0] = 0x02;
        assert_eq!(EcCurve::P521.point_from_attribute(&EcCurve::point_attribute(&compressed)), None);
    }

    #[test]
    fn spki_round_trips_and_refuses_damage() {
        let mut p = vec![0x04];
        p.extend([9u8; 64]);
        let spki = EcCurve::P256.spki(&p);
        assert_eq!(EcCurve::parse_spki(&spki), Some((EcCurve::P256, p.clone())));
        let ed = EcCurve::Ed25519.spki(&[3u8; 32]);
        assert_eq!(ed.len(), 44, "RFC 8410's 44-byte Ed25519 SubjectPublicKeyInfo");
        assert_eq!(EcCurve::parse_spki(&ed), Some((EcCurve::Ed25519, vec![3u8; 32])));
        for cut in 0..spki.len() {
            assert_eq!(EcCurve::parse_spki(&spki[..cut]), None, "truncated at {cut}");
        }
        let mut trailing = spki.clone();
        trailing.push(0);
        assert_eq!(EcCurve::parse_spki(&trailing), None);
    }
}

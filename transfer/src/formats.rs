//! Today's transfer formats, made by the same engine: the Azure Key Vault `.byok` (JSON), AWS KMS
//! import material and Google Cloud KMS import jobs. Each is `CKM_RSA_AES_KEY_WRAP` output
//! (RSA-OAEP of an ephemeral AES-256 key, then RFC 5649 of the PKCS#8 key) with the hash and key
//! sizes its service requires; each service's rules are checked before anything is wrapped.

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::Serialize;

use hsmkit_backend::{EcCurve, Error, ErrorKind, HashAlg, Mechanism, Op, Result};

/// The key a format is asked to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKey {
    /// An RSA private key of this many bits.
    Rsa(u32),
    /// An EC private key on this curve.
    Ec(EcCurve),
}

impl TransferKey {
    /// The key of a SubjectPublicKeyInfo (RSA or EC); `None` for anything else.
    pub fn of_spki(spki: &[u8]) -> Option<TransferKey> {
        use rsa::pkcs8::DecodePublicKey as _;
        use rsa::traits::PublicKeyParts as _;
        if let Some((curve, _)) = EcCurve::parse_spki(spki) {
            return Some(TransferKey::Ec(curve));
        }
        rsa::PublicKey::from_public_key_der(spki).ok().map(|k| TransferKey::Rsa(k.n().bit_width()))
    }

    /// Its size in bits (the modulus', or the curve's).
    pub fn bits(self) -> u32 {
        match self {
            TransferKey::Rsa(b) => b,
            TransferKey::Ec(c) => c.bits(),
        }
    }

    /// `RSA-2048`, `EC P-256`.
    pub fn describe(self) -> String {
        match self {
            TransferKey::Rsa(b) => format!("RSA-{b}"),
            TransferKey::Ec(c) => format!("EC {}", c.name()),
        }
    }
}

/// AWS KMS wrapping algorithms (`GetParametersForImport` `WrappingAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsAlgorithm {
    /// `RSA_AES_KEY_WRAP_SHA_1`.
    RsaAesKeyWrapSha1,
    /// `RSA_AES_KEY_WRAP_SHA_256`.
    RsaAesKeyWrapSha256,
    /// `RSAES_OAEP_SHA_1` (symmetric key material only).
    RsaesOaepSha1,
    /// `RSAES_OAEP_SHA_256` (symmetric key material only).
    RsaesOaepSha256,
}

/// A target format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Azure Key Vault BYOK file (`CKM_RSA_AES_KEY_WRAP`, OAEP SHA-1).
    AzureKeyVault,
    /// AWS KMS `EncryptedKeyMaterial`.
    Aws(AwsAlgorithm),
    /// Google Cloud KMS import method 1 to 6 (`ImportJob.ImportMethod`).
    Gcp(u8),
}

fn bad(what: String, hint: &str) -> Error {
    Error::new(ErrorKind::ArgumentsBad, Op::WrapKey).detail(what).hint(hint.to_string())
}

impl Format {
    /// Parses `azure-kv`, `aws` (with an AWS algorithm name, default `RSA_AES_KEY_WRAP_SHA_256`) or
    /// `gcp` (with an import method number, default 3: `RSA_OAEP_3072_SHA256_AES_256`).
    pub fn parse(name: &str, aws_algorithm: Option<&str>, gcp_method: Option<u8>) -> Result<Format> {
        match name {
            "azure-kv" => Ok(Format::AzureKeyVault),
            "aws" => Ok(Format::Aws(match aws_algorithm.unwrap_or("RSA_AES_KEY_WRAP_SHA_256") {
                "RSA_AES_KEY_WRAP_SHA_1" => AwsAlgorithm::RsaAesKeyWrapSha1,
                "RSA_AES_KEY_WRAP_SHA_256" => AwsAlgorithm::RsaAesKeyWrapSha256,
                "RSAES_OAEP_SHA_1" => AwsAlgorithm::RsaesOaepSha1,
                "RSAES_OAEP_SHA_256" => AwsAlgorithm::RsaesOaepSha256,
                other => {
                    return Err(bad(
                        format!("unknown AWS wrapping algorithm '{other}'"),
                        "use RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
                    ));
                }
            })),
            "gcp" => match gcp_method.unwrap_or(3) {
                m @ 1..=6 => Ok(Format::Gcp(m)),
                m => Err(bad(format!("there is no Google Cloud KMS import method {m}"), "use 1 to 6")),
            },
            other => Err(bad(format!("unknown format '{other}'"), "use hsmkit, azure-kv, aws or gcp")),
        }
    }

    /// The service's name for messages.
    pub fn name(self) -> String {
        match self {
            Format::AzureKeyVault => "Azure Key Vault".into(),
            Format::Aws(a) => format!("AWS KMS {a:?}"),
            Format::Gcp(m) => format!("Google Cloud KMS import method {m}"),
        }
    }

    /// The mechanism for an RSA private key of `key_bits` under a KEK of `kek_bits`, after the
    /// service's rules; the error says which rule refused.
    pub fn mechanism_for_rsa(self, kek_bits: u32, key_bits: u32) -> Result<Mechanism> {
        self.mechanism_for(kek_bits, TransferKey::Rsa(key_bits))
    }

    /// The mechanism for `key` under a KEK of `kek_bits`, after the service's rules (key types and
    /// sizes it imports, KEK sizes, wrapping algorithms); the error says which rule refused.
    ///
    /// - Azure Key Vault imports RSA-HSM 2048/3072/4096 and EC-HSM P-256/P-384/P-521, always with
    ///   `CKM_RSA_AES_KEY_WRAP` and OAEP SHA-1.
    /// - AWS KMS imports RSA 2048/3072/4096 (RSA-AES wrapping only) and ECC_NIST_P256/P384/P521,
    ///   which may also be wrapped with RSAES-OAEP alone, except P-521 under a 2048-bit KEK.
    /// - Google Cloud KMS imports RSA 2048/3072/4096 and EC_SIGN_P256_SHA256/P384_SHA384 (no
    ///   P-521) with the RSA-AES import methods 1 to 4 only.
    /// - No service here imports Ed25519 keys through these formats.
    pub fn mechanism_for(self, kek_bits: u32, key: TransferKey) -> Result<Mechanism> {
        let service = self.name();
        match key {
            TransferKey::Rsa(bits) if !matches!(bits, 2048 | 3072 | 4096) => {
                return Err(bad(
                    format!("{service} does not import RSA-{bits} keys (only 2048, 3072 and 4096 bits)"),
                    "transfer a key of a supported size",
                ));
            }
            TransferKey::Ec(EcCurve::Ed25519) => {
                return Err(bad(
                    format!("{service} does not import Ed25519 keys through this format"),
                    "transfer an RSA key, or an EC key on P-256 or P-384",
                ));
            }
            TransferKey::Ec(EcCurve::P521) if matches!(self, Format::Gcp(_)) => {
                return Err(bad(
                    format!("{service} does not import P-521 keys (EC_SIGN_P256_SHA256 and EC_SIGN_P384_SHA384 only)"),
                    "transfer a P-256 or P-384 key to Google Cloud KMS",
                ));
            }
            _ => {}
        }
        let rsa_aes = |hash| Mechanism::RsaAesKeyWrap { aes_bits: 256, hash };
        let kek_sizes = |ok: &[u32]| -> Result<()> {
            if ok.contains(&kek_bits) {
                Ok(())
            } else {
                Err(bad(
                    format!("{service} uses a KEK of {ok:?} bits, this one has {kek_bits}"),
                    "use the KEK the service gave you",
                ))
            }
        };
        let ec = matches!(key, TransferKey::Ec(_));
        match self {
            Format::AzureKeyVault => {
                kek_sizes(&[2048, 3072, 4096])?;
                Ok(rsa_aes(HashAlg::Sha1))
            }
            Format::Aws(AwsAlgorithm::RsaAesKeyWrapSha1) => {
                kek_sizes(&[2048, 3072, 4096]).map(|()| rsa_aes(HashAlg::Sha1))
            }
            Format::Aws(AwsAlgorithm::RsaAesKeyWrapSha256) => {
                kek_sizes(&[2048, 3072, 4096]).map(|()| rsa_aes(HashAlg::Sha256))
            }
            Format::Aws(AwsAlgorithm::RsaesOaepSha1 | AwsAlgorithm::RsaesOaepSha256) if ec => {
                kek_sizes(&[2048, 3072, 4096])?;
                if key == TransferKey::Ec(EcCurve::P521) && kek_bits == 2048 {
                    return Err(bad(
                        format!(
                            "{service} does not wrap ECC_NIST_P521 key material under a 2048-bit KEK with RSAES-OAEP"
                        ),
                        "use a 3072- or 4096-bit KEK, or RSA_AES_KEY_WRAP_SHA_256",
                    ));
                }
                let hash =
                    if self == Format::Aws(AwsAlgorithm::RsaesOaepSha1) { HashAlg::Sha1 } else { HashAlg::Sha256 };
                Ok(Mechanism::RsaOaep { hash })
            }
            Format::Aws(_) => Err(bad(
                format!(
                    "{service} wraps symmetric and EC key material only; RSA private keys need RSA_AES_KEY_WRAP_SHA_1 or _SHA_256"
                ),
                "give --aws-algorithm RSA_AES_KEY_WRAP_SHA_256",
            )),
            Format::Gcp(m @ (1 | 3)) => {
                kek_sizes(&[3072]).map(|()| rsa_aes(if m == 1 { HashAlg::Sha1 } else { HashAlg::Sha256 }))
            }
            Format::Gcp(m @ (2 | 4)) => {
                kek_sizes(&[4096]).map(|()| rsa_aes(if m == 2 { HashAlg::Sha1 } else { HashAlg::Sha256 }))
            }
            Format::Gcp(m) => Err(bad(
                format!("{service} (direct RSA-OAEP) cannot wrap an asymmetric private key"),
                &format!("use import method 1 to 4, not {m}"),
            )),
        }
    }
}

/// The Azure Key Vault `.byok` file, as its specification gives it.
#[derive(Debug, Serialize)]
struct AzureByok<'a> {
    schema_version: &'a str,
    header: AzureHeader<'a>,
    ciphertext: String,
    generator: &'a str,
}

#[derive(Debug, Serialize)]
struct AzureHeader<'a> {
    kid: &'a str,
    alg: &'a str,
    enc: &'a str,
}

/// The Azure Key Vault `.byok` JSON for `wrapped` under the KEK `kid`. Only `ciphertext` is
/// protected (by OAEP and KWP); `kid` and `generator` are not authenticated by the format.
pub fn azure_byok(kid: &str, wrapped: &[u8], generator: &str) -> Result<Vec<u8>> {
    let doc = AzureByok {
        schema_version: "1.0.0",
        header: AzureHeader { kid, alg: "dir", enc: "CKM_RSA_AES_KEY_WRAP" },
        ciphertext: Base64UrlUnpadded::encode_string(wrapped),
        generator,
    };
    let mut out = serde_json::to_vec_pretty(&doc)
        .map_err(|e| Error::new(ErrorKind::Device, Op::WrapKey).detail(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_services_rules_refuse_by_name() {
        let kv = Format::parse("azure-kv", None, None).expect("kv");
        assert!(kv.mechanism_for_rsa(2048, 1024).expect_err("1024").to_string().contains("RSA-1024"));
        assert_eq!(
            kv.mechanism_for_rsa(2048, 2048).expect("ok"),
            Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 }
        );
        let aws = Format::parse("aws", Some("RSAES_OAEP_SHA_256"), None).expect("aws");
        assert!(aws.mechanism_for_rsa(2048, 2048).expect_err("oaep").to_string().contains("RSA private keys need"));
        let aws = Format::parse("aws", None, None).expect("aws");
        assert_eq!(
            aws.mechanism_for_rsa(4096, 3072).expect("ok"),
            Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha256 }
        );
        let gcp = Format::parse("gcp", None, Some(2)).expect("gcp");
        assert!(gcp.mechanism_for_rsa(3072, 2048).expect_err("kek size").to_string().contains("[4096]"));
        assert!(Format::parse("gcp", None, Some(6)).expect("6").mechanism_for_rsa(4096, 2048).is_err());
        for (f, a, m) in [("gcp", None, Some(7)), ("aws", Some("RSA_PKCS1"), None), ("ibm", None, None)] {
            assert!(Format::parse(f, a, m).is_err(), "{f}");
        }
    }

    #[test]
    fn ec_keys_follow_each_services_rules() {
        let p256 = TransferKey::Ec(EcCurve::P256);
        let p521 = TransferKey::Ec(EcCurve::P521);
        let kv = Format::parse("azure-kv", None, None).expect("kv");
        assert_eq!(
            kv.mechanism_for(2048, p521).expect("P-521"),
            Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 }
        );
        let oaep = Format::parse("aws", Some("RSAES_OAEP_SHA_256"), None).expect("aws");
        assert_eq!(oaep.mechanism_for(2048, p256).expect("P-256"), Mechanism::RsaOaep { hash: HashAlg::Sha256 });
        assert!(oaep.mechanism_for(2048, p521).expect_err("P-521").to_string().contains("ECC_NIST_P521"));
        assert_eq!(oaep.mechanism_for(3072, p521).expect("P-521, 3072"), Mechanism::RsaOaep { hash: HashAlg::Sha256 });
        let gcp = Format::parse("gcp", None, Some(3)).expect("gcp");
        assert!(gcp.mechanism_for(3072, p521).expect_err("P-521").to_string().contains("P-521"));
        assert!(gcp.mechanism_for(3072, TransferKey::Ec(EcCurve::P384)).is_ok());
        assert!(Format::parse("gcp", None, Some(5)).expect("5").mechanism_for(3072, p256).is_err());
        for f in [kv, oaep, gcp] {
            assert!(
                f.mechanism_for(3072, TransferKey::Ec(EcCurve::Ed25519))
                    .expect_err("Ed25519")
                    .to_string()
                    .contains("Ed25519")
            );
        }
    }

    #[test]
    fn the_azure_file_has_the_specified_fields() {
        let bytes = azure_byok("https://v.vault.azure.net/keys/kek/1", &[0xfb, 0xff], "gen").expect("json");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("parse");
        assert_eq!(v["schema_version"], "1.0.0");
        assert_eq!(v["header"]["alg"], "dir");
        assert_eq!(v["header"]["enc"], "CKM_RSA_AES_KEY_WRAP");
        assert_eq!(v["ciphertext"], "-_8", "base64url without padding");
    }
}

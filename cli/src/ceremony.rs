//! `hsmkit ceremony`: the whole article, end to end, in a fresh folder, with no prompts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hsmkit_backend::{Error, ErrorKind, Op, Result};

use crate::commands::{self, CngimportArgs, GeneratekeyArgs, NewWorldArgs, NkminfoArgs};
use crate::tenant::{TenantArgs, TenantCommand};
use crate::transfer::{ModifyAclsArgs, PackageArgs};
use crate::vendor::{VendorInitArgs, VerifyArgs};
use crate::{Global, tenant, transfer, vendor};

/// `ceremony` arguments.
#[derive(Debug, clap::Args)]
pub struct CeremonyArgs {
    /// The folder to run in (must not exist, or be empty); default: a new temporary folder.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The provider's region.
    #[arg(long, default_value = "NA")]
    region: String,
    /// Run the customer's side on a PKCS#11 module (`pkcs11:/path/to/module.so`) instead of the
    /// emulator; `--pin-file` then holds the token's user PIN and its security-officer PIN.
    #[arg(long)]
    backend: Option<String>,
    /// The token label, with `--backend pkcs11:…`.
    #[arg(long)]
    token: Option<String>,
}

const TENANT: &str = "01234567-89ab-cdef-0123-456789abcdef";

fn fresh_dir(dir: Option<&Path>) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            std::env::temp_dir().join(format!("hsmkit-ceremony-{}-{nanos:x}", std::process::id()))
        }
    };
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Error::new(ErrorKind::AlreadyExists, Op::Initialize)
            .detail(format!("{} is not empty", dir.display()))
            .hint("give a new or empty folder with --dir"));
    }
    hsmkit_emulator::fsio::create_private_dir(&dir.join("kmdata")).map_err(|e| {
        Error::new(ErrorKind::Io, Op::Initialize).detail(format!("cannot create {}: {e}", dir.display()))
    })?;
    Ok(dir)
}

fn step(n: usize, title: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!();
    println!("== Step {n}: {title}");
    let t = Instant::now();
    let r = f();
    match &r {
        Ok(()) => println!("-- step {n}: ok ({} ms)", t.elapsed().as_millis()),
        Err(e) => println!("-- step {n}: FAILED: {e}"),
    }
    r
}

pub fn run(g: &Global, a: &CeremonyArgs) -> Result<()> {
    let started = Instant::now();
    let dir = fresh_dir(a.dir.as_deref())?;
    let region = hsmkit_transfer::packages::Region::parse(&a.region)?;
    let (kek_name, world_name) = hsmkit_transfer::packages::package_names(region, 1);
    let (kek, world) = (dir.join(&kek_name), dir.join(&world_name));
    if let Some(spec) = &a.backend {
        return run_pkcs11(g, a, spec, &dir, &kek, &world, started);
    }
    // Card PINs for the demonstration, made here and kept beside the cards.
    let pins = dir.join("card-pins");
    let pin_text = match g.seed {
        Some(s) => format!("card-1-{s}\ncard-2-{s}\ncard-3-{s}\n"),
        None => {
            let mut rng = hsmkit_emulator::rng::HsmRng::from_os()?;
            (0..3).map(|_| format!("{}\n", commands::hex(&rng.array::<8>()))).collect()
        }
    };
    hsmkit_emulator::fsio::write_atomic_new(&pins, pin_text.as_bytes(), &hsmkit_emulator::fsio::FaultHook::default())
        .map_err(|e| Error::new(ErrorKind::Io, Op::Initialize).detail(e.to_string()))?;
    let g = Global {
        kmdata: Some(dir.join("kmdata")),
        cards: None,
        nvram: None,
        pin_file: Some(pins.clone()),
        seed: g.seed,
    };
    println!("hsmkit ceremony in {}", dir.display());
    println!("Administrator card PINs for this demonstration are made here and written to {}", pins.display());

    step(1, "the provider's toolset (vendor init)", || {
        vendor::init(&g, &VendorInitArgs { region: a.region.clone(), dir: dir.join("provider"), out: dir.clone() })
    })?;
    step(2, "validate the packages (verifykeypackage)", || {
        vendor::verify(&VerifyArgs { kek: kek.clone(), world: world.clone(), root_hash: None })
    })?;
    step(3, "create the security world, ACS 2/3 (new-world)", || {
        commands::new_world(
            &g,
            &NewWorldArgs {
                initialize: true,
                program: false,
                card: Vec::new(),
                cipher_suite: "DLf1024s160mRijndael".into(),
                module: 1,
                acs_quorum: "2/3".into(),
            },
        )
    })?;
    step(4, "create the tenant key (generatekey)", || {
        let params = "type=RSA size=2048 protect=module ident=contosokey plainname=contosokey nvram=no pubexp=";
        commands::generatekey(
            &g,
            &GeneratekeyArgs { app: "simple".into(), params: params.split(' ').map(String::from).collect() },
        )
    })?;
    step(5, "import it to CNG (cngimport -M)", || {
        commands::cngimport(
            &g,
            &CngimportArgs {
                import: true,
                machine: true,
                key: "contosokey".into(),
                appname: "simple".into(),
                container: "contosokey".into(),
            },
        )
    })?;
    step(6, "the keys (nkminfo -k)", || {
        commands::nkminfo(&g, &NkminfoArgs { keys: true, world: false, filter: Vec::new() })
    })?;
    step(7, "a copy with reduced permissions (KeyTransferRemote -ModifyAcls)", || {
        transfer::modify_acls(
            &g,
            &ModifyAclsArgs {
                app: "simple".into(),
                ident: "contosokey".into(),
                kek_package: Some(kek.clone()),
                world_package: Some(world.clone()),
                kek_public_key: None,
                card: Vec::new(),
                root_hash: None,
            },
        )
    })?;
    step(8, "inspect the copy (aclprint)", || commands::aclprint(&g, "xferacld", "contosokey"))?;
    step(9, "encrypt the key with the provider's KEK (KeyTransferRemote -Package)", || {
        transfer::package(
            &g,
            &PackageArgs {
                app: "simple".into(),
                ident: "contosokey".into(),
                format: "hsmkit".into(),
                kek_package: Some(kek.clone()),
                world_package: Some(world.clone()),
                tenant: Some(TENANT.into()),
                friendly_name: Some("ContosoFirstkey".into()),
                kek_public_key: None,
                kid: None,
                aws_algorithm: None,
                gcp_method: None,
                out: Some(dir.clone()),
                root_hash: None,
            },
        )
    })?;
    let original = hsmkit_emulator::keyblob::KeyFile::read(&dir.join("kmdata/local/key_simple_contosokey"))?;
    provider_steps(&g, &dir, 10, false, &original.header.public, started)
}

/// The provider's side of the ceremony, from step `first`: upload, list, and the final check that
/// the tenant's Active key signs as the key the customer generated (`original_spki`).
fn provider_steps(
    g: &Global,
    dir: &Path,
    first: usize,
    allow_unattested: bool,
    original_spki: &[u8],
    started: Instant,
) -> Result<()> {
    let tenant_args = |command| TenantArgs { provider: dir.join("provider"), tenant: TENANT.into(), command };
    step(first, "upload the package (Add-AadrmKey)", || {
        let key_file = dir.join("TransferPackage-ContosoFirstkey.byok");
        tenant::run(g, &tenant_args(TenantCommand::AddKey { key_file, yes: true, allow_unattested }))
    })?;
    step(first + 1, "the tenant's keys (Get-AadrmKeys)", || tenant::run(g, &tenant_args(TenantCommand::Keys)))?;
    step(first + 2, "the Active key signs as the key the customer generated", || {
        let id = tenant::check_active_key(g, &dir.join("provider"), TENANT, original_spki)?;
        println!(
            "A signature by the Active key {id}, made in the provider's module, verifies under contosokey's public key."
        );
        Ok(())
    })?;
    println!();
    println!("Ceremony complete in {} ms; everything is in {}", started.elapsed().as_millis(), dir.display());
    println!("Result: SUCCESS");
    Ok(())
}

/// The ceremony with the customer's side on a PKCS#11 module: the security officer's login
/// stands in for the quorum (it imports the KEK as a trusted wrapping key), `C_CopyObject` makes
/// the narrowed copy, and the module wraps it (natively or composed).
fn run_pkcs11(
    g: &Global,
    a: &CeremonyArgs,
    spec: &str,
    dir: &Path,
    kek: &Path,
    world: &Path,
    started: Instant,
) -> Result<()> {
    use hsmkit_backend::{
        Backend, KeyFilter, KeyMaterial, KeyPairSpec, KeyPolicy, ObjectClass, SessionMode, Usage, UserKind,
    };
    use hsmkit_pkcs11_client::{Pkcs11Backend, TokenChoice};
    use hsmkit_transfer::byok::{self, TransferBody, TransferPackage};
    use rsa::pkcs8::EncodePublicKey;
    let module = spec.strip_prefix("pkcs11:").ok_or_else(|| {
        Error::new(ErrorKind::ArgumentsBad, Op::Initialize)
            .detail(format!("unknown backend '{spec}'"))
            .hint("use --backend pkcs11:/path/to/module.so")
    })?;
    let mut pins = crate::pins::PinSource::from(g)?;
    let user_pin = pins.next("the token's user", false)?;
    let so_pin = pins.next("the token's security officer", false)?;
    let g = Global { kmdata: Some(dir.join("kmdata")), cards: None, nvram: None, pin_file: None, seed: g.seed };
    println!("hsmkit ceremony in {}, the customer's side on {module}", dir.display());
    step(1, "the provider's toolset (vendor init)", || {
        vendor::init(
            &g,
            &VendorInitArgs { region: a.region.clone(), dir: dir.join("provider"), out: dir.to_path_buf() },
        )
    })?;
    let mut verified = None;
    step(2, "validate the packages (verifykeypackage)", || {
        verified = Some(vendor::verified_toolset(kek, world, None)?);
        println!("Result: SUCCESS");
        Ok(())
    })?;
    let verified = verified.ok_or_else(|| Error::new(ErrorKind::Device, Op::Verify))?;
    let backend = Pkcs11Backend::open(module, a.token.clone().map_or(TokenChoice::First, TokenChoice::Label))?;
    let kek_spki = verified.kek.body.kek.spki.clone();
    step(3, "the security officer imports the KEK as a trusted wrapping key (stands in for the quorum)", || {
        let so = backend.session(SessionMode::ReadWrite)?;
        hsmkit_backend::Session::login(&so, UserKind::SecurityOfficer, &so_pin)?;
        let mut p = KeyPolicy::new(Usage::WRAP | Usage::ENCRYPT).with_label("byok-kek");
        p.trusted = true;
        hsmkit_backend::Session::import_key(&so, &KeyMaterial::RsaPublicSpki(kek_spki.clone()), &p)?;
        hsmkit_backend::Session::logout(&so)?;
        println!("KEK imported as byok-kek, CKA_TRUSTED");
        Ok(())
    })?;
    let s = backend.open_session(backend.slot(), SessionMode::ReadWrite)?;
    s.login(UserKind::User, &user_pin)?;
    let mut original = None;
    step(4, "create the tenant key (C_GenerateKeyPair, RSA-2048)", || {
        let p = KeyPolicy::new(Usage::SIGN | Usage::VERIFY | Usage::DECRYPT | Usage::ENCRYPT)
            .with_label("contosokey")
            .extractable(true);
        original = Some(s.generate_key_pair(&KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, &p)?);
        println!("contosokey generated on the token");
        Ok(())
    })?;
    let (public, private) = original.ok_or_else(|| Error::new(ErrorKind::Device, Op::GenerateKeyPair))?;
    let composed =
        backend.capabilities()?.mechanism(hsmkit_backend::MechanismKind::RsaAesKeyWrap).is_some_and(|m| m.composed);
    let mut narrowed = None;
    step(5, "a copy with reduced permissions (C_CopyObject)", || {
        let mut p = KeyPolicy::new(Usage::SIGN).with_label("xferacld-contosokey").extractable(true);
        // A composed RSA-AES wrap goes through an ephemeral AES key that only the security
        // officer could mark trusted, so there the copy cannot also be wrap-with-trusted.
        p.wrap_with_trusted = !composed;
        narrowed = Some(s.copy_narrowed(private, &p)?);
        println!(
            "xferacld-contosokey: sign only, extractable{}",
            if composed { "" } else { " under trusted keys only" }
        );
        Ok(())
    })?;
    let narrowed = narrowed.ok_or_else(|| Error::new(ErrorKind::Device, Op::CopyKey))?;
    let spki = {
        let attrs =
            s.attributes(public, &[hsmkit_backend::AttrKind::Modulus, hsmkit_backend::AttrKind::PublicExponent])?;
        let bytes = |a: &hsmkit_backend::Attr| match a {
            hsmkit_backend::Attr::Value(_, hsmkit_backend::AttrValue::Bytes(b)) => Ok(b.clone()),
            _ => Err(Error::new(ErrorKind::AttributeTypeInvalid, Op::GetAttributes).detail("no public key")),
        };
        let key = rsa::PublicKey::new(
            rsa::BoxedUint::from_be_slice_vartime(&bytes(&attrs[0])?),
            rsa::BoxedUint::from_be_slice_vartime(&bytes(&attrs[1])?),
        )
        .map_err(|e| Error::new(ErrorKind::DataInvalid, Op::GetAttributes).detail(e.to_string()))?;
        key.to_public_key_der()
            .map_err(|e| Error::new(ErrorKind::DataInvalid, Op::GetAttributes).detail(e.to_string()))?
            .as_bytes()
            .to_vec()
    };
    step(6, "encrypt the key with the provider's KEK (CKM_RSA_AES_KEY_WRAP)", || {
        let kek_h = *s
            .find_keys(&KeyFilter {
                label: Some("byok-kek".into()),
                class: Some(ObjectClass::PublicKey),
                ..KeyFilter::default()
            })?
            .first()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, Op::FindKeys).detail("the KEK is not on the token"))?;
        let wrapped = s.wrap_key(&byok::WRAP, kek_h, narrowed)?;
        let sha = |d: &[u8]| {
            use sha2::Digest;
            sha2::Sha256::digest(d).to_vec()
        };
        let body = TransferBody {
            tenant: TENANT.into(),
            friendly_name: "ContosoFirstkey".into(),
            kek_spki_sha256: sha(&kek_spki),
            world_hknso: verified.world.body.hknso.clone(),
            world_hkm: verified.world.body.hkm.clone(),
            public: spki.clone(),
            key_hash: sha(&spki),
            acl: serde_json::json!({
                "source": "pkcs11",
                "label": "xferacld-contosokey",
                "usage": ["CKA_SIGN"],
                "extractable": true,
                "wrap_with_trusted": !composed,
                "wrapped_by": if composed { "composed RSA-OAEP + AES-KWP" } else { "CKM_RSA_AES_KEY_WRAP" },
            }),
            acl_certificate: serde_json::Value::Null,
            wrap_mechanism: "CKM_RSA_AES_KEY_WRAP".into(),
            wrapped,
        };
        let package = TransferPackage::sign(body, s.as_ref(), narrowed)?;
        let path = dir.join("TransferPackage-ContosoFirstkey.byok");
        hsmkit_emulator::fsio::write_atomic_new(
            &path,
            &package.to_bytes()?,
            &hsmkit_emulator::fsio::FaultHook::default(),
        )
        .map_err(|e| Error::new(ErrorKind::Io, Op::WrapKey).detail(e.to_string()))?;
        println!(
            "Transfer package: {}{}",
            path.display(),
            if composed {
                " (RSA-AES key wrap composed in the module)"
            } else {
                " (the module's own CKM_RSA_AES_KEY_WRAP)"
            }
        );
        Ok(())
    })?;
    provider_steps(&g, dir, 7, true, &spki, started)
}

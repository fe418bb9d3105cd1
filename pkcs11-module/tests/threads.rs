//! Many threads, each with its own session, sign and wrap at once through `libhsmkit_pkcs11.so`
//! for a bounded time. Every call must succeed and every result must check out with RustCrypto.

mod common;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, Backend as _, HashAlg, KeyFilter, KeyMaterial, KeyPairSpec, KeyPolicy, Mechanism, Pin,
    SessionMode, Usage, UserKind,
};
use rsa::signature::Verifier as _;
use zeroize::Zeroizing;

const THREADS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    common::with_throwaway_conf(|| {
        let backend = common::initialised_backend();
        let pin = Pin::from(common::USER_PIN.to_string());
        let kek_bytes: Vec<u8> = (0..32).map(|i| i * 7).collect();
        let secret: Vec<u8> = (0..32).map(|i| 255 - i).collect();
        // Shared token keys: an RSA signing pair, an AES key-wrapping key and an extractable AES key.
        let public_key = {
            let s = backend.open_session(backend.slot(), SessionMode::ReadWrite).expect("session");
            s.login(UserKind::User, &pin).expect("login");
            let mut p = KeyPolicy::new(Usage::SIGN | Usage::VERIFY).with_label("signer");
            p.token = true;
            let (public, _) =
                s.generate_key_pair(&KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, &p).expect("pair");
            let mut k = KeyPolicy::new(Usage::WRAP | Usage::UNWRAP).with_label("kek");
            k.token = true;
            s.import_key(&KeyMaterial::Aes(Zeroizing::new(kek_bytes.clone())), &k).expect("kek");
            let mut t = KeyPolicy::new(Usage::ENCRYPT).with_label("target").extractable(true);
            t.token = true;
            s.import_key(&KeyMaterial::Aes(Zeroizing::new(secret.clone())), &t).expect("target");
            let spki = match s.attributes(public, &[AttrKind::PublicKeyInfo]).expect("spki").pop() {
                Some(Attr::Value(_, AttrValue::Bytes(b))) => b,
                other => panic!("no public key info: {other:?}"),
            };
            use rsa::pkcs8::DecodePublicKey as _;
            rsa::PublicKey::from_public_key_der(&spki).expect("SPKI")
        };
        let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public_key);
        let failed = AtomicBool::new(false);
        let (signs, wraps) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let start = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (backend, pin, verifier) = (&backend, &pin, &verifier);
                let (failed, signs, wraps, kek_bytes, secret) = (&failed, &signs, &wraps, &kek_bytes, &secret);
                scope.spawn(move || {
                    let run = || -> Result<(), String> {
                        let s =
                            backend.open_session(backend.slot(), SessionMode::ReadOnly).map_err(|e| e.to_string())?;
                        // Every session sees the token's login; the first thread's login is enough,
                        // and a second one is told so.
                        let _ = s.login(UserKind::User, pin);
                        let find = |label: &str| {
                            s.find_keys(&KeyFilter { label: Some(label.into()), ..KeyFilter::default() })
                                .map_err(|e| e.to_string())
                        };
                        let signer = *find("signer")?
                            .iter()
                            .find(|h| {
                                matches!(
                                    s.attributes(**h, &[AttrKind::Class]).ok().and_then(|mut a| a.pop()),
                                    Some(Attr::Value(_, AttrValue::Class(hsmkit_backend::ObjectClass::PrivateKey)))
                                )
                            })
                            .ok_or("no private signer")?;
                        let kek = *find("kek")?.first().ok_or("no kek")?;
                        let target = *find("target")?.first().ok_or("no target")?;
                        let mech = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 };
                        let mut i = 0u64;
                        while start.elapsed() < RUN_FOR && !failed.load(Ordering::Relaxed) {
                            let msg = format!("thread {t} message {i}");
                            let sig = s.sign(&mech, signer, msg.as_bytes()).map_err(|e| format!("sign: {e}"))?;
                            let sig = rsa::pkcs1v15::Signature::try_from(&sig[..]).map_err(|e| e.to_string())?;
                            verifier.verify(msg.as_bytes(), &sig).map_err(|e| format!("verify {msg}: {e}"))?;
                            signs.fetch_add(1, Ordering::Relaxed);
                            let wrapped =
                                s.wrap_key(&Mechanism::AesKeyWrapPad, kek, target).map_err(|e| format!("wrap: {e}"))?;
                            let kw = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(kek_bytes)
                                .map_err(|e| e.to_string())?;
                            let mut buf = [0u8; 40];
                            let got = kw.unwrap_key(&wrapped, &mut buf).map_err(|e| format!("unwrap: {e}"))?;
                            if got != &secret[..] {
                                return Err("a wrapped key came back different".into());
                            }
                            wraps.fetch_add(1, Ordering::Relaxed);
                            i += 1;
                        }
                        if i == 0 { Err(format!("thread {t} made no progress")) } else { Ok(()) }
                    };
                    if let Err(e) = run() {
                        eprintln!("thread {t}: {e}");
                        failed.store(true, Ordering::Relaxed);
                    }
                });
            }
        });
        let (signs, wraps) = (signs.into_inner(), wraps.into_inner());
        println!(
            "{THREADS} threads for {RUN_FOR:?}: {signs} signatures and {wraps} wraps, each checked with RustCrypto"
        );
        if failed.into_inner() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
    })
}

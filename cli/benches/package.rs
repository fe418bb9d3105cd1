//! The transfer engine's package step (`KeyTransferRemote -Package`: find the narrowed copy, wrap
//! it under the provider's KEK with `CKM_RSA_AES_KEY_WRAP`, sign the package with the key) through
//! the one engine function, `Engine::package`, on every backend: the in-process emulator,
//! `libhsmkit_pkcs11.so` and SoftHSM2 (through the pkcs11-client backend).
//!
//! `cargo bench -p hsmkit-cli --bench package`. It makes its tokens, world and provider toolset in
//! a temporary folder (with the `hsmkit` binary, `pkcs11-tool` and `softhsm2-util`), then runs
//! itself again with `HSMKIT_CONF` and `SOFTHSM2_CONF` naming them.

#![allow(missing_docs)]

use std::path::PathBuf;
use std::process::Command;

use criterion::Criterion;
use hsmkit_backend::{Backend, Pin, SessionMode, UserKind};
use hsmkit_transfer::engine::{Engine, KeyRef, Officer};
use hsmkit_transfer::packages::{self, Verified};

#[path = "../tests/common/mod.rs"]
mod common;

const TENANT: &str = "01234567-89ab-cdef-0123-456789abcdef";

fn hsmkit(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit")).args(args).output().expect("hsmkit");
    assert!(out.status.success(), "hsmkit {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Makes the world, the tokens and the toolset, then runs this bench again under them.
fn prepare() -> ! {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // A folder of its own: a module's NVRAM sits beside its kmdata.
    let kmdata = dir.join("emulator").join("kmdata");
    std::fs::create_dir_all(&kmdata).expect("kmdata");
    let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata)).expect("emulator");
    emu.create_world(
        hsmkit_emulator::suite::CipherSuite::DLf3072s256mAEScSP800131Ar1,
        hsmkit_emulator::world::Quorum { k: 1, n: 1 },
        &[Pin::from("5678".to_string())],
    )
    .expect("world");
    let d = dir.display().to_string();
    hsmkit(&["vendor", "init", "--region", "NA", "--dir", &format!("{d}/provider"), "--out", &d]);
    let (_, hsmkit_conf) = common::libhsmkit_token(dir, "bench");
    let softhsm_conf = common::softhsm2_token(dir, "bench");
    let status = Command::new(std::env::current_exe().expect("exe"))
        .args(std::env::args_os().skip(1))
        .env("HSMKIT_CONF", hsmkit_conf)
        .env("SOFTHSM2_CONF", softhsm_conf)
        .env("HSMKIT_BENCH_DIR", dir)
        .status()
        .expect("run the bench");
    std::process::exit(status.code().unwrap_or(1));
}

/// The same bench function on every backend: a key generated for transfer, narrowed for the
/// provider's toolset, then packaged again and again.
fn bench_package(
    c: &mut Criterion,
    name: &str,
    backend: &dyn Backend,
    officer: &Officer,
    user: Option<&Pin>,
    v: &Verified,
) {
    let slot = *backend.slots().expect("slots").first().expect("a slot");
    let session = backend.open_session(slot, SessionMode::ReadWrite).expect("session");
    if let Some(pin) = user {
        session.login(UserKind::User, pin).expect("user login");
    }
    let engine = Engine::new(backend, session.as_ref()).expect("engine");
    let label = format!("bench-{}", std::process::id());
    engine
        .generate(&label, None, &hsmkit_backend::KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 })
        .expect("generate");
    let key = KeyRef::Label(label);
    if user.is_some() {
        session.logout().expect("logout");
    }
    let target = hsmkit_backend::TransferTarget {
        kek_spki: v.kek.body.kek.spki.clone(),
        provider_hkm: Some(v.world.body.hkm.clone()),
        label: None,
    };
    engine.narrow(&key, &target, officer, user).expect("narrow");
    c.bench_function(&format!("package/{name}"), |b| {
        b.iter(|| engine.package(&key, v, TENANT, "Bench").expect("package"))
    });
}

fn main() {
    let Some(dir) = std::env::var_os("HSMKIT_BENCH_DIR").map(PathBuf::from) else { prepare() };
    let read = |p: &str| std::fs::read(dir.join(p)).expect(p);
    let pin = packages::parse_root_hash(String::from_utf8(read("verifykeypackage.pin")).expect("pin").trim())
        .expect("root hash");
    let v = packages::verify("kek", &read("BYOK-KEK-pkg-NA-1"), "world", &read("BYOK-SecurityWorld-pkg-NA-1"), &pin)
        .expect("the toolset verifies");
    let mut c = Criterion::default().configure_from_args();
    let user = Pin::from("1234".to_string());
    let so = Officer::Pin(Pin::from("5678".to_string()));

    let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(dir.join("emulator").join("kmdata")))
        .expect("emulator");
    let cards = Officer::Cards(vec![(1, Pin::from("5678".to_string()))]);
    bench_package(&mut c, "emulator", &emu, &cards, None, &v);

    let module = std::env::current_exe().expect("exe").parent().expect("deps").join("libhsmkit_pkcs11.so");
    let choice = || hsmkit_pkcs11_client::TokenChoice::Label("bench".into());
    let so_module = hsmkit_pkcs11_client::Pkcs11Backend::open(&module, choice()).expect("libhsmkit_pkcs11.so");
    bench_package(&mut c, "libhsmkit_pkcs11.so", &so_module, &so, Some(&user), &v);

    let softhsm =
        hsmkit_pkcs11_client::Pkcs11Backend::open("/usr/lib/softhsm/libsofthsm2.so", choice()).expect("SoftHSM2");
    bench_package(&mut c, "softhsm2", &softhsm, &so, Some(&user), &v);
    c.final_summary();
}

//! The wrap and sign paths on every backend present, side by side, under criterion: the
//! in-process emulator (a throwaway world), `libhsmkit_pkcs11.so` and SoftHSM2 through
//! `pkcs11-client` (throwaway tokens), a module named by `HSMKIT_BENCH_MODULE` (its token
//! `HSMKIT_BENCH_TOKEN`, user PIN `HSMKIT_BENCH_PIN`), and the AWS-LC reference row. One group
//! per operation, one function per row; every row is prepared by the same code
//! (`hsmkit_benches::ops`), through the seam.
//!
//! Run: `cargo bench -p hsmkit-benches` (`-- sign-pkcs1-2048` for one group). In the test
//! command (`cargo test --all-targets`) each function runs once, untimed.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::Criterion;
use hsmkit_backend::{Backend, Pin};
use hsmkit_benches::ops::Material;
use hsmkit_benches::{BenchOp, Row};
use hsmkit_pkcs11_client::{Pkcs11Backend, TokenChoice};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const LABEL: &str = "bench";
const USER_PIN: &str = "1234";
const SO_PIN: &str = "5678";

/// `libhsmkit_pkcs11.so`, built beside this bench (a dev-dependency).
fn hsmkit_module() -> PathBuf {
    std::env::current_exe().expect("exe").parent().expect("deps").join("libhsmkit_pkcs11.so")
}

/// A token `LABEL` (SO PIN 5678, user PIN 1234) on the module at `path`, through cryptoki.
fn init_token(path: &Path) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let p = Pkcs11::new(path).expect("load the module");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).expect("C_Initialize");
    let slot = p.get_slots_with_token().expect("slots")[0];
    p.init_token(slot, &AuthPin::new(SO_PIN.into()), LABEL).expect("C_InitToken");
    let s = p.open_rw_session(slot).expect("session");
    s.login(UserType::So, Some(&AuthPin::new(SO_PIN.into()))).expect("SO login");
    s.init_pin(&AuthPin::new(USER_PIN.into())).expect("C_InitPIN");
    drop(s);
    p.finalize().expect("C_Finalize");
}

/// Makes the throwaway tokens in a temporary folder and runs this bench again under them.
fn prepare() -> ! {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let conf = d.join("hsmkit.conf");
    std::fs::write(&conf, format!("slot 0 {}\n", d.join("hsmkit").join("kmdata").display())).expect("conf");
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.args(std::env::args_os().skip(1)).env("HSMKIT_BENCH_DIR", d).env("HSMKIT_CONF", &conf);
    // SoftHSM2 when it is installed: a token folder of its own.
    if Path::new(SOFTHSM).exists() {
        std::fs::create_dir(d.join("softhsm")).expect("tokens");
        let sconf = d.join("softhsm2.conf");
        std::fs::write(
            &sconf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\n", d.join("softhsm").display()),
        )
        .expect("conf");
        cmd.env("SOFTHSM2_CONF", &sconf);
    }
    let status = cmd.status().expect("run the bench");
    std::process::exit(status.code().unwrap_or(1));
}

fn main() {
    let Some(dir) = std::env::var_os("HSMKIT_BENCH_DIR").map(PathBuf::from) else { prepare() };
    // The in-process emulator: a throwaway world.
    let kmdata = dir.join("emulator").join("kmdata");
    std::fs::create_dir_all(&kmdata).expect("kmdata");
    let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata)).expect("emulator");
    emu.create_world(
        hsmkit_emulator::suite::CipherSuite::DLf3072s256mAEScSP800131Ar1,
        hsmkit_emulator::world::Quorum { k: 1, n: 1 },
        &[Pin::from("card".to_string())],
    )
    .expect("world");
    let mut backends: Vec<(String, Box<dyn Backend>, Option<Pin>)> =
        vec![("emulator (in process)".into(), Box::new(emu), None)];
    let user = || Some(Pin::from(USER_PIN.to_string()));
    // libhsmkit_pkcs11.so through the client.
    let module = hsmkit_module();
    init_token(&module);
    let so = Pkcs11Backend::open(&module, TokenChoice::Label(LABEL.into())).expect("libhsmkit_pkcs11.so");
    backends.push(("libhsmkit_pkcs11.so (PKCS#11)".into(), Box::new(so), user()));
    if std::env::var_os("SOFTHSM2_CONF").is_some() {
        init_token(Path::new(SOFTHSM));
        let s = Pkcs11Backend::open(SOFTHSM, TokenChoice::Label(LABEL.into())).expect("SoftHSM2");
        backends.push(("SoftHSM2 (PKCS#11)".into(), Box::new(s), user()));
    }
    if let Some(path) = std::env::var_os("HSMKIT_BENCH_MODULE") {
        let token = std::env::var("HSMKIT_BENCH_TOKEN").map_or(TokenChoice::First, TokenChoice::Label);
        let b = Pkcs11Backend::open(&path, token).expect("HSMKIT_BENCH_MODULE");
        let pin = std::env::var("HSMKIT_BENCH_PIN").ok().map(Pin::from);
        backends.push((format!("{} (PKCS#11)", Path::new(&path).display()), Box::new(b), pin));
    }
    let mut rows: Vec<Row<'_>> = backends
        .iter()
        .map(|(name, b, pin)| Row::Backend {
            name: name.clone(),
            backend: b.as_ref(),
            slot: *b.slots().expect("slots").first().expect("a token"),
            pin: pin.clone(),
        })
        .collect();
    rows.push(Row::Reference);

    let material = Material::for_ops(BenchOp::ALL).expect("key material");
    let mut c = Criterion::default().configure_from_args();
    for &op in BenchOp::ALL {
        let mut g = c.benchmark_group(op.name());
        if matches!(op, BenchOp::KeygenRsa(_)) {
            g.sample_size(10);
        }
        for row in rows.iter().filter(|r| r.runs(op)) {
            // A row that cannot do the operation (a mechanism the module lacks) is skipped.
            let mut w = match row.worker(op, &material).and_then(|mut w| w().map(|()| w)) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("{} / {}: skipped: {e}", op.name(), row.name());
                    continue;
                }
            };
            let how = match row {
                Row::Backend { backend, .. } => hsmkit_benches::ops::how(*backend, op),
                Row::Reference => None,
            };
            let name = match how {
                Some(h) => format!("{} ({h})", row.name()),
                None => row.name(),
            };
            g.bench_function(name, |b| b.iter(|| w().expect("the operation")));
        }
        g.finish();
    }
    c.final_summary();
}

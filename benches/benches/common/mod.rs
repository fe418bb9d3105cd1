//! The benches' one set-up: throwaway tokens in a temporary folder (the bench runs itself again
//! under them), and the backends of a run: the in-process emulator (a throwaway world),
//! `libhsmkit_pkcs11.so` and SoftHSM2 through `pkcs11-client`, and a module named by
//! `HSMKIT_BENCH_MODULE` (token `HSMKIT_BENCH_TOKEN`, user PIN `HSMKIT_BENCH_PIN`, security
//! officer PIN `HSMKIT_BENCH_SO_PIN`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hsmkit_backend::{Backend, Pin};
use hsmkit_pkcs11_client::{Pkcs11Backend, TokenChoice};
use hsmkit_transfer::engine::Officer;

pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const LABEL: &str = "bench";
pub const USER_PIN: &str = "1234";
pub const SO_PIN: &str = "5678";
const CARD_PIN: &str = "card";

/// `libhsmkit_pkcs11.so`, built beside this bench (a dev-dependency).
pub fn hsmkit_module() -> PathBuf {
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

/// The folder of this run's throwaway tokens. The first call (in the parent process) makes them
/// in a temporary folder, runs this bench again under them and exits with its status.
pub fn bench_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HSMKIT_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let conf = d.join("hsmkit.conf");
    std::fs::write(&conf, format!("slot 0 {}\n", d.join("hsmkit").join("kmdata").display())).expect("conf");
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.args(std::env::args_os().skip(1)).env("HSMKIT_BENCH_DIR", d).env("HSMKIT_CONF", &conf);
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
    drop(dir);
    std::process::exit(status.code().unwrap_or(1));
}

/// A backend of the run, with what its rows need.
pub struct Bench<B> {
    pub name: String,
    pub backend: B,
    /// The module's file, for the benches that call its functions raw.
    pub path: Option<PathBuf>,
    pub user: Option<Pin>,
    pub officer: Option<Officer>,
}

impl<B: Backend> Bench<B> {
    /// The bench's row.
    pub fn row(&self) -> hsmkit_benches::Row<'_> {
        hsmkit_benches::Row::Backend {
            name: self.name.clone(),
            backend: &self.backend,
            slot: *self.backend.slots().expect("slots").first().expect("a token"),
            pin: self.user.clone(),
            officer: self.officer.clone(),
        }
    }
}

/// The emulator in process, on a throwaway world under `dir`.
pub fn emulator(dir: &Path) -> Bench<hsmkit_emulator::Emulator> {
    let kmdata = dir.join("emulator").join("kmdata");
    std::fs::create_dir_all(&kmdata).expect("kmdata");
    let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata)).expect("emulator");
    emu.create_world(
        hsmkit_emulator::suite::CipherSuite::DLf3072s256mAEScSP800131Ar1,
        hsmkit_emulator::world::Quorum { k: 1, n: 1 },
        &[Pin::from(CARD_PIN.to_string())],
    )
    .expect("world");
    Bench {
        name: "emulator (in process)".into(),
        backend: emu,
        path: None,
        user: None,
        officer: Some(Officer::Cards(vec![(1, Pin::from(CARD_PIN.to_string()))])),
    }
}

fn pkcs11(
    name: &str,
    path: &Path,
    token: TokenChoice,
    user: Option<Pin>,
    officer: Option<Officer>,
) -> Bench<Pkcs11Backend> {
    let backend = Pkcs11Backend::open(path, token).unwrap_or_else(|e| panic!("{name}: {e}"));
    Bench { name: name.into(), backend, path: Some(path.to_path_buf()), user, officer }
}

/// The PKCS#11 modules of the run: `libhsmkit_pkcs11.so`, SoftHSM2 when installed, and the
/// module `HSMKIT_BENCH_MODULE` names. Each token is made once per run.
pub fn modules() -> Vec<Bench<Pkcs11Backend>> {
    let user = || Some(Pin::from(USER_PIN.to_string()));
    let so = || Some(Officer::Pin(Pin::from(SO_PIN.to_string())));
    let label = || TokenChoice::Label(LABEL.into());
    let mut out = Vec::new();
    let module = hsmkit_module();
    init_token(&module);
    out.push(pkcs11("libhsmkit_pkcs11.so (PKCS#11)", &module, label(), user(), so()));
    if std::env::var_os("SOFTHSM2_CONF").is_some() {
        init_token(Path::new(SOFTHSM));
        out.push(pkcs11("SoftHSM2 (PKCS#11)", Path::new(SOFTHSM), label(), user(), so()));
    }
    if let Some(path) = std::env::var_os("HSMKIT_BENCH_MODULE") {
        let token = std::env::var("HSMKIT_BENCH_TOKEN").map_or(TokenChoice::First, TokenChoice::Label);
        let pin = std::env::var("HSMKIT_BENCH_PIN").ok().map(Pin::from);
        let officer = std::env::var("HSMKIT_BENCH_SO_PIN").ok().map(|p| Officer::Pin(Pin::from(p)));
        let name = format!("{} (PKCS#11)", Path::new(&path).display());
        out.push(pkcs11(&name, Path::new(&path), token, pin, officer));
    }
    out
}

/// Whether criterion runs for real (`cargo bench`) rather than once per function (`cargo test`).
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

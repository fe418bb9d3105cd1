//! Shared set-up for the tests that load `libhsmkit_pkcs11.so`: where the library is, and a
//! throwaway slot configuration the test process runs under.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// The token label the tests give the slot.
pub const LABEL: &str = "hsmkit-test";
/// The user PIN.
pub const USER_PIN: &str = "1234";
/// The security officer's PIN (the world's one Administrator card).
pub const SO_PIN: &str = "5678";

/// The kmdata folder of slot `n` in the configuration `HSMKIT_CONF` names.
pub fn kmdata_of(n: u64) -> PathBuf {
    let conf = std::fs::read_to_string(std::env::var("HSMKIT_CONF").expect("HSMKIT_CONF")).expect("conf text");
    let prefix = format!("slot {n} ");
    PathBuf::from(conf.lines().find_map(|l| l.strip_prefix(prefix.as_str())).expect("slot in conf"))
}

/// The module cargo built for this test or bench: beside the executable, in `target/<profile>/deps/`
/// (cargo copies it up to `target/<profile>/` only for `cargo build`, so that copy may be stale).
pub fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("deps folder").join("libhsmkit_pkcs11.so")
}

/// Runs `body` under `HSMKIT_CONF` naming a fresh one-slot configuration: when it is not set, makes
/// one in a temporary folder and runs this test executable again with it.
pub fn with_throwaway_conf(body: impl FnOnce() -> ExitCode) -> ExitCode {
    if std::env::var_os("HSMKIT_CONF").is_some() {
        return body();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kmdata = dir.path().join("kmdata");
    // Slot 7: a second module, in a folder of its own (its nvram/ and cards/ sit beside it).
    let second = dir.path().join("second").join("kmdata");
    let conf = dir.path().join("hsmkit.conf");
    let text = format!("# throwaway test slots\nslot 0 {}\nslot 7 {}\n", kmdata.display(), second.display());
    std::fs::write(&conf, text).expect("conf");
    let me = std::env::current_exe().expect("current exe");
    match Command::new(me).args(std::env::args_os().skip(1)).env("HSMKIT_CONF", &conf).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Initialises slot 0's token through the module (see [`init_token`]), then opens it with the
/// pkcs11-client backend.
pub fn initialised_backend() -> hsmkit_pkcs11_client::Pkcs11Backend {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    let path = module_path();
    {
        let pkcs11 = Pkcs11::new(&path).expect("load the module");
        pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).expect("C_Initialize");
        init_token(&pkcs11);
        pkcs11.finalize().expect("C_Finalize");
    }
    let token = hsmkit_pkcs11_client::TokenChoice::Label(LABEL.into());
    hsmkit_pkcs11_client::Pkcs11Backend::open(&path, token).expect("open the module")
}

/// Initialises the token of slot 0 with [`LABEL`], the SO PIN and the user PIN, through the module.
pub fn init_token(pkcs11: &cryptoki::context::Pkcs11) {
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let slot = pkcs11.get_all_slots().expect("slots")[0];
    pkcs11.init_token(slot, &AuthPin::new(SO_PIN.into()), LABEL).expect("C_InitToken");
    let session = pkcs11.open_rw_session(slot).expect("session");
    session.login(UserType::So, Some(&AuthPin::new(SO_PIN.into()))).expect("SO login");
    session.init_pin(&AuthPin::new(USER_PIN.into())).expect("C_InitPIN");
    session.logout().expect("logout");
}

/// A client test's checks: each printed `ok` or `FAIL` with the program's output; the test fails
/// if any did.
#[derive(Default)]
pub struct Report {
    failures: Vec<String>,
}

/// A program's standard output and error, together.
pub fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl Report {
    /// Records one check.
    pub fn expect(&mut self, what: &str, ok: bool, out: &std::process::Output) {
        if ok {
            println!("ok   {what}");
        } else {
            println!("FAIL {what}\n{}", text(out));
            self.failures.push(what.to_string());
        }
    }

    /// The test's exit code.
    pub fn exit(self) -> ExitCode {
        if self.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }
}

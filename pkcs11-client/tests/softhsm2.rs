//! The conformance suite and the bad-input checks on SoftHSM2, in a throwaway token; and, when
//! `HSMKIT_PKCS11_MODULE` names another module, the same suite on that module.
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` when it is initialised. When that is not
//! set, this test makes a temporary token folder and configuration and runs itself again with it,
//! so a test run never touches the system's tokens.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use hsmkit_backend::{
    Backend, ErrorKind, HashAlg, KeyFilter, KeyPairSpec, KeyPolicy, Mechanism, Pin, SessionMode, Usage, UserKind,
};
use hsmkit_conformance::{Ctx, Expectations, run};
use hsmkit_pkcs11_client::{Pkcs11Backend, TokenChoice};

const SOFTHSM2: &str = "/usr/lib/softhsm/libsofthsm2.so";
const LABEL: &str = "hsmkit-test";
const USER_PIN: &str = "1234";
const SO_PIN: &str = "5678";

fn main() -> ExitCode {
    let lib = std::env::var_os("HSMKIT_SOFTHSM2_LIB").map_or_else(|| PathBuf::from(SOFTHSM2), PathBuf::from);
    if !lib.is_file() {
        eprintln!(
            "SoftHSM2 is not installed ({} is missing): run `bash scripts/test.sh`, which installs it",
            lib.display()
        );
        return ExitCode::FAILURE;
    }
    let Some(conf) = std::env::var_os("SOFTHSM2_CONF") else { return rerun_with_throwaway_token() };
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", LABEL, "--pin", USER_PIN, "--so-pin", SO_PIN])
        .env("SOFTHSM2_CONF", &conf)
        .output();
    match init {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!("softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&o.stderr));
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("cannot run softhsm2-util: {e}");
            return ExitCode::FAILURE;
        }
    }
    let backend = match Pkcs11Backend::open(&lib, TokenChoice::Label(LABEL.into())) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot open SoftHSM2: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    let expectations = Expectations::builtin("softhsm2").expect("SoftHSM2's expectation file");
    let ctx = Ctx::new(&backend, backend.slot(), Some(Pin::from(USER_PIN.to_string())));
    let report = run("SoftHSM2", &ctx, &expectations);
    print!("{report}");
    ok &= report.ok();
    ok &= bad_input(&backend, &lib);
    ok &= other_module();
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn rerun_with_throwaway_token() -> ExitCode {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).expect("token folder");
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )
    .expect("softhsm2.conf");
    let me = std::env::current_exe().expect("current exe");
    match Command::new(me).args(std::env::args_os().skip(1)).env("SOFTHSM2_CONF", &conf).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Runs one named check and prints its verdict.
fn check(name: &str, result: Result<(), String>) -> bool {
    match result {
        Ok(()) => {
            println!("  pass   {name}");
            true
        }
        Err(why) => {
            println!("  FAIL   {name}: {why}");
            false
        }
    }
}

fn expect_err<T>(r: hsmkit_backend::Result<T>, kinds: &[ErrorKind], says: &str) -> Result<(), String> {
    match r {
        Ok(_) => Err(format!("succeeded, expected {kinds:?}")),
        Err(e) if kinds.contains(e.kind()) && e.to_string().contains(says) => Ok(()),
        Err(e) => Err(format!("expected {kinds:?} saying '{says}', got {e}")),
    }
}

/// Every key on the token, as (label, class) pairs, to show that a bad call changed nothing.
fn token_keys(backend: &Pkcs11Backend) -> Vec<String> {
    let s = backend.session(SessionMode::ReadOnly).expect("session");
    s_login(&s);
    let mut out: Vec<String> = hsmkit_backend::Session::find_keys(&s, &KeyFilter::default())
        .expect("find")
        .into_iter()
        .map(|h| format!("{h:?}"))
        .collect();
    out.sort();
    out
}

fn s_login(s: &hsmkit_pkcs11_client::Pkcs11Session) {
    let _ = hsmkit_backend::Session::login(s, UserKind::User, &Pin::from(USER_PIN.to_string()));
}

fn bad_input(backend: &Pkcs11Backend, lib: &Path) -> bool {
    println!("bad input on SoftHSM2");
    let dir = tempfile::tempdir().expect("tempdir");
    let before = token_keys(backend);
    let mut ok = true;
    ok &= check(
        "a module path that does not exist",
        expect_err(
            Pkcs11Backend::open(dir.path().join("nope.so"), TokenChoice::First),
            &[ErrorKind::NotFound],
            "there is no PKCS#11 module",
        ),
    );
    let text = dir.path().join("not-a-library.so");
    std::fs::write(&text, "this is text, not ELF").expect("write");
    ok &= check(
        "a file that is not a shared library",
        expect_err(
            Pkcs11Backend::open(&text, TokenChoice::First),
            &[ErrorKind::ArgumentsBad],
            "not a loadable shared library",
        ),
    );
    let libc =
        ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"]
            .into_iter()
            .find(|p| Path::new(p).is_file());
    if let Some(libc) = libc {
        ok &= check(
            "a shared library that is not a PKCS#11 module",
            expect_err(
                Pkcs11Backend::open(libc, TokenChoice::First),
                &[ErrorKind::ArgumentsBad],
                "not a PKCS#11 module",
            ),
        );
    } else {
        ok &= check("a shared library that is not a PKCS#11 module", Err("no libc.so.6 found to try".into()));
    }
    ok &= check(
        "a token label that does not exist",
        expect_err(
            Pkcs11Backend::open(lib, TokenChoice::Label("no-such-token".into())),
            &[ErrorKind::TokenNotPresent],
            "no token",
        ),
    );
    let s = backend.session(SessionMode::ReadWrite).expect("session");
    use hsmkit_backend::Session as _;
    ok &= check(
        "a wrong user PIN",
        expect_err(s.login(UserKind::User, &Pin::from("0000".to_string())), &[ErrorKind::PinIncorrect], "C_Login"),
    );
    ok &= check(
        "a wrong security-officer PIN",
        expect_err(
            s.login(UserKind::SecurityOfficer, &Pin::from("0000".to_string())),
            &[ErrorKind::PinIncorrect],
            "C_Login",
        ),
    );
    ok &= check(
        "the right user PIN still works",
        s.login(UserKind::User, &Pin::from(USER_PIN.to_string())).map_err(|e| e.to_string()),
    );
    let mut p = KeyPolicy::new(Usage::DECRYPT);
    p.token = false;
    let pair = s.generate_key_pair(&KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, &p);
    ok &= check(
        "a mechanism the module does not support is named",
        pair.map_err(|e| e.to_string()).and_then(|(_, private)| {
            expect_err(
                s.decrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha512 }, private, &[0u8; 256]),
                &[ErrorKind::MechanismInvalid, ErrorKind::MechanismParamInvalid, ErrorKind::ArgumentsBad],
                "RSA-OAEP(SHA-512)",
            )
        }),
    );
    ok &= check(
        "RSA-AES key wrap is composed on SoftHSM2 and says so",
        match backend.capabilities() {
            Ok(c) => match c.mechanism(hsmkit_backend::MechanismKind::RsaAesKeyWrap) {
                Some(m) if m.composed => Ok(()),
                other => Err(format!("RSA-AES key wrap row: {other:?}")),
            },
            Err(e) => Err(e.to_string()),
        },
    );
    drop(s);
    ok &= check(
        "the token is unchanged",
        if token_keys(backend) == before { Ok(()) } else { Err("objects changed".into()) },
    );
    ok
}

/// The same suite on the module named by `HSMKIT_PKCS11_MODULE`, if any.
fn other_module() -> bool {
    let Some(path) = std::env::var_os("HSMKIT_PKCS11_MODULE") else { return true };
    let token = std::env::var("HSMKIT_PKCS11_TOKEN").map_or(TokenChoice::First, TokenChoice::Label);
    let pin = std::env::var("HSMKIT_PKCS11_PIN").ok().map(Pin::from);
    let expectations = match std::env::var_os("HSMKIT_PKCS11_EXPECTATIONS") {
        Some(f) => match std::fs::read_to_string(&f)
            .map_err(|e| e.to_string())
            .and_then(|t| Expectations::parse(&f.to_string_lossy(), &t))
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("HSMKIT_PKCS11_EXPECTATIONS ({}): {e}", f.to_string_lossy());
                return false;
            }
        },
        None => Expectations::none(),
    };
    let backend = match Pkcs11Backend::open(&path, token) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("HSMKIT_PKCS11_MODULE: {e}");
            return false;
        }
    };
    let ctx = Ctx::new(&backend, backend.slot(), pin);
    let report = run(&format!("{}", PathBuf::from(&path).display()), &ctx, &expectations);
    print!("{report}");
    report.ok()
}

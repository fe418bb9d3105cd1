//! The module survives being unloaded while a thread that used it lives on: a worker thread loads
//! `libhsmkit_pkcs11.so` (through the `cryptoki` crate, which `dlclose`s it when dropped), signs
//! with it, finalises and unloads it, and only then ends. Thread-local destructors registered
//! while the module ran (AWS-LC keeps per-thread state) run at the thread's end: they must not
//! point into unmapped code. The worker runs in a child process, so a crash is a failed test, not
//! a lost test run.

mod common;

use std::process::{Command, ExitCode};

fn worker() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let t = std::thread::spawn(|| {
        {
            let pkcs11 = Pkcs11::new(common::module_path()).expect("load the module");
            pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).expect("C_Initialize");
            common::init_token(&pkcs11);
            let slot = pkcs11.get_all_slots().expect("slots")[0];
            let session = pkcs11.open_rw_session(slot).expect("session");
            session.login(UserType::User, Some(&AuthPin::new(common::USER_PIN.into()))).expect("login");
            let (_, private) = session
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &[Attribute::ModulusBits(2048.into()), Attribute::Verify(true)],
                    &[Attribute::Sign(true)],
                )
                .expect("key pair");
            let sig = session.sign(&Mechanism::Sha256RsaPkcs, private, b"unload me").expect("sign");
            assert_eq!(sig.len(), 256);
            let mut random = [0u8; 32];
            session.generate_random_slice(&mut random).expect("random");
            drop(session);
            pkcs11.finalize().expect("C_Finalize");
            // Dropping the context unloads the library (dlclose).
        }
        // Loaded again, the module starts again (it stayed mapped, finalised).
        {
            let pkcs11 = Pkcs11::new(common::module_path()).expect("load the module again");
            pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).expect("C_Initialize again");
            let slot = pkcs11.get_all_slots().expect("slots")[0];
            let session = pkcs11.open_ro_session(slot).expect("session");
            session.login(UserType::User, Some(&AuthPin::new(common::USER_PIN.into()))).expect("login again");
            drop(session);
            pkcs11.finalize().expect("C_Finalize again");
        }
        // The thread lives on after the unload, then ends: its thread-local destructors run now.
        std::thread::sleep(std::time::Duration::from_millis(50));
    });
    t.join().expect("the worker thread ends cleanly");
}

fn main() -> ExitCode {
    if std::env::var_os("HSMKIT_UNLOAD_WORKER").is_some() {
        worker();
        return ExitCode::SUCCESS;
    }
    common::with_throwaway_conf(|| {
        let me = std::env::current_exe().expect("exe");
        let status = Command::new(me).env("HSMKIT_UNLOAD_WORKER", "1").status().expect("run the worker");
        if status.success() {
            println!("ok   a thread that used the module ends after C_Finalize and dlclose");
            ExitCode::SUCCESS
        } else {
            println!("FAIL the worker died after the module was unloaded: {status}");
            ExitCode::FAILURE
        }
    })
}

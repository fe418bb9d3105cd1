//! The conformance suite through `libhsmkit_pkcs11.so`, loaded by the pkcs11-client backend, and
//! the same suite on the in-process emulator on the same kmdata: the two must agree case by case,
//! with no declared difference.

mod common;

use std::process::ExitCode;

use hsmkit_backend::{Backend as _, MechanismKind, Pin};
use hsmkit_conformance::abi::AbiCtx;
use hsmkit_conformance::{Body, Ctx, Expectations, Outcome, Target, run};
use hsmkit_emulator::{Config, Emulator, SLOT};

fn main() -> ExitCode {
    common::with_throwaway_conf(|| {
        let backend = common::initialised_backend();
        // The module lists CKM_RSA_AES_KEY_WRAP itself: the client calls it natively (with
        // CK_RSA_AES_KEY_WRAP_PARAMS through the raw function list), not composed.
        let caps = backend.capabilities().expect("capabilities");
        let rsa_aes = caps.mechanism(MechanismKind::RsaAesKeyWrap).expect("CKM_RSA_AES_KEY_WRAP is listed");
        assert!(!rsa_aes.composed, "the single mechanism is used where the module has it");
        assert!(caps.mechanism(MechanismKind::AesKeyWrapKwp).is_some(), "CKM_AES_KEY_WRAP_KWP is listed");
        let ctx = Ctx::new(&backend, backend.slot(), Some(Pin::from(common::USER_PIN.to_string())));
        let mut module =
            run("libhsmkit_pkcs11.so", &ctx, &Expectations::builtin("pkcs11-module").expect("expectations"));
        drop(ctx);
        // The client lets go of the module (C_Finalize) before the ABI level drives it raw.
        drop(backend);
        let abi_cases: Vec<_> =
            hsmkit_conformance::suite().into_iter().filter(|c| matches!(c.body, Body::Abi(_))).collect();
        let abi_run = |m: &hsmkit_conformance::abi::Module| {
            let ctx = AbiCtx {
                module: m,
                token: Some(common::LABEL.to_string()),
                slot: None,
                user_pin: Some(Pin::from(common::USER_PIN.to_string())),
                so_pin: Some(Pin::from(common::SO_PIN.to_string())),
            };
            hsmkit_conformance::run_cases(
                &abi_cases,
                Target { seam: None, abi: Some(&ctx) },
                &Expectations::none(),
                &mut |_| {},
            )
        };
        let so = hsmkit_conformance::abi::Module::load(&common::module_path(), None).expect("load the .so");
        let mut abi_module = abi_run(&so);
        // The same C ABI linked into this process, over the same kmdata.
        let linked = hsmkit_conformance::abi::Module::from_list(
            "libhsmkit_pkcs11 (linked in)",
            hsmkit_pkcs11::in_process(&hsmkit_emulator::Config::beside(common::kmdata_of(0))),
            Some((hsmkit_pkcs11::C_GetInterfaceList, hsmkit_pkcs11::C_GetInterface)),
        );
        let abi_in_process = abi_run(&linked);
        abi_module.append(&mut module.findings);
        module.findings = abi_module;
        print!("{module}");

        // The in-process emulator on the same kmdata: the user PIN the module's C_InitPIN set is the
        // PIN the in-process login checks (one token record, one login rule).
        let emu = Emulator::open(Config::beside(common::kmdata_of(0))).expect("emulator");
        let ctx = Ctx::new(&emu, SLOT, Some(Pin::from(common::USER_PIN.to_string())));
        let mut in_process =
            run("the in-process emulator", &ctx, &Expectations::builtin("emulator").expect("expectations"));
        let mut abi_in_process = abi_in_process;
        abi_in_process.append(&mut in_process.findings);
        in_process.findings = abi_in_process;
        print!("{in_process}");

        // Agreement: a case conforms on both or on neither, unless one side declares why not.
        let conforms = |o: &Outcome| matches!(o, Outcome::Pass | Outcome::UnexpectedPass(_));
        // Both expectation files are empty, so nothing may be an expected failure; a case may be
        // skipped (a PIN the run does not give), but then on both sides for the same reason.
        let declared = |o: &Outcome| matches!(o, Outcome::ExpectedFailure(_));
        let mut agree = true;
        let ids = |r: &hsmkit_conformance::Report| r.findings.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
        if ids(&module) != ids(&in_process) {
            println!("  the two runs ran different cases");
            agree = false;
        }
        for (fa, fb) in module.findings.iter().zip(&in_process.findings) {
            let (id, a, b) = (&fa.id, &fa.outcome, &fb.outcome);
            // The world profile needs the world model, which PKCS#11 does not show: through the
            // .so it is skipped, with that reason, and runs in process only.
            if fa.profile == hsmkit_conformance::Profile::World {
                if !matches!(a, Outcome::Skip(why) if why.contains("models no security world"))
                    || !matches!(b, Outcome::Pass)
                {
                    println!("  WORLD {id}: through the .so {a:?}, in process {b:?}; skipped there, passing here");
                    agree = false;
                }
                continue;
            }
            if declared(a) || declared(b) {
                // The two declare no difference: both expectation files are empty.
                println!("  DECLARED {id}: through the .so {a:?}, in process {b:?}; the two must agree undeclared");
                agree = false;
            }
            if matches!((a, b), (Outcome::Skip(x), Outcome::Skip(y)) if x != y)
                || matches!(a, Outcome::Skip(_)) != matches!(b, Outcome::Skip(_))
            {
                println!("  SKIPPED {id}: through the .so {a:?}, in process {b:?}; both or neither, for one reason");
                agree = false;
            }
            if conforms(a) != conforms(b) {
                println!("  DIFFER {id}: through the .so {a:?}, in process {b:?}");
                agree = false;
            }
        }
        println!("the module and the in-process emulator {}", if agree { "agree" } else { "DISAGREE" });
        if module.ok() && in_process.ok() && agree { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    })
}

//! The article's commands, run as written with `hsmkit` in front, and the CLI's bad input.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(dir.path().join("kmdata")).expect("kmdata");
        std::fs::write(dir.path().join("pins"), "alpha\nbravo\ncharlie\n").expect("pins");
        Env { dir }
    }

    fn kmdata(&self) -> PathBuf {
        self.dir.path().join("kmdata")
    }

    /// `hsmkit` with the article's arguments; kmdata from `NFAST_KMDATA` as the tools use it.
    fn command(&self, args: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hsmkit"));
        c.args(args.split_whitespace())
            .env("NFAST_KMDATA", self.kmdata())
            .env("HSMKIT_PIN_FILE", self.dir.path().join("pins"))
            .env("HSMKIT_STATE_DIR", self.dir.path().join("state"))
            .env_remove("HOME")
            .current_dir(self.dir.path());
        c
    }

    fn run(&self, args: &str) -> Output {
        self.command(args).output().expect("run hsmkit")
    }

    /// Runs `hsmkit` with `input` on its standard input (a confirmation prompt's answer).
    fn answering(&self, args: &str, input: &str) -> Output {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hsmkit");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("answer");
        child.wait_with_output().expect("run hsmkit")
    }

    fn ok(&self, args: &str) -> String {
        let out = self.run(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "hsmkit {args}\nstdout:\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &str) -> String {
        let before = snapshot(self.dir.path());
        let out = self.run(args);
        assert!(!out.status.success(), "hsmkit {args} should fail");
        let after = snapshot(self.dir.path());
        if after != before {
            let changed: Vec<_> =
                after.iter().filter(|f| !before.contains(f)).map(|(p, _)| p.display().to_string()).collect();
            let gone: Vec<_> =
                before.iter().filter(|f| !after.contains(f)).map(|(p, _)| p.display().to_string()).collect();
            panic!("hsmkit {args} changed files: new or changed {changed:?}, removed or changed {gone:?}");
        }
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn world(&self) {
        self.ok("new-world --initialize --cipher-suite=DLf1024s160mRijndael --module=1 --acs-quorum=2/3");
    }

    /// The region's provider and toolset, the world, contosokey, and its copy narrowed for that
    /// provider (`KeyTransferRemote -ModifyAcls`); returns the provider folder and the two packages.
    fn narrowed_for(&self, region: &str) -> (PathBuf, PathBuf, PathBuf) {
        let d = self.dir.path();
        let provider = d.join("provider");
        self.ok(&format!("vendor init --region {region} --dir {} --out {}", provider.display(), d.display()));
        self.world();
        self.ok(GENERATEKEY);
        let (kek, world) =
            (d.join(format!("BYOK-KEK-pkg-{region}-1")), d.join(format!("BYOK-SecurityWorld-pkg-{region}-1")));
        self.ok(&format!(
            "KeyTransferRemote -ModifyAcls -KeyAppName simple -KeyIdentifier contosokey -ExchangeKeyPackage {} -NewSecurityWorldPackage {}",
            kek.display(),
            world.display()
        ));
        (provider, kek, world)
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !e.file_name().to_string_lossy().ends_with(".lock") {
                // Lock files (empty, made on first use) are no state.
                out.push((p.clone(), std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

const GENERATEKEY: &str = "generatekey --generate simple type=RSA size=2048 protect=module ident=contosokey plainname=contosokey nvram=no pubexp=";

#[test]
fn the_articles_world_key_status_and_inspection_commands_run_as_written() {
    let e = Env::new();
    let out = e.ok("new-world --initialize --cipher-suite=DLf1024s160mRijndael --module=1 --acs-quorum=2/3");
    assert!(out.contains("security world generated on module #1; hknso = "), "{out}");
    assert!(e.kmdata().join("local/world").exists());
    let cards: Vec<_> = std::fs::read_dir(e.dir.path().join("cards")).expect("cards").collect();
    assert_eq!(cards.len(), 3);

    let info = e.ok("nkminfo");
    assert!(info.contains("k-out-of-n  2/3") && info.contains("ciphersuite DLf1024s160mRijndael"), "{info}");

    let out = e.ok(GENERATEKEY);
    assert!(out.contains("Key successfully generated."), "{out}");
    assert!(e.kmdata().join("local/key_simple_contosokey").exists());

    let out = e.ok("cngimport --import -M --key=contosokey --appname=simple contosokey");
    assert!(out.contains("key_caping_machine--"), "{out}");

    let keys = e.ok("nkminfo -k");
    assert!(keys.starts_with("Key list - 2 keys"), "{keys}");
    assert!(keys.contains("AppName simple       Ident contosokey"), "{keys}");

    let acl = e.ok("preload -m 1 -A simple -K contosokey python aclprint.py");
    assert!(acl.contains("ACL containing 2 Permission Groups"), "{acl}");
    assert!(acl.contains("MakeArchiveBlob"), "the default key is recoverable: {acl}");
    assert!(acl.contains("(KNSO: the Administrator Card Set quorum)"), "{acl}");
    let same = e.ok("aclprint -A simple -K contosokey");
    assert!(same.contains("OpPermissions: DuplicateHandle, GetAppData, ReduceACL"), "{same}");

    let path = e.kmdata().join("local/key_simple_contosokey");
    let dump = e.ok(&format!("kmfile-dump {}", path.display()));
    assert!(dump.contains("type        RSA, 2048 bits, public exponent 0x10001"), "{dump}");
    assert!(dump.contains("not shown"), "{dump}");
    // No secret in the dump: the sealed bytes are not printed.
    let blob: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("blob")).expect("json");
    let ct = blob["privblob"]["ct"].as_str().expect("ct");
    assert!(!dump.contains(&ct[..32]));
}

#[test]
fn bad_world_input_fails_clearly_and_changes_nothing() {
    let e = Env::new();
    for (quorum, says) in
        [("3/2", "cannot exceed"), ("0/3", "at least 1"), ("a/b", "whole numbers"), ("2/65", "at most 64")]
    {
        let err = e.fails(&format!(
            "new-world --initialize --cipher-suite=DLf1024s160mRijndael --module=1 --acs-quorum={quorum}"
        ));
        assert!(err.contains(&format!("invalid quorum '{quorum}'")) && err.contains(says), "{quorum}: {err}");
        assert!(err.contains("what to do:"), "{err}");
    }
    let err = e.fails("new-world --initialize --cipher-suite=DLf2048s224mDES3 --module=1 --acs-quorum=2/3");
    assert!(err.contains("unknown cipher suite 'DLf2048s224mDES3'") && err.contains("DLf1024s160mRijndael"), "{err}");
    std::fs::write(e.dir.path().join("pins"), "only-one\n").expect("pins");
    let err = e.fails("new-world --initialize --cipher-suite=DLf1024s160mRijndael --module=1 --acs-quorum=2/3");
    assert!(err.contains("1 PIN(s) for 3 cards"), "{err}");
}

#[test]
fn bad_key_input_fails_clearly_and_changes_nothing() {
    let e = Env::new();
    e.world();
    for (args, says) in [
        ("size=512", "1024 to 4096"),
        ("size=16384", "1024 to 4096"),
        ("size=big", "not a number"),
        ("ident=Contoso_Key", "invalid key identifier 'Contoso_Key'"),
        ("protect=token", "BYOK toolset does not support OCS-protected keys"),
        ("pubexp=10000", "odd number"),
        ("colour=blue", "unknown parameter 'colour'"),
    ] {
        let base = "generatekey --generate simple type=RSA size=2048 protect=module ident=contosokey nvram=no";
        let err = e.fails(&format!("{base} {args}"));
        assert!(err.contains(says), "{args}: {err}");
    }
    e.ok(GENERATEKEY);
    let err = e.fails(GENERATEKEY);
    assert!(err.contains("already exists"), "{err}");
    let err = e.fails("aclprint -A simple -K nosuchkey");
    assert!(err.contains("there is no key simple/nosuchkey"), "{err}");
}

#[test]
fn generatekey_makes_ec_keys_as_nshield_names_them() {
    let e = Env::new();
    e.world();
    let out = e.ok("generatekey --generate simple type=ECDSA curve=NISTP256 protect=module ident=ec256 nvram=no");
    assert!(out.contains("ECDSA") && out.contains("NISTP256"), "{out}");
    e.ok("generatekey --generate simple type=ECDSA curve=NISTP521 protect=module ident=ec521");
    e.ok("generatekey --generate simple type=Ed25519 protect=module ident=ed");
    let acl = e.ok("aclprint -A simple -K ec256");
    assert!(acl.contains("ECDSA P-256") && acl.contains("256 bits"), "{acl}");
    assert!(e.ok("aclprint -A simple -K ec521").contains("ECDSA P-521"));
    assert!(e.ok("aclprint -A simple -K ed").contains("Ed25519"));
    for (args, says) in [
        ("type=ECDSA", "no curve given"),
        ("type=ECDSA curve=secp256k1", "curve 'secp256k1' is not one type=ECDSA takes"),
        ("type=ECDSA curve=NISTP256 size=2048", "size= is an RSA parameter"),
        ("type=DSA size=2048", "key type 'DSA' is not supported"),
    ] {
        let err = e.fails(&format!("generatekey --generate simple {args} protect=module ident=bad"));
        assert!(err.contains(says), "{args}: {err}");
    }
    assert!(!e.kmdata().join("local/key_simple_bad").exists(), "a refused key leaves no blob");
}

#[test]
fn an_edited_acl_is_detected_by_aclprint() {
    let e = Env::new();
    e.world();
    e.ok(GENERATEKEY);
    let path = e.kmdata().join("local/key_simple_contosokey");
    let text = std::fs::read_to_string(&path).expect("blob");
    std::fs::write(&path, text.replacen("GetAppData", "GetAppData | ExportAsPlain", 1)).expect("edit");
    let err = e.fails("aclprint -A simple -K contosokey");
    assert!(err.contains("failed its integrity check"), "{err}");
}

#[test]
fn a_missing_kmdata_folder_is_named() {
    let e = Env::new();
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .args(["nkminfo", "--kmdata"])
        .arg(e.dir.path().join("nowhere"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere") && err.contains("does not exist"), "{err}");
    assert!(!e.dir.path().join("nowhere").exists());
}

#[test]
fn a_world_is_needed_before_keys() {
    let e = Env::new();
    let err = e.fails(GENERATEKEY);
    assert!(err.contains("there is no security world") && err.contains("new-world"), "{err}");
}

#[test]
fn new_world_program_loads_the_world_into_a_fresh_module_with_the_quorum() {
    let e = Env::new();
    e.world();
    e.ok(GENERATEKEY);
    // A second module (fresh NVRAM) sharing the kmdata cannot use the key until programmed.
    let nvram2 = e.dir.path().join("nvram2");
    let err = e.fails(&format!("--nvram {} aclprint -A simple -K contosokey", nvram2.display()));
    assert!(err.contains("not programmed") && err.contains("--program"), "{err}");
    std::fs::write(e.dir.path().join("pins"), "bravo\ncharlie\n").expect("pins");
    let out = e.ok(&format!("--nvram {} new-world --program --card 2 --card 3", nvram2.display()));
    assert!(out.contains("programmed into world"), "{out}");
    e.ok(&format!("--nvram {} aclprint -A simple -K contosokey", nvram2.display()));
    // One card short of the quorum.
    let nvram3 = e.dir.path().join("nvram3");
    let err = e.fails(&format!("--nvram {} new-world --program --card 2", nvram3.display()));
    assert!(err.contains("1 of 2 cards"), "{err}");
}

#[test]
fn keys_are_unusable_outside_operational_mode() {
    let e = Env::new();
    e.world();
    e.ok(GENERATEKEY);
    e.ok("nopclearfail -I -m 1");
    let err = e.fails("aclprint -A simple -K contosokey");
    assert!(err.contains("initialisation mode") && err.contains("nopclearfail -O"), "{err}");
    e.ok("nopclearfail -O");
    e.ok("aclprint -A simple -K contosokey");
}

#[test]
fn conform_runs_the_suite_on_the_emulator_and_names_bad_backends() {
    let e = Env::new();
    e.ok("new-world --initialize --cipher-suite=DLf3072s256mAEScSP800131Ar1 --module=1 --acs-quorum=1/1");
    let module_files = || ["kmdata", "nvram", "cards"].map(|d| snapshot(&e.dir.path().join(d)));
    let before = module_files();
    let out = e.ok("conform --backend emulator");
    // The README's figures for the emulator in process: over 500 cases, over 5,000 vector checks.
    let summary = out.lines().rev().find(|l| l.contains(" cases, ")).expect("the summary line");
    let figure = |after: &str| -> u64 {
        let head = &summary[..summary.find(after).expect("a figure")];
        head.rsplit(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).expect("a number")
    };
    assert!(figure(" cases") > 500 && figure(" vector checks") > 5_000, "{summary}");
    assert!(
        out.contains("0 failed") && out.contains("pass   rsa-aes-key-wrap") && out.ends_with("Result: SUCCESS\n"),
        "{out}"
    );
    // The ABI level runs in process, on the emulator's C ABI linked into hsmkit; the world
    // profile runs on throwaway worlds the emulator makes (this world stays as it was).
    for id in [
        "abi-initialize-twice",
        "abi-bad-session-C_Sign",
        "abi-get-interface",
        "world-card-lockout",
        "sweep-aes-cbc-encrypt-192",
    ] {
        assert!(out.contains(&format!("pass   {id}")), "{id}: {out}");
    }
    // Every byte of the world, its module's NVRAM and its cards is as it was.
    assert!(module_files() == before, "hsmkit conform changed the user's world, NVRAM or cards");
    let err = e.fails("conform --backend pkcs11:/nonexistent/module.so");
    assert!(err.contains("there is no PKCS#11 module at /nonexistent/module.so"), "{err}");
    // An emulator without a world fails once, before any case, and says what to do.
    let missing = e.dir.path().join("no-such-kmdata");
    let err = e.fails(&format!("conform --backend emulator:{}", missing.display()));
    assert!(err.contains("does not exist") && err.contains("what to do") && !err.contains("abi-"), "{err}");
    let empty = e.dir.path().join("empty-kmdata");
    std::fs::create_dir(&empty).expect("mkdir");
    let err = e.fails(&format!("conform --backend emulator:{}", empty.display()));
    assert!(err.contains("there is no security world") && err.contains("new-world") && !err.contains("abi-"), "{err}");
    let err = e.fails("conform --backend hsm9000");
    assert!(err.contains("unknown backend 'hsm9000'"), "{err}");
}

#[test]
fn conform_drives_the_abi_level_on_the_same_nvram_and_cards_as_the_seam_level() {
    let e = Env::new();
    let g = format!(
        "--nvram {} --cards {}",
        e.dir.path().join("elsewhere-nvram").display(),
        e.dir.path().join("elsewhere-cards").display()
    );
    e.ok(&format!("{g} new-world --initialize --cipher-suite=DLf3072s256mAEScSP800131Ar1 --module=1 --acs-quorum=1/1"));
    // The linked C ABI reads the module's NVRAM where --nvram says, not beside kmdata (where
    // there is none: the token would be unrecognised and every ABI case fail).
    let out = e.ok(&format!("{g} conform --profile abi"));
    assert!(out.contains("pass   abi-token-info") && out.contains(" 0 failed,"), "{out}");
    assert!(!e.kmdata().with_file_name("nvram").exists(), "an NVRAM folder was made beside kmdata");
}

#[test]
fn vendor_init_makes_a_toolset_that_verifykeypackage_accepts_and_mixed_regions_fail() {
    let e = Env::new();
    let dir = |r: &str| e.dir.path().join(format!("toolset-{r}"));
    for region in ["NA", "EU"] {
        std::fs::create_dir(dir(region)).expect("toolset dir");
        let out = e.ok(&format!(
            "vendor init --region {region} --dir {} --out {}",
            e.dir.path().join(format!("provider-{region}")).display(),
            dir(region).display()
        ));
        assert!(out.contains("Vendor root hash: "), "{out}");
    }
    let k = |r: &str| dir(r).join(format!("BYOK-KEK-pkg-{r}-1"));
    let w = |r: &str| dir(r).join(format!("BYOK-SecurityWorld-pkg-{r}-1"));
    // The article's command, with the root pinned by the toolset's pin file.
    let out = e.ok(&format!("verifykeypackage -k {} -w {}", k("NA").display(), w("NA").display()));
    assert!(out.ends_with("Result: SUCCESS\n"), "{out}");
    assert!(out.contains("ok: the KEK is not exportable"), "{out}");
    // EU was made by another provider with another root: pinned to NA's root, it fails by name.
    let na_root = std::fs::read_to_string(dir("NA").join("verifykeypackage.pin")).expect("pin");
    let err = e.fails(&format!(
        "verifykeypackage -k {} -w {} --root-hash {}",
        k("EU").display(),
        w("EU").display(),
        na_root.trim().replace(' ', "")
    ));
    assert!(err.contains("check failed: the signer chain ends at the pinned root"), "{err}");
    let err = e.fails(&format!("verifykeypackage -k {} -w {} --root-hash 00", k("NA").display(), w("NA").display()));
    assert!(err.contains("is not a root hash"), "{err}");
    // A provider folder is not overwritten, and a toolset folder pins one root only.
    let err = e.fails(&format!(
        "vendor init --region NA --dir {} --out {}",
        e.dir.path().join("provider-NA").display(),
        e.dir.path().display()
    ));
    assert!(err.contains("already holds a provider"), "{err}");
    let err = e.fails(&format!(
        "vendor init --region AP --dir {} --out {}",
        e.dir.path().join("provider-AP").display(),
        dir("NA").display()
    ));
    assert!(err.contains("already pins another provider's root"), "{err}");
}

#[test]
fn modify_acls_narrows_a_copy_with_the_quorum_and_leaves_the_original() {
    let e = Env::new();
    let d = e.dir.path();
    e.ok(&format!("vendor init --region NA --dir {} --out {}", d.join("provider").display(), d.display()));
    e.world();
    e.ok(GENERATEKEY);
    let original = std::fs::read(e.kmdata().join("local/key_simple_contosokey")).expect("original");
    let kek = d.join("BYOK-KEK-pkg-NA-1");
    let world = d.join("BYOK-SecurityWorld-pkg-NA-1");
    let article = format!(
        "KeyTransferRemote -ModifyAcls -KeyAppName simple -KeyIdentifier contosokey -ExchangeKeyPackage {} -NewSecurityWorldPackage {}",
        kek.display(),
        world.display()
    );
    // One card of a 2/3 quorum (with its right PIN): refused, nothing written.
    std::fs::write(d.join("pins"), "charlie\n").expect("pins");
    let err = e.fails(&format!(
        "transfer modify-acls --app simple --ident contosokey --kek-package {} --world-package {} --card 3",
        kek.display(),
        world.display()
    ));
    assert!(err.contains("1 of 2 cards"), "{err}");
    std::fs::write(d.join("pins"), "alpha\nbravo\ncharlie\n").expect("pins");
    let out = e.ok(&article);
    assert!(out.ends_with("Result: SUCCESS\n"), "{out}");
    assert_eq!(
        std::fs::read(e.kmdata().join("local/key_simple_contosokey")).expect("original"),
        original,
        "the original is untouched"
    );
    let acl = e.ok("aclprint -A xferacld -K contosokey");
    assert!(acl.contains("ACL containing 1 Permission Group"), "{acl}");
    assert!(acl.contains("Export: wrapped only under the key"), "{acl}");
    for gone in ["MakeArchiveBlob", "ReduceACL", "ExpandACL", "Requires Certifier: 0", "ExportAsPlain"] {
        assert!(!acl.contains(gone), "{gone} in {acl}");
    }
    let dump = e.ok(&format!("kmfile-dump {}", e.kmdata().join("local/key_xferacld_contosokey").display()));
    assert!(dump.contains("archive     none (not recoverable)"), "{dump}");
    // Twice: the narrowed copy exists and is not replaced.
    let err = e.fails(&article);
    assert!(err.contains("already exists"), "{err}");
    // Unknown or missing arguments are named.
    let err = e.fails("KeyTransferRemote -ModifyAcls -KeyAppName simple");
    assert!(err.contains("-KeyIdentifier is missing"), "{err}");
    let err = e.fails("KeyTransferRemote -Frobnicate");
    assert!(err.contains("unknown argument '-Frobnicate'"), "{err}");
}

#[test]
fn package_wraps_the_narrowed_key_for_the_providers_module_only() {
    use hsmkit_backend::{Backend, HashAlg, KeyPolicy, KeyType, Mechanism, SessionMode, Usage};
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let e = Env::new();
    let d = e.dir.path();
    e.ok(&format!("vendor init --region NA --dir {} --out {}", d.join("provider").display(), d.display()));
    e.world();
    e.ok(GENERATEKEY);
    let (kek, world) = (d.join("BYOK-KEK-pkg-NA-1"), d.join("BYOK-SecurityWorld-pkg-NA-1"));
    let package = |ident: &str| {
        format!(
            "transfer package --ident {ident} --kek-package {} --world-package {} --tenant 01234567-89AB-cdef-0123-456789abcdef --friendly-name ContosoFirstkey --out {}",
            kek.display(),
            world.display(),
            d.display()
        )
    };
    // Not narrowed yet: refused with the reason, nothing written.
    let err = e.fails(&package("contosokey"));
    assert!(err.contains("has not been narrowed") && err.contains("-ModifyAcls"), "{err}");
    e.ok(&format!(
        "KeyTransferRemote -ModifyAcls -KeyAppName simple -KeyIdentifier contosokey -ExchangeKeyPackage {} -NewSecurityWorldPackage {}",
        kek.display(),
        world.display()
    ));
    for bad in ["--tenant not-a-guid", "--friendly-name ../escape"] {
        let args = package("contosokey")
            .replace("--tenant 01234567-89AB-cdef-0123-456789abcdef", "")
            .replace("--friendly-name ContosoFirstkey", "");
        let arg = if bad.starts_with("--tenant") {
            format!("{args} {bad} --friendly-name ContosoFirstkey")
        } else {
            format!("{args} {bad} --tenant 01234567-89AB-cdef-0123-456789abcdef")
        };
        let err = e.fails(&arg);
        assert!(err.contains("invalid friendly name") || err.contains("is not a tenant id"), "{bad}: {err}");
    }
    // Narrowed for NA's KEK: packaging for another provider (EU, its own toolset) is refused.
    let eu = d.join("eu");
    std::fs::create_dir(&eu).expect("eu");
    e.ok(&format!("vendor init --region EU --dir {} --out {}", d.join("provider-eu").display(), eu.display()));
    let err = e.fails(&format!(
        "transfer package --ident contosokey --kek-package {} --world-package {} --tenant 01234567-89ab-cdef-0123-456789abcdef --friendly-name Eu --out {}",
        eu.join("BYOK-KEK-pkg-EU-1").display(),
        eu.join("BYOK-SecurityWorld-pkg-EU-1").display(),
        d.display()
    ));
    assert!(err.contains("not narrowed for this KEK"), "{err}");
    let out = e.ok(&package("contosokey"));
    assert!(out.ends_with("Result: SUCCESS\n"), "{out}");
    let path = d.join("TransferPackage-ContosoFirstkey.byok");
    let bytes = std::fs::read(&path).expect("package");
    let p = hsmkit_transfer::byok::TransferPackage::from_bytes("pkg", &bytes).expect("a valid package");
    assert_eq!(p.body.tenant, "01234567-89ab-cdef-0123-456789abcdef");
    // The same name twice: refused, the first package kept.
    let err = e.fails(&package("contosokey"));
    assert!(err.contains("already exists"), "{err}");
    // Every single-byte change is refused.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(hsmkit_transfer::byok::TransferPackage::from_bytes("pkg", &b).is_err(), "byte {i}");
    }
    // The provider's module, and only it, unwraps the key: the result signs as the original.
    let mut c = hsmkit_emulator::Config::beside(d.join("provider/kmdata"));
    c.seed = None;
    let provider = hsmkit_emulator::Emulator::open(c).expect("provider module");
    let kek_handles = provider.load_key("hsmkit", "kek-na-1").expect("the KEK");
    let s = provider.open_session(hsmkit_emulator::SLOT, SessionMode::ReadWrite).expect("session");
    let mut policy = KeyPolicy::new(Usage::SIGN);
    policy.token = false;
    let key = s
        .unwrap_key(&hsmkit_transfer::byok::WRAP, kek_handles[0], &p.body.wrapped, KeyType::Rsa, &policy)
        .expect("the provider unwraps");
    let sig = s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, key, b"tenant").expect("sign");
    let public = rsa::PublicKey::from_public_key_der(&p.body.public).expect("spki");
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public)
        .verify(b"tenant", &rsa::pkcs1v15::Signature::try_from(sig.as_slice()).expect("sig"))
        .expect("the unwrapped key is the customer's key");
}

#[test]
fn the_articles_tenant_cmdlets_run_as_written() {
    let e = Env::new();
    let d = e.dir.path();
    let (provider, kek, world) = e.narrowed_for("AP");
    let tenant = "0123abcd-89ab-cdef-0123-456789abcdef";
    e.ok(&format!(
        "KeyTransferRemote -Package -KeyIdentifier contosokey -ExchangeKeyPackage {} -NewSecurityWorldPackage {} -TenantBposId {tenant} -KeyFriendlyName ContosoFirstkey",
        kek.display(),
        world.display()
    ));
    // Written where the tool runs, as KeyTransferRemote.exe does.
    let pkg = d.join("TransferPackage-ContosoFirstkey.byok");
    assert!(pkg.exists(), "KeyTransferRemote -Package wrote {}", pkg.display());
    // Not connected yet: each cmdlet says what to run first.
    let err = e.fails("Get-AadrmKeys");
    assert!(err.contains("not connected") && err.contains("Connect-AadrmService"), "{err}");
    let err = e.fails(&format!("Connect-AadrmService -Provider {} -TenantBposId not-a-guid", provider.display()));
    assert!(err.contains("not-a-guid"), "{err}");
    let err =
        e.fails(&format!("Connect-AadrmService -Provider {} -TenantBposId {tenant}", d.join("nowhere").display()));
    assert!(err.contains("not a provider folder"), "{err}");
    // Step 2 of the article: connect, read the BPOSId, disconnect.
    e.ok(&format!("Connect-AadrmService -Provider {} -TenantBposId {tenant}", provider.display()));
    let conf = e.ok("Get-AadrmConfiguration");
    assert!(conf.lines().next().is_some_and(|l| l.starts_with("BPOSId") && l.ends_with(tenant)), "{conf}");
    assert!(e.ok("Disconnect-AadrmService").contains("closed"));
    assert!(e.fails("Get-AadrmKeys").contains("not connected"));
    // The upload: reconnect, see the initial key, add the package (confirmed), see it Active.
    e.ok(&format!("Connect-AadrmService -Provider {} -TenantBposId {tenant}", provider.display()));
    let keys = e.ok("Get-AadrmKeys");
    assert!(keys.contains("Microsoft-managed        Active"), "{keys}");
    let add = format!("Add-AadrmKey \u{2013}KeyFile {} -Verbose", pkg.display());
    let declined = e.answering(&add, "n\n");
    assert!(!declined.status.success(), "declined");
    assert!(String::from_utf8_lossy(&declined.stderr).contains("not confirmed"));
    assert_eq!(e.ok("Get-AadrmKeys"), keys, "a declined upload changes nothing");
    let added = e.answering(&add, "y\n");
    let out = String::from_utf8_lossy(&added.stdout);
    assert!(added.status.success(), "{out}\n{}", String::from_utf8_lossy(&added.stderr));
    assert!(out.contains("this cannot be undone"), "the article's warning is asked: {out}");
    assert!(out.contains("VERBOSE: Performing the operation \"Add-AadrmKey\""), "{out}");
    assert!(out.contains("The Rights management service successfully added the key."), "{out}");
    let keys = e.ok("Get-AadrmKeys");
    assert!(
        keys.contains("Customer-managed (BYOK)  Active") && keys.contains("Microsoft-managed        Archived"),
        "{keys}"
    );
    let err = e.fails(&format!("Add-AadrmKey -KeyFile {} -Force", pkg.display()));
    assert!(err.contains("was already added"), "{err}");
    // -Force adds without asking (no input at all): another tenant's package.
    let second = "fedcba98-89ab-cdef-0123-456789abcdef";
    e.ok(&format!(
        "KeyTransferRemote -Package -KeyIdentifier contosokey -ExchangeKeyPackage {} -NewSecurityWorldPackage {} -TenantBposId {second} -KeyFriendlyName Second",
        kek.display(),
        world.display()
    ));
    e.ok(&format!("Connect-AadrmService -Provider {} -TenantBposId {second}", provider.display()));
    let out = e.ok(&format!("Add-AadrmKey -KeyFile {} -Force", d.join("TransferPackage-Second.byok").display()));
    assert!(out.contains("successfully added") && !out.contains("Continue?"), "{out}");
    assert!(!out.contains("VERBOSE"), "quiet without -Verbose: {out}");
    e.ok(&format!("Connect-AadrmService -Provider {} -TenantBposId {tenant}", provider.display()));
    // Without HSMKIT_STATE_DIR the connection lives under XDG_STATE_HOME.
    let xdg = d.join("xdg");
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .args(["Connect-AadrmService", "-Provider"])
        .arg(&provider)
        .args(["-TenantBposId", tenant])
        .env_remove("HSMKIT_STATE_DIR")
        .env_remove("HOME")
        .env("XDG_STATE_HOME", &xdg)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(xdg.join("hsmkit").join("aadrm-connection.json").is_file());
    let err = e.fails("Add-AadrmKey -KeyFile");
    assert!(err.contains("-KeyFile needs a value"), "{err}");
    let err = e.fails("Get-AadrmKeys -Tenant x");
    assert!(err.contains("unknown argument '-Tenant'"), "{err}");
    // A damaged connection file is named, never half-used.
    let conn = d.join("state").join("aadrm-connection.json");
    let good = std::fs::read(&conn).expect("connection");
    for cut in [0, good.len() / 2, good.len() - 2] {
        std::fs::write(&conn, &good[..cut]).expect("truncate");
        let err = e.fails("Get-AadrmKeys");
        assert!(err.contains("connection file") && err.contains("damaged"), "cut {cut}: {err}");
    }
    let text = String::from_utf8(good.clone()).expect("utf8").replace(tenant, "../../etc");
    std::fs::write(&conn, text).expect("hostile");
    assert!(e.fails("Get-AadrmKeys").contains("damaged"));
    std::fs::write(&conn, &good).expect("restore");
    assert_eq!(e.ok("Get-AadrmKeys"), keys);
}

#[test]
fn the_tenant_side_adds_a_package_once_and_refuses_what_is_not_for_it() {
    let e = Env::new();
    let d = e.dir.path();
    let (provider, kek, world) = e.narrowed_for("NA");
    let tenant = "01234567-89ab-cdef-0123-456789abcdef";
    e.ok(&format!(
        "transfer package --ident contosokey --kek-package {} --world-package {} --tenant {tenant} --friendly-name First --out {}",
        kek.display(),
        world.display(),
        d.display()
    ));
    let t = |cmd: &str| format!("tenant --provider {} --tenant {tenant} {cmd}", provider.display());
    let db = provider.join("tenants.sqlite");
    // Reading an unknown tenant writes nothing: no database, no tenant, no key.
    let err = e.fails(&t("keys"));
    assert!(err.contains("there is no tenant database"), "{err}");
    assert!(!db.exists(), "a read made no database");
    let made = e.ok(&t("open"));
    assert!(made.contains("Made the provider's tenant database") && made.contains("is new here"), "{made}");
    assert_eq!(std::fs::metadata(&db).expect("db").permissions().mode() & 0o777, 0o600, "owner-only");
    let keys = e.ok(&t("keys"));
    assert!(keys.contains("Microsoft-managed        Active"), "the initial key: {keys}");
    let pkg = d.join("TransferPackage-First.byok");
    // A damaged package changes nothing.
    let mut bad = std::fs::read(&pkg).expect("pkg");
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    let bad_path = d.join("TransferPackage-Damaged.byok");
    std::fs::write(&bad_path, &bad).expect("write");
    let before = e.ok(&t("keys"));
    e.fails(&t(&format!("add-key --key-file {} --yes", bad_path.display())));
    std::fs::remove_file(&bad_path).expect("rm");
    assert_eq!(e.ok(&t("keys")), before);
    // Another tenant's package is refused by name.
    let other = format!("tenant --provider {} --tenant 11111111-2222-3333-4444-555555555555 keys", provider.display());
    let err = e.fails(&other);
    assert!(err.contains("has no keys at this provider"), "an unknown tenant is not made by a read: {err}");
    let err = e.fails(&other.replace(" keys", &format!(" add-key --key-file {} --yes", pkg.display())));
    assert!(err.contains(&format!("it is for tenant \"{tenant}\"")), "{err}");
    // A package made for another provider's world is refused by that provider.
    let other_provider = d.join("provider-2");
    let other_out = d.join("toolset-2");
    std::fs::create_dir(&other_out).expect("dir");
    e.ok(&format!("vendor init --region NA --dir {} --out {}", other_provider.display(), other_out.display()));
    let err = e.fails(&format!(
        "tenant --provider {} --tenant {tenant} add-key --key-file {} --yes",
        other_provider.display(),
        pkg.display()
    ));
    assert!(err.contains("bound to another security world"), "{err}");
    // An upload that crashed between the unwrap and the database's commit left its key in the
    // provider's module (made here as that crash leaves it): the retry reuses it, no second copy.
    let label = {
        use hsmkit_backend::Backend as _;
        let module = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(provider.join("kmdata")))
            .expect("the provider's module");
        let s = module.open_session(hsmkit_emulator::SLOT, hsmkit_backend::SessionMode::ReadWrite).expect("session");
        let bytes = std::fs::read(&pkg).expect("pkg");
        let checked = hsmkit_transfer::provider::check(s.as_ref(), tenant, "pkg", &bytes, false).expect("check");
        let label = hsmkit_transfer::provider::guid(&checked.package_sha256);
        let policy = hsmkit_backend::KeyPolicy::new(checked.usage).with_label(label.clone());
        let b = &checked.package.body;
        s.unwrap_key(&hsmkit_transfer::byok::WRAP, checked.kek, &b.wrapped, hsmkit_backend::KeyType::Rsa, &policy)
            .expect("the stray unwrap");
        label
    };
    let copies = || {
        use hsmkit_backend::Backend as _;
        let module = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(provider.join("kmdata")))
            .expect("the provider's module");
        let s = module.open_session(hsmkit_emulator::SLOT, hsmkit_backend::SessionMode::ReadOnly).expect("session");
        s.find_keys(&hsmkit_backend::KeyFilter {
            class: Some(hsmkit_backend::ObjectClass::PrivateKey),
            label: Some(label.clone()),
            ..Default::default()
        })
        .expect("find")
        .len()
    };
    assert_eq!(copies(), 1, "the stray key");
    // Added: Active, the initial key Archived, the success sentence of the article.
    let out = e.ok(&t(&format!("add-key --key-file {} --yes", pkg.display())));
    assert_eq!(copies(), 1, "the stray was reused, not unwrapped again");
    assert!(out.contains("The Rights management service successfully added the key."), "{out}");
    let keys = e.ok(&t("keys"));
    assert!(keys.contains("Microsoft-managed        Archived"), "{keys}");
    assert!(keys.contains("Customer-managed (BYOK)  Active"), "{keys}");
    // The same package twice: a clear answer, no duplicate.
    let err = e.fails(&t(&format!("add-key --key-file {} --yes", pkg.display())));
    assert!(err.contains("was already added"), "{err}");
    assert_eq!(e.ok(&t("keys")), keys);
    // The same key packaged again (new bytes: OAEP is randomised) is not a new key either.
    e.ok(&format!(
        "transfer package --ident contosokey --kek-package {} --world-package {} --tenant {tenant} --friendly-name Again --out {}",
        kek.display(),
        world.display(),
        d.display()
    ));
    let again = d.join("TransferPackage-Again.byok");
    assert_ne!(std::fs::read(&again).expect("again"), std::fs::read(&pkg).expect("pkg"));
    let err = e.fails(&t(&format!("add-key --key-file {} --yes", again.display())));
    assert!(err.contains("was already added"), "{err}");
    assert_eq!(e.ok(&t("keys")), keys);
    // Re-activating the initial key archives the BYOK key.
    let initial =
        keys.lines().find(|l| l.contains("Microsoft-managed")).and_then(|l| l.split_whitespace().next()).expect("id");
    e.ok(&t(&format!("set-active --identifier {initial}")));
    assert!(e.ok(&t("keys")).contains("Customer-managed (BYOK)  Archived"));
    // A read-only database (immutable: the tests run as root, whom file modes do not stop):
    // a change is refused with what to do, and the key list is unchanged.
    let db = provider.join("tenants.sqlite");
    let keys_before = e.ok(&t("keys"));
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&db)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if chattr("+i") {
        let id = keys_before.lines().nth(2).and_then(|l| l.split_whitespace().next()).expect("id").to_string();
        let out = e.run(&t(&format!("set-active --identifier {id}")));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let listed = e.run(&t("keys"));
        assert!(chattr("-i"), "chattr -i");
        assert!(!out.status.success(), "a read-only database must refuse the change");
        assert!(err.contains("read-only"), "{err}");
        assert_eq!(String::from_utf8_lossy(&listed.stdout), keys_before, "the key list is unchanged");
    } else {
        eprintln!("note: this file system does not support chattr +i; the read-only database check did not run");
    }
    // A damaged database is refused with what to do, and left as it is.
    let mut bytes = std::fs::read(&db).expect("db");
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&db, &bytes).expect("corrupt");
    let err = e.fails(&t("keys"));
    assert!(err.contains("tenant database") && err.contains("damaged"), "{err}");
    // A truncated database is not a new one, for a read or an upload; a deleted one is not made
    // again while the module holds the tenants' keys (their history would be lost and the same
    // package accepted twice).
    std::fs::write(&db, b"").expect("truncate");
    let err = e.fails(&t("keys"));
    assert!(err.contains("is not a tenant database"), "{err}");
    let err = e.fails(&t(&format!("add-key --key-file {} --yes", pkg.display())));
    assert!(err.contains("is not a tenant database"), "{err}");
    assert_eq!(std::fs::metadata(&db).expect("db").len(), 0, "left as it was");
    std::fs::remove_file(&db).expect("delete");
    let err = e.fails(&t("keys"));
    assert!(err.contains("there is no tenant database"), "{err}");
    let err = e.fails(&t(&format!("add-key --key-file {} --yes", pkg.display())));
    assert!(err.contains("is missing, but the provider's module holds tenant keys"), "{err}");
    assert!(!db.exists(), "no new database");
}

#[test]
fn the_ceremony_runs_end_to_end_and_a_seed_makes_it_byte_identical() {
    let e = Env::new();
    let run = |dir: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
            .args(["--seed", "11", "ceremony", "--dir"])
            .arg(dir)
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.ends_with("Result: SUCCESS\n"), "{text}");
        assert!(text.contains("verifies under contosokey's public key"), "{text}");
        assert!(text.contains("The Rights management service successfully added the key."), "{text}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("NOT for real keys"), "a seeded run says so");
    };
    let (a, b) = (e.dir.path().join("a"), e.dir.path().join("b"));
    run(&a);
    run(&b);
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    assert!(sa.len() > 20, "the ceremony writes its files");
    let strip = |s: Vec<(PathBuf, Vec<u8>)>, root: &std::path::Path| -> Vec<(PathBuf, Vec<u8>)> {
        s.into_iter().map(|(p, b)| (p.strip_prefix(root).expect("under root").to_path_buf(), b)).collect()
    };
    assert_eq!(strip(sa, &a), strip(sb, &b), "seeded ceremonies are byte-identical");
    // The three regions' toolsets, each from its own provider: the customer's (NA by default) at
    // the top, the others in toolset-EU/ and toolset-AP/; every KEK differs.
    let mut keks = std::collections::BTreeSet::new();
    for (folder, region) in [(a.clone(), "NA"), (a.join("toolset-EU"), "EU"), (a.join("toolset-AP"), "AP")] {
        let kek = std::fs::read(folder.join(format!("BYOK-KEK-pkg-{region}-1"))).expect("the region's KEK package");
        assert!(folder.join(format!("BYOK-SecurityWorld-pkg-{region}-1")).exists(), "{region}");
        assert!(folder.join("verifykeypackage.pin").exists(), "{region}");
        keks.insert(kek);
    }
    assert_eq!(keks.len(), 3, "each region has its own KEK");
    // Another region as the customer's: its toolset is used, and the other two services refuse
    // the package.
    let ap = e.dir.path().join("ap");
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .args(["ceremony", "--region", "AP", "--dir"])
        .arg(&ap)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(ap.join("BYOK-KEK-pkg-AP-1").exists() && ap.join("toolset-NA").join("BYOK-KEK-pkg-NA-1").exists());
    assert!(text.contains("-- verifykeypackage.py -k BYOK-KEK-pkg-EU-1 -w BYOK-SecurityWorld-pkg-EU-1"), "{text}");
    for other in ["NA", "EU"] {
        assert!(
            text.contains(&format!("Region {other}: refused")) && text.contains("bound to another security world"),
            "{text}"
        );
    }
    let err = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .args(["ceremony", "--region", "SA", "--dir"])
        .arg(e.dir.path().join("sa"))
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&err.stderr).contains("use NA, EU or AP"));
    assert!(!e.dir.path().join("sa").exists(), "a bad region makes nothing");
    // A folder that is not empty is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit")).args(["ceremony", "--dir"]).arg(&a).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
}

/// Unwraps `CKM_RSA_AES_KEY_WRAP` output with OpenSSL's command line; returns the key's public
/// half as PEM, or `None` if OpenSSL refuses (a damaged blob).
fn openssl_unwrap(dir: &Path, kek_key: &Path, blob: &[u8], md: &str) -> Option<String> {
    common::openssl_unwrap_n(dir, kek_key, blob, md, 256)
}

/// Unwraps RSA-AES material with RustCrypto (OAEP with SHA-1 or SHA-256, then KWP) after each
/// single-byte change, and fails if any changed material still unwraps.
fn every_byte_is_authenticated(kek_key: &Path, blob: &[u8], sha256: bool) {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let kek = rsa::PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(kek_key).expect("kek key")).expect("pkcs8");
    let n = kek.size();
    let unwraps = |b: &[u8]| -> bool {
        let eph = if sha256 {
            kek.decrypt(rsa::Oaep::<sha2::Sha256>::new(), &b[..n])
        } else {
            kek.decrypt(rsa::Oaep::<sha1::Sha1>::new(), &b[..n])
        };
        let Ok(eph) = eph else { return false };
        let Ok(kwp) = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(&eph) else { return false };
        let mut buf = vec![0u8; b.len()];
        kwp.unwrap_key(&b[n..], &mut buf).is_ok()
    };
    assert!(unwraps(blob), "the genuine material unwraps");
    for i in 0..blob.len() {
        let mut bad = blob.to_vec();
        bad[i] ^= 0x01;
        assert!(!unwraps(&bad), "byte {i} changed and the material still unwrapped");
    }
}

#[test]
fn key_vault_aws_and_google_material_unwraps_with_openssls_command_line() {
    use base64ct::Encoding;
    let e = Env::new();
    let d = e.dir.path();
    e.world();
    e.ok(GENERATEKEY);
    let (kek_key, kek_pem) = (d.join("kek.key"), d.join("kek.pem"));
    common::tool(
        "openssl",
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &kek_key.display().to_string()],
    );
    common::tool(
        "openssl",
        &["pkey", "-in", &kek_key.display().to_string(), "-pubout", "-out", &kek_pem.display().to_string()],
    );
    let pem = kek_pem.display();
    // Not narrowed yet: refused.
    let err = e.fails(&format!(
        "transfer package --format aws --kek-public-key {pem} --ident contosokey --out {}",
        d.join("x").display()
    ));
    assert!(err.contains("has not been narrowed"), "{err}");
    e.ok(&format!("transfer modify-acls --app simple --ident contosokey --kek-public-key {pem}"));
    e.ok(&format!("transfer public-key --app simple --ident contosokey --out {}", d.join("contosokey.pem").display()));
    let expected = std::fs::read_to_string(d.join("contosokey.pem")).expect("pem");

    // Azure Key Vault: JSON, base64url ciphertext, OAEP SHA-1.
    let kv = d.join("contosokey.byok");
    e.ok(&format!(
        "transfer package --format azure-kv --kek-public-key {pem} --kid https://vault.example/keys/kek/1 --ident contosokey --out {}",
        kv.display()
    ));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&kv).expect("kv")).expect("json");
    assert_eq!(doc["header"]["enc"], "CKM_RSA_AES_KEY_WRAP");
    assert_eq!(doc["header"]["kid"], "https://vault.example/keys/kek/1");
    let blob =
        base64ct::Base64UrlUnpadded::decode_vec(doc["ciphertext"].as_str().expect("ciphertext")).expect("base64url");
    assert_eq!(
        openssl_unwrap(d, &kek_key, &blob, "sha1").as_deref(),
        Some(expected.as_str()),
        "OpenSSL recovers the key"
    );
    // A changed byte of the wrapped material is refused by OpenSSL (OAEP or KWP integrity)...
    for i in [0, 255, 256, blob.len() - 1] {
        let mut bad = blob.clone();
        bad[i] ^= 0x04;
        assert_eq!(openssl_unwrap(d, &kek_key, &bad, "sha1"), None, "byte {i}");
    }
    // ...and every single-byte change is refused by an independent implementation (RustCrypto).
    every_byte_is_authenticated(&kek_key, &blob, false);

    // AWS KMS: raw material, RSA_AES_KEY_WRAP_SHA_256.
    let aws = d.join("contosokey.aws.bin");
    e.ok(&format!("transfer package --format aws --kek-public-key {pem} --ident contosokey --out {}", aws.display()));
    let blob = std::fs::read(&aws).expect("aws");
    assert_eq!(openssl_unwrap(d, &kek_key, &blob, "sha256").as_deref(), Some(expected.as_str()));
    every_byte_is_authenticated(&kek_key, &blob, true);

    // Google Cloud KMS, import method 3 (RSA_OAEP_3072_SHA256_AES_256): a 3072-bit KEK.
    let (kek3_key, kek3_pem) = (d.join("kek3072.key"), d.join("kek3072.pem"));
    common::tool(
        "openssl",
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072", "-out", &kek3_key.display().to_string()],
    );
    common::tool(
        "openssl",
        &["pkey", "-in", &kek3_key.display().to_string(), "-pubout", "-out", &kek3_pem.display().to_string()],
    );
    e.ok("generatekey --generate simple type=RSA size=2048 protect=module ident=gcpkey nvram=no pubexp=");
    e.ok(&format!("transfer modify-acls --app simple --ident gcpkey --kek-public-key {}", kek3_pem.display()));
    let gcp = d.join("gcpkey.bin");
    e.ok(&format!(
        "transfer package --format gcp --gcp-method 3 --kek-public-key {} --ident gcpkey --out {}",
        kek3_pem.display(),
        gcp.display()
    ));
    e.ok(&format!("transfer public-key --app simple --ident gcpkey --out {}", d.join("gcpkey.pem").display()));
    let blob = std::fs::read(&gcp).expect("gcp");
    assert_eq!(blob.len() - 384, 8 * (1 + (blob.len() - 384 - 8) / 8), "OAEP part as long as the 3072-bit modulus");
    let gcp_expected = std::fs::read_to_string(d.join("gcpkey.pem")).expect("pem");
    assert_eq!(common::openssl_unwrap_n(d, &kek3_key, &blob, "sha256", 384).as_deref(), Some(gcp_expected.as_str()));
    every_byte_is_authenticated(&kek3_key, &blob, true);

    // Each service's rules, by name.
    let out = |n: &str| d.join(n).display().to_string();
    let err = e.fails(&format!("transfer package --format aws --aws-algorithm RSAES_OAEP_SHA_1 --kek-public-key {pem} --ident contosokey --out {}", out("a")));
    assert!(err.contains("RSA private keys need RSA_AES_KEY_WRAP"), "{err}");
    let err = e.fails(&format!(
        "transfer package --format gcp --gcp-method 1 --kek-public-key {pem} --ident contosokey --out {}",
        out("g")
    ));
    assert!(err.contains("[3072]"), "GCP method 1 needs a 3072-bit KEK: {err}");
    let err = e.fails(&format!(
        "transfer package --format azure-kv --kek-public-key {pem} --ident contosokey --out {}",
        out("k")
    ));
    assert!(err.contains("--kid"), "{err}");
    e.ok("generatekey --generate simple type=RSA size=1024 protect=module ident=legacy nvram=no pubexp=");
    e.ok(&format!("transfer modify-acls --app simple --ident legacy --kek-public-key {pem}"));
    let err = e.fails(&format!(
        "transfer package --format azure-kv --kid k --kek-public-key {pem} --ident legacy --out {}",
        out("l")
    ));
    assert!(err.contains("does not import RSA-1024"), "{err}");
}

#[test]
fn the_ceremony_runs_with_the_customer_side_on_softhsm2() {
    let e = Env::new();
    let d = e.dir.path();
    let conf = common::softhsm2_token(d, "ceremony");
    std::fs::write(d.join("token-pins"), "1234\n5678\n").expect("pins");
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .arg("--pin-file")
        .arg(d.join("token-pins"))
        .args(["ceremony", "--backend", "pkcs11:/usr/lib/softhsm/libsofthsm2.so", "--token", "ceremony", "--dir"])
        .arg(d.join("run"))
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("The security officer made the KEK a trusted wrapping key: hsmkit-kek-"), "{text}");
    assert!(text.contains("composed in the module"), "SoftHSM2 has no CKM_RSA_AES_KEY_WRAP: {text}");
    assert!(text.contains("(from \"ContosoFirstkey\", unattested)"), "{text}");
    assert!(text.contains("verifies under contosokey's public key") && text.ends_with("Result: SUCCESS\n"), "{text}");
}

/// The same ceremony with the customer's side on the emulator behind the PKCS#11 ABI
/// (`libhsmkit_pkcs11.so`, built as a dev-dependency): the security officer's login presents the
/// world's card, so the KEK becomes a trusted wrapping key, and the module wraps natively.
#[test]
fn the_ceremony_runs_with_the_customer_side_on_libhsmkit_pkcs11() {
    let e = Env::new();
    let d = e.dir.path();
    let (module, conf) = common::libhsmkit_token(d, "ceremony");
    std::fs::write(d.join("token-pins"), "1234\n5678\n").expect("pins");
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .arg("--pin-file")
        .arg(d.join("token-pins"))
        .args(["ceremony", "--token", "ceremony", "--backend"])
        .arg(format!("pkcs11:{}", module.display()))
        .arg("--dir")
        .arg(d.join("run"))
        .env("HSMKIT_CONF", &conf)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("The security officer made the KEK a trusted wrapping key: hsmkit-kek-"), "{text}");
    assert!(text.contains("extractable under trusted keys only"), "{text}");
    assert!(text.contains("(the module's own mechanism)"), "{text}");
    assert!(text.contains("verifies under contosokey's public key") && text.ends_with("Result: SUCCESS\n"), "{text}");
    // The token's keys are emulator key blobs in the token's kmdata.
    let listed = std::fs::read_dir(d.join("token-kmdata").join("local")).expect("local").flatten().count();
    assert!(listed > 3, "world, module, token record and key blobs: {listed} files");
}

#[test]
fn a_vendor_init_that_fails_midway_leaves_nothing_behind() {
    let e = Env::new();
    let provider = e.dir.path().join("provider");
    std::fs::create_dir(&provider).expect("provider dir");
    // A file in the way of one of the provider's files makes the run fail after it has begun.
    std::fs::write(provider.join("acs-pin"), "someone else's file\n").expect("acs-pin");
    let out = e.dir.path().join("toolset");
    std::fs::create_dir(&out).expect("toolset");
    let err = e.fails(&format!("vendor init --region NA --dir {} --out {}", provider.display(), out.display()));
    assert!(err.contains("already exists"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&provider).expect("dir").flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("acs-pin")], "only what was there before");
    assert_eq!(std::fs::read_dir(&out).expect("out").count(), 0, "no package, no pin");
}

#[test]
fn nkminfo_lists_the_data_and_certificate_objects_stored_through_pkcs11() {
    let e = Env::new();
    e.world();
    assert!(!e.ok("nkminfo -k").contains("Object list"), "no objects, no list");
    {
        let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(e.kmdata())).expect("emulator");
        let attrs =
            [(3u64, b"stored-cert".to_vec())].into_iter().map(|(k, v)| (k, zeroize::Zeroizing::new(v))).collect();
        emu.save_object(emu.new_object(1, false, attrs).expect("certificate")).expect("save");
    }
    let out = e.ok("nkminfo -k");
    assert!(out.contains("Object list - 1 object"), "{out}");
    assert!(out.contains("Class certificate") && out.contains("Label \"stored-cert\""), "{out}");
    // A damaged object file is named, not skipped.
    let local = e.kmdata().join("local");
    let obj = std::fs::read_dir(&local)
        .expect("local")
        .flatten()
        .map(|d| d.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("obj_")))
        .expect("the object file");
    let mut bytes = std::fs::read(&obj).expect("read");
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    std::fs::write(&obj, &bytes).expect("damage");
    let err = e.fails("nkminfo -k");
    assert!(err.contains("object file") && err.contains(&obj.display().to_string()), "{err}");
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_read_makes_no_folder() {
    let e = Env::new();
    e.world();
    e.ok(GENERATEKEY);
    // Output into a pipe whose reading end is already closed: every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = e
        .command("aclprint -A simple -K contosokey")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "the status of a closed pipe: {err}");
    // With neither HOME nor XDG_DATA_HOME, a read names what is missing and makes no folder.
    let here = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .args(["nkminfo"])
        .current_dir(here.path())
        .env_remove("HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("NFAST_KMDATA")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither XDG_DATA_HOME nor HOME is set"));
    assert_eq!(std::fs::read_dir(here.path()).expect("dir").count(), 0, "no folder made where it stands");
    // With HOME set, a read does not make the per-user default either.
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .args(["nkminfo"])
        .env("HOME", here.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove("NFAST_KMDATA")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(!here.path().join(".local").exists(), "a read made no per-user kmdata");
}

#[test]
fn inputs_past_their_size_limit_are_refused_before_they_are_read() {
    let e = Env::new();
    let d = e.dir.path();
    let provider = d.join("provider");
    e.ok(&format!("vendor init --region NA --dir {} --out {}", provider.display(), d.display()));
    e.world();
    // A sparse 4 GiB package costs no disk; reading it whole would cost 4 GiB of memory.
    let huge = d.join("huge.byok");
    std::fs::File::create(&huge).expect("create").set_len(4 << 30).expect("set_len");
    let tenant = "01234567-89ab-cdef-0123-456789abcdef";
    let err = e.fails(&format!(
        "tenant --provider {} --tenant {tenant} add-key --key-file {} --yes",
        provider.display(),
        huge.display()
    ));
    assert!(err.contains("4294967296 bytes, more than the 16777216 bytes"), "{err}");
    // The toolset's packages, a PIN file and the world file are bounded too.
    let root = "00".repeat(20);
    let err = e.fails(&format!("verifykeypackage -k {} -w {} --root-hash {root}", huge.display(), huge.display()));
    assert!(err.contains("more than the 16777216 bytes"), "{err}");
    let pins = d.join("huge-pins");
    std::fs::File::create(&pins).expect("create").set_len(2 << 20).expect("set_len");
    let out = e.command("new-world --program --module=1").env("HSMKIT_PIN_FILE", &pins).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("more than the 1048576 bytes"), "{err}");
    std::fs::File::options()
        .write(true)
        .open(e.kmdata().join("local/world"))
        .expect("world")
        .set_len(2 << 20)
        .expect("grow");
    let out = e.run("nkminfo");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("more than the 1048576 bytes"), "{err}");
}

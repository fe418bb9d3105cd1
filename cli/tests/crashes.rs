//! Every write-bearing command killed at every crash point: `HSMKIT_TEST_CRASH_AT=N` aborts the
//! process at the N-th point it reaches (each stage of each file write, each removal, each commit
//! of the tenant database), as `kill -9` would. For N = 1, 2, … until the command completes, a
//! fresh copy of the state is crashed at N; then no file may be damaged (`nkminfo -k` reads every
//! key), the command run again must complete (or say its result already exists), and the
//! command's result must be whole and usable. Prints `CRASHES <command>: <n> crash points, …` for
//! `docs/reliability.md`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hsmkit_backend::crash::CRASH_AT_VAR;

const TENANT: &str = "01234567-89ab-cdef-0123-456789abcdef";
const GENERATEKEY: &str = "generatekey --generate simple type=RSA size=2048 protect=module ident=contosokey plainname=contosokey nvram=no pubexp=";

/// A folder of state: kmdata, NVRAM, cards, the provider, the packages.
struct Env {
    dir: PathBuf,
}

impl Env {
    fn command(&self, args: &str) -> Command {
        let args = args.replace("{d}", &self.dir.display().to_string());
        let mut c = Command::new(env!("CARGO_BIN_EXE_hsmkit"));
        c.args(args.split_whitespace())
            .env("NFAST_KMDATA", self.dir.join("kmdata"))
            .env("HSMKIT_PIN_FILE", self.dir.join("pins"))
            .env("HSMKIT_STATE_DIR", self.dir.join("state"))
            .env_remove(CRASH_AT_VAR)
            .env_remove("HOME")
            .current_dir(&self.dir);
        c
    }

    fn run(&self, args: &str) -> Output {
        self.command(args).output().expect("run hsmkit")
    }

    fn ok(&self, args: &str) -> String {
        let out = self.run(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "hsmkit {args}\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    /// A copy of this state in `to`.
    fn copy(&self, to: &Path) -> Env {
        let st = Command::new("cp").arg("-a").arg(&self.dir).arg(to).status().expect("cp");
        assert!(st.success());
        Env { dir: to.to_path_buf() }
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Crashes the command `run` makes on copies of `template` at every point; after each crash,
/// checks that every key of `kmdata` (relative to the copy) reads, reruns the command (which
/// completes or says `done_already`), and runs `check` on the result. Returns the number of
/// crash points.
fn crash_at_every_point(
    name: &str,
    template: &Env,
    scratch: &Path,
    kmdata: &str,
    run: &dyn Fn(&Env) -> Command,
    done_already: &str,
    check: impl Fn(&Env),
) -> usize {
    let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let reference = template.copy(&scratch.join(format!("{slug}-reference")));
    let out = run(&reference).output().expect("run");
    assert!(out.status.success(), "{name}: {}", text(&out));
    check(&reference);
    for n in 1..200 {
        let w = template.copy(&scratch.join(format!("{slug}-{n}")));
        let out = run(&w).env(CRASH_AT_VAR, n.to_string()).output().expect("run");
        if out.status.success() {
            assert!(n > 1, "{name}: no crash point was reached");
            std::fs::remove_dir_all(&w.dir).ok();
            println!("CRASHES {name}: {} crash points, each left the state before or after", n - 1);
            return n - 1;
        }
        let said = text(&out);
        assert!(
            out.status.code().is_none() && said.contains("crashing at point"),
            "{name}: point {n} failed instead of crashing: {said}"
        );
        let at = said.lines().find(|l| l.contains("crashing at point")).unwrap_or("").to_string();
        // No damaged file: every key blob reads (nkminfo reports a damaged one).
        let keys = w.command("nkminfo -k").env("NFAST_KMDATA", w.dir.join(kmdata)).output().expect("nkminfo");
        let listed = text(&keys);
        assert!(
            keys.status.success() && !listed.contains("damaged") && !listed.contains("skipped"),
            "{name}, after {at}: a damaged file: {listed}"
        );
        let again = run(&w).output().expect("rerun");
        let said_again = text(&again);
        assert!(
            again.status.success() || said_again.contains(done_already),
            "{name}, after {at}: the command run again failed: {said_again}"
        );
        check(&w);
        std::fs::remove_dir_all(&w.dir).ok();
    }
    panic!("{name}: more than 200 crash points");
}

/// [`crash_at_every_point`] for an `hsmkit` command on the customer's kmdata.
fn crash_every_point(name: &str, template: &Env, scratch: &Path, cmd: &str, check: impl Fn(&Env)) -> usize {
    crash_at_every_point(name, template, scratch, "kmdata", &|e: &Env| e.command(cmd), "already", check)
}

/// The customer's world (2/3 cards, PINs alpha, bravo, charlie) and the NA provider's toolset.
fn base(scratch: &Path) -> Env {
    let dir = scratch.join("base");
    std::fs::create_dir_all(dir.join("kmdata")).expect("kmdata");
    std::fs::write(dir.join("pins"), "alpha\nbravo\ncharlie\n").expect("pins");
    let e = Env { dir };
    e.ok("vendor init --region NA --dir {d}/provider --out {d}");
    e
}

fn world(e: &Env) {
    e.ok("new-world --initialize --cipher-suite=DLf1024s160mRijndael --module=1 --acs-quorum=2/3");
}

const MODIFY_ACLS: &str = "KeyTransferRemote -ModifyAcls -KeyAppName simple -KeyIdentifier contosokey -ExchangeKeyPackage {d}/BYOK-KEK-pkg-NA-1 -NewSecurityWorldPackage {d}/BYOK-SecurityWorld-pkg-NA-1";
const PACKAGE: &str = "transfer package --ident contosokey --kek-package {d}/BYOK-KEK-pkg-NA-1 --world-package {d}/BYOK-SecurityWorld-pkg-NA-1 --tenant 01234567-89ab-cdef-0123-456789abcdef --friendly-name First --out {d}";

fn tenant(cmd: &str) -> String {
    format!("tenant --provider {{d}}/provider --tenant {TENANT} {cmd}")
}

/// The key is there and its ACL reads.
fn key_usable(e: &Env) {
    let acl = e.ok("aclprint -A simple -K contosokey");
    assert!(acl.contains("ACL containing"), "{acl}");
}

#[test]
fn customer_side_commands_survive_a_crash_at_every_point() {
    let scratch = tempfile::tempdir().expect("tmp");
    let b = base(scratch.path());
    // new-world: the world and its three cards are whole, and two cards make the quorum.
    let n = crash_every_point(
        "new-world",
        &b,
        scratch.path(),
        "new-world --initialize --cipher-suite=DLf1024s160mRijndael --module=1 --acs-quorum=2/3",
        |e| {
            let info = e.ok("nkminfo");
            assert!(info.contains("k-out-of-n  2/3"), "{info}");
            let cards: Vec<_> = std::fs::read_dir(e.dir.join("cards"))
                .expect("cards")
                .flatten()
                .map(|c| c.path())
                .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect();
            assert_eq!(cards.len(), 3, "{cards:?}");
            let emu =
                hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(e.dir.join("kmdata"))).expect("module");
            let pin = |s: &str| hsmkit_backend::Pin::from(s.to_string());
            let mut sorted = cards.clone();
            sorted.sort();
            emu.authorize(&[(sorted[0].clone(), pin("alpha")), (sorted[1].clone(), pin("bravo"))]).expect("the quorum");
        },
    );
    assert!(n >= 9, "{n}");
    world(&b);
    let n = crash_every_point("generatekey", &b, scratch.path(), GENERATEKEY, key_usable);
    assert!(n >= 3, "{n}");
    b.ok(GENERATEKEY);
    let n = crash_every_point(
        "cngimport",
        &b,
        scratch.path(),
        "cngimport --import -M --key=contosokey --appname=simple contosokey",
        |e| {
            let keys = e.ok("nkminfo -k");
            assert!(keys.contains("AppName caping"), "{keys}");
        },
    );
    assert!(n >= 3, "{n}");
    let n = crash_every_point("modify-acls", &b, scratch.path(), MODIFY_ACLS, |e| {
        let keys = e.ok("nkminfo -k");
        assert!(keys.contains("AppName xferacld     Ident contosokey"), "the narrowed copy: {keys}");
    });
    assert!(n >= 3, "{n}");
    b.ok(MODIFY_ACLS);
    let n = crash_every_point("package", &b, scratch.path(), PACKAGE, |e| {
        let pkg = std::fs::read(e.dir.join("TransferPackage-First.byok")).expect("the package");
        hsmkit_transfer::byok::TransferPackage::from_bytes("p", &pkg).expect("a whole package");
    });
    assert!(n >= 3, "{n}");
}

#[test]
fn provider_side_commands_survive_a_crash_at_every_point() {
    let scratch = tempfile::tempdir().expect("tmp");
    let b = base(scratch.path());
    world(&b);
    b.ok(GENERATEKEY);
    b.ok(MODIFY_ACLS);
    b.ok(PACKAGE);
    let n = crash_every_point("tenant open", &b, scratch.path(), &tenant("open"), |e| {
        let keys = e.ok(&tenant("keys"));
        assert!(keys.contains("Microsoft-managed        Active"), "{keys}");
    });
    assert!(n >= 2, "{n}");
    b.ok(&tenant("open"));
    // add-key: the key is listed once, Active, and the provider's module holds one copy of it.
    let n = crash_every_point(
        "add-key",
        &b,
        scratch.path(),
        &tenant("add-key --key-file {d}/TransferPackage-First.byok --yes"),
        |e| {
            let keys = e.ok(&tenant("keys"));
            assert_eq!(keys.matches("Customer-managed (BYOK)  Active").count(), 1, "{keys}");
            let blobs = std::fs::read_dir(e.dir.join("provider/kmdata/local"))
                .expect("provider kmdata")
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().starts_with("key_pkcs11_"))
                .count();
            let before = std::fs::read_dir(b.dir.join("provider/kmdata/local"))
                .expect("provider kmdata")
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().starts_with("key_pkcs11_"))
                .count();
            assert_eq!(blobs, before + 1, "one unwrapped copy of the key");
        },
    );
    assert!(n >= 4, "{n}");
    b.ok(&tenant("add-key --key-file {d}/TransferPackage-First.byok --yes"));
    let keys = b.ok(&tenant("keys"));
    let initial = keys
        .lines()
        .find(|l| l.contains("Microsoft-managed"))
        .and_then(|l| l.split_whitespace().next())
        .expect("id")
        .to_string();
    let n = crash_every_point(
        "set-active",
        &b,
        scratch.path(),
        &tenant(&format!("set-active --identifier {initial}")),
        |e| {
            let keys = e.ok(&tenant("keys"));
            assert!(
                keys.contains("Microsoft-managed        Active") && keys.contains("Customer-managed (BYOK)  Archived"),
                "{keys}"
            );
        },
    );
    assert!(n >= 2, "{n}");
}

/// `pkcs11-tool` on `libhsmkit_pkcs11.so` over the token in `e` (its configuration rewritten for
/// this copy), with `args` after the module and the user's login.
fn pkcs11_tool(e: &Env, args: &[&str]) -> Command {
    let module = std::env::current_exe().expect("exe").parent().expect("deps").join("libhsmkit_pkcs11.so");
    let conf = e.dir.join("hsmkit.conf");
    std::fs::write(&conf, format!("slot 0 {}\n", e.dir.join("token-kmdata").display())).expect("conf");
    let mut c = Command::new("pkcs11-tool");
    c.arg("--module")
        .arg(module)
        .args(["--login", "--pin", "1234"])
        .args(args)
        .env("HSMKIT_CONF", conf)
        .env_remove(CRASH_AT_VAR);
    c
}

/// [`crash_at_every_point`] for a `pkcs11-tool` command through the module on the token's kmdata.
fn crash_pkcs11_tool(
    name: &str,
    template: &Env,
    scratch: &Path,
    args: &[&str],
    done_already: &str,
    check: impl Fn(&Env),
) -> usize {
    crash_at_every_point(name, template, scratch, "token-kmdata", &|e: &Env| pkcs11_tool(e, args), done_already, check)
}

#[test]
fn pkcs11_object_creation_and_destruction_survive_a_crash_at_every_point() {
    let scratch = tempfile::tempdir().expect("tmp");
    let dir = scratch.path().join("token");
    std::fs::create_dir(&dir).expect("dir");
    common::libhsmkit_token(&dir, "crash");
    let t = Env { dir };
    let value = t.dir.join("value.bin");
    std::fs::write(&value, b"a data object's value").expect("value");
    let value_arg = value.display().to_string();
    // Every object a listing shows reads whole; the new one is there once the command completed.
    let objects = |e: &Env| text(&pkcs11_tool(e, &["--list-objects"]).output().expect("list"));
    let n = crash_pkcs11_tool(
        "C_CreateObject (data)",
        &t,
        scratch.path(),
        &["--write-object", &value_arg, "--type", "data", "--label", "crashdata"],
        "never",
        |e| {
            let out =
                pkcs11_tool(e, &["--read-object", "--type", "data", "--label", "crashdata"]).output().expect("read");
            assert!(out.status.success(), "{}", text(&out));
            assert_eq!(out.stdout, b"a data object's value");
        },
    );
    assert!(n >= 3, "{n}");
    let n = crash_pkcs11_tool(
        "C_GenerateKeyPair (token)",
        &t,
        scratch.path(),
        &["--keypairgen", "--key-type", "EC:prime256v1", "--label", "crashkey", "--id", "0c"],
        "never",
        |e| {
            let listed = objects(e);
            assert!(listed.contains("label:      crashkey"), "{listed}");
        },
    );
    assert!(n >= 3, "{n}");
    let made = pkcs11_tool(&t, &["--keypairgen", "--key-type", "EC:prime256v1", "--label", "gone", "--id", "0d"])
        .output()
        .expect("keygen");
    assert!(made.status.success(), "{}", text(&made));
    let n = crash_pkcs11_tool(
        "C_DestroyObject (key)",
        &t,
        scratch.path(),
        &["--delete-object", "--type", "privkey", "--id", "0d"],
        "object not found",
        |e| {
            // The listing's objects, each a block from its unindented first line.
            let listed = objects(e);
            let mut blocks: Vec<String> = Vec::new();
            for line in listed.lines() {
                match blocks.last_mut() {
                    Some(b) if line.starts_with(' ') => {
                        b.push('\n');
                        b.push_str(line);
                    }
                    _ => blocks.push(line.to_string()),
                }
            }
            let gone = |b: &String| b.starts_with("Private Key Object") && b.contains("ID:         0d");
            assert!(!blocks.iter().any(gone), "the private key is destroyed: {listed}");
            assert!(
                blocks.iter().any(|b| b.contains("label:      crashkey") || b.contains("label:      gone")),
                "{listed}"
            );
        },
    );
    assert!(n >= 2, "{n}");
}

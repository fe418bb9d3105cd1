//! The `world` profile: the nShield world model, on backends that model one (the emulator).
//!
//! The summary is read from the world under test. Everything that changes a world (cards locked
//! by wrong PINs, keys narrowed for other worlds) runs on throwaway worlds the backend makes
//! ([`hsmkit_backend::WorldLab`]), so the user's cards and kmdata are left as found. A backend
//! without a world model skips the profile with the reason.

use hsmkit_backend::{
    Attr, AttrKind, AttrValue, Backend, ErrorKind, KeyHandle, KeyPairSpec, KeyPolicy, Pin, Session, SessionMode,
    SlotId, TransferTarget, Usage, UserKind, WorldAuthority,
};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};

use super::{R, ensure, err, expect_kind, policy};
use crate::{Case, Ctx, Profile};
use hsmkit_backend::ErrorKind as K;

/// The PINs of a scratch world's cards: `card-1`, `card-2`, …
fn pins(n: u8) -> Vec<Pin> {
    (1..=n).map(|c| Pin::from(format!("card-{c}"))).collect()
}

fn pin(c: u8) -> Pin {
    Pin::from(format!("card-{c}"))
}

/// A throwaway world of k of n cards made by the backend, or the skip that says it models none.
fn scratch(ctx: &Ctx<'_>, k: u8, n: u8) -> Result<Box<dyn Backend>, String> {
    let lab = ctx.backend.world_lab().ok_or_else(|| {
        crate::skipped("the backend models no security world (the world profile is for nShield-style modules such as hsmkit's emulator)")
    })?;
    lab.scratch_world((k, n), &pins(n)).map_err(err(&format!("make a scratch world of {k} of {n} cards")))
}

/// A read-write session of a scratch world (its one slot) and its world authority.
fn open(b: &dyn Backend) -> Result<Box<dyn Session + '_>, String> {
    let slot = b.slots().map_err(err("the scratch world's slots"))?.first().copied().unwrap_or(SlotId(0));
    let s = b.open_session(slot, SessionMode::ReadWrite).map_err(err("open a session on the scratch world"))?;
    ensure(s.world_authority().is_some(), "a scratch world's session has no world authority")?;
    Ok(s)
}

fn authority(s: &dyn Session) -> Result<&dyn WorldAuthority, String> {
    s.world_authority().ok_or_else(|| "the session has no world authority".to_string())
}

/// A token RSA key of the world (a key blob in kmdata): its private half and SubjectPublicKeyInfo.
fn world_key(s: &dyn Session) -> Result<(KeyHandle, Vec<u8>), String> {
    let p = KeyPolicy { token: true, ..policy(Usage::SIGN | Usage::VERIFY) };
    let (public, private) = s
        .generate_key_pair(&KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, &p)
        .map_err(err("generate a world key"))?;
    let spki = match s.attributes(public, &[AttrKind::PublicKeyInfo]).map_err(err("read the public key"))?.pop() {
        Some(Attr::Value(_, AttrValue::Bytes(b))) => b,
        other => return Err(format!("the public key's SubjectPublicKeyInfo is {other:?}")),
    };
    Ok((private, spki))
}

/// A provider's KEK: the kit's RSA-3072 test key's SubjectPublicKeyInfo.
fn kek_spki() -> Result<Vec<u8>, String> {
    let k = rsa::PrivateKey::from_pkcs8_der(include_bytes!("../../keys/rsa-3072.pk8")).map_err(err("the KEK"))?;
    Ok(k.to_public_key().to_public_key_der().map_err(err("the KEK's SPKI"))?.as_bytes().to_vec())
}

/// A different KEK: the kit's RSA-2048 test key.
fn other_kek_spki() -> Result<Vec<u8>, String> {
    let k = rsa::PrivateKey::from_pkcs8_der(include_bytes!("../../keys/rsa-2048.pk8")).map_err(err("the KEK"))?;
    Ok(k.to_public_key().to_public_key_der().map_err(err("the KEK's SPKI"))?.as_bytes().to_vec())
}

fn target(kek: Vec<u8>, provider_hkm: Option<Vec<u8>>) -> TransferTarget {
    TransferTarget { kek_spki: kek, provider_hkm, label: None }
}

/// The world under test: a cipher suite, a quorum k ≤ n, and KNSO's and KM's hashes of the
/// suite's hash length, which differ.
fn summary(ctx: &Ctx<'_>) -> R {
    let s = ctx.backend.open_session(ctx.slot, SessionMode::ReadOnly).map_err(err("open a session"))?;
    let Some(a) = s.world_authority() else {
        return Err(crate::skipped("the backend models no security world"));
    };
    let w = a.world().map_err(err("read the world"))?;
    ensure(!w.cipher_suite.is_empty(), "the world names no cipher suite")?;
    ensure(w.quorum.0 >= 1 && w.quorum.0 <= w.quorum.1, &format!("a quorum of {} of {}", w.quorum.0, w.quorum.1))?;
    ensure(matches!(w.hknso.len(), 20 | 32), "HKNSO is not a SHA-1 or SHA-256 hash")?;
    ensure(w.hkm.len() == w.hknso.len(), "HKM and HKNSO are hashes of different lengths")?;
    ensure(w.hknso != w.hkm, "HKNSO and HKM are the same hash")
}

/// A 2-of-3 world: one card is not a quorum, the same card twice is not two, and any two cards
/// are: cards 2 and 3 narrow a key for transfer.
fn quorum_k_of_n(ctx: &Ctx<'_>) -> R {
    let world = scratch(ctx, 2, 3)?;
    let s = open(world.as_ref())?;
    let a = authority(s.as_ref())?;
    let (key, _) = world_key(s.as_ref())?;
    let t = target(kek_spki()?, None);
    expect_kind(
        a.present_cards(&[(1, pin(1))]),
        &[K::QuorumNotMet { have: 0, need: 0 }],
        "one card of a 2-of-3 quorum",
    )?;
    expect_kind(a.narrow_for_transfer(key, &t), &[K::NotLoggedIn], "narrowing after one card")?;
    expect_kind(
        a.present_cards(&[(1, pin(1)), (1, pin(1))]),
        &[K::ArgumentsBad, K::QuorumNotMet { have: 0, need: 0 }],
        "one card twice",
    )?;
    expect_kind(a.present_cards(&[(4, pin(1)), (1, pin(1))]), &[K::ArgumentsBad], "card 4 of 3")?;
    a.present_cards(&[(2, pin(2)), (3, pin(3))]).map_err(err("cards 2 and 3"))?;
    let copy = a.narrow_for_transfer(key, &t).map_err(err("narrow with cards 2 and 3"))?;
    a.attestation(copy, &t).map_err(err("the quorum's certificate of the narrowed copy"))?;
    Ok(())
}

/// The officer's login presents cards 1 to k with the PINs joined by commas; too few PINs or a
/// wrong one give no authority, and a logout ends it.
fn officer_login(ctx: &Ctx<'_>) -> R {
    let world = scratch(ctx, 2, 3)?;
    let s = open(world.as_ref())?;
    let a = authority(s.as_ref())?;
    let (key, _) = world_key(s.as_ref())?;
    let t = target(kek_spki()?, None);
    expect_kind(
        s.login(UserKind::SecurityOfficer, &pin(1)),
        &[K::QuorumNotMet { have: 0, need: 0 }, K::PinIncorrect],
        "one PIN",
    )?;
    expect_kind(
        s.login(UserKind::SecurityOfficer, &Pin::from("card-1,wrong".to_string())),
        &[K::PinIncorrect],
        "a wrong PIN for card 2",
    )?;
    expect_kind(a.narrow_for_transfer(key, &t), &[K::NotLoggedIn], "narrowing without the quorum")?;
    s.login(UserKind::SecurityOfficer, &Pin::from("card-1,card-2".to_string())).map_err(err("the officer's login"))?;
    a.narrow_for_transfer(key, &t).map_err(err("narrow as the officer"))?;
    s.logout().map_err(err("log out"))?;
    expect_kind(a.narrow_for_transfer(key, &t), &[K::NotLoggedIn], "narrowing after the logout")
}

/// A card locks after the world's limit of wrong PINs in a row; its right PIN is then refused
/// too, the other cards still make the quorum, and a right PIN before the limit resets the count.
fn card_lockout(ctx: &Ctx<'_>) -> R {
    let world = scratch(ctx, 1, 3)?;
    let s = open(world.as_ref())?;
    let a = authority(s.as_ref())?;
    let wrong = Pin::from("wrong".to_string());
    // Card 1, fresh: how many wrong PINs lock it.
    let mut tries = 0;
    loop {
        tries += 1;
        match a.present_cards(&[(1, wrong.clone())]) {
            Err(e) if e.kind() == &ErrorKind::PinIncorrect && tries < 50 => continue,
            Err(e) if e.kind() == &ErrorKind::PinIncorrect => {
                return Err(format!("card 1 is not locked after {tries} wrong PINs in a row"));
            }
            Err(e) if e.kind() == &ErrorKind::PinLocked => break,
            other => {
                return Err(format!("wrong PIN {tries} for card 1: {other:?}, expected PIN_INCORRECT or PIN_LOCKED"));
            }
        }
    }
    ensure(tries > 1, "one wrong PIN locked the card")?;
    expect_kind(a.present_cards(&[(1, pin(1))]), &[K::PinLocked], "the right PIN of a locked card")?;
    a.present_cards(&[(2, pin(2))]).map_err(err("card 2 after card 1 locked"))?;
    // Card 3: one short of the limit, then its right PIN; the count starts again.
    for _ in 0..tries - 1 {
        expect_kind(a.present_cards(&[(3, wrong.clone())]), &[K::PinIncorrect], "a wrong PIN for card 3")?;
    }
    a.present_cards(&[(3, pin(3))]).map_err(err("card 3's right PIN one short of the limit"))?;
    for _ in 0..tries - 1 {
        expect_kind(
            a.present_cards(&[(3, wrong.clone())]),
            &[K::PinIncorrect],
            "a wrong PIN after the count was reset",
        )?;
    }
    a.present_cards(&[(3, pin(3))]).map_err(err("card 3 again"))
}

/// A key narrowed for a provider's world and KEK: the provider's module accepts the quorum's
/// certificate and names the source world; another world, another KEK, another key and altered
/// rights are refused.
fn attestation_binds(ctx: &Ctx<'_>) -> R {
    let source = scratch(ctx, 1, 1)?;
    let provider = scratch(ctx, 1, 1)?;
    let stranger = scratch(ctx, 1, 1)?;
    let (ss, ps, xs) = (open(source.as_ref())?, open(provider.as_ref())?, open(stranger.as_ref())?);
    let (sa, pa, xa) = (authority(ss.as_ref())?, authority(ps.as_ref())?, authority(xs.as_ref())?);
    let provider_world = pa.world().map_err(err("the provider's world"))?;
    let source_world = sa.world().map_err(err("the source world"))?;
    let kek = kek_spki()?;
    let t = target(kek.clone(), Some(provider_world.hkm.clone()));
    let (key, public) = world_key(ss.as_ref())?;
    let (_, other_public) = world_key(ss.as_ref())?;
    sa.present_cards(&[(1, pin(1))]).map_err(err("the source world's card"))?;
    let copy = sa.narrow_for_transfer(key, &t).map_err(err("narrow for the provider"))?;
    let att = sa.attestation(copy, &t).map_err(err("the certificate"))?;
    let ok = pa.check_attestation(&public, &att, &kek).map_err(err("the provider checks the certificate"))?;
    ensure(ok.source_world == source_world.hknso, "the certificate names another world than the source")?;
    ensure(!ok.usage.contains(Usage::WRAP), "the certified rights let the key wrap")?;
    expect_kind(xa.check_attestation(&public, &att, &kek), &[K::DataInvalid], "a world the key was not narrowed for")?;
    expect_kind(pa.check_attestation(&public, &att, &other_kek_spki()?), &[K::DataInvalid], "another KEK")?;
    expect_kind(pa.check_attestation(&other_public, &att, &kek), &[K::DataInvalid], "another key's public half")?;
    // Widened: ExportAsPlain added to the certified operations.
    let mut widened = att.clone();
    widened.rights = widened.rights.replacen("\"OpPermissions\":\"", "\"OpPermissions\":\"ExportAsPlain | ", 1);
    ensure(widened.rights != att.rights, "the certificate's rights name no OpPermissions to widen")?;
    expect_kind(pa.check_attestation(&public, &widened, &kek), &[K::DataInvalid], "rights widened after certifying")?;
    // The certificate is for this target only.
    expect_kind(
        sa.attestation(copy, &target(other_kek_spki()?, None)),
        &[K::KeyNotWrappable],
        "a certificate for another KEK",
    )
}

/// The narrowed copy is bound: it cannot be narrowed into a wider copy or wrapped under a key
/// other than its KEK, and the original keeps its rights.
fn narrowed_copy_bound(ctx: &Ctx<'_>) -> R {
    let world = scratch(ctx, 1, 1)?;
    let s = open(world.as_ref())?;
    let a = authority(s.as_ref())?;
    let (key, _) = world_key(s.as_ref())?;
    let t = target(kek_spki()?, None);
    a.present_cards(&[(1, pin(1))]).map_err(err("the card"))?;
    let copy = a.narrow_for_transfer(key, &t).map_err(err("narrow"))?;
    ensure(
        a.transfer_copy(key).map_err(err("find the copy"))? == Some(copy),
        "the source key does not lead to its copy",
    )?;
    let wide = KeyPolicy { extractable: true, ..policy(Usage::SIGN | Usage::VERIFY | Usage::DECRYPT) };
    expect_kind(
        s.copy_narrowed(copy, &wide),
        &[K::ActionProhibited, K::KeyFunctionNotPermitted { missing: "" }, K::TemplateInconsistent],
        "a wider copy of the narrowed copy",
    )?;
    let aes = s
        .generate_key(&hsmkit_backend::KeySpec::Aes { bits: 256 }, &policy(Usage::WRAP | Usage::UNWRAP))
        .map_err(err("an AES key"))?;
    expect_kind(
        s.wrap_key(&hsmkit_backend::Mechanism::AesKeyWrapPad, aes, copy),
        &[K::KeyNotWrappable, K::KeyUnextractable, K::KeyFunctionNotPermitted { missing: "" }, K::ActionProhibited],
        "the copy wrapped under a key other than its KEK",
    )?;
    s.sign(&hsmkit_backend::Mechanism::RsaPkcs1v15 { hash: hsmkit_backend::HashAlg::Sha256 }, key, b"still mine")
        .map_err(err("the original key signs after the narrowing"))?;
    Ok(())
}

/// The profile's cases.
pub fn cases() -> Vec<Case> {
    type F = fn(&Ctx<'_>) -> R;
    let list: [(&str, &str, F); 6] = [
        (
            "world-summary",
            "nShield Security World: the world file names its cipher suite, ACS quorum k of n, HKNSO and HKM",
            summary,
        ),
        (
            "world-quorum-k-of-n",
            "nShield ACS: k distinct cards of n make the quorum; fewer, or one card twice, do not",
            quorum_k_of_n,
        ),
        (
            "world-officer-login",
            "PKCS#11 C_Login(CKU_SO) on the emulator: the PINs of cards 1 to k, joined by commas; C_Logout ends the quorum",
            officer_login,
        ),
        (
            "world-card-lockout",
            "nShield smart cards: a card locks after the limit of wrong PINs in a row; a right PIN resets the count",
            card_lockout,
        ),
        (
            "world-attestation-binds",
            "nShield KeyTransferRemote -ModifyAcls: the quorum's ACL certificate binds the key to the provider's world (HKM) and KEK",
            attestation_binds,
        ),
        (
            "world-narrowed-copy-bound",
            "nShield ACLs: a copy narrowed for transfer can be neither widened nor exported except under its KEK",
            narrowed_copy_bound,
        ),
    ];
    list.into_iter().map(|(id, clause, f)| Case::seam(Profile::World, id, clause, f)).collect()
}

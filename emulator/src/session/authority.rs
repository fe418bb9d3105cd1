//! The world's authority on the seam ([`WorldAuthority`]): the Administrator Card Set quorum
//! narrowing a key for transfer and certifying its ACL, and the provider's module checking such a
//! certificate.

use hsmkit_backend::{
    Attestation, Attested, Error, ErrorKind, KeyHandle, ObjectClass, Op, Pin, Result, TransferTarget, Usage,
    WorldAuthority, WorldSummary,
};

use super::EmulatorSession;
use crate::acl::Acl;
use crate::card::card_path;
use crate::emulator::Object;
use crate::keyblob::AclCertificate;

/// The application name of narrowed copies (`key_xferacld_<ident>`), as nShield's BYOK tool names
/// them.
pub const TRANSFER_APP: &str = "xferacld";

fn not_named(key: &Object, op: Op) -> Error {
    Error::new(ErrorKind::KeyHandleInvalid, op).detail(format!(
        "the key {:?} is not a key of kmdata (a session key cannot be transferred)",
        key.key.header.name
    ))
}

impl EmulatorSession<'_> {
    /// The private (or secret) object of the blob at `path`, loading it if no handle has it yet.
    fn handle_of(&self, app: &str, ident: &str, op: Op) -> Result<KeyHandle> {
        let path = self.emu.key_path(app, ident);
        let _serial = self.emu.key_changes(op)?;
        let loaded = self
            .emu
            .all_objects()
            .into_iter()
            .find(|(_, o)| o.key.path.as_ref() == Some(&path) && o.class != ObjectClass::PublicKey);
        if let Some((h, _)) = loaded {
            return Ok(KeyHandle(h));
        }
        let key = self.emu.load_named(app, ident)?;
        let handles = self.emu.register(key, None);
        handles.first().copied().ok_or_else(|| crate::emulator::poisoned(op))
    }

    fn quorum_held(&self, op: Op) -> Result<()> {
        if !self.quorum_now(op)? {
            return Err(Error::new(ErrorKind::NotLoggedIn, op)
                .detail("narrowing a key for transfer needs the Administrator Card Set quorum")
                .hint("log in as the security officer (present the cards) first"));
        }
        Ok(())
    }

    /// The KEK's hash as this module names keys, and the module key the copy may be saved under.
    fn target_hashes(&self, target: &TransferTarget, op: Op) -> Result<(Vec<u8>, Vec<u8>)> {
        let world = self.emu.require_world(op)?;
        let kek_hash = world.suite().hash(&[&target.kek_spki]);
        let hkm = target.provider_hkm.clone().unwrap_or_else(|| world.hkm().to_vec());
        Ok((kek_hash, hkm))
    }
}

impl WorldAuthority for EmulatorSession<'_> {
    fn world(&self) -> Result<WorldSummary> {
        let w = self.emu.require_world(Op::Info)?;
        Ok(WorldSummary {
            cipher_suite: w.suite().name().into(),
            quorum: (w.body().acs.k, w.body().acs.n),
            hknso: w.hknso().to_vec(),
            hkm: w.hkm().to_vec(),
        })
    }

    fn present_cards(&self, cards: &[(u8, Pin)]) -> Result<()> {
        let world = self.emu.require_world(Op::Quorum)?;
        let n = world.body().acs.n;
        if let Some((c, _)) = cards.iter().find(|(c, _)| *c == 0 || *c > n) {
            return Err(Error::new(ErrorKind::ArgumentsBad, Op::Quorum)
                .detail(format!("world {} has cards 1 to {n}, not {c}", world.name())));
        }
        let presented: Vec<(std::path::PathBuf, Pin)> = cards
            .iter()
            .map(|(c, pin)| (card_path(&self.emu.config().cards, world.hknso(), *c), pin.clone()))
            .collect();
        let auth = self.emu.authorize(&presented)?;
        self.quorum.replace(Some(auth));
        self.quorum_by_login.set(false);
        Ok(())
    }

    fn find_named(&self, app: &str, ident: &str) -> Result<KeyHandle> {
        self.handle_of(app, ident, Op::FindKeys)
    }

    fn narrow_for_transfer(&self, key: KeyHandle, target: &TransferTarget) -> Result<KeyHandle> {
        let op = Op::ChangeAcl;
        self.quorum_held(op)?;
        let o = self.object(key, op)?;
        if o.key.path.is_none() {
            return Err(not_named(&o, op));
        }
        let (kek_hash, hkm) = self.target_hashes(target, op)?;
        let h = &o.key.header;
        let narrowed = h.acl.narrowed_for_transfer(&hkm, &kek_hash);
        {
            let quorum = self.quorum.borrow();
            let auth = quorum.as_ref().ok_or_else(|| crate::emulator::poisoned(op))?;
            self.emu.copy_with_acl_as(
                (&h.appname, &h.ident),
                (TRANSFER_APP, &h.ident),
                target.label.as_deref(),
                narrowed,
                Some(auth),
            )?;
        }
        self.handle_of(TRANSFER_APP, &h.ident, op)
    }

    fn transfer_copy(&self, key: KeyHandle) -> Result<Option<KeyHandle>> {
        let op = Op::FindKeys;
        let o = self.object(key, op)?;
        let h = &o.key.header;
        if h.appname == TRANSFER_APP {
            return Ok(Some(key));
        }
        if !self.emu.key_path(TRANSFER_APP, &h.ident).exists() {
            return Ok(None);
        }
        self.handle_of(TRANSFER_APP, &h.ident, op).map(Some)
    }

    fn attestation(&self, copy: KeyHandle, target: &TransferTarget) -> Result<Attestation> {
        let op = Op::WrapKey;
        let o = self.object(copy, op)?;
        let (kek_hash, hkm) = self.target_hashes(target, op)?;
        let h = &o.key.header;
        let name = format!("{}/{}", h.appname, h.ident);
        if !h.acl.is_narrowed_for(&hkm, &kek_hash) {
            return Err(Error::new(ErrorKind::KeyNotWrappable, op)
                .detail(format!("{name} is not narrowed for this KEK and world"))
                .hint("narrow the key again with this KEK (KeyTransferRemote -ModifyAcls)"));
        }
        let Some(certificate) = &h.acl_certificate else {
            return Err(Error::new(ErrorKind::KeyNotWrappable, op)
                .detail(format!("{name} carries no quorum certificate for its ACL"))
                .hint("narrow the key with -ModifyAcls (which asks for the quorum)"));
        };
        let json =
            |v: serde_json::Result<String>| v.map_err(|e| Error::new(ErrorKind::Device, op).detail(e.to_string()));
        Ok(Attestation {
            key_hash: h.hash.clone(),
            rights: json(serde_json::to_string(&h.acl))?,
            certificate: json(serde_json::to_string(certificate))?,
        })
    }

    fn check_attestation(&self, public: &[u8], attestation: &Attestation, kek_spki: &[u8]) -> Result<Attested> {
        let op = Op::UnwrapKey;
        let bad = |why: &str| Error::new(ErrorKind::DataInvalid, op).detail(why.to_string());
        let acl: Acl = serde_json::from_str(&attestation.rights).map_err(|_| bad("its ACL is malformed"))?;
        let cert: AclCertificate =
            serde_json::from_str(&attestation.certificate).map_err(|_| bad("its ACL certificate is malformed"))?;
        // The certificate names a key by its hash: it must be this key.
        if attestation.key_hash != cert.cipher_suite.hash(&[public]) {
            return Err(
                bad("its ACL certificate is for another key").hint("make the package again from the narrowed key")
            );
        }
        let Some(source_world) = cert.verify(&attestation.key_hash, &acl) else {
            return Err(bad("its ACL certificate does not verify").hint("make the package again from the narrowed key"));
        };
        let world = self.emu.require_world(op)?;
        if !acl.is_narrowed_for(world.hkm(), &cert.cipher_suite.hash(&[kek_spki])) {
            return Err(bad("the key's ACL is not narrowed for this provider's world and KEK")
                .hint("narrow the key with -ModifyAcls and this toolset"));
        }
        let usage = acl.policy().usage & (Usage::SIGN | Usage::VERIFY | Usage::DECRYPT | Usage::ENCRYPT);
        Ok(Attested { source_world, usage })
    }
}

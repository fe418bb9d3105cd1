//! nCore-shaped key ACLs (`M_ACL`): permission groups, each with an optional certifier, use
//! limits and actions; the one function that enforces them; and the one table that maps them to
//! and from the seam's [`KeyPolicy`].
//!
//! A group whose certifier is the world's KNSO applies only to a command certified by the
//! Administrator Card Set quorum. Removing rights needs only `ReduceACL`; adding rights, or
//! binding a key to another world, needs `ExpandACL` in a certified group, i.e. the quorum.

use serde::{Deserialize, Serialize};

use hsmkit_backend::{KeyPolicy, Usage};

bitflags::bitflags! {
    /// nCore `Act_OpPermissions` bits (`M_Act_Details_OpPermissions_Details_perms`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct OpPerms: u32 {
        /// Duplicate the key handle.
        const DuplicateHandle = 0x1;
        /// Use the key as a certificate signer.
        const UseAsCertificate = 0x2;
        /// Export the key's secret material in plain.
        const ExportAsPlain = 0x4;
        /// Read application data.
        const GetAppData = 0x8;
        /// Write application data.
        const SetAppData = 0x10;
        /// Make a copy of the key with fewer rights.
        const ReduceACL = 0x20;
        /// Make a copy of the key with more rights.
        const ExpandACL = 0x40;
        /// Encrypt.
        const Encrypt = 0x80;
        /// Decrypt.
        const Decrypt = 0x100;
        /// Verify signatures.
        const Verify = 0x200;
        /// Use as a key-blob key.
        const UseAsBlobKey = 0x400;
        /// Use as a module key.
        const UseAsKM = 0x800;
        /// Sign.
        const Sign = 0x1000;
        /// Read the ACL.
        const GetACL = 0x2000;
        /// Use as an SEE loader key.
        const UseAsLoaderKey = 0x4000;
        /// Sign module certificates.
        const SignModuleCert = 0x8000;
    }
}

/// The role of a key in a key-wrapping `DeriveKey` operation (`DeriveRole_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeriveRole {
    /// The key wraps other keys (`CKA_WRAP`).
    WrapKey,
    /// The key unwraps other keys (`CKA_UNWRAP`).
    UnwrapKey,
    /// The key is the base of a key derivation (`CKA_DERIVE`): ECDH, a KDF, or the encryption of
    /// data into a new key.
    BaseKey,
}

/// Which keys a key may be exported (wrapped) under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExportUnder {
    /// Any key with the WrapKey role (`CKA_EXTRACTABLE`).
    AnyKey,
    /// Only a trusted wrapping key (`CKA_WRAP_WITH_TRUSTED`).
    TrustedKey,
    /// Only the key whose hash is given (hex): a transfer KEK. Naming it is the authorisation, so
    /// it need not be a trusted key.
    Key(#[serde(with = "hex")] Vec<u8>),
}

/// An ACL action (`M_Action`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// `Act_OpPermissions`: the operations allowed.
    OpPermissions(OpPerms),
    /// `Act_MakeBlob`: save the key as a blob, under the module key whose hash is `kmhash`
    /// (any module key when absent).
    MakeBlob {
        /// Hash of the module key KM the blob may be made under (hex).
        #[serde(with = "opt_hex", default)]
        kmhash: Option<Vec<u8>>,
    },
    /// `Act_MakeArchiveBlob`: make a recovery blob under the recovery key whose hash is `kahash`.
    MakeArchiveBlob {
        /// Hash of the recovery key KRE (hex).
        #[serde(with = "hex")]
        kahash: Vec<u8>,
    },
    /// `Act_DeriveKey` in a wrapping role.
    DeriveKey {
        /// The role this key may play.
        role: DeriveRole,
    },
    /// Export of this key, wrapped (`DeriveRole_BaseKey` of a wrapping DeriveKey).
    Export {
        /// Under which keys.
        under: ExportUnder,
    },
    /// hsmkit: this key is a trusted wrapping key (the PKCS#11 `CKA_TRUSTED`, which nCore has no
    /// action for); granting it needs the quorum.
    TrustedWrapper,
}

/// An ACL use limit (`M_UseLimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UseLimit {
    /// `UseLim_Global`: at most `max` uses of the group while the key is loaded.
    Global {
        /// Maximum number of uses.
        max: u64,
    },
    /// `UseLim_Time`: usable for `seconds` after the key is loaded.
    Time {
        /// Lifetime in seconds.
        seconds: u64,
    },
}

/// A permission group (`M_PermissionGroup`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionGroup {
    /// The key whose certificate the command must carry (hex hash of KNSO), if any.
    #[serde(with = "opt_hex", default)]
    pub certifier: Option<Vec<u8>>,
    /// Use limits of the group.
    #[serde(default)]
    pub limits: Vec<UseLimit>,
    /// What the group allows.
    pub actions: Vec<Action>,
}

/// A key's ACL (`M_ACL`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    /// The permission groups; a request is allowed if any applicable group allows it.
    pub groups: Vec<PermissionGroup>,
}

/// What an operation needs from the ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Operation permissions.
    Op(OpPerms),
    /// A wrapping role.
    Derive(DeriveRole),
    /// Export wrapped under a key with this hash, trusted or not.
    ExportUnder {
        /// The wrapping key's hash.
        wrapping_hash: &'a [u8],
        /// Whether the wrapping key is trusted.
        trusted: bool,
    },
    /// A blob under the module key with this hash.
    MakeBlob(&'a [u8]),
    /// Being a trusted wrapping key.
    Trusted,
}

impl Need<'_> {
    /// The name of the permission, for "missing permission" errors.
    pub fn name(&self) -> &'static str {
        match self {
            Need::Op(p) => op_name(*p),
            Need::Derive(DeriveRole::WrapKey) => "DeriveKey(WrapKey)",
            Need::Derive(DeriveRole::UnwrapKey) => "DeriveKey(UnwrapKey)",
            Need::Derive(DeriveRole::BaseKey) => "DeriveKey(BaseKey)",
            Need::ExportUnder { .. } => "Export (wrapped under this key)",
            Need::MakeBlob(_) => "MakeBlob (under this module key)",
            Need::Trusted => "TrustedWrapper",
        }
    }
}

fn op_name(p: OpPerms) -> &'static str {
    // One bit at a time; the first set bit names the permission.
    for (name, flag) in OpPerms::all().iter_names() {
        if p.contains(flag) {
            return name;
        }
    }
    "OpPermissions"
}

/// Why the ACL refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No applicable group grants it; the name of the missing permission.
    Missing(&'static str),
    /// A group grants it, but only with the quorum's certificate.
    NeedsQuorum(&'static str),
    /// A group grants it but its use limit is exhausted.
    LimitExhausted,
}

impl Action {
    fn grants(&self, need: &Need<'_>) -> bool {
        match (self, need) {
            (Action::OpPermissions(have), Need::Op(want)) => have.contains(*want),
            (Action::DeriveKey { role }, Need::Derive(want)) => role == want,
            (Action::Export { under }, Need::ExportUnder { wrapping_hash, trusted }) => match under {
                ExportUnder::AnyKey => true,
                ExportUnder::TrustedKey => *trusted,
                // Naming the one key is the authorisation (the quorum approved it): no trust flag needed.
                ExportUnder::Key(h) => h.as_slice() == *wrapping_hash,
            },
            (Action::MakeBlob { kmhash }, Need::MakeBlob(km)) => kmhash.as_deref().is_none_or(|h| h == *km),
            (Action::TrustedWrapper, Need::Trusted) => true,
            _ => false,
        }
    }

    /// Whether `self` allows nothing that `other` does not.
    fn within(&self, other: &Action) -> bool {
        match (self, other) {
            (Action::OpPermissions(a), Action::OpPermissions(b)) => b.contains(*a),
            (Action::MakeBlob { kmhash: a }, Action::MakeBlob { kmhash: b }) => b.is_none() || a == b,
            (Action::MakeArchiveBlob { kahash: a }, Action::MakeArchiveBlob { kahash: b }) => a == b,
            (Action::DeriveKey { role: a }, Action::DeriveKey { role: b }) => a == b,
            (Action::Export { under: a }, Action::Export { under: b }) => match (a, b) {
                (_, ExportUnder::AnyKey) => true,
                (ExportUnder::TrustedKey | ExportUnder::Key(_), ExportUnder::TrustedKey) => true,
                (ExportUnder::Key(x), ExportUnder::Key(y)) => x == y,
                _ => false,
            },
            (Action::TrustedWrapper, Action::TrustedWrapper) => true,
            _ => false,
        }
    }
}

impl Acl {
    /// Finds the group that allows `need`. `certified` says whether the command carries a
    /// certificate from the key named by each group's certifier (`knso`: the quorum's key hash).
    /// `exhausted(i)` tells whether group `i`'s use limits are used up.
    pub fn check(
        &self,
        need: &Need<'_>,
        certified_by: Option<&[u8]>,
        exhausted: impl Fn(usize) -> bool,
    ) -> Result<usize, Denied> {
        let mut needs_quorum = false;
        let mut limited = false;
        for (i, g) in self.groups.iter().enumerate() {
            if !g.actions.iter().any(|a| a.grants(need)) {
                continue;
            }
            if let Some(c) = &g.certifier
                && certified_by != Some(c.as_slice())
            {
                needs_quorum = true;
                continue;
            }
            if exhausted(i) {
                limited = true;
                continue;
            }
            return Ok(i);
        }
        Err(if limited {
            Denied::LimitExhausted
        } else if needs_quorum {
            Denied::NeedsQuorum(need.name())
        } else {
            Denied::Missing(need.name())
        })
    }

    /// Whether `self` is a reduction of `original`: every action of every group is allowed by a
    /// group of `original` with the same certifier and no fewer limits (nCore's ReduceACL rule).
    /// On failure, a description of the first right that would be added.
    pub fn check_reduction_of(&self, original: &Acl) -> Result<(), String> {
        // A group with use limits has one counter: copying it into several groups would multiply
        // its uses, so each limited original group may be covered by one new group at most.
        let mut used_limited = vec![false; original.groups.len()];
        for g in &self.groups {
            let covering = original.groups.iter().position(|o| {
                o.certifier == g.certifier
                    && o.limits.iter().all(|l| g.limits.contains(l))
                    && g.actions.iter().all(|a| o.actions.iter().any(|b| a.within(b)))
            });
            if let Some(i) = covering
                && !original.groups[i].limits.is_empty()
            {
                if used_limited[i] {
                    return Err(format!("a second copy of limited permission group {}", i + 1));
                }
                used_limited[i] = true;
            }
        }
        for g in &self.groups {
            for a in &g.actions {
                let covered = original.groups.iter().any(|o| {
                    o.certifier == g.certifier
                        && o.limits.iter().all(|l| g.limits.contains(l))
                        && o.actions.iter().any(|b| a.within(b))
                });
                if !covered {
                    return Err(format!("{a:?}"));
                }
            }
        }
        Ok(())
    }

    /// The default ACL of a module-protected key made by `generatekey`: usable without
    /// authorisation, saved only under this world's KM, recoverable under KRE, narrowable by
    /// anyone (ReduceACL) and widenable only with the quorum (an NSO-certified group).
    pub fn generatekey_default(private: bool, hkm: &[u8], hkre: &[u8], hknso: &[u8]) -> Acl {
        let both_halves = Usage::SIGN | Usage::DECRYPT | Usage::VERIFY | Usage::ENCRYPT;
        let mut policy = KeyPolicy::new(if private { both_halves } else { Usage::VERIFY | Usage::ENCRYPT });
        policy.sensitive = private;
        let mut acl = Acl::from_policy(&policy, hkm, hknso);
        if private {
            acl.groups[0].actions.push(Action::MakeArchiveBlob { kahash: hkre.to_vec() });
        }
        acl
    }

    /// The ACL for a [`KeyPolicy`] (the one mapping table is [`USAGE_TABLE`]). The key is saved
    /// under `hkm` only, and an NSO-certified group (certifier `hknso`) keeps the right to change
    /// the ACL with the quorum.
    pub fn from_policy(policy: &KeyPolicy, hkm: &[u8], hknso: &[u8]) -> Acl {
        let mut ops = OpPerms::DuplicateHandle | OpPerms::GetACL | OpPerms::GetAppData | OpPerms::ReduceACL;
        let mut actions = Vec::new();
        for (usage, grant) in USAGE_TABLE {
            if policy.usage.contains(*usage) {
                match grant {
                    Grant::Op(p) => ops |= *p,
                    Grant::Derive(role) => actions.push(Action::DeriveKey { role: *role }),
                }
            }
        }
        if !policy.sensitive {
            ops |= OpPerms::ExportAsPlain;
        }
        actions.insert(0, Action::OpPermissions(ops));
        if policy.extractable {
            let under = if policy.wrap_with_trusted { ExportUnder::TrustedKey } else { ExportUnder::AnyKey };
            actions.push(Action::Export { under });
        }
        if policy.trusted {
            actions.push(Action::TrustedWrapper);
        }
        actions.push(Action::MakeBlob { kmhash: Some(hkm.to_vec()) });
        let admin = PermissionGroup {
            certifier: Some(hknso.to_vec()),
            limits: Vec::new(),
            actions: vec![
                Action::OpPermissions(OpPerms::all() - OpPerms::ExportAsPlain),
                Action::MakeBlob { kmhash: None },
            ],
        };
        Acl { groups: vec![PermissionGroup { certifier: None, limits: Vec::new(), actions }, admin] }
    }

    /// The ACL of a Key Exchange Key: it unwraps and decrypts in this world's modules and nothing
    /// else. No group lets it leave the module (no export, no recovery blob) and no group lets its
    /// ACL grow, with the quorum or without.
    pub fn key_exchange_key(hkm: &[u8]) -> Acl {
        Acl {
            groups: vec![PermissionGroup {
                certifier: None,
                limits: Vec::new(),
                actions: vec![
                    Action::OpPermissions(OpPerms::Decrypt | OpPerms::DuplicateHandle | OpPerms::GetACL),
                    Action::DeriveKey { role: DeriveRole::UnwrapKey },
                    Action::MakeBlob { kmhash: Some(hkm.to_vec()) },
                ],
            }],
        }
    }

    /// The ACL of a key narrowed for transfer (KeyTransferRemote -ModifyAcls): it may be used as
    /// it could be (sign, verify, encrypt, decrypt), saved only under the provider world's module
    /// key `provider_hkm`, and exported only wrapped under the KEK whose hash is `kek_hash`. No
    /// recovery, no ACL change (not even a reduction), no certifier group.
    pub fn narrowed_for_transfer(&self, provider_hkm: &[u8], kek_hash: &[u8]) -> Acl {
        let usage = OpPerms::Sign | OpPerms::Verify | OpPerms::Encrypt | OpPerms::Decrypt;
        let mut ops = OpPerms::DuplicateHandle | OpPerms::GetACL;
        for g in self.groups.iter().filter(|g| g.certifier.is_none()) {
            for a in &g.actions {
                if let Action::OpPermissions(p) = a {
                    ops |= *p & usage;
                }
            }
        }
        Acl {
            groups: vec![PermissionGroup {
                certifier: None,
                limits: Vec::new(),
                actions: vec![
                    Action::OpPermissions(ops),
                    Action::MakeBlob { kmhash: Some(provider_hkm.to_vec()) },
                    Action::Export { under: ExportUnder::Key(kek_hash.to_vec()) },
                ],
            }],
        }
    }

    /// Whether the ACL is narrowed for transfer to the world `provider_hkm` and the KEK `kek_hash`:
    /// blobs only under that module key, export only under that KEK, no recovery, no ACL change.
    pub fn is_narrowed_for(&self, provider_hkm: &[u8], kek_hash: &[u8]) -> bool {
        let actions = || self.groups.iter().flat_map(|g| &g.actions);
        let blob_only_there = actions().all(|a| match a {
            Action::MakeBlob { kmhash } => kmhash.as_deref() == Some(provider_hkm),
            Action::Export { under } => *under == ExportUnder::Key(kek_hash.to_vec()),
            Action::MakeArchiveBlob { .. } | Action::TrustedWrapper => false,
            Action::OpPermissions(p) => !p.intersects(OpPerms::ExportAsPlain | OpPerms::ExpandACL | OpPerms::ReduceACL),
            Action::DeriveKey { .. } => true,
        });
        blob_only_there
            && actions().any(|a| *a == Action::Export { under: ExportUnder::Key(kek_hash.to_vec()) })
            && actions().any(|a| *a == Action::MakeBlob { kmhash: Some(provider_hkm.to_vec()) })
    }

    /// Whether any group, with the quorum or without, lets the key leave the module: plain
    /// export, wrapped export, a recovery blob, or an ACL expansion that could add one.
    /// A blob under another world's module key (`hkm` is this world's) counts as leaving.
    pub fn allows_leaving(&self, hkm: &[u8]) -> bool {
        self.groups.iter().flat_map(|g| &g.actions).any(|a| match a {
            Action::OpPermissions(p) => p.intersects(OpPerms::ExportAsPlain | OpPerms::ExpandACL),
            Action::Export { .. } | Action::MakeArchiveBlob { .. } => true,
            Action::MakeBlob { kmhash } => kmhash.as_deref() != Some(hkm),
            _ => false,
        })
    }

    /// The policy the ACL grants without the quorum (uncertified groups only).
    pub fn policy(&self) -> KeyPolicy {
        let mut p = KeyPolicy { sensitive: true, ..KeyPolicy::default() };
        let mut export_any = false;
        for g in self.groups.iter().filter(|g| g.certifier.is_none()) {
            for a in &g.actions {
                for (usage, grant) in USAGE_TABLE {
                    let granted = match (grant, a) {
                        (Grant::Op(want), Action::OpPermissions(have)) => have.contains(*want),
                        (Grant::Derive(want), Action::DeriveKey { role }) => role == want,
                        _ => false,
                    };
                    if granted {
                        p.usage |= *usage;
                    }
                }
                match a {
                    // CKA_SENSITIVE false: the value may be read; wrapping still needs an Export.
                    Action::OpPermissions(have) if have.contains(OpPerms::ExportAsPlain) => p.sensitive = false,
                    Action::Export { under } => {
                        p.extractable = true;
                        export_any |= *under == ExportUnder::AnyKey;
                    }
                    Action::TrustedWrapper => p.trusted = true,
                    _ => {}
                }
            }
        }
        p.wrap_with_trusted = p.extractable && !export_any;
        p
    }

    /// The ACL narrowed to `policy`: uncertified groups lose every grant the policy does not
    /// include; certified (quorum) groups are kept as they are.
    pub fn narrowed_to(&self, policy: &KeyPolicy) -> Acl {
        let allowed = Acl::from_policy(policy, &[], &[]);
        let base = &allowed.groups[0].actions;
        let ops_allowed = match base.first() {
            Some(Action::OpPermissions(p)) => *p | !USAGE_OPS,
            _ => !USAGE_OPS,
        };
        let mut out = self.clone();
        for g in out.groups.iter_mut().filter(|g| g.certifier.is_none()) {
            g.actions.retain_mut(|a| match a {
                Action::OpPermissions(p) => {
                    *p &= ops_allowed;
                    if policy.sensitive {
                        *p -= OpPerms::ExportAsPlain;
                    }
                    true
                }
                Action::DeriveKey { role } => base.contains(&Action::DeriveKey { role: *role }),
                Action::Export { under } => {
                    if !policy.extractable {
                        return false;
                    }
                    if policy.wrap_with_trusted && *under == ExportUnder::AnyKey {
                        *under = ExportUnder::TrustedKey;
                    }
                    true
                }
                Action::TrustedWrapper => policy.trusted,
                _ => true,
            });
        }
        out
    }
}

/// How a seam usage is granted in an ACL.
#[derive(Debug, Clone, Copy)]
pub enum Grant {
    /// An OpPermissions bit.
    Op(OpPerms),
    /// A DeriveKey role.
    Derive(DeriveRole),
}

/// The one table between [`Usage`] and ACL grants.
pub const USAGE_TABLE: &[(Usage, Grant)] = &[
    (Usage::SIGN, Grant::Op(OpPerms::Sign)),
    (Usage::VERIFY, Grant::Op(OpPerms::Verify)),
    (Usage::ENCRYPT, Grant::Op(OpPerms::Encrypt)),
    (Usage::DECRYPT, Grant::Op(OpPerms::Decrypt)),
    (Usage::WRAP, Grant::Derive(DeriveRole::WrapKey)),
    (Usage::UNWRAP, Grant::Derive(DeriveRole::UnwrapKey)),
    (Usage::DERIVE, Grant::Derive(DeriveRole::BaseKey)),
];

const USAGE_OPS: OpPerms = OpPerms::Sign.union(OpPerms::Verify).union(OpPerms::Encrypt).union(OpPerms::Decrypt);

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?.map(|h| hex::decode(h).map_err(serde::de::Error::custom)).transpose()
    }
}

impl std::fmt::Display for Acl {
    /// The layout of nShield's ACL pretty-printer (`aclprint.py`): groups, certifier, limits,
    /// actions. Hashes are printed in full; no secret is part of an ACL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "ACL containing {} Permission Group{}",
            self.groups.len(),
            if self.groups.len() == 1 { "" } else { "s" }
        )?;
        for (i, g) in self.groups.iter().enumerate() {
            writeln!(f, " Permission Group {}:", i + 1)?;
            match &g.certifier {
                Some(c) => {
                    writeln!(f, "  Requires Certifier: {} (KNSO: the Administrator Card Set quorum)", hex::encode(c))?
                }
                None => writeln!(f, "  Requires Certifier: none")?,
            }
            if g.limits.is_empty() {
                writeln!(f, "  Use Limits: none")?;
            }
            for l in &g.limits {
                match l {
                    UseLimit::Global { max } => writeln!(f, "  Use Limit: Global, at most {max} uses")?,
                    UseLimit::Time { seconds } => writeln!(f, "  Use Limit: Time, {seconds} seconds after loading")?,
                }
            }
            for a in &g.actions {
                match a {
                    Action::OpPermissions(p) => {
                        let names: Vec<&str> = p.iter_names().map(|(n, _)| n).collect();
                        writeln!(f, "  Action: OpPermissions: {}", names.join(", "))?
                    }
                    Action::MakeBlob { kmhash: Some(h) } => {
                        writeln!(f, "  Action: MakeBlob: only under module key {}", hex::encode(h))?
                    }
                    Action::MakeBlob { kmhash: None } => writeln!(f, "  Action: MakeBlob: under any module key")?,
                    Action::MakeArchiveBlob { kahash } => writeln!(
                        f,
                        "  Action: MakeArchiveBlob: under recovery key {} (recoverable)",
                        hex::encode(kahash)
                    )?,
                    Action::DeriveKey { role } => writeln!(f, "  Action: DeriveKey: role {role:?}")?,
                    Action::Export { under: ExportUnder::AnyKey } => {
                        writeln!(f, "  Action: Export: wrapped under any wrapping key")?
                    }
                    Action::Export { under: ExportUnder::TrustedKey } => {
                        writeln!(f, "  Action: Export: wrapped under a trusted wrapping key only")?
                    }
                    Action::Export { under: ExportUnder::Key(h) } => {
                        writeln!(f, "  Action: Export: wrapped only under the key {}", hex::encode(h))?
                    }
                    Action::TrustedWrapper => writeln!(f, "  Action: TrustedWrapper (a trusted wrapping key)")?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HKM: &[u8] = b"km-hash";
    const HKNSO: &[u8] = b"knso-hash";

    #[test]
    fn generatekey_default_signs_without_quorum_and_expands_only_with_it() {
        let acl = Acl::generatekey_default(true, HKM, b"kre", HKNSO);
        assert_eq!(acl.check(&Need::Op(OpPerms::Sign), None, |_| false), Ok(0));
        assert_eq!(acl.check(&Need::Op(OpPerms::ReduceACL), None, |_| false), Ok(0));
        assert_eq!(acl.check(&Need::Op(OpPerms::ExpandACL), None, |_| false), Err(Denied::NeedsQuorum("ExpandACL")));
        assert_eq!(acl.check(&Need::Op(OpPerms::ExpandACL), Some(HKNSO), |_| false), Ok(1));
        assert_eq!(
            acl.check(&Need::Op(OpPerms::ExportAsPlain), Some(HKNSO), |_| false),
            Err(Denied::Missing("ExportAsPlain"))
        );
        assert_eq!(acl.check(&Need::MakeBlob(HKM), None, |_| false), Ok(0));
        assert!(acl.groups[0].actions.contains(&Action::MakeArchiveBlob { kahash: b"kre".to_vec() }));
        let p = acl.policy();
        assert_eq!(p.usage, Usage::SIGN | Usage::DECRYPT | Usage::VERIFY | Usage::ENCRYPT);
        assert!(p.sensitive && !p.extractable);
    }

    #[test]
    fn a_key_exchange_key_cannot_leave_but_a_default_key_can_with_the_quorum() {
        let kek = Acl::key_exchange_key(HKM);
        assert!(!kek.allows_leaving(HKM));
        assert!(kek.allows_leaving(b"another world's km"), "a blob under another KM leaves this world");
        assert!(kek.check(&Need::Derive(DeriveRole::UnwrapKey), None, |_| false).is_ok());
        assert!(kek.check(&Need::Op(OpPerms::Sign), Some(HKNSO), |_| false).is_err());
        assert!(Acl::generatekey_default(true, HKM, b"kre", HKNSO).allows_leaving(HKM), "recoverable and expandable");
    }

    #[test]
    fn a_transfer_narrowed_acl_keeps_use_and_drops_recovery_and_acl_changes() {
        let acl = Acl::generatekey_default(true, HKM, b"kre", HKNSO);
        let n = acl.narrowed_for_transfer(b"provider-km", b"kek");
        assert!(n.is_narrowed_for(b"provider-km", b"kek"));
        assert!(!n.is_narrowed_for(b"provider-km", b"other kek"));
        assert!(!acl.is_narrowed_for(b"provider-km", b"kek"));
        assert!(n.check(&Need::Op(OpPerms::Sign), None, |_| false).is_ok());
        for p in [OpPerms::ReduceACL, OpPerms::ExpandACL, OpPerms::ExportAsPlain] {
            assert!(n.check(&Need::Op(p), Some(HKNSO), |_| false).is_err(), "{p:?}");
        }
        assert!(n.check(&Need::MakeBlob(HKM), None, |_| false).is_err(), "no blob under the old world");
        assert!(n.check_reduction_of(&acl).is_err(), "binding to another world is no reduction: it needs the quorum");
    }

    #[test]
    fn a_limited_group_cannot_be_copied_to_multiply_its_uses() {
        let mut acl = Acl::from_policy(&KeyPolicy::new(Usage::SIGN), HKM, HKNSO);
        acl.groups[0].limits.push(UseLimit::Global { max: 1 });
        let mut doubled = acl.clone();
        doubled.groups.insert(1, acl.groups[0].clone());
        assert!(doubled.check_reduction_of(&acl).is_err());
        assert!(acl.check_reduction_of(&acl).is_ok());
    }

    #[test]
    fn a_readable_but_not_extractable_key_cannot_be_wrapped() {
        let p = KeyPolicy { usage: Usage::SIGN, sensitive: false, extractable: false, ..KeyPolicy::default() };
        let acl = Acl::from_policy(&p, HKM, HKNSO);
        assert!(acl.check(&Need::ExportUnder { wrapping_hash: b"k", trusted: true }, None, |_| false).is_err());
        let back = acl.policy();
        assert!(!back.sensitive && !back.extractable);
    }

    #[test]
    fn use_limits_deny_once_exhausted() {
        let mut acl = Acl::generatekey_default(true, HKM, b"kre", HKNSO);
        acl.groups[0].limits.push(UseLimit::Global { max: 1 });
        assert_eq!(acl.check(&Need::Op(OpPerms::Sign), None, |_| true), Err(Denied::LimitExhausted));
    }

    #[test]
    fn policy_round_trips_through_the_acl() {
        for usage in [Usage::SIGN, Usage::WRAP | Usage::UNWRAP, Usage::ENCRYPT | Usage::DECRYPT | Usage::VERIFY] {
            for (extractable, wrap_with_trusted, trusted) in
                [(false, false, false), (true, false, false), (true, true, false), (false, false, true)]
            {
                let p = KeyPolicy {
                    usage,
                    extractable,
                    wrap_with_trusted,
                    trusted,
                    sensitive: true,
                    ..KeyPolicy::default()
                };
                let back = Acl::from_policy(&p, HKM, HKNSO).policy();
                assert_eq!(
                    (back.usage, back.extractable, back.wrap_with_trusted, back.trusted),
                    (usage, extractable, wrap_with_trusted, trusted)
                );
            }
        }
    }

    #[test]
    fn narrowing_is_a_reduction_and_widening_is_not() {
        let full = KeyPolicy {
            usage: Usage::SIGN | Usage::DECRYPT,
            extractable: true,
            sensitive: true,
            ..KeyPolicy::default()
        };
        let acl = Acl::from_policy(&full, HKM, HKNSO);
        let narrow = acl.narrowed_to(&KeyPolicy { usage: Usage::SIGN, sensitive: true, ..KeyPolicy::default() });
        assert!(narrow.check_reduction_of(&acl).is_ok());
        assert_eq!(narrow.check(&Need::Op(OpPerms::Decrypt), None, |_| false), Err(Denied::NeedsQuorum("Decrypt")));
        assert!(acl.check_reduction_of(&narrow).is_err(), "restoring Decrypt is a widening");
        let mut other_world = narrow.clone();
        other_world.groups[0].actions.push(Action::MakeBlob { kmhash: Some(b"other-km".to_vec()) });
        assert!(other_world.check_reduction_of(&acl).is_err(), "binding to another world needs the quorum");
    }

    #[test]
    fn export_under_a_named_kek_needs_that_kek() {
        let mut acl = Acl::from_policy(&KeyPolicy::new(Usage::SIGN), HKM, HKNSO);
        acl.groups[0].actions.push(Action::Export { under: ExportUnder::Key(b"kek".to_vec()) });
        assert!(acl.check(&Need::ExportUnder { wrapping_hash: b"kek", trusted: true }, None, |_| false).is_ok());
        assert!(acl.check(&Need::ExportUnder { wrapping_hash: b"other", trusted: true }, None, |_| false).is_err());
        assert!(acl.check(&Need::ExportUnder { wrapping_hash: b"kek", trusted: false }, None, |_| false).is_ok());
    }
}

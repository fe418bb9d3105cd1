//! [`KeyPolicy`]: what a key may do, the common denominator of an nShield ACL and PKCS#11 attributes.

use crate::error::{Error, ErrorKind, Op, Result};
use crate::mechanism::MechanismKind;

bitflags::bitflags! {
    /// Key usages (`CKA_SIGN`, `CKA_DECRYPT`, …; nShield OpPermissions and DeriveKey roles).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Usage: u32 {
        /// `CKA_SIGN` / nShield `Sign`.
        const SIGN = 1 << 0;
        /// `CKA_VERIFY` / nShield `Verify`.
        const VERIFY = 1 << 1;
        /// `CKA_ENCRYPT` / nShield `Encrypt`.
        const ENCRYPT = 1 << 2;
        /// `CKA_DECRYPT` / nShield `Decrypt`.
        const DECRYPT = 1 << 3;
        /// `CKA_WRAP` / nShield DeriveKey role WrapKey.
        const WRAP = 1 << 4;
        /// `CKA_UNWRAP` / nShield DeriveKey role UnwrapKey.
        const UNWRAP = 1 << 5;
        /// `CKA_DERIVE`.
        const DERIVE = 1 << 6;
    }
}

impl Usage {
    /// The usages that belong on a private or secret key.
    pub const PRIVATE_SIDE: Usage = Usage::SIGN.union(Usage::DECRYPT).union(Usage::UNWRAP).union(Usage::DERIVE);
    /// The usages that belong on a public key.
    pub const PUBLIC_SIDE: Usage = Usage::VERIFY.union(Usage::ENCRYPT).union(Usage::WRAP);

    /// Each usage flag and the `CKA_*` attribute that carries it: the one table both PKCS#11 edges
    /// (the client and the exported module) read.
    pub const ATTRIBUTES: &'static [(Usage, cryptoki_sys::CK_ATTRIBUTE_TYPE)] = &[
        (Usage::SIGN, cryptoki_sys::CKA_SIGN),
        (Usage::VERIFY, cryptoki_sys::CKA_VERIFY),
        (Usage::ENCRYPT, cryptoki_sys::CKA_ENCRYPT),
        (Usage::DECRYPT, cryptoki_sys::CKA_DECRYPT),
        (Usage::WRAP, cryptoki_sys::CKA_WRAP),
        (Usage::UNWRAP, cryptoki_sys::CKA_UNWRAP),
        (Usage::DERIVE, cryptoki_sys::CKA_DERIVE),
    ];

    /// The usages an object of `class` carries: a private key the private side, a public key the
    /// public side, a secret key all of them.
    pub fn of_class(class: crate::types::ObjectClass) -> Usage {
        use crate::types::ObjectClass;
        match class {
            ObjectClass::PrivateKey => Usage::PRIVATE_SIDE,
            ObjectClass::PublicKey => Usage::PUBLIC_SIDE,
            ObjectClass::SecretKey => Usage::all(),
        }
    }

    /// The PKCS#11 attribute name of a single usage flag.
    pub fn attribute_name(self) -> &'static str {
        match self {
            Usage::SIGN => "CKA_SIGN",
            Usage::VERIFY => "CKA_VERIFY",
            Usage::ENCRYPT => "CKA_ENCRYPT",
            Usage::DECRYPT => "CKA_DECRYPT",
            Usage::WRAP => "CKA_WRAP",
            Usage::UNWRAP => "CKA_UNWRAP",
            Usage::DERIVE => "CKA_DERIVE",
            _ => "CKA_?",
        }
    }
}

/// What a key may do and how it may leave the backend.
///
/// On PKCS#11 these are attributes (`CKA_SIGN` … `CKA_EXTRACTABLE`, `CKA_SENSITIVE`,
/// `CKA_WRAP_WITH_TRUSTED`, `CKA_TRUSTED`, `CKA_ALLOWED_MECHANISMS`, `CKA_TOKEN`, `CKA_LABEL`,
/// `CKA_ID`); on the emulator they become an nShield-style ACL through one table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPolicy {
    /// What the key may be used for.
    pub usage: Usage,
    /// `CKA_EXTRACTABLE`: the key may leave the backend wrapped.
    pub extractable: bool,
    /// `CKA_SENSITIVE`: the key's secret parts may never leave in plain.
    pub sensitive: bool,
    /// `CKA_WRAP_WITH_TRUSTED`: the key may be wrapped only by a trusted key.
    pub wrap_with_trusted: bool,
    /// `CKA_TRUSTED`: this key is a trusted wrapping key (setting it needs the security officer).
    pub trusted: bool,
    /// `CKA_ALLOWED_MECHANISMS`: `None` means any mechanism.
    pub allowed_mechanisms: Option<Vec<MechanismKind>>,
    /// `CKA_TOKEN`: the key outlives the session.
    pub token: bool,
    /// `CKA_LABEL`.
    pub label: Option<String>,
    /// `CKA_ID`.
    pub id: Option<Vec<u8>>,
    /// `CKA_PRIVATE` false on a private or secret key: a public object, seen and used without the
    /// user's login (PKCS#11 lets a template ask for it). Public keys are public objects anyway.
    pub public_object: bool,
}

impl KeyPolicy {
    /// A persistent, sensitive, non-extractable key with the given usages.
    pub fn new(usage: Usage) -> Self {
        KeyPolicy { usage, sensitive: true, token: true, ..KeyPolicy::default() }
    }

    /// Sets the label.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Sets `CKA_EXTRACTABLE`.
    #[must_use]
    pub fn extractable(mut self, yes: bool) -> Self {
        self.extractable = yes;
        self
    }

    /// Whether `mech` is allowed by `CKA_ALLOWED_MECHANISMS`.
    pub fn allows_mechanism(&self, mech: MechanismKind) -> bool {
        self.allowed_mechanisms.as_ref().is_none_or(|m| m.contains(&mech))
    }

    /// Checks that `self` grants nothing that `original` does not: the rule of `C_CopyObject`
    /// (attributes may only change towards the safer value) and of nShield's ReduceACL.
    ///
    /// Labels, ids and `token` may change freely. The error names the first widened attribute.
    pub fn check_narrowing_of(&self, original: &KeyPolicy) -> Result<()> {
        let widened = |what: &str| {
            Err(Error::new(ErrorKind::ActionProhibited, Op::CopyKey)
                .detail(format!("the new policy widens {what}"))
                .hint("a copy may only remove rights; adding rights needs the security officer (the ACS quorum)"))
        };
        let added = self.usage - original.usage;
        if !added.is_empty() {
            let names: Vec<&str> = added.iter().map(Usage::attribute_name).collect();
            return widened(&names.join(", "));
        }
        if self.extractable && !original.extractable {
            return widened("CKA_EXTRACTABLE");
        }
        if !self.sensitive && original.sensitive {
            return widened("CKA_SENSITIVE");
        }
        if !self.wrap_with_trusted && original.wrap_with_trusted {
            return widened("CKA_WRAP_WITH_TRUSTED");
        }
        if self.trusted && !original.trusted {
            return widened("CKA_TRUSTED");
        }
        if self.public_object && !original.public_object {
            return widened("CKA_PRIVATE");
        }
        match (&self.allowed_mechanisms, &original.allowed_mechanisms) {
            (_, None) => {}
            (None, Some(_)) => return widened("CKA_ALLOWED_MECHANISMS"),
            (Some(new), Some(old)) => {
                if new.iter().any(|m| !old.contains(m)) {
                    return widened("CKA_ALLOWED_MECHANISMS");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> KeyPolicy {
        KeyPolicy {
            usage: Usage::SIGN | Usage::DECRYPT,
            extractable: true,
            sensitive: true,
            allowed_mechanisms: Some(vec![MechanismKind::Sha256RsaPkcs, MechanismKind::RsaPkcsOaep]),
            ..KeyPolicy::default()
        }
    }

    #[test]
    fn removing_rights_is_narrowing() {
        let mut p = base();
        p.usage = Usage::SIGN;
        p.extractable = false;
        p.wrap_with_trusted = true;
        p.allowed_mechanisms = Some(vec![MechanismKind::Sha256RsaPkcs]);
        p.label = Some("other".into());
        assert!(p.check_narrowing_of(&base()).is_ok());
    }

    #[test]
    fn each_widening_is_refused_by_name() {
        type Change = fn(&mut KeyPolicy);
        let cases: Vec<(Change, &str)> = vec![
            (|p| p.usage |= Usage::UNWRAP, "CKA_UNWRAP"),
            (|p| p.sensitive = false, "CKA_SENSITIVE"),
            (|p| p.trusted = true, "CKA_TRUSTED"),
            (|p| p.allowed_mechanisms = None, "CKA_ALLOWED_MECHANISMS"),
            (|p| p.allowed_mechanisms = Some(vec![MechanismKind::Sha1RsaPkcs]), "CKA_ALLOWED_MECHANISMS"),
        ];
        for (change, name) in cases {
            let mut p = base();
            change(&mut p);
            let err = p.check_narrowing_of(&base()).expect_err(name);
            assert_eq!(err.kind(), &ErrorKind::ActionProhibited);
            assert!(err.to_string().contains(name), "{err}");
        }
        let mut not_extractable = base();
        not_extractable.extractable = false;
        let err = base().check_narrowing_of(&not_extractable).expect_err("extractable");
        assert!(err.to_string().contains("CKA_EXTRACTABLE"));
    }
}

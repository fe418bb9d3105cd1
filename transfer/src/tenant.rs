//! The tenant key store of the provider's service (the article's `Add-AadrmKey`, `Get-AadrmKeys`):
//! one SQLite file, every change in one transaction. It holds no key material: each row names the
//! key in the provider's module and its public-key fingerprint.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use hsmkit_backend::{Error, ErrorKind, Op, Result};

/// Who made a tenant key.
pub const MICROSOFT_MANAGED: &str = "Microsoft-managed";
/// A key the tenant brought.
pub const CUSTOMER_MANAGED: &str = "Customer-managed (BYOK)";

/// One tenant key as `keys` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKey {
    /// The key identifier.
    pub identifier: String,
    /// [`MICROSOFT_MANAGED`] or [`CUSTOMER_MANAGED`].
    pub key_type: String,
    /// `Active` or `Archived`.
    pub status: String,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// SHA-256 of the public key (hex).
    pub fingerprint: String,
    /// The key's name in the provider's module (application/ident).
    pub module_key: String,
}

/// What [`Store::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// The key is the tenant's new Active key; the previous Active key (if any) is Archived.
    Added {
        /// The new key's identifier.
        identifier: String,
        /// The key archived by this addition.
        archived: Option<String>,
    },
    /// This package was added before, as this key: nothing changed.
    AlreadyAdded(String),
}

/// The store.
pub struct Store {
    db: Connection,
    tenant: String,
}

fn db_err(path: &Path, op: Op) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        let (kind, hint) = match &e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly => {
                (ErrorKind::Io, "the tenant database is read-only: make it writable")
            }
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) =>
            {
                (ErrorKind::Corrupt, "the tenant database is damaged: restore it from a backup")
            }
            _ => (ErrorKind::Io, "check the tenant database file"),
        };
        Error::new(kind, op).detail(format!("tenant database {}: {e}", path.display())).hint(hint)
    }
}

const SCHEMA: &str = "PRAGMA foreign_keys = ON;
     CREATE TABLE IF NOT EXISTS tenants (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS keys (
         identifier TEXT PRIMARY KEY,
         tenant TEXT NOT NULL REFERENCES tenants(id),
         key_type TEXT NOT NULL,
         status TEXT NOT NULL CHECK (status IN ('Active', 'Archived')),
         created_ms INTEGER NOT NULL,
         fingerprint TEXT NOT NULL,
         module_key TEXT NOT NULL,
         package_sha256 TEXT UNIQUE
     );
     CREATE UNIQUE INDEX IF NOT EXISTS one_active ON keys(tenant) WHERE status = 'Active';
     CREATE UNIQUE INDEX IF NOT EXISTS one_copy ON keys(tenant, fingerprint);";

/// What [`Store::open_or_create`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    /// The database file was made (the provider's first tenant).
    pub database: bool,
    /// The tenant was made, with its provider-made initial key.
    pub tenant: bool,
}

fn missing(path: &Path, op: Op) -> Error {
    Error::new(ErrorKind::NotFound, op)
        .detail(format!("there is no tenant database at {}", path.display()))
        .hint("a tenant's first connection (`hsmkit tenant open`, Connect-AadrmService) or upload makes it; if it was there, restore it from your backup")
}

impl Store {
    /// Opens the existing store of a known `tenant` in `path`, writing nothing: a missing,
    /// empty or damaged database, or an unknown tenant, is an error that says what to do.
    pub fn open(path: &Path, tenant: &str) -> Result<Store> {
        let op = Op::Info;
        if !path.exists() {
            return Err(missing(path, op));
        }
        let db =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(db_err(path, op))?;
        let store = Store { db, tenant: tenant.to_ascii_lowercase() };
        store.check_schema(path, op)?;
        if !store.tenant_known(path, op)? {
            return Err(Error::new(ErrorKind::NotFound, op)
                .detail(format!("tenant {} has no keys at this provider ({})", store.tenant, path.display()))
                .hint("connect first (`hsmkit tenant open`, Connect-AadrmService), which makes the tenant"));
        }
        Ok(store)
    }

    /// Opens the store of `tenant` in `path`, making what is missing: the database (owner-only
    /// mode) for the provider's first tenant, and the tenant, with an initial provider-made key
    /// from `initial` (identifier, fingerprint, module key), as the article's first
    /// `Get-AadrmKeys` shows. A database that is gone while `module_has_tenant_keys` is refused,
    /// never made anew: its rows (the tenants' Active keys and history) would be lost and the
    /// same packages accepted again.
    pub fn open_or_create(
        path: &Path,
        tenant: &str,
        now_ms: u64,
        module_has_tenant_keys: bool,
        initial: impl FnOnce() -> Result<(String, String, String)>,
    ) -> Result<(Store, Made)> {
        let op = Op::Initialize;
        let exists = path.exists();
        if !exists && module_has_tenant_keys {
            return Err(Error::new(ErrorKind::Corrupt, op)
                .detail(format!(
                    "the tenant database {} is missing, but the provider's module holds tenant keys",
                    path.display()
                ))
                .hint("restore tenants.sqlite from your backup; a new database would forget every tenant's keys"));
        }
        let db = if exists {
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(db_err(path, op))?
        } else {
            let db = Connection::open(path).map_err(db_err(path, op))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
                Error::new(ErrorKind::Io, op).detail(format!("cannot make {} owner-only: {e}", path.display()))
            })?;
            db.execute_batch(SCHEMA).map_err(db_err(path, op))?;
            db
        };
        let mut store = Store { db, tenant: tenant.to_ascii_lowercase() };
        store.check_schema(path, op)?;
        let mut made = Made { database: !exists, tenant: false };
        if !store.tenant_known(path, op)? {
            let (identifier, fingerprint, module_key) = initial()?;
            let tx = store.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err(path, op))?;
            tx.execute("INSERT INTO tenants (id, created_ms) VALUES (?1, ?2)", params![store.tenant, now_ms as i64])
                .map_err(db_err(path, op))?;
            tx.execute(
                "INSERT INTO keys (identifier, tenant, key_type, status, created_ms, fingerprint, module_key)
                 VALUES (?1, ?2, ?3, 'Active', ?4, ?5, ?6)",
                params![identifier, store.tenant, MICROSOFT_MANAGED, now_ms as i64, fingerprint, module_key],
            )
            .map_err(db_err(path, op))?;
            hsmkit_backend::crash::crash_point(|| format!("before the commit of {}", path.display()));
            tx.commit().map_err(db_err(path, op))?;
            hsmkit_backend::crash::crash_point(|| format!("after the commit of {}", path.display()));
            made.tenant = true;
        }
        Ok((store, made))
    }

    /// Refuses a database without the store's tables (an empty or foreign file).
    fn check_schema(&self, path: &Path, op: Op) -> Result<()> {
        let tables: i64 = self
            .db
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('tenants', 'keys')",
                [],
                |r| r.get(0),
            )
            .map_err(db_err(path, op))?;
        if tables != 2 {
            return Err(Error::new(ErrorKind::Corrupt, op)
                .detail(format!("{} is not a tenant database (empty, truncated or another file)", path.display()))
                .hint("restore tenants.sqlite from your backup"));
        }
        self.db.execute_batch("PRAGMA foreign_keys = ON;").map_err(db_err(path, op))
    }

    fn tenant_known(&self, path: &Path, op: Op) -> Result<bool> {
        Ok(self
            .db
            .query_row("SELECT id FROM tenants WHERE id = ?1", params![self.tenant], |r| r.get::<_, String>(0))
            .optional()
            .map_err(db_err(path, op))?
            .is_some())
    }

    fn path(&self) -> std::path::PathBuf {
        self.db.path().map(std::path::PathBuf::from).unwrap_or_default()
    }

    /// The tenant's keys, oldest first.
    pub fn keys(&self) -> Result<Vec<TenantKey>> {
        let path = self.path();
        let mut stmt = self
            .db
            .prepare(
                "SELECT identifier, key_type, status, created_ms, fingerprint, module_key FROM keys
                 WHERE tenant = ?1 ORDER BY created_ms, rowid",
            )
            .map_err(db_err(&path, Op::FindKeys))?;
        let rows = stmt
            .query_map(params![self.tenant], |r| {
                Ok(TenantKey {
                    identifier: r.get(0)?,
                    key_type: r.get(1)?,
                    status: r.get(2)?,
                    created_ms: r.get::<_, i64>(3)? as u64,
                    fingerprint: r.get(4)?,
                    module_key: r.get(5)?,
                })
            })
            .map_err(db_err(&path, Op::FindKeys))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(db_err(&path, Op::FindKeys))
    }

    /// The key a package was added as, if it was, or the tenant's key with the same public key
    /// (the same key packaged again: OAEP makes every package's bytes new).
    pub fn added_as(&self, package_sha256: &str, fingerprint: &str) -> Result<Option<String>> {
        let path = self.path();
        self.db
            .query_row(
                "SELECT identifier FROM keys WHERE package_sha256 = ?1 OR (tenant = ?2 AND fingerprint = ?3)",
                params![package_sha256, self.tenant, fingerprint],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(&path, Op::ImportKey))
    }

    /// Adds a customer-managed key as the Active one and archives the previous Active key, in one
    /// transaction. A package added before changes nothing.
    pub fn add(&mut self, key: &TenantKey, package_sha256: &str) -> Result<Added> {
        let path = self.path();
        let e = db_err(&path, Op::ImportKey);
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&e)?;
        let before: Option<String> = tx
            .query_row(
                "SELECT identifier FROM keys WHERE package_sha256 = ?1 OR (tenant = ?2 AND fingerprint = ?3)",
                params![package_sha256, self.tenant, key.fingerprint],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?;
        if let Some(id) = before {
            return Ok(Added::AlreadyAdded(id));
        }
        let archived: Option<String> = tx
            .query_row(
                "SELECT identifier FROM keys WHERE tenant = ?1 AND status = 'Active'",
                params![self.tenant],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?;
        tx.execute("UPDATE keys SET status = 'Archived' WHERE tenant = ?1 AND status = 'Active'", params![self.tenant])
            .map_err(&e)?;
        tx.execute(
            "INSERT INTO keys (identifier, tenant, key_type, status, created_ms, fingerprint, module_key, package_sha256)
             VALUES (?1, ?2, ?3, 'Active', ?4, ?5, ?6, ?7)",
            params![key.identifier, self.tenant, CUSTOMER_MANAGED, key.created_ms as i64, key.fingerprint, key.module_key, package_sha256],
        )
        .map_err(&e)?;
        hsmkit_backend::crash::crash_point(|| format!("before the commit of {}", path.display()));
        tx.commit().map_err(&e)?;
        hsmkit_backend::crash::crash_point(|| format!("after the commit of {}", path.display()));
        Ok(Added::Added { identifier: key.identifier.clone(), archived })
    }

    /// Makes `identifier` the Active key (the previous one becomes Archived), in one transaction.
    pub fn set_active(&mut self, identifier: &str) -> Result<()> {
        let path = self.path();
        let e = db_err(&path, Op::ChangeAcl);
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&e)?;
        let exists: Option<String> = tx
            .query_row(
                "SELECT identifier FROM keys WHERE tenant = ?1 AND identifier = ?2",
                params![self.tenant, identifier],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?;
        if exists.is_none() {
            return Err(Error::new(ErrorKind::NotFound, Op::ChangeAcl)
                .detail(format!("tenant {} has no key {identifier}", self.tenant))
                .hint("list the keys with `hsmkit tenant keys`"));
        }
        tx.execute("UPDATE keys SET status = 'Archived' WHERE tenant = ?1 AND status = 'Active'", params![self.tenant])
            .map_err(&e)?;
        tx.execute(
            "UPDATE keys SET status = 'Active' WHERE tenant = ?1 AND identifier = ?2",
            params![self.tenant, identifier],
        )
        .map_err(&e)?;
        hsmkit_backend::crash::crash_point(|| format!("before the commit of {}", path.display()));
        tx.commit().map_err(&e)?;
        hsmkit_backend::crash::crash_point(|| format!("after the commit of {}", path.display()));
        Ok(())
    }
}

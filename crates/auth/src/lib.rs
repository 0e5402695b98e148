//! strata-auth: the node's one identity store.
//!
//! Today it holds *users*: a name, an argon2id password hash (PHC string) and tags (RabbitMQ's
//! `administrator`, `management`, ...). Every service that needs a login asks this store — the AMQP broker's
//! `PLAIN`/`AMQPLAIN`, later Redis `AUTH` with users and the admin API — so no service keeps a user list of
//! its own. Later issues extend the same store with OAuth clients, tokens and ACLs.
//!
//! Permissions ([`permissions`]): RabbitMQ's per-virtual-host `configure`/`write`/`read` regular expressions
//! for each user, kept here so the broker and the management API read the same grants.
//!
//! What it is not: a session store. Passwords are never stored or logged in
//! clear; only their argon2id hashes reach storage.
//!
//! Persistence: one strata-storage tree, `auth.users`, key = user name, value = [`User::encode`]. The first
//! open of an empty store creates RabbitMQ's default user `guest` with password `guest` (services decide
//! where it may log in from: RabbitMQ allows it from loopback only, and so does strata's broker).
//!
//! Limits: user names up to [`MAX_USER_NAME_BYTES`], passwords up to [`MAX_PASSWORD_BYTES`] (longer ones
//! never verify), at most [`MAX_USERS`] users.
//!
//! ```
//! let dir = tempfile::tempdir().expect("temp dir");
//! let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).expect("open");
//! let users = strata_auth::UserStore::open(&db).expect("user store");
//! assert!(users.verify("guest", b"guest").is_some());
//! users.put_user("alice", b"s3cret", &["management"]).expect("add alice");
//! assert!(users.verify("alice", b"wrong").is_none());
//! assert_eq!(users.verify("alice", b"s3cret").map(|u| u.tags), Some(vec!["management".to_owned()]));
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use parking_lot::RwLock;
use strata_storage::{Db, StorageError, Tree};

pub mod permissions;

pub use permissions::{Access, Permission};

/// Longest accepted user name.
pub const MAX_USER_NAME_BYTES: usize = 255;
/// Longest password that can verify (longer input is refused before hashing, so it cannot burn CPU).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Most users the store holds.
pub const MAX_USERS: usize = 100_000;
/// Name of the storage tree holding users.
pub const USERS_TREE: &str = "auth.users";
/// The default user created in an empty store (RabbitMQ's).
pub const DEFAULT_USER: &str = "guest";
/// Name of the storage tree holding permissions.
pub const PERMISSIONS_TREE: &str = "auth.permissions";
/// The virtual host the default user is granted.
pub const DEFAULT_VHOST: &str = "/";

/// Why an identity-store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Reading or writing the users tree failed.
    #[error("user store: {0}")]
    Storage(#[from] StorageError),
    /// A stored user record could not be decoded.
    #[error("user store: corrupt record for user {0:?}")]
    Corrupt(String),
    /// The user name is empty or too long.
    #[error("invalid user name: must be 1..={MAX_USER_NAME_BYTES} bytes")]
    InvalidName,
    /// The password is too long.
    #[error("invalid password: at most {MAX_PASSWORD_BYTES} bytes")]
    InvalidPassword,
    /// The store is full.
    #[error("too many users (at most {MAX_USERS})")]
    TooManyUsers,
    /// Hashing failed (an argon2 parameter problem; not caused by input).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A given password hash is not a PHC string this store can verify.
    #[error("invalid password hash: {0}")]
    InvalidHash(String),
    /// A permission pattern is not a valid regular expression.
    #[error("invalid permission pattern {0:?}: {1}")]
    InvalidPattern(String, String),
    /// The user does not exist.
    #[error("no such user: {0}")]
    NoSuchUser(String),
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub name: String,
    /// The argon2id hash in PHC string form.
    pub password_hash: String,
    /// Free-form tags (`administrator`, `management`, ...).
    pub tags: Vec<String>,
}

impl User {
    /// The stored form: the PHC hash, a newline, the comma-separated tags.
    pub fn encode(&self) -> Vec<u8> {
        format!("{}\n{}", self.password_hash, self.tags.join(",")).into_bytes()
    }

    /// Decodes [`User::encode`]'s output for `name`.
    pub fn decode(name: &str, bytes: &[u8]) -> Option<User> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (hash, tags) = text.split_once('\n')?;
        // An empty hash is a user without a password (it cannot log in with one).
        if !hash.is_empty() {
            PasswordHash::new(hash).ok()?;
        }
        Some(User {
            name: name.to_owned(),
            password_hash: hash.to_owned(),
            tags: tags
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// The users of a node, cached in memory and persisted in strata-storage. Cheap to clone.
#[derive(Clone)]
pub struct UserStore {
    inner: Arc<Inner>,
}

struct Inner {
    tree: Tree,
    users: RwLock<HashMap<String, User>>,
    hasher: Argon2<'static>,
    perms_tree: Tree,
    /// (vhost, user) → grant.
    perms: RwLock<HashMap<(String, String), Arc<Permission>>>,
    /// Bumped on every permission or user change, so callers can cache decisions.
    generation: AtomicU64,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("users", &self.inner.users.read().len())
            .finish()
    }
}

impl UserStore {
    /// Opens the store in `db`, loading every user; an empty store gets `guest`/`guest`.
    pub fn open(db: &Db) -> Result<UserStore, AuthError> {
        let tree = db.tree(USERS_TREE)?;
        let mut users = HashMap::new();
        for entry in tree.iter() {
            let (key, value) = entry?;
            let name = String::from_utf8_lossy(&key).into_owned();
            let user =
                User::decode(&name, &value).ok_or_else(|| AuthError::Corrupt(name.clone()))?;
            users.insert(name, user);
        }
        let perms_tree = db.tree(PERMISSIONS_TREE)?;
        let (perms, initialised) = permissions::load(&perms_tree)?;
        let fresh = users.is_empty();
        let existing: Vec<String> = users.keys().cloned().collect();
        let store = UserStore {
            inner: Arc::new(Inner {
                perms_tree,
                perms: RwLock::new(perms),
                generation: AtomicU64::new(1),
                tree,
                users: RwLock::new(users),
                // argon2id with the library's defaults (19 MiB, 2 passes): OWASP's recommendation.
                hasher: Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    Params::default(),
                ),
            }),
        };
        if fresh {
            store.put_user(DEFAULT_USER, DEFAULT_USER.as_bytes(), &["administrator"])?;
        }
        if !initialised {
            // First open with permissions: RabbitMQ's default grant (guest: everything on `/`). Users of a
            // store from before permissions existed had full access; they keep it on `/`.
            let mut grantees = existing;
            if fresh {
                grantees.push(DEFAULT_USER.to_owned());
            }
            for user in grantees {
                store.set_permissions(DEFAULT_VHOST, &user, ".*", ".*", ".*")?;
            }
            permissions::mark_initialised(&store.inner.perms_tree)?;
        }
        Ok(store)
    }

    /// Creates or replaces a user, hashing the password with a fresh salt.
    pub fn put_user(&self, name: &str, password: &[u8], tags: &[&str]) -> Result<(), AuthError> {
        if name.is_empty() || name.len() > MAX_USER_NAME_BYTES {
            return Err(AuthError::InvalidName);
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::InvalidPassword);
        }
        {
            let users = self.inner.users.read();
            if users.len() >= MAX_USERS && !users.contains_key(name) {
                return Err(AuthError::TooManyUsers);
            }
        }
        let salt_bytes: [u8; 16] = rand::random();
        let salt =
            SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
        let hash = self
            .inner
            .hasher
            .hash_password(password, &salt)
            .map_err(|e| AuthError::Hash(e.to_string()))?
            .to_string();
        self.store_user(User {
            name: name.to_owned(),
            password_hash: hash,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        })
    }

    /// Creates or replaces a user with an already computed password hash: an argon2 PHC string, or empty for
    /// a user who cannot log in with a password.
    pub fn put_user_hash(&self, name: &str, hash: &str, tags: &[&str]) -> Result<(), AuthError> {
        if name.is_empty() || name.len() > MAX_USER_NAME_BYTES {
            return Err(AuthError::InvalidName);
        }
        if !hash.is_empty() {
            let parsed =
                PasswordHash::new(hash).map_err(|e| AuthError::InvalidHash(e.to_string()))?;
            if !parsed.algorithm.as_str().starts_with("argon2") {
                return Err(AuthError::InvalidHash(format!(
                    "unsupported algorithm {}",
                    parsed.algorithm
                )));
            }
        }
        self.store_user(User {
            name: name.to_owned(),
            password_hash: hash.to_owned(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        })
    }

    /// Replaces a user's tags, keeping the password.
    pub fn set_tags(&self, name: &str, tags: &[&str]) -> Result<(), AuthError> {
        let mut user = self
            .user(name)
            .ok_or_else(|| AuthError::NoSuchUser(name.to_owned()))?;
        user.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        self.store_user(user)
    }

    fn store_user(&self, user: User) -> Result<(), AuthError> {
        if user.name.contains('\0') {
            return Err(AuthError::InvalidName);
        }
        {
            let users = self.inner.users.read();
            if users.len() >= MAX_USERS && !users.contains_key(&user.name) {
                return Err(AuthError::TooManyUsers);
            }
        }
        self.inner.tree.put(user.name.as_bytes(), &user.encode())?;
        self.inner.users.write().insert(user.name.clone(), user);
        self.bump();
        Ok(())
    }

    fn bump(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A number that changes whenever a user or a permission changes: a cached access decision made under an
    /// older generation must be made again.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Every user, sorted by name.
    pub fn users(&self) -> Vec<User> {
        let mut users: Vec<User> = self.inner.users.read().values().cloned().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    /// Removes a user and their permissions; returns whether it existed.
    pub fn delete_user(&self, name: &str) -> Result<bool, AuthError> {
        if !self.inner.users.read().contains_key(name) {
            return Ok(false);
        }
        self.inner.tree.delete(name.as_bytes())?;
        let grants: Vec<String> = self
            .inner
            .perms
            .read()
            .keys()
            .filter(|(_, u)| u == name)
            .map(|(v, _)| v.clone())
            .collect();
        for vhost in grants {
            self.clear_permissions(&vhost, name)?;
        }
        let existed = self.inner.users.write().remove(name).is_some();
        self.bump();
        Ok(existed)
    }

    /// Grants `user` RabbitMQ's three patterns on `vhost` (replacing an earlier grant). The user must exist.
    pub fn set_permissions(
        &self,
        vhost: &str,
        user: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), AuthError> {
        if !self.inner.users.read().contains_key(user) {
            return Err(AuthError::NoSuchUser(user.to_owned()));
        }
        let p = Permission::new(vhost, user, configure, write, read)?;
        self.inner
            .perms_tree
            .put(&permissions::key(vhost, user), &p.encode())?;
        self.inner
            .perms
            .write()
            .insert((vhost.to_owned(), user.to_owned()), Arc::new(p));
        self.bump();
        Ok(())
    }

    /// Removes `user`'s grant on `vhost`; returns whether there was one.
    pub fn clear_permissions(&self, vhost: &str, user: &str) -> Result<bool, AuthError> {
        let k = (vhost.to_owned(), user.to_owned());
        if !self.inner.perms.read().contains_key(&k) {
            return Ok(false);
        }
        self.inner
            .perms_tree
            .delete(&permissions::key(vhost, user))?;
        let existed = self.inner.perms.write().remove(&k).is_some();
        self.bump();
        Ok(existed)
    }

    /// Removes every grant on `vhost` (the virtual host was deleted).
    pub fn clear_vhost_permissions(&self, vhost: &str) -> Result<(), AuthError> {
        let users: Vec<String> = self
            .inner
            .perms
            .read()
            .keys()
            .filter(|(v, _)| v == vhost)
            .map(|(_, u)| u.clone())
            .collect();
        for u in users {
            self.clear_permissions(vhost, &u)?;
        }
        Ok(())
    }

    /// `user`'s grant on `vhost`, if any.
    pub fn permission(&self, vhost: &str, user: &str) -> Option<Arc<Permission>> {
        self.inner
            .perms
            .read()
            .get(&(vhost.to_owned(), user.to_owned()))
            .cloned()
    }

    /// Every grant, sorted by virtual host then user.
    pub fn permissions(&self) -> Vec<Arc<Permission>> {
        let mut all: Vec<Arc<Permission>> = self.inner.perms.read().values().cloned().collect();
        all.sort_by(|a, b| (&a.vhost, &a.user).cmp(&(&b.vhost, &b.user)));
        all
    }

    /// Whether `user` may do `access` on the resource `name` in `vhost` (false without a grant).
    pub fn allowed(&self, vhost: &str, user: &str, access: Access, name: &str) -> bool {
        self.permission(vhost, user)
            .is_some_and(|p| p.allows(access, name))
    }

    /// The user named `name`, if any.
    pub fn user(&self, name: &str) -> Option<User> {
        self.inner.users.read().get(name).cloned()
    }

    /// Every user name, sorted.
    pub fn user_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.users.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The user if `password` is theirs. This runs argon2 (tens of milliseconds by design): async callers
    /// should run it on a blocking thread.
    pub fn verify(&self, name: &str, password: &[u8]) -> Option<User> {
        if password.len() > MAX_PASSWORD_BYTES {
            return None;
        }
        let user = self.user(name)?;
        let parsed = PasswordHash::new(&user.password_hash).ok()?;
        self.inner
            .hasher
            .verify_password(password, &parsed)
            .ok()
            .map(|()| user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> (Db, UserStore) {
        let db = Db::open(dir, strata_storage::Options::default()).expect("open db");
        let store = UserStore::open(&db).expect("open store");
        (db, store)
    }

    #[test]
    fn empty_store_gets_guest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, store) = open(dir.path());
        assert_eq!(store.user_names(), vec!["guest".to_owned()]);
        assert!(store.verify("guest", b"guest").is_some());
        assert!(store.verify("guest", b"Guest").is_none());
        assert!(store.verify("nobody", b"guest").is_none());
    }

    #[test]
    fn users_survive_reopen_and_deleting_guest_sticks() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (_db, store) = open(dir.path());
            store
                .put_user("alice", b"pw", &["management", "x"])
                .expect("put");
            assert!(store.delete_user("guest").expect("delete"));
            assert!(!store.delete_user("guest").expect("delete again"));
        }
        let (_db, store) = open(dir.path());
        assert_eq!(store.user_names(), vec!["alice".to_owned()]);
        let alice = store.verify("alice", b"pw").expect("alice verifies");
        assert_eq!(alice.tags, vec!["management".to_owned(), "x".to_owned()]);
        assert!(!alice.password_hash.contains("pw\n"));
        assert!(alice.password_hash.starts_with("$argon2id$"));
    }

    #[test]
    fn guest_gets_root_and_permissions_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (_db, store) = open(dir.path());
            assert!(store.allowed("/", "guest", Access::Write, "amq.default"));
            assert!(!store.allowed("other", "guest", Access::Read, "q"));
            store.put_user("bob", b"pw", &[]).expect("bob");
            assert!(!store.allowed("/", "bob", Access::Read, "q"));
            let g = store.generation();
            store
                .set_permissions("/", "bob", "", "^ex$", "^q")
                .expect("grant");
            assert!(store.generation() > g);
            assert!(matches!(
                store.set_permissions("/", "nobody", ".*", ".*", ".*"),
                Err(AuthError::NoSuchUser(_))
            ));
            assert!(store.clear_permissions("/", "guest").expect("clear"));
        }
        let (_db, store) = open(dir.path());
        // Deleted default grants stay deleted.
        assert!(store.permission("/", "guest").is_none());
        let bob = store.permission("/", "bob").expect("bob's grant");
        assert_eq!((bob.configure.as_str(), bob.write.as_str()), ("", "^ex$"));
        assert!(store.allowed("/", "bob", Access::Read, "q1"));
        assert!(store.delete_user("bob").expect("delete"));
        assert!(store.permissions().is_empty());
    }

    #[test]
    fn hashes_and_tags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, store) = open(dir.path());
        let hash = store.user("guest").expect("guest").password_hash;
        store
            .put_user_hash("copy", &hash, &["monitoring"])
            .expect("hash import");
        assert!(store.verify("copy", b"guest").is_some());
        store.set_tags("copy", &["management"]).expect("tags");
        assert_eq!(store.user("copy").expect("copy").tags, vec!["management"]);
        assert!(store.verify("copy", b"guest").is_some());
        store.put_user_hash("nopw", "", &[]).expect("no password");
        assert!(store.verify("nopw", b"").is_none());
        assert!(matches!(
            store.put_user_hash("bad", "not-phc", &[]),
            Err(AuthError::InvalidHash(_))
        ));
    }

    #[test]
    fn bad_input_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, store) = open(dir.path());
        assert!(matches!(
            store.put_user("", b"x", &[]),
            Err(AuthError::InvalidName)
        ));
        let long = vec![b'a'; MAX_PASSWORD_BYTES + 1];
        assert!(matches!(
            store.put_user("bob", &long, &[]),
            Err(AuthError::InvalidPassword)
        ));
        assert!(store.verify("guest", &long).is_none());
        assert!(User::decode("x", b"not a hash\n").is_none());
    }
}

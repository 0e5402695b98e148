//! strata-auth: the node's one identity store.
//!
//! Today it holds *users*: a name, an argon2id password hash (PHC string) and tags (RabbitMQ's
//! `administrator`, `management`, ...). Every service that needs a login asks this store — the AMQP broker's
//! `PLAIN`/`AMQPLAIN`, later Redis `AUTH` with users and the admin API — so no service keeps a user list of
//! its own. Later issues extend the same store with OAuth clients, tokens and ACLs.
//!
//! What it is not: a permission system (yet) or a session store. Passwords are never stored or logged in
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

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use parking_lot::RwLock;
use strata_storage::{Db, StorageError, Tree};

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
        PasswordHash::new(hash).ok()?;
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
        let store = UserStore {
            inner: Arc::new(Inner {
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
        if store.inner.users.read().is_empty() {
            store.put_user(DEFAULT_USER, DEFAULT_USER.as_bytes(), &["administrator"])?;
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
        let user = User {
            name: name.to_owned(),
            password_hash: hash,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        };
        self.inner.tree.put(name.as_bytes(), &user.encode())?;
        self.inner.users.write().insert(name.to_owned(), user);
        Ok(())
    }

    /// Removes a user; returns whether it existed.
    pub fn delete_user(&self, name: &str) -> Result<bool, AuthError> {
        if !self.inner.users.read().contains_key(name) {
            return Ok(false);
        }
        self.inner.tree.delete(name.as_bytes())?;
        Ok(self.inner.users.write().remove(name).is_some())
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

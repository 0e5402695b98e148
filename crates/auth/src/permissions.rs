//! RabbitMQ's permissions: per (virtual host, user), three regular expressions naming the resources (queues
//! and exchanges) the user may *configure* (declare, delete), *write* (publish to, bind to) and *read*
//! (consume from, get, purge, bind from).
//!
//! Semantics as RabbitMQ's: a pattern matches anywhere in the name unless anchored (`^...$`); the empty
//! pattern matches nothing (it is how "no access" is written); no grant on a virtual host means no access to
//! it at all.
//!
//! Persistence: tree `auth.permissions`, key `<vhost>\0<user>`, value `<configure>\0<write>\0<read>`; the key
//! `\0init` marks a store whose default grants were made (so deleting them sticks).

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;
use strata_storage::Tree;

use crate::AuthError;

/// Longest accepted permission pattern.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Compiled-size limit of a pattern (bounds the memory and time a hostile pattern can cost).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The marker key of an initialised permissions tree.
const INIT_KEY: &[u8] = b"\0init";

/// One of RabbitMQ's three kinds of access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Declare or delete (and change) a resource.
    Configure,
    /// Inject messages into a resource (publish to an exchange, bind a queue or exchange as destination).
    Write,
    /// Take messages out of a resource (consume, get, purge, bind an exchange as source).
    Read,
}

impl Access {
    /// RabbitMQ's name for it (`configure`, `write`, `read`).
    pub fn name(self) -> &'static str {
        match self {
            Access::Configure => "configure",
            Access::Write => "write",
            Access::Read => "read",
        }
    }
}

/// A user's grant on a virtual host.
#[derive(Debug, Clone)]
pub struct Permission {
    /// The virtual host.
    pub vhost: String,
    /// The user.
    pub user: String,
    /// Pattern of resources the user may configure.
    pub configure: String,
    /// Pattern of resources the user may write to.
    pub write: String,
    /// Pattern of resources the user may read from.
    pub read: String,
    compiled: [Option<Regex>; 3],
}

fn compile(pattern: &str) -> Result<Option<Regex>, AuthError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(AuthError::InvalidPattern(
            pattern.chars().take(32).collect(),
            format!("longer than {MAX_PATTERN_BYTES} bytes"),
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|e| AuthError::InvalidPattern(pattern.to_owned(), e.to_string()))
}

impl Permission {
    /// A grant; fails if a pattern is not a valid regular expression.
    pub fn new(
        vhost: &str,
        user: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<Permission, AuthError> {
        Ok(Permission {
            vhost: vhost.to_owned(),
            user: user.to_owned(),
            configure: configure.to_owned(),
            write: write.to_owned(),
            read: read.to_owned(),
            compiled: [compile(configure)?, compile(write)?, compile(read)?],
        })
    }

    /// Whether this grant allows `access` on the resource `name`.
    pub fn allows(&self, access: Access, name: &str) -> bool {
        let i = match access {
            Access::Configure => 0,
            Access::Write => 1,
            Access::Read => 2,
        };
        self.compiled[i].as_ref().is_some_and(|r| r.is_match(name))
    }

    /// The stored value.
    pub fn encode(&self) -> Vec<u8> {
        format!("{}\0{}\0{}", self.configure, self.write, self.read).into_bytes()
    }
}

/// The stored key of (vhost, user).
pub(crate) fn key(vhost: &str, user: &str) -> Vec<u8> {
    let mut k = vhost.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(user.as_bytes());
    k
}

type Grants = HashMap<(String, String), Arc<Permission>>;

/// Loads every grant; the flag says whether the tree was initialised.
pub(crate) fn load(tree: &Tree) -> Result<(Grants, bool), AuthError> {
    let mut grants = HashMap::new();
    let mut initialised = false;
    for entry in tree.iter() {
        let (k, v) = entry?;
        if &k[..] == INIT_KEY {
            initialised = true;
            continue;
        }
        let corrupt = || AuthError::Corrupt(format!("permission {}", String::from_utf8_lossy(&k)));
        let text = std::str::from_utf8(&k).map_err(|_| corrupt())?;
        let (vhost, user) = text.split_once('\0').ok_or_else(corrupt)?;
        let value = std::str::from_utf8(&v).map_err(|_| corrupt())?;
        let mut parts = value.split('\0');
        let (Some(c), Some(w), Some(r)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(corrupt());
        };
        let p = Permission::new(vhost, user, c, w, r).map_err(|_| corrupt())?;
        grants.insert((vhost.to_owned(), user.to_owned()), Arc::new(p));
    }
    Ok((grants, initialised))
}

/// Records that the default grants were made.
pub(crate) fn mark_initialised(tree: &Tree) -> Result<(), AuthError> {
    tree.put(INIT_KEY, b"")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_rabbitmq() {
        let p = Permission::new("/", "u", "^q-.*", "", ".*").expect("valid");
        assert!(p.allows(Access::Configure, "q-1"));
        assert!(!p.allows(Access::Configure, "x-q-1"));
        assert!(!p.allows(Access::Write, "anything"));
        assert!(!p.allows(Access::Write, ""));
        assert!(p.allows(Access::Read, "amq.default"));
        // Unanchored: matches anywhere.
        let p = Permission::new("/", "u", "foo", "foo", "foo").expect("valid");
        assert!(p.allows(Access::Read, "xfoox"));
        assert!(matches!(
            Permission::new("/", "u", "(", "", ""),
            Err(AuthError::InvalidPattern(..))
        ));
    }
}

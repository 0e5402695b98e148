//! Redis 7.0's access control lists: users, their rules, the permission check every command of a
//! restricted user goes through, and the replies of the `ACL` subcommands. This module is the model only;
//! dispatch, `AUTH`/`HELLO` and the `ACL` command use it.
//!
//! # Users and rules
//!
//! [`Acl`] is the user table. It starts with the `default` user, `on nopass ~* &* +@all`, which every
//! connection is authenticated as until `AUTH` says otherwise. `ACL SETUSER` ([`Acl::set_user`]) applies
//! its rules to a copy of the user (or to a new, disabled user with no rights) and publishes the copy only
//! if every rule was valid, so a failed SETUSER changes nothing; the error names the rule, as Redis's does.
//!
//! A user's permissions are selectors ([`selector`]): the root one, which the rules outside parentheses
//! change, and any number added with `(...)`. A call is allowed when one selector allows the command, all
//! the keys it names (with the access it needs: `%R~` patterns grant reads only, `%W~` writes only) and all
//! the channels it names.
//!
//! # Checking a call cheaply
//!
//! A connection keeps an `Arc<User>`: users are immutable once published, so [`User::check`] takes no
//! lock. Commands and subcommands are identified by [`CommandId`], the server's statistics slot of the
//! call, and a command permission is one bit. [`User::unrestricted`] tells when no check is needed at all
//! (the default user, as configured out of the box).
//!
//! When a user changes or is deleted, [`Acl::generation`] moves; a connection that sees it move fetches
//! its user again with [`Acl::current`], which also says when the user is gone (deleted, or deleted and
//! created again: Redis disconnects the clients of a deleted user). [`Acl::delete_users`] returns the
//! users removed, so their clients can be closed at once.
//!
//! # What is Redis's
//!
//! Rule syntax, case rules, error texts, the order of `ACL LIST` and `ACL GETUSER` fields, Redis 7.0's way
//! of describing command rules (best-fitting categories, then single commands: see [`selector`]), the ACL
//! log's grouping ([`log`]) and the `NOPERM` texts ([`check`]) follow Redis 7.0.15. One deliberate
//! difference: `%~pattern` (a key pattern granting neither read nor write) is a syntax error here, where
//! Redis 7.0 accepts it and then crashes describing it. Descriptions list single commands in this
//! server's table order (Redis's order is its hash table's, which its own tests treat as unordered).

pub mod catalog;
pub mod check;
pub mod log;
pub mod selector;
mod sha256;
pub mod user;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;
use rand::RngCore;

pub use catalog::{CATEGORY_NAMES, Catalog, Category, CommandId, CommandRef, catalog};
pub use check::{
    ChannelKind, Denied, KeyAccess, NOPERM_CHANNEL, NOPERM_KEY, dryrun_unknown_command,
    dryrun_unknown_user, noperm_command,
};
pub use log::{AclLog, LogContext, LogEntry, LogReason};
pub use selector::RuleError;
pub use user::{SelectorInfo, User, UserInfo};

/// The name of the user every connection starts as.
pub const DEFAULT_USER: &[u8] = b"default";

/// The error line of a failed `AUTH` (wrong password, unknown or disabled user).
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// The error line of `AUTH <password>` while the default user needs no password.
pub const AUTH_WITHOUT_PASSWORD: &str = "ERR AUTH <password> called without any password \
     configured for the default user. Are you sure your configuration is correct?";

/// The error line of `ACL LOAD` and `ACL SAVE` without an ACL file (strata has none).
pub const NO_ACL_FILE: &str = "ERR This Redis instance is not configured to use an ACL file. You \
     may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming \
     you have a Redis configuration file set) in order to store users in the Redis configuration.";

/// The most bits `ACL GENPASS` makes.
pub const GENPASS_MAX_BITS: i64 = 4096;

/// The error line of `ACL GENPASS` with a bit count out of range.
pub const GENPASS_RANGE_ERROR: &str = "ERR ACL GENPASS argument must be the number of bits for the \
     output password, a positive number up to 4096";

/// Why `ACL SETUSER` refused its rules; the user is unchanged (or not created).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetUserError {
    /// The name has a space or a NUL.
    #[error("Usernames can't contain spaces or null characters")]
    BadUsername,
    /// A rule opens a selector with `(` that no later rule closes; the rule as given.
    #[error("Unmatched parenthesis in acl selector starting at '{0}'.")]
    UnmatchedParenthesis(String),
    /// A rule is invalid; the rule as applied (a selector's rules joined with spaces).
    #[error("Error in ACL SETUSER modifier '{modifier}': {error}")]
    Rule {
        /// The rule.
        modifier: String,
        /// What is wrong with it.
        error: RuleError,
    },
}

impl SetUserError {
    /// The reply's error line: `ERR ...`, line breaks made spaces.
    pub fn error_line(&self) -> String {
        format!("ERR {self}").replace(['\r', '\n'], " ")
    }
}

/// `ACL DELUSER` naming the default user (nothing is deleted then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The 'default' user cannot be removed")]
pub struct DeleteDefaultUser;

impl DeleteDefaultUser {
    /// The reply's error line.
    pub fn error_line(&self) -> String {
        format!("ERR {self}")
    }
}

/// A user created or changed by [`Acl::set_user`].
#[derive(Debug, Clone)]
pub struct SetUser {
    /// The user before the change (`None` if it was created).
    pub previous: Option<Arc<User>>,
    /// The user now.
    pub user: Arc<User>,
}

impl SetUser {
    /// Whether clients subscribed as this user must be checked against its new channel rules (and those
    /// subscribed to what it no longer permits disconnected), as Redis does after a SETUSER.
    pub fn recheck_subscribers(&self) -> bool {
        self.previous
            .as_ref()
            .is_some_and(|p| self.user.revokes_channels_of(p))
    }
}

/// The user table; see the module documentation.
#[derive(Debug)]
pub struct Acl {
    users: RwLock<BTreeMap<Vec<u8>, Arc<User>>>,
    /// Moves whenever a user changes or goes.
    generation: AtomicU64,
    next_incarnation: AtomicU64,
    /// `acl-pubsub-default allchannels` (Redis 7.0's default is `resetchannels`).
    pubsub_all_channels: AtomicBool,
    /// `ACL LOG`.
    pub log: AclLog,
}

impl Default for Acl {
    fn default() -> Self {
        Acl::new()
    }
}

impl Acl {
    /// A table with only the default user, `on nopass ~* &* +@all`.
    pub fn new() -> Acl {
        let default = User::new_default(0);
        Acl {
            users: RwLock::new(BTreeMap::from([(DEFAULT_USER.to_vec(), Arc::new(default))])),
            generation: AtomicU64::new(0),
            next_incarnation: AtomicU64::new(1),
            pubsub_all_channels: AtomicBool::new(false),
            log: AclLog::default(),
        }
    }

    /// A number that changes whenever a user is changed or deleted: a connection holding a user checks
    /// it before each command and calls [`Acl::current`] when it moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The user called `name`.
    pub fn get(&self, name: &[u8]) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    /// The default user.
    pub fn default_user(&self) -> Arc<User> {
        self.get(DEFAULT_USER)
            .unwrap_or_else(|| Arc::new(User::new_default(0)))
    }

    /// The current version of `held` (a user a connection is authenticated as), or `None` if that user
    /// was deleted since, even if a user of the same name was created again.
    pub fn current(&self, held: &User) -> Option<Arc<User>> {
        self.get(held.name())
            .filter(|u| u.incarnation() == held.incarnation())
    }

    /// `acl-pubsub-default`: whether new users, new selectors and `reset` start with every channel
    /// (`allchannels`) rather than none (`resetchannels`, the default).
    pub fn pubsub_default_all_channels(&self) -> bool {
        self.pubsub_all_channels.load(Ordering::Relaxed)
    }

    /// Sets `acl-pubsub-default`; existing users keep their channels.
    pub fn set_pubsub_default_all_channels(&self, all: bool) {
        self.pubsub_all_channels.store(all, Ordering::Relaxed);
    }

    /// `ACL SETUSER name rules...`: creates the user if needed and applies the rules in order, all or
    /// nothing. Selectors may be split across rules (`(+get` `~k)`), as Redis allows.
    pub fn set_user<R: AsRef<[u8]>>(
        &self,
        name: &[u8],
        rules: &[R],
    ) -> Result<SetUser, SetUserError> {
        if selector::has_space(name) {
            return Err(SetUserError::BadUsername);
        }
        let rules = merge_selectors(rules)?;
        let all_channels = self.pubsub_default_all_channels();
        let mut users = self.users.write();
        let previous = users.get(name).cloned();
        let mut user = match &previous {
            Some(existing) => User::clone(existing),
            None => User::new(
                name,
                self.next_incarnation.fetch_add(1, Ordering::Relaxed),
                all_channels,
            ),
        };
        for rule in &rules {
            user.apply(rule, all_channels)
                .map_err(|error| SetUserError::Rule {
                    modifier: String::from_utf8_lossy(rule).into_owned(),
                    error,
                })?;
        }
        user.finish();
        let user = Arc::new(user);
        users.insert(name.to_vec(), user.clone());
        drop(users);
        self.bump();
        Ok(SetUser { previous, user })
    }

    /// `ACL DELUSER names...`: deletes the users that exist and returns them (their clients are to be
    /// closed). Naming `default` is an error and deletes nothing.
    pub fn delete_users<N: AsRef<[u8]>>(
        &self,
        names: &[N],
    ) -> Result<Vec<Arc<User>>, DeleteDefaultUser> {
        if names.iter().any(|n| n.as_ref() == DEFAULT_USER) {
            return Err(DeleteDefaultUser);
        }
        let mut users = self.users.write();
        let removed: Vec<Arc<User>> = names
            .iter()
            .filter_map(|n| users.remove(n.as_ref()))
            .collect();
        drop(users);
        if !removed.is_empty() {
            self.bump();
        }
        Ok(removed)
    }

    /// `ACL USERS`: every user name, in byte order.
    pub fn usernames(&self) -> Vec<Vec<u8>> {
        self.users.read().keys().cloned().collect()
    }

    /// Every user, in name order.
    pub fn users(&self) -> Vec<Arc<User>> {
        self.users.read().values().cloned().collect()
    }

    /// `ACL LIST`: `user <name> <rules>` per user, in name order.
    pub fn list(&self) -> Vec<Vec<u8>> {
        self.users().iter().map(|u| u.acl_list_line()).collect()
    }

    /// `AUTH name password`: the user, if it exists, is on and takes the password. A failure is to be
    /// logged (reason `auth`) and answered [`WRONGPASS`].
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        self.get(name).filter(|u| u.check_password(password))
    }

    /// `requirepass`: the default user's only password becomes `password`, or it needs none.
    pub fn set_default_password(&self, password: Option<&[u8]>) {
        let mut users = self.users.write();
        let mut user = users
            .get(DEFAULT_USER)
            .map_or_else(|| User::new_default(0), |u| User::clone(u));
        user.set_password(password);
        user.finish();
        users.insert(DEFAULT_USER.to_vec(), Arc::new(user));
        drop(users);
        self.bump();
    }
}

/// Joins a selector written across several rules (`(+get`, `~k)`) into one rule, `(+get ~k)`, as Redis
/// does for ACL SETUSER and configuration lines: a rule starting with `(` and not ending with `)` opens
/// a selector that the first rule ending with `)` closes.
pub fn merge_selectors<R: AsRef<[u8]>>(rules: &[R]) -> Result<Vec<Vec<u8>>, SetUserError> {
    let mut merged = Vec::with_capacity(rules.len());
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (i, rule) in rules.iter().enumerate() {
        let rule = rule.as_ref();
        if rule.first() == Some(&b'(') && rule.last() != Some(&b')') {
            // As in Redis, a second opening drops a selector still open.
            open = Some((i, rule.to_vec()));
        } else if let Some((start, mut selector)) = open.take() {
            selector.push(b' ');
            selector.extend_from_slice(rule);
            if rule.last() == Some(&b')') {
                merged.push(selector);
            } else {
                open = Some((start, selector));
            }
        } else {
            merged.push(rule.to_vec());
        }
    }
    match open {
        Some((start, _)) => Err(SetUserError::UnmatchedParenthesis(
            String::from_utf8_lossy(rules[start].as_ref()).into_owned(),
        )),
        None => Ok(merged),
    }
}

/// `ACL GENPASS [bits]`: `bits` random bits (256 by default) as hex, rounded up to whole hex digits.
/// Bits outside 1..=4096 are refused with [`GENPASS_RANGE_ERROR`].
pub fn genpass(bits: Option<i64>) -> Result<String, &'static str> {
    let bits = bits.unwrap_or(256);
    if !(1..=GENPASS_MAX_BITS).contains(&bits) {
        return Err(GENPASS_RANGE_ERROR);
    }
    let digits = usize::try_from((bits + 3) / 4).map_err(|_| GENPASS_RANGE_ERROR)?;
    let mut bytes = vec![0u8; digits.div_ceil(2)];
    rand::rng().fill_bytes(&mut bytes);
    let mut out = sha256::hex(&bytes);
    out.truncate(digits);
    Ok(out)
}

/// `ACL CAT`: every category name, in Redis's order.
pub fn category_names() -> &'static [&'static str] {
    &CATEGORY_NAMES
}

/// `ACL CAT category`: the commands and subcommands in it, or the error line for an unknown category.
pub fn category_commands(name: &[u8]) -> Result<Vec<&'static str>, String> {
    match Category::by_name(name) {
        Some(category) => Ok(catalog().commands_in(category)),
        None => {
            let shown =
                String::from_utf8_lossy(&name[..name.len().min(128)]).replace(['\r', '\n'], " ");
            Err(format!("ERR Unknown category '{shown}'"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|r| r.as_bytes().to_vec()).collect()
    }

    fn line(acl: &Acl, name: &str) -> String {
        String::from_utf8(acl.get(name.as_bytes()).expect("user").acl_list_line()).expect("utf-8")
    }

    #[test]
    fn starts_with_the_default_user() {
        let acl = Acl::new();
        assert_eq!(acl.usernames(), vec![b"default".to_vec()]);
        assert_eq!(line(&acl, "default"), "user default on nopass ~* &* +@all");
        assert!(acl.default_user().unrestricted());
        assert!(acl.authenticate(b"default", b"whatever").is_some());
    }

    #[test]
    fn set_user_creates_and_changes() {
        let acl = Acl::new();
        let created = acl.set_user(b"newuser", &[] as &[&[u8]]).expect("ok");
        assert!(created.previous.is_none());
        assert_eq!(
            line(&acl, "newuser"),
            "user newuser off resetchannels -@all"
        );
        // New users start disabled.
        acl.set_user(b"newuser", &rules(&[">passwd1"])).expect("ok");
        assert!(acl.authenticate(b"newuser", b"passwd1").is_none());
        acl.set_user(b"newuser", &rules(&["on"])).expect("ok");
        assert!(acl.authenticate(b"newuser", b"passwd1").is_some());
        let changed = acl.set_user(b"newuser", &rules(&[">passwd2"])).expect("ok");
        assert!(changed.previous.is_some());
        assert!(acl.authenticate(b"newuser", b"passwd1").is_some());
        assert!(acl.authenticate(b"newuser", b"passwd2").is_some());
        assert!(acl.authenticate(b"newuser", b"passwd3").is_none());
        assert!(acl.authenticate(b"nosuchuser", b"passwd1").is_none());
    }

    #[test]
    fn set_user_errors_change_nothing() {
        let acl = Acl::new();
        acl.set_user(b"u", &rules(&["on", "+get", "~k"]))
            .expect("ok");
        let before = acl.get(b"u").expect("user");
        let generation = acl.generation();
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "u",
                &["-get", "+nosuch"],
                "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL",
            ),
            (
                "u",
                &["off", "<nosuch"],
                "ERR Error in ACL SETUSER modifier '<nosuch': The password you are trying to remove \
                 from the user does not exist",
            ),
            (
                "u",
                &["(+get", "~a", "this-is-invalid)"],
                "ERR Error in ACL SETUSER modifier '(+get ~a this-is-invalid)': Syntax error",
            ),
            (
                "u",
                &["(&*", "&fail)"],
                "ERR Error in ACL SETUSER modifier '(&* &fail)': Adding a pattern after the * \
                 pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try \
                 'resetchannels' to start with an empty list of channels",
            ),
            (
                "u",
                &["~*", "~foo"],
                "ERR Error in ACL SETUSER modifier '~foo': Adding a pattern after the * pattern (or \
                 the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to \
                 start with an empty list of patterns",
            ),
            (
                "u",
                &["#abc"],
                "ERR Error in ACL SETUSER modifier '#abc': The password hash must be exactly 64 \
                 characters and contain only lowercase hexadecimal characters",
            ),
            (
                "u",
                &["+config|get|appendonly"],
                "ERR Error in ACL SETUSER modifier '+config|get|appendonly': Allowing first-arg of a \
                 subcommand is not supported",
            ),
            (
                "u",
                &["on", "(", "+get"],
                "ERR Unmatched parenthesis in acl selector starting at '('.",
            ),
            (
                "u",
                &["(+get ~a"],
                "ERR Unmatched parenthesis in acl selector starting at '(+get ~a'.",
            ),
            (
                "u",
                &[" () "],
                "ERR Error in ACL SETUSER modifier ' () ': Syntax error",
            ),
            (
                "u",
                &[")"],
                "ERR Error in ACL SETUSER modifier ')': Syntax error",
            ),
            (
                "a a",
                &["on"],
                "ERR Usernames can't contain spaces or null characters",
            ),
            (
                "a\0",
                &["on"],
                "ERR Usernames can't contain spaces or null characters",
            ),
        ];
        for (name, list, want) in cases {
            let err = acl
                .set_user(name.as_bytes(), &rules(list))
                .expect_err("refused");
            assert_eq!(err.error_line(), *want, "{list:?}");
        }
        assert_eq!(acl.get(b"u"), Some(before));
        assert_eq!(acl.generation(), generation);
        // A new user whose rules fail is not created (acl-v2.tcl "selector-syntax").
        assert!(
            acl.set_user(b"new", &rules(&["on", "(this-is-invalid)"]))
                .is_err()
        );
        assert!(acl.get(b"new").is_none());
    }

    #[test]
    fn flexible_selector_definitions() {
        // acl-v2.tcl's "Test flexible selector definition".
        let acl = Acl::new();
        acl.set_user(
            b"selector-2",
            &rules(&[
                "(~key1 +get )",
                "( ~key2 +get )",
                "( ~key3 +get)",
                "(~key4 +get)",
            ]),
        )
        .expect("ok");
        acl.set_user(
            b"selector-2",
            &rules(&[
                "(~key5", "+get", ")", "(", "~key6", "+get", ")", "(", "~key7", "+get)", "(~key8",
                "+get)",
            ]),
        )
        .expect("ok");
        let info = acl.get(b"selector-2").expect("user").info();
        let keys: Vec<String> = info
            .selectors
            .iter()
            .map(|s| String::from_utf8_lossy(&s.keys).into_owned())
            .collect();
        assert_eq!(
            keys,
            [
                "~key1", "~key2", "~key3", "~key4", "~key5", "~key6", "~key7", "~key8"
            ]
        );
    }

    #[test]
    fn deleting_users() {
        let acl = Acl::new();
        acl.set_user(b"a", &rules(&["on"])).expect("ok");
        acl.set_user(b"b", &rules(&["on"])).expect("ok");
        let err = acl
            .delete_users(&[&b"a"[..], b"default"])
            .expect_err("refused");
        assert_eq!(err.error_line(), "ERR The 'default' user cannot be removed");
        assert!(acl.get(b"a").is_some(), "nothing deleted");
        let generation = acl.generation();
        let removed = acl.delete_users(&[&b"a"[..], b"a", b"nosuch"]).expect("ok");
        assert_eq!(removed.len(), 1);
        assert_ne!(acl.generation(), generation);
        assert_eq!(acl.usernames(), vec![b"b".to_vec(), b"default".to_vec()]);
        // `Default` is another user name (names are case-sensitive).
        assert_eq!(acl.delete_users(&[b"Default"]).expect("ok").len(), 0);
        let generation = acl.generation();
        acl.delete_users(&[b"nosuch"]).expect("ok");
        assert_eq!(acl.generation(), generation, "nothing changed");
    }

    #[test]
    fn connections_notice_changes_and_deletions() {
        let acl = Acl::new();
        let held = acl
            .set_user(b"u", &rules(&["on", "+get"]))
            .expect("ok")
            .user;
        let g = acl.generation();
        acl.set_user(b"u", &rules(&["-get", "+set"])).expect("ok");
        assert_ne!(acl.generation(), g);
        let now = acl.current(&held).expect("still there");
        assert_eq!(now.info().root.commands, b"-@all +set");
        // Deleted, then created again: another user.
        acl.delete_users(&[b"u"]).expect("ok");
        assert!(acl.current(&held).is_none());
        acl.set_user(b"u", &rules(&["on"])).expect("ok");
        assert!(acl.current(&held).is_none());
        assert!(acl.current(&acl.default_user()).is_some());
    }

    #[test]
    fn list_is_sorted_by_name() {
        let acl = Acl::new();
        for name in ["zed", "alice", "Bob", "default2"] {
            acl.set_user(name.as_bytes(), &rules(&["on"])).expect("ok");
        }
        let names: Vec<String> = acl
            .usernames()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert_eq!(names, ["Bob", "alice", "default", "default2", "zed"]);
        assert_eq!(acl.list().len(), 5);
        assert!(acl.list()[0].starts_with(b"user Bob on "));
    }

    #[test]
    fn hpuser_line_from_acl_tcl() {
        let acl = Acl::new();
        acl.set_user(
            b"hpuser",
            &rules(&["on", "nopass", "resetchannels", "&foo", "+@all"]),
        )
        .expect("ok");
        assert_eq!(
            line(&acl, "hpuser"),
            "user hpuser on nopass resetchannels &foo +@all"
        );
    }

    #[test]
    fn pubsub_default_applies_to_new_users_only() {
        let acl = Acl::new();
        acl.set_pubsub_default_all_channels(true);
        acl.set_user(b"mydefault", &[] as &[&[u8]]).expect("ok");
        assert_eq!(
            acl.get(b"mydefault").expect("user").info().root.channels,
            b"&*"
        );
        acl.set_pubsub_default_all_channels(false);
        assert_eq!(
            acl.get(b"mydefault").expect("user").info().root.channels,
            b"&*"
        );
        assert_eq!(acl.default_user().info().root.channels, b"&*");
        acl.set_user(b"onechannel", &rules(&["&test"])).expect("ok");
        assert_eq!(
            acl.get(b"onechannel").expect("user").info().root.channels,
            b"&test"
        );
        acl.set_pubsub_default_all_channels(true);
        let err = acl
            .set_user(b"other", &rules(&["&test"]))
            .expect_err("refused");
        assert!(
            err.error_line()
                .contains("start with an empty list of channels")
        );
        // `reset` follows the setting at the time.
        acl.set_user(
            b"default",
            &rules(&["reset", "on", "nopass", "~*", "+@all"]),
        )
        .expect("ok");
        assert_eq!(
            line(&acl, "default"),
            "user default on nopass sanitize-payload ~* &* +@all"
        );
        acl.set_pubsub_default_all_channels(false);
        acl.set_user(
            b"default",
            &rules(&["reset", "on", "nopass", "~*", "+@all"]),
        )
        .expect("ok");
        assert_eq!(
            line(&acl, "default"),
            "user default on nopass sanitize-payload ~* resetchannels +@all"
        );
    }

    #[test]
    fn subscribers_rechecked_only_when_channels_shrink() {
        let acl = Acl::new();
        acl.set_user(b"ps", &rules(&["resetchannels", "&foo:1", "&bar:*"]))
            .expect("ok");
        let wider = acl
            .set_user(
                b"ps",
                &rules(&["resetchannels", "&foo:1", "&bar:*", "&baz"]),
            )
            .expect("ok");
        assert!(!wider.recheck_subscribers());
        let all = acl.set_user(b"ps", &rules(&["allchannels"])).expect("ok");
        assert!(!all.recheck_subscribers());
        let none = acl.set_user(b"ps", &rules(&["resetchannels"])).expect("ok");
        assert!(none.recheck_subscribers());
        let created = acl.set_user(b"fresh", &rules(&["on"])).expect("ok");
        assert!(!created.recheck_subscribers());
    }

    #[test]
    fn requirepass_sets_the_default_password() {
        let acl = Acl::new();
        acl.set_default_password(Some(b"secret"));
        assert!(acl.authenticate(b"default", b"secret").is_some());
        assert!(acl.authenticate(b"default", b"other").is_none());
        assert!(!acl.default_user().nopass());
        acl.set_default_password(None);
        assert!(acl.default_user().nopass());
        assert_eq!(line(&acl, "default"), "user default on nopass ~* &* +@all");
    }

    #[test]
    fn merging_selector_rules() {
        let merged = |list: &[&str]| -> Result<Vec<String>, String> {
            merge_selectors(&rules(list))
                .map(|m| {
                    m.iter()
                        .map(|r| String::from_utf8_lossy(r).into_owned())
                        .collect()
                })
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            merged(&["on", "(+get", "~a)", "off"]),
            Ok(vec!["on".into(), "(+get ~a)".into(), "off".into()])
        );
        assert_eq!(merged(&["(", ")"]), Ok(vec!["( )".into()]));
        assert_eq!(merged(&["(a", "(b", "c)"]), Ok(vec!["(b c)".into()]));
        assert_eq!(merged(&["()"]), Ok(vec!["()".into()]));
        assert_eq!(merged(&["(a", "", "b)"]), Ok(vec!["(a  b)".into()]));
        assert_eq!(
            merged(&["(a", "b"]),
            Err("Unmatched parenthesis in acl selector starting at '(a'.".into())
        );
    }

    #[test]
    fn genpass_lengths_and_errors() {
        let cases: &[(Option<i64>, usize)] = &[
            (None, 64),
            (Some(1), 1),
            (Some(4), 1),
            (Some(5), 2),
            (Some(128), 32),
            (Some(4096), 1024),
        ];
        for &(bits, len) in cases {
            let pass = genpass(bits).expect("in range");
            assert_eq!(pass.len(), len, "{bits:?}");
            assert!(
                pass.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        for bits in [0, -236, 4097, 5000, i64::MIN, i64::MAX] {
            assert_eq!(genpass(Some(bits)), Err(GENPASS_RANGE_ERROR));
        }
        assert_ne!(genpass(None), genpass(None), "random");
    }

    #[test]
    fn acl_cat() {
        assert_eq!(category_names().len(), 21);
        assert_eq!(category_names()[0], "keyspace");
        assert!(
            category_commands(b"transaction")
                .expect("known")
                .contains(&"multi")
        );
        assert_eq!(
            category_commands(b"NON_EXISTS"),
            Err("ERR Unknown category 'NON_EXISTS'".to_owned())
        );
    }

    #[test]
    fn checks_through_the_table() {
        let acl = Acl::new();
        acl.set_user(b"antirez", &rules(&[">foo", "on", "+set", "~object:1234"]))
            .expect("ok");
        acl.set_user(b"antirez", &rules(&["+eval", "+multi", "+exec"]))
            .expect("ok");
        acl.set_user(b"antirez", &rules(&["resetchannels", "+publish"]))
            .expect("ok");
        let u = acl.authenticate(b"antirez", b"foo").expect("logged in");
        let id = |n: &str| catalog().lookup(n.as_bytes()).expect("known");
        assert_eq!(
            u.check(CommandRef::bare(id("get")), &[], &[]),
            Err(Denied::Command)
        );
        assert_eq!(
            u.check(
                CommandRef::bare(id("set")),
                &[(b"object:1234", KeyAccess::ReadWrite)],
                &[]
            ),
            Ok(())
        );
        let keys: &[(&[u8], KeyAccess)] = &[(b"somekeynotallowed", KeyAccess::ReadWrite)];
        let denied = u
            .check(CommandRef::bare(id("set")), keys, &[])
            .expect_err("denied");
        assert_eq!(denied, Denied::Key(0));
        assert_eq!(denied.log_reason(), LogReason::Key);
        assert_eq!(
            denied.log_object(id("set"), keys, &[]),
            b"somekeynotallowed"
        );
        let channels: &[(&[u8], ChannelKind)] = &[(b"somechannelnotallowed", ChannelKind::Name)];
        let denied = u
            .check(CommandRef::bare(id("publish")), &[], channels)
            .expect_err("denied");
        assert_eq!(denied.log_reason(), LogReason::Channel);
        assert!(!u.unrestricted());
    }
}

//! A selector: one set of permissions (commands, keys, channels). A user has a root selector (the rules
//! written outside parentheses) and any number of added ones (`(+get ~k*)`); a call is allowed when one
//! selector allows its command, all its keys and all its channels.
//!
//! Commands are a bitset over the [catalog](mod@super::catalog) plus, per command, the first arguments it is
//! allowed with (`+select|0`, Redis's deprecated "first-arg" rules). Rules change the bits as Redis's do:
//! a container's rule (`+config`) sets the container's and all its subcommands' bits, a category rule
//! applies that to every command in the category and then to the subcommands in it. `+@all` also sets
//! the "future commands" mark (Redis's reserved bit), which decides whether a description starts from
//! `+@all` or `-@all`.
//!
//! Describing the command rules back (`ACL LIST`, `ACL GETUSER`) is Redis 7.0's approximation: start from
//! `+@all` or `-@all`, repeatedly apply the category that best fits the remaining differences, then add or
//! remove single commands until the bits match exactly.

use super::catalog::{Category, CommandId, CommandRef, catalog};
use super::check::{ChannelKind, Denied, KeyAccess};
use crate::cmd::glob_match;

/// Why a rule was refused (Redis's `errno` of `ACLSetUser`); the text is `ACL SETUSER`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `+foo`, `-@foo`: no such command or category.
    #[error("Unknown command or category name in ACL")]
    UnknownCommand,
    /// Not a rule, or a pattern with a space or NUL.
    #[error("Syntax error")]
    Syntax,
    /// A key pattern after `~*` / `allkeys`.
    #[error(
        "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have \
         any effect. Try 'resetkeys' to start with an empty list of patterns"
    )]
    KeyPatternAfterAll,
    /// A channel pattern after `&*` / `allchannels`.
    #[error(
        "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not \
         have any effect. Try 'resetchannels' to start with an empty list of channels"
    )]
    ChannelPatternAfterAll,
    /// `<pass` or `!hash` of a password the user does not have.
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    /// `#hash` or `!hash` that is not 64 lower-case hex digits.
    #[error(
        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal \
         characters"
    )]
    BadHash,
    /// `+config|get|x`: a first-argument rule on a subcommand.
    #[error("Allowing first-arg of a subcommand is not supported")]
    FirstArgOfSubcommand,
}

/// One bit per command of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandBits(Box<[u64]>);

impl CommandBits {
    fn filled(all: bool) -> CommandBits {
        let words = catalog().len().div_ceil(64);
        CommandBits(vec![if all { u64::MAX } else { 0 }; words].into_boxed_slice())
    }

    pub(crate) fn get(&self, id: CommandId) -> bool {
        let i = id.index();
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, id: CommandId, on: bool) {
        let i = id.index();
        if let Some(w) = self.0.get_mut(i / 64) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// Whether every command of the catalog is allowed.
    pub(crate) fn all(&self) -> bool {
        catalog().order().iter().all(|&id| self.get(id))
    }

    /// Allows or denies one command and, for a container, all its subcommands.
    fn change(&mut self, id: CommandId, on: bool) {
        self.set(id, on);
        for &sub in &catalog().entry(id).subcommands {
            self.set(sub, on);
        }
    }

    /// Allows or denies every command of `category` (a container in it brings all its subcommands).
    fn change_category(&mut self, category: Category, on: bool) {
        let catalog = catalog();
        for &id in catalog.order() {
            if catalog.in_category(id, category) {
                self.change(id, on);
            }
        }
    }

    /// (allowed, denied) among the commands of `category`.
    fn count_category(&self, category: Category) -> (usize, usize) {
        let catalog = catalog();
        catalog
            .order()
            .iter()
            .filter(|&&id| catalog.in_category(id, category))
            .fold((0, 0), |(on, off), &id| {
                if self.get(id) {
                    (on + 1, off)
                } else {
                    (on, off + 1)
                }
            })
    }
}

/// A key pattern and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPattern {
    pub pattern: Vec<u8>,
    pub read: bool,
    pub write: bool,
}

impl KeyPattern {
    /// `~pat`, `%R~pat` or `%W~pat`.
    fn describe(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match (self.read, self.write) {
            (true, false) => b"%R~",
            (false, true) => b"%W~",
            _ => b"~",
        });
        out.extend_from_slice(&self.pattern);
    }

    fn grants(&self, access: KeyAccess) -> bool {
        let (read, write) = access.needs();
        (self.read || !read) && (self.write || !write)
    }
}

/// One set of permissions; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    commands: CommandBits,
    /// Set by `+@all`/`allcommands`, cleared by `-@all`/`nocommands` only.
    future_commands: bool,
    /// Per command (whose bit is not set), the first arguments it is allowed with, in the order given.
    first_args: Vec<(CommandId, Vec<Vec<u8>>)>,
    all_keys: bool,
    keys: Vec<KeyPattern>,
    all_channels: bool,
    channels: Vec<Vec<u8>>,
}

/// Whether `s` has a byte that Redis refuses in usernames and patterns (`isspace` or NUL).
pub(crate) fn has_space(s: &[u8]) -> bool {
    s.iter()
        .any(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | 0))
}

fn is(op: &[u8], word: &str) -> bool {
    op.eq_ignore_ascii_case(word.as_bytes())
}

impl Selector {
    /// A selector that allows nothing, with every channel if `all_channels` (`acl-pubsub-default`).
    pub(crate) fn new(all_channels: bool) -> Selector {
        Selector {
            commands: CommandBits::filled(false),
            future_commands: false,
            first_args: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels,
            channels: Vec::new(),
        }
    }

    /// Applies one selector rule (everything but the user-level rules such as `on` or `>pass`).
    pub(crate) fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        if is(op, "allkeys") || op == b"~*" {
            self.all_keys = true;
            self.keys.clear();
        } else if is(op, "resetkeys") {
            self.all_keys = false;
            self.keys.clear();
        } else if is(op, "allchannels") || op == b"&*" {
            self.all_channels = true;
            self.channels.clear();
        } else if is(op, "resetchannels") {
            self.all_channels = false;
            self.channels.clear();
        } else if is(op, "allcommands") || is(op, "+@all") {
            self.set_all_commands(true);
        } else if is(op, "nocommands") || is(op, "-@all") {
            self.set_all_commands(false);
        } else {
            match op {
                [b'~' | b'%', ..] => self.add_key_pattern(op)?,
                [b'&', pattern @ ..] => self.add_channel(pattern)?,
                [b'+', b'@', name @ ..] | [b'-', b'@', name @ ..] => {
                    let category = Category::by_name(name).ok_or(RuleError::UnknownCommand)?;
                    self.change_category(category, op[0] == b'+');
                }
                [b'+', rest @ ..] => self.allow_command(rest)?,
                [b'-', name @ ..] => {
                    let id = catalog().lookup(name).ok_or(RuleError::UnknownCommand)?;
                    self.change_command(id, false);
                }
                _ => return Err(RuleError::Syntax),
            }
        }
        Ok(())
    }

    fn set_all_commands(&mut self, on: bool) {
        self.commands = CommandBits::filled(on);
        self.future_commands = on;
        self.first_args.clear();
    }

    fn change_command(&mut self, id: CommandId, on: bool) {
        self.commands.change(id, on);
        self.first_args.retain(|(c, _)| *c != id);
    }

    fn change_category(&mut self, category: Category, on: bool) {
        self.commands.change_category(category, on);
        let catalog = catalog();
        self.first_args
            .retain(|(id, _)| !catalog.in_category(*id, category));
    }

    /// `+name`, `+container|sub` or `+command|first-arg`.
    fn allow_command(&mut self, name: &[u8]) -> Result<(), RuleError> {
        let catalog = catalog();
        let Some(bar) = name.iter().rposition(|&b| b == b'|') else {
            let id = catalog.lookup(name).ok_or(RuleError::UnknownCommand)?;
            self.change_command(id, true);
            return Ok(());
        };
        let (command, sub) = (&name[..bar], &name[bar + 1..]);
        let id = catalog.lookup(command).ok_or(RuleError::UnknownCommand)?;
        if catalog.is_subcommand(id) {
            return Err(RuleError::FirstArgOfSubcommand);
        }
        if sub.is_empty() {
            return Err(RuleError::Syntax);
        }
        if catalog.is_container(id) {
            let sub_id = catalog.lookup(name).ok_or(RuleError::UnknownCommand)?;
            self.change_command(sub_id, true);
        } else {
            self.add_first_arg(id, sub);
        }
        Ok(())
    }

    fn add_first_arg(&mut self, id: CommandId, arg: &[u8]) {
        match self.first_args.iter_mut().find(|(c, _)| *c == id) {
            Some((_, args)) => {
                if !args.iter().any(|a| a.eq_ignore_ascii_case(arg)) {
                    args.push(arg.to_vec());
                }
            }
            None => self.first_args.push((id, vec![arg.to_vec()])),
        }
    }

    /// `~pattern`, `%R~pattern`, `%W~pattern`, `%RW~pattern`.
    fn add_key_pattern(&mut self, op: &[u8]) -> Result<(), RuleError> {
        if self.all_keys {
            return Err(RuleError::KeyPatternAfterAll);
        }
        let (read, write, start) = if op.first() == Some(&b'%') {
            let (mut read, mut write) = (false, false);
            let mut at = 1;
            // The permission letters run up to the `~`; without one the pattern is empty, as in Redis.
            while at < op.len() {
                match op[at].to_ascii_uppercase() {
                    b'R' if !read => read = true,
                    b'W' if !write => write = true,
                    b'~' => {
                        at += 1;
                        break;
                    }
                    _ => return Err(RuleError::Syntax),
                }
                at += 1;
            }
            // `%~pattern` grants nothing; Redis 7.0 stores it and then fails to describe it, so it is
            // refused here instead.
            if !read && !write {
                return Err(RuleError::Syntax);
            }
            (read, write, at)
        } else {
            (true, true, 1)
        };
        let pattern = &op[start.min(op.len())..];
        if has_space(pattern) {
            return Err(RuleError::Syntax);
        }
        match self.keys.iter_mut().find(|k| k.pattern == pattern) {
            Some(existing) => {
                existing.read |= read;
                existing.write |= write;
            }
            None => self.keys.push(KeyPattern {
                pattern: pattern.to_vec(),
                read,
                write,
            }),
        }
        Ok(())
    }

    fn add_channel(&mut self, pattern: &[u8]) -> Result<(), RuleError> {
        if self.all_channels {
            return Err(RuleError::ChannelPatternAfterAll);
        }
        if has_space(pattern) {
            return Err(RuleError::Syntax);
        }
        if !self.channels.iter().any(|c| c == pattern) {
            self.channels.push(pattern.to_vec());
        }
        Ok(())
    }

    // ---- checks ----

    /// Whether the selector allows the command itself (not looking at keys or channels).
    pub(crate) fn allows_command(&self, cmd: CommandRef<'_>) -> bool {
        if self.commands.get(cmd.id) || catalog().entry(cmd.id).no_auth {
            return true;
        }
        let Some(arg) = cmd.first_arg else {
            return false;
        };
        self.first_args
            .iter()
            .find(|(id, _)| *id == cmd.id)
            .is_some_and(|(_, args)| args.iter().any(|a| a.eq_ignore_ascii_case(arg)))
    }

    /// Whether the selector lets a command use `key` as `access` says.
    pub(crate) fn allows_key(&self, key: &[u8], access: KeyAccess) -> bool {
        self.all_keys
            || self
                .keys
                .iter()
                .any(|p| p.grants(access) && glob_match(&p.pattern, key, false))
    }

    /// Whether the selector lets a command name `channel`.
    pub(crate) fn allows_channel(&self, channel: &[u8], kind: ChannelKind) -> bool {
        self.all_channels || self.channel_listed(channel, kind)
    }

    /// Whether one of the selector's channel patterns covers `channel` (`&*` aside).
    pub(crate) fn channel_listed(&self, channel: &[u8], kind: ChannelKind) -> bool {
        self.channels.iter().any(|p| match kind {
            ChannelKind::Name => glob_match(p, channel, false),
            ChannelKind::Pattern => p == channel,
        })
    }

    /// Checks a call: its command first, then its keys in order, then its channels in order.
    pub(crate) fn check(
        &self,
        cmd: CommandRef<'_>,
        keys: &[(&[u8], KeyAccess)],
        channels: &[(&[u8], ChannelKind)],
    ) -> Result<(), Denied> {
        if !self.allows_command(cmd) {
            return Err(Denied::Command);
        }
        if !self.all_keys
            && let Some(i) = keys.iter().position(|&(k, a)| !self.allows_key(k, a))
        {
            return Err(Denied::Key(i));
        }
        if !self.all_channels
            && let Some(i) = channels
                .iter()
                .position(|&(c, kind)| !self.channel_listed(c, kind))
        {
            return Err(Denied::Channel(i));
        }
        Ok(())
    }

    /// Whether the selector grants `access` to every key (`~*`, `allkeys`, or a `*` pattern with it).
    pub(crate) fn all_keys_for(&self, access: KeyAccess) -> bool {
        self.all_keys
            || self
                .keys
                .iter()
                .any(|p| p.grants(access) && p.pattern == b"*")
    }

    /// Whether the selector allows everything: every command, every key for reading and writing, every
    /// channel.
    pub(crate) fn unrestricted(&self) -> bool {
        self.all_channels && self.all_keys_for(KeyAccess::ReadWrite) && self.commands.all()
    }

    /// Whether both selectors allow the same commands (bits; first-arg rules aside).
    #[cfg(test)]
    pub(crate) fn same_commands(&self, other: &Selector) -> bool {
        self.commands == other.commands && self.future_commands == other.future_commands
    }

    pub(crate) fn all_channels(&self) -> bool {
        self.all_channels
    }

    pub(crate) fn channels(&self) -> &[Vec<u8>] {
        &self.channels
    }

    // ---- descriptions ----

    /// The key patterns as `ACL GETUSER` shows them: `~*`, or the patterns separated by spaces.
    pub(crate) fn describe_keys(&self) -> Vec<u8> {
        if self.all_keys {
            return b"~*".to_vec();
        }
        let mut out = Vec::new();
        for (i, p) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            p.describe(&mut out);
        }
        out
    }

    /// The channel patterns as `ACL GETUSER` shows them: `&*`, or `&pattern`s separated by spaces.
    pub(crate) fn describe_channels(&self) -> Vec<u8> {
        if self.all_channels {
            return b"&*".to_vec();
        }
        let mut out = Vec::new();
        for (i, c) in self.channels.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.push(b'&');
            out.extend_from_slice(c);
        }
        out
    }

    /// The whole selector as `ACL LIST` shows it: keys, channels (after `resetchannels` unless `&*`), then
    /// the command rules.
    pub(crate) fn describe(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.all_keys {
            out.extend_from_slice(b"~* ");
        } else {
            for p in &self.keys {
                p.describe(&mut out);
                out.push(b' ');
            }
        }
        if self.all_channels {
            out.extend_from_slice(b"&* ");
        } else {
            out.extend_from_slice(b"resetchannels ");
            for c in &self.channels {
                out.push(b'&');
                out.extend_from_slice(c);
                out.push(b' ');
            }
        }
        out.extend_from_slice(&self.describe_commands());
        out
    }

    /// The command rules that rebuild this selector's commands, Redis 7.0's way (module documentation).
    pub(crate) fn describe_commands(&self) -> Vec<u8> {
        let catalog = catalog();
        // Adding to -@all, or removing from +@all.
        let additive = !self.future_commands;
        let mut rules: Vec<u8> = if additive { b"-@all" } else { b"+@all" }.to_vec();
        let mut fake = CommandBits::filled(!additive);
        // What is left to explain: each category chosen is undone here so it is not chosen again.
        let mut rest = self.commands.clone();
        let mut applied = [false; super::catalog::CATEGORY_NAMES.len()];
        loop {
            let mut best: Option<(Category, usize, usize)> = None;
            for category in Category::all() {
                if applied[category.index()] {
                    continue;
                }
                let (on, off) = rest.count_category(category);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                let better = match best {
                    None => true,
                    Some((_, min_diff, max_same)) => {
                        diff < min_diff || (diff == min_diff && same > max_same)
                    }
                };
                if same > diff && better {
                    best = Some((category, diff, same));
                }
            }
            let Some((category, _, _)) = best else { break };
            fake.change_category(category, additive);
            rest.change_category(category, !additive);
            rules.extend_from_slice(if additive { b" +@" } else { b" -@" });
            rules.extend_from_slice(category.name().as_bytes());
            applied[category.index()] = true;
        }
        // Then single commands, in table order (a container before its subcommands).
        for &id in catalog.order() {
            let mine = self.commands.get(id);
            if mine != fake.get(id) {
                rules.extend_from_slice(if mine { b" +" } else { b" -" });
                rules.extend_from_slice(id.name().as_bytes());
                fake.change(id, mine);
            }
            if !mine && let Some((_, args)) = self.first_args.iter().find(|(c, _)| *c == id) {
                for arg in args {
                    rules.extend_from_slice(b" +");
                    rules.extend_from_slice(id.name().as_bytes());
                    rules.push(b'|');
                    rules.extend_from_slice(arg);
                }
            }
        }
        debug_assert!(
            fake == self.commands,
            "ACL description does not rebuild the bits"
        );
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(rules: &[&str]) -> Result<Selector, (String, RuleError)> {
        let mut s = Selector::new(false);
        for r in rules {
            s.apply(r.as_bytes()).map_err(|e| ((*r).to_owned(), e))?;
        }
        Ok(s)
    }

    fn commands(rules: &[&str]) -> String {
        let s = sel(rules).expect("valid rules");
        String::from_utf8(s.describe_commands()).expect("ascii")
    }

    fn call(name: &str) -> CommandRef<'static> {
        CommandRef::bare(catalog().lookup(name.as_bytes()).expect("known command"))
    }

    fn call_with<'a>(name: &str, first: &'a [u8]) -> CommandRef<'a> {
        CommandRef {
            id: catalog().lookup(name.as_bytes()).expect("known command"),
            first_arg: Some(first),
        }
    }

    #[test]
    fn rule_errors() {
        let cases: &[(&[&str], RuleError)] = &[
            (&["+nosuchcommand"], RuleError::UnknownCommand),
            (&["-nosuchcommand"], RuleError::UnknownCommand),
            (&["+@nosuchcategory"], RuleError::UnknownCommand),
            (&["-@"], RuleError::UnknownCommand),
            (&["+"], RuleError::UnknownCommand),
            (&["-"], RuleError::UnknownCommand),
            (&["+config|asdf"], RuleError::UnknownCommand),
            (&["-config|asdf"], RuleError::UnknownCommand),
            (&["+get|key1|key2"], RuleError::UnknownCommand),
            (&["-get|key1|key2"], RuleError::UnknownCommand),
            (&["-select|0"], RuleError::UnknownCommand),
            (&["+|x"], RuleError::UnknownCommand),
            (&["+config|get|appendonly"], RuleError::FirstArgOfSubcommand),
            (&["+select|"], RuleError::Syntax),
            (&["+config|"], RuleError::Syntax),
            (&["this-is-invalid"], RuleError::Syntax),
            (&[""], RuleError::Syntax),
            (&[")"], RuleError::Syntax),
            (&["~a b"], RuleError::Syntax),
            (&["~a\0b"], RuleError::Syntax),
            (&["&a\tb"], RuleError::Syntax),
            (&["%X~a"], RuleError::Syntax),
            (&["%RR~a"], RuleError::Syntax),
            (&["%~a"], RuleError::Syntax),
            (&["~*", "~foo"], RuleError::KeyPatternAfterAll),
            (&["allkeys", "%R~foo"], RuleError::KeyPatternAfterAll),
            (&["&*", "&fail"], RuleError::ChannelPatternAfterAll),
            (&["allchannels", "&x"], RuleError::ChannelPatternAfterAll),
        ];
        for (rules, want) in cases {
            let got = sel(rules).map(|_| ()).map_err(|(_, e)| e);
            assert_eq!(got, Err(*want), "{rules:?}");
        }
    }

    #[test]
    fn keywords_are_case_insensitive_and_names_too() {
        let s = sel(&[
            "ALLKEYS",
            "AllChannels",
            "NoCommands",
            "+GET",
            "+Config|Get",
            "+@Set",
        ])
        .expect("valid");
        assert!(s.allows_command(call("get")));
        assert!(s.allows_command(call("config|get")));
        assert!(!s.allows_command(call("config|set")));
        assert!(s.allows_command(call("sadd")));
        assert!(s.all_keys && s.all_channels);
        let s = sel(&["+@ALL"]).expect("valid");
        assert!(s.future_commands && s.commands.all());
    }

    #[test]
    fn key_patterns_merge_and_describe() {
        let s = sel(&["%R~foo", "%W~foo", "%RW~bar"]).expect("valid");
        assert_eq!(s.describe_keys(), b"~foo ~bar");
        let s = sel(&["%R~foo1", "%W~bar1", "~baz1", "%r~foo1", "%w~lower"]).expect("valid");
        assert_eq!(s.describe_keys(), b"%R~foo1 %W~bar1 ~baz1 %W~lower");
        let s = sel(&["~a", "~a"]).expect("valid");
        assert_eq!(s.describe_keys(), b"~a");
        // `%R` without a `~` is an empty read pattern, as in Redis.
        let s = sel(&["%R"]).expect("valid");
        assert_eq!(s.describe_keys(), b"%R~");
        let s = sel(&["~foo", "allkeys"]).expect("valid");
        assert_eq!(s.describe_keys(), b"~*");
        let s = sel(&["~foo", "resetkeys"]).expect("valid");
        assert_eq!(s.describe_keys(), b"");
    }

    #[test]
    fn channels_dedup_and_describe() {
        let s = sel(&["&foo:1", "&bar:*", "&foo:1"]).expect("valid");
        assert_eq!(s.describe_channels(), b"&foo:1 &bar:*");
        let s = sel(&["&foo", "allchannels"]).expect("valid");
        assert_eq!(s.describe_channels(), b"&*");
        assert_eq!(Selector::new(true).describe_channels(), b"&*");
        assert_eq!(Selector::new(false).describe_channels(), b"");
    }

    #[test]
    fn whole_selector_description() {
        let s = sel(&[
            "-@all",
            "+get",
            "resetchannels",
            "&channel1",
            "%R~foo1",
            "%W~bar1",
            "~baz1",
        ])
        .expect("valid");
        assert_eq!(
            String::from_utf8_lossy(&s.describe()),
            "%R~foo1 %W~bar1 ~baz1 resetchannels &channel1 -@all +get"
        );
        let s = sel(&["~*", "&*", "+@all"]).expect("valid");
        assert_eq!(String::from_utf8_lossy(&s.describe()), "~* &* +@all");
        assert_eq!(
            String::from_utf8_lossy(&Selector::new(false).describe()),
            "resetchannels -@all"
        );
    }

    /// The command descriptions acl.tcl and acl-v2.tcl expect.
    #[test]
    fn command_descriptions_from_the_redis_suite() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "-@all"),
            (&["+@all"], "+@all"),
            (&["allcommands"], "+@all"),
            (&["+@all", "-@all"], "-@all"),
            (&["-@all", "+@all"], "+@all"),
            (&["+@all", "-client|kill"], "+@all -client|kill"),
            (&["+memory|doctor"], "-@all +memory|doctor"),
            (&["+memory|doctor", "+memory"], "-@all +memory"),
            (&["+memory", "+@all", "+client|id"], "+@all"),
            (&["+@all", "-memory|doctor"], "+@all -memory|doctor"),
            (&["+@all", "-memory"], "+@all -memory"),
            (&["+@all", "-memory", "-@all"], "-@all"),
            (&["-@all", "+get"], "-@all +get"),
            (&["-@all", "+set"], "-@all +set"),
            (&["-@all", "+select|0"], "-@all +select|0"),
            (
                &["-@all", "+select|0", "+select|1", "+SELECT|0"],
                "-@all +select|0 +select|1",
            ),
            (&["-@all", "+select|0", "-select"], "-@all"),
            (&["-@all", "+select|0", "+select"], "-@all +select"),
            (&["-@all", "+select|0", "+@all"], "+@all"),
        ];
        for (rules, want) in cases {
            assert_eq!(commands(rules), *want, "{rules:?}");
        }
    }

    #[test]
    fn subcommand_rules_in_descriptions() {
        // acl.tcl: "ACLs can include single subcommands".
        let d = commands(&["+@all", "-client", "+client|id", "+client|setname"]);
        assert!(d.starts_with("+@all"), "{d}");
        let minus = d.find(" -client ").expect(&d);
        assert!(d.find("+client|id").expect(&d) > minus, "{d}");
        assert!(d.find("+client|setname").expect(&d) > minus, "{d}");
        // "ACLs can exclude single subcommands, case 2".
        let d = commands(&["-@all", "+config", "-config|set"]);
        assert_eq!(d, "-@all +config -config|set");
        // Subtractive and additive mixes ("ACL GETUSER is able to translate back command permissions").
        let d = commands(&["+@all", "-@string", "+incr"]);
        assert!(
            d.starts_with("+@all") && d.contains(" -@string") && d.contains(" +incr"),
            "{d}"
        );
        let d = commands(&["-@all", "+@string", "-incr", "+config|get"]);
        assert!(
            d.starts_with("-@all") && d.contains(" +@string") && d.contains(" -incr"),
            "{d}"
        );
        assert!(d.contains(" +config|get"), "{d}");
    }

    /// acl.tcl's "ACL GETUSER provides reasonable results": one category added to `-@all` or removed
    /// from `+@all` is described as just that.
    #[test]
    fn single_category_rules_describe_as_themselves() {
        for category in Category::all() {
            let name = category.name();
            assert_eq!(
                commands(&["+@all", &format!("-@{name}")]),
                format!("+@all -@{name}")
            );
            assert_eq!(
                commands(&["-@all", &format!("+@{name}")]),
                format!("-@all +@{name}")
            );
        }
    }

    /// Whatever the rules, the description rebuilds exactly the same commands.
    #[test]
    fn descriptions_round_trip() {
        let cases: &[&[&str]] = &[
            &["+@all", "-@string", "+incr", "-client", "+client|id"],
            &["+@read", "-@fast", "+config|get", "+get"],
            &["+@write", "+@read", "-@list", "+lpush", "-@admin"],
            &["+@all", "-@slow", "+config", "-config|set", "-@pubsub"],
            &[
                "+@keyspace",
                "+@hash",
                "-hdel",
                "+@connection",
                "-client|kill",
            ],
            &["+@scripting", "-function", "+function|list", "+select|3"],
        ];
        for rules in cases {
            let s = sel(rules).expect("valid");
            let described = s.describe_commands();
            let text = String::from_utf8(described).expect("ascii");
            let again: Vec<&str> = text.split(' ').collect();
            let t = sel(&again).expect("the description is valid rules");
            assert_eq!(t.commands, s.commands, "{rules:?} -> {text}");
            assert_eq!(t.future_commands, s.future_commands);
            assert_eq!(t.first_args, s.first_args, "{rules:?} -> {text}");
        }
    }

    #[test]
    fn container_rules_cover_subcommands() {
        let s = sel(&["+config"]).expect("valid");
        assert!(s.allows_command(call("config|get")));
        assert!(s.allows_command(call("config|set")));
        let s = sel(&["+@all", "-config"]).expect("valid");
        assert!(!s.allows_command(call("config|get")));
        assert!(s.allows_command(call("get")));
        let s = sel(&["+@all", "-client|kill"]).expect("valid");
        assert!(s.allows_command(call("client|id")));
        assert!(!s.allows_command(call("client|kill")));
        // A category brings a container in it with all its subcommands.
        let s = sel(&["+@stream"]).expect("valid");
        assert!(s.allows_command(call("xadd")));
        assert!(s.allows_command(call("xinfo|stream")));
    }

    #[test]
    fn first_arg_rules() {
        let s = sel(&["-@all", "+select|0"]).expect("valid");
        assert!(s.allows_command(call_with("select", b"0")));
        assert!(!s.allows_command(call_with("select", b"1")));
        assert!(!s.allows_command(call("select")));
        let s = sel(&["-@all", "+select|abc"]).expect("valid");
        assert!(s.allows_command(call_with("select", b"ABC")));
        // A command rule drops the command's first-args; so do categories containing it.
        let s = sel(&["-@all", "+select|0", "-select"]).expect("valid");
        assert!(!s.allows_command(call_with("select", b"0")));
        let s = sel(&["-@all", "+select|0", "-@connection"]).expect("valid");
        assert!(!s.allows_command(call_with("select", b"0")));
    }

    #[test]
    fn no_auth_commands_are_always_allowed() {
        let s = sel(&["-@all"]).expect("valid");
        assert!(s.allows_command(call("auth")));
        assert!(!s.allows_command(call("get")));
    }

    #[test]
    fn key_checks_honour_read_and_write() {
        let s = sel(&["+@all", "%R~read*", "%W~write*", "%RW~rw*"]).expect("valid");
        let cases: &[(&[u8], KeyAccess, bool)] = &[
            (b"read", KeyAccess::Read, true),
            (b"read", KeyAccess::Write, false),
            (b"read", KeyAccess::ReadWrite, false),
            (b"read", KeyAccess::Metadata, true),
            (b"write", KeyAccess::Read, false),
            (b"write", KeyAccess::Write, true),
            (b"write", KeyAccess::Metadata, true),
            (b"rw1", KeyAccess::ReadWrite, true),
            (b"nothing", KeyAccess::Metadata, false),
        ];
        for &(key, access, want) in cases {
            assert_eq!(
                s.allows_key(key, access),
                want,
                "{} {access:?}",
                String::from_utf8_lossy(key)
            );
        }
        // COPY read write is fine, COPY write read is not (acl-v2.tcl).
        let copy = call("copy");
        assert_eq!(
            s.check(
                copy,
                &[(b"read", KeyAccess::Read), (b"write", KeyAccess::Write)],
                &[]
            ),
            Ok(())
        );
        assert_eq!(
            s.check(
                copy,
                &[(b"write", KeyAccess::Read), (b"read", KeyAccess::Write)],
                &[]
            ),
            Err(Denied::Key(0))
        );
    }

    #[test]
    fn channel_checks() {
        let s = sel(&["+@all", "&foo:1", "&bar:*"]).expect("valid");
        let publish = call("publish");
        let psub = call("psubscribe");
        assert_eq!(
            s.check(publish, &[], &[(b"foo:1", ChannelKind::Name)]),
            Ok(())
        );
        assert_eq!(
            s.check(publish, &[], &[(b"bar:2", ChannelKind::Name)]),
            Ok(())
        );
        assert_eq!(
            s.check(publish, &[], &[(b"zap:3", ChannelKind::Name)]),
            Err(Denied::Channel(0))
        );
        assert_eq!(
            s.check(psub, &[], &[(b"bar:*", ChannelKind::Pattern)]),
            Ok(())
        );
        assert_eq!(
            s.check(psub, &[], &[(b"foo:1", ChannelKind::Pattern)]),
            Ok(())
        );
        assert_eq!(
            s.check(
                psub,
                &[],
                &[
                    (b"foo:1", ChannelKind::Pattern),
                    (b"bar:baz", ChannelKind::Pattern)
                ]
            ),
            Err(Denied::Channel(1))
        );
        let none = sel(&["+@all"]).expect("valid");
        assert_eq!(
            none.check(publish, &[], &[(b"x", ChannelKind::Name)]),
            Err(Denied::Channel(0))
        );
    }

    #[test]
    fn the_command_is_checked_before_keys() {
        let s = sel(&["+get"]).expect("valid");
        assert_eq!(
            s.check(call("set"), &[(b"k", KeyAccess::Write)], &[]),
            Err(Denied::Command)
        );
        assert_eq!(
            s.check(call("get"), &[(b"k", KeyAccess::Read)], &[]),
            Err(Denied::Key(0))
        );
    }

    #[test]
    fn unrestricted_needs_everything() {
        assert!(sel(&["+@all", "~*", "&*"]).expect("valid").unrestricted());
        assert!(
            sel(&["+@all", "%RW~*", "&*"])
                .expect("valid")
                .unrestricted()
        );
        assert!(!sel(&["+@all", "%R~*", "&*"]).expect("valid").unrestricted());
        assert!(!sel(&["+@all", "~*"]).expect("valid").unrestricted());
        assert!(
            !sel(&["+@all", "-get", "~*", "&*"])
                .expect("valid")
                .unrestricted()
        );
        assert!(
            sel(&["+@all", "-get", "+get", "~*", "&*"])
                .expect("valid")
                .unrestricted()
        );
        assert!(
            sel(&["-@all", "+@all", "~*", "&*"])
                .expect("valid")
                .unrestricted()
        );
    }

    #[test]
    fn space_detection() {
        assert!(has_space(b"a b"));
        assert!(has_space(b"a\x0bb"));
        assert!(has_space(b"\0"));
        assert!(!has_space(b"a:b*"));
        assert!(!has_space(b""));
    }
}

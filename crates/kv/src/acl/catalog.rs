//! The command catalog ACL rules are written against: one id per command and per subcommand, each
//! command's ACL categories, and the order in which Redis walks the table.
//!
//! Ids are the server's statistics slots ([`crate::cmd::stat_names`]): the commands of
//! [`crate::cmd::commands`] at their own index, then every container's subcommands (`client|kill`). So the
//! id of a call is [`crate::cmd::stat_slot`], which dispatch computes anyway, and a permission is one bit
//! of a bitset indexed by it, as in Redis where every command and subcommand has its own id.
//!
//! Categories come from the same place as `COMMAND INFO`'s: the command's flags and group
//! (`cmd::introspection::acl_categories`); a container's own entry is only `@slow`, as in Redis;
//! and for the few commands where that derivation and Redis disagree, Redis's own list
//! (`REDIS_CATEGORIES`).

use std::collections::HashMap;
use std::sync::LazyLock;

use strata_resp::Arg;

use crate::cmd;
use crate::cmd::introspection::{acl_categories, docs};

/// The ACL categories in Redis's order, which `ACL CAT` lists and ACL descriptions try in turn.
pub const CATEGORY_NAMES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// Commands whose categories in Redis 7.0 are not what their flags and group give: Redis lists most
/// categories in each command's definition, and for these the derivation `COMMAND INFO` uses (flags and
/// group) disagrees (`KEYS` and `FLUSHALL` are `@dangerous` without being admin commands, `CLIENT ID` is not
/// an admin command like its container, `SORT` is in the categories of the types it sorts). Full names
/// with their complete categories, as Redis 7.0.15 has them (`WAITAOF`, `CLIENT NO-TOUCH` and
/// `CLIENT SETINFO`, from later versions, as Redis 7.2 has them). The `ACL` subcommands are listed ahead
/// of the command itself: only some of them are admin commands.
const REDIS_CATEGORIES: &[(&str, &[&str])] = &[
    ("acl|cat", &["slow"]),
    ("acl|deluser", &["admin", "slow", "dangerous"]),
    ("acl|dryrun", &["admin", "slow", "dangerous"]),
    ("acl|genpass", &["slow"]),
    ("acl|getuser", &["admin", "slow", "dangerous"]),
    ("acl|help", &["slow"]),
    ("acl|list", &["admin", "slow", "dangerous"]),
    ("acl|load", &["admin", "slow", "dangerous"]),
    ("acl|log", &["admin", "slow", "dangerous"]),
    ("acl|save", &["admin", "slow", "dangerous"]),
    ("acl|setuser", &["admin", "slow", "dangerous"]),
    ("acl|users", &["admin", "slow", "dangerous"]),
    ("acl|whoami", &["slow"]),
    ("client|caching", &["slow", "connection"]),
    ("client|getname", &["slow", "connection"]),
    ("client|getredir", &["slow", "connection"]),
    ("client|help", &["slow", "connection"]),
    ("client|id", &["slow", "connection"]),
    ("client|info", &["slow", "connection"]),
    ("client|no-touch", &["slow", "connection"]),
    ("client|reply", &["slow", "connection"]),
    ("client|setinfo", &["slow", "connection"]),
    ("client|setname", &["slow", "connection"]),
    ("client|tracking", &["slow", "connection"]),
    ("client|trackinginfo", &["slow", "connection"]),
    ("command", &["slow", "connection"]),
    ("command|count", &["slow", "connection"]),
    ("command|docs", &["slow", "connection"]),
    ("command|getkeys", &["slow", "connection"]),
    ("command|getkeysandflags", &["slow", "connection"]),
    ("command|help", &["slow", "connection"]),
    ("command|info", &["slow", "connection"]),
    ("command|list", &["slow", "connection"]),
    ("config|help", &["slow"]),
    ("dbsize", &["keyspace", "read", "fast"]),
    ("flushall", &["keyspace", "write", "slow", "dangerous"]),
    ("flushdb", &["keyspace", "write", "slow", "dangerous"]),
    ("info", &["slow", "dangerous"]),
    ("keys", &["keyspace", "read", "slow", "dangerous"]),
    ("lastsave", &["admin", "fast", "dangerous"]),
    ("latency|help", &["slow"]),
    ("memory|usage", &["read", "slow"]),
    ("migrate", &["keyspace", "write", "slow", "dangerous"]),
    ("module|help", &["slow"]),
    ("object|help", &["keyspace", "slow"]),
    ("pubsub|help", &["slow"]),
    ("readonly", &["fast", "connection"]),
    ("readwrite", &["fast", "connection"]),
    ("restore", &["keyspace", "write", "slow", "dangerous"]),
    ("role", &["admin", "fast", "dangerous"]),
    ("slowlog|help", &["slow"]),
    (
        "sort",
        &["write", "set", "sortedset", "list", "slow", "dangerous"],
    ),
    (
        "sort_ro",
        &["read", "set", "sortedset", "list", "slow", "dangerous"],
    ),
    ("swapdb", &["keyspace", "write", "fast", "dangerous"]),
    ("wait", &["slow", "connection"]),
    ("waitaof", &["slow", "connection"]),
    ("xgroup|help", &["stream", "slow"]),
    ("xinfo|help", &["stream", "slow"]),
];

/// One ACL category, by its position in [`CATEGORY_NAMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Category(u8);

impl Category {
    /// The category called `name` (case-insensitive, without the `@`), as ACL rules and `ACL CAT` take it.
    pub fn by_name(name: &[u8]) -> Option<Category> {
        CATEGORY_NAMES
            .iter()
            .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
            .and_then(|i| u8::try_from(i).ok())
            .map(Category)
    }

    /// Every category, in Redis's order.
    pub fn all() -> impl Iterator<Item = Category> {
        (0..CATEGORY_NAMES.len()).filter_map(|i| u8::try_from(i).ok().map(Category))
    }

    /// The category's name, without the `@`.
    pub fn name(self) -> &'static str {
        CATEGORY_NAMES[usize::from(self.0)]
    }

    /// The category's position in [`CATEGORY_NAMES`].
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }

    fn bit(self) -> u32 {
        1 << self.0
    }
}

/// A command or subcommand: its statistics slot (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(u16);

impl CommandId {
    /// The id of statistics slot `slot`, if the catalog has it.
    pub fn from_slot(slot: usize) -> Option<CommandId> {
        (slot < catalog().len())
            .then(|| u16::try_from(slot).ok())
            .flatten()
            .map(CommandId)
    }

    /// The statistics slot (and bit position) of this command.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The command's full lower-case name: `get`, or `client|kill` for a subcommand.
    pub fn name(self) -> &'static str {
        catalog().entry(self).name
    }
}

/// What a permission check needs to know of the command being run: which one it is, and its first
/// argument (rules such as `+select|0` allow a command only with a given first argument).
#[derive(Debug, Clone, Copy)]
pub struct CommandRef<'a> {
    /// The command or subcommand.
    pub id: CommandId,
    /// The argument after the command's name, if any.
    pub first_arg: Option<&'a [u8]>,
}

impl<'a> CommandRef<'a> {
    /// The call `args` (name first) of the command at `index` of [`crate::cmd::commands`]: its subcommand
    /// for a container, as dispatch counts it.
    pub fn of_call(index: usize, args: &[Arg<'a>]) -> Option<CommandRef<'a>> {
        Some(CommandRef {
            id: CommandId::from_slot(cmd::stat_slot(index, args))?,
            first_arg: args.get(1).map(Arg::as_bytes),
        })
    }

    /// The command `id` called with no argument that first-argument rules look at.
    pub fn bare(id: CommandId) -> CommandRef<'static> {
        CommandRef {
            id,
            first_arg: None,
        }
    }
}

/// One command or subcommand of the catalog.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Full lower-case name (`client|kill`).
    pub name: &'static str,
    /// The container of a subcommand.
    pub parent: Option<CommandId>,
    /// A container's subcommands, in name order.
    pub subcommands: Vec<CommandId>,
    /// Bit `i` set: in category `i`.
    categories: u32,
    /// Runs before authentication (`AUTH`, `HELLO`): no ACL rule denies it.
    pub no_auth: bool,
}

impl Entry {
    /// Whether the command is in `category`.
    pub fn in_category(&self, category: Category) -> bool {
        self.categories & category.bit() != 0
    }
}

/// The command catalog: every command and subcommand with its categories.
#[derive(Debug)]
pub struct Catalog {
    entries: Vec<Entry>,
    /// Every id in Redis's walking order: each command followed by its subcommands.
    order: Vec<CommandId>,
    by_name: HashMap<&'static str, CommandId>,
}

/// The catalog of this build's command table, built on first use.
pub fn catalog() -> &'static Catalog {
    static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::build);
    &CATALOG
}

/// The category bits of a list of `@name`s.
fn category_bits(names: &[&str]) -> u32 {
    names
        .iter()
        .filter_map(|n| Category::by_name(n.trim_start_matches('@').as_bytes()))
        .fold(0, |bits, c| bits | c.bit())
}

fn group_of(name: &str) -> &'static str {
    docs::get(name).map_or("server", |d| d.group)
}

impl Catalog {
    fn build() -> Catalog {
        let table = cmd::commands();
        let names = cmd::stat_names();
        let slow = Category::by_name(b"slow").map_or(0, Category::bit);
        let mut entries: Vec<Entry> = Vec::with_capacity(names.len());
        for (slot, &name) in names.iter().enumerate() {
            let entry = match name.split_once('|') {
                None => {
                    let spec = table[slot];
                    Entry {
                        name,
                        parent: None,
                        subcommands: Vec::new(),
                        categories: category_bits(&acl_categories(spec.flags, group_of(name))),
                        no_auth: spec.no_auth,
                    }
                }
                Some((container, sub)) => {
                    let (parent, spec) = cmd::lookup_indexed(container.as_bytes())
                        .map(|(i, spec)| (u16::try_from(i).ok().map(CommandId), Some(spec)))
                        .unwrap_or((None, None));
                    let flags = cmd::subcommand_flags(container, sub)
                        .or(spec.map(|s| s.flags))
                        .unwrap_or(&[]);
                    Entry {
                        name,
                        parent,
                        subcommands: Vec::new(),
                        categories: category_bits(&acl_categories(flags, group_of(name))),
                        no_auth: spec.is_some_and(|s| s.no_auth),
                    }
                }
            };
            entries.push(entry);
        }
        // Link subcommands to their containers; a container's own entry is only @slow.
        for slot in 0..entries.len() {
            let Some(parent) = entries[slot].parent else {
                continue;
            };
            let Ok(id) = u16::try_from(slot) else {
                continue;
            };
            if let Some(container) = entries.get_mut(parent.index()) {
                container.subcommands.push(CommandId(id));
                container.categories = slow;
            }
        }
        for entry in &mut entries {
            entry.subcommands.sort_by_key(|id| names[id.index()]);
            if let Some((_, categories)) = REDIS_CATEGORIES.iter().find(|(n, _)| *n == entry.name) {
                entry.categories = category_bits(categories);
            }
        }
        let mut order = Vec::with_capacity(entries.len());
        for (slot, entry) in entries.iter().enumerate() {
            if entry.parent.is_none()
                && let Ok(id) = u16::try_from(slot)
            {
                order.push(CommandId(id));
                order.extend(entry.subcommands.iter().copied());
            }
        }
        let by_name = entries
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| Some((e.name, CommandId(u16::try_from(slot).ok()?))))
            .collect();
        Catalog {
            entries,
            order,
            by_name,
        }
    }

    /// Number of commands and subcommands (the bits a permission set has).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the catalog is empty (never, for a real build).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn entry(&self, id: CommandId) -> &Entry {
        &self.entries[id.index()]
    }

    /// Every id, each command followed by its subcommands.
    pub(crate) fn order(&self) -> &[CommandId] {
        &self.order
    }

    /// The command named `name` (`get`, `CONFIG|GET`), case-insensitively, as ACL rules name commands:
    /// `container|sub` names a subcommand, and only of a container.
    pub fn lookup(&self, name: &[u8]) -> Option<CommandId> {
        if name.len() > 64 {
            return None;
        }
        let lower = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
        self.by_name.get(lower.as_str()).copied()
    }

    /// Whether the command is a container of subcommands (`CONFIG`).
    pub fn is_container(&self, id: CommandId) -> bool {
        !self.entry(id).subcommands.is_empty()
    }

    /// Whether the id is a subcommand (`config|get`).
    pub fn is_subcommand(&self, id: CommandId) -> bool {
        self.entry(id).parent.is_some()
    }

    /// Whether `id` is in `category`.
    pub fn in_category(&self, id: CommandId, category: Category) -> bool {
        self.entry(id).in_category(category)
    }

    /// `ACL CAT <category>`: the full names of the commands and subcommands in it, in table order.
    pub fn commands_in(&self, category: Category) -> Vec<&'static str> {
        self.order
            .iter()
            .map(|&id| self.entry(id))
            .filter(|e| e.in_category(category))
            .map(|e| e.name)
            .collect()
    }

    /// The categories of a command, in Redis's order (`COMMAND INFO`'s ACL categories).
    pub fn categories_of(&self, id: CommandId) -> Vec<Category> {
        let entry = self.entry(id);
        Category::all().filter(|&c| entry.in_category(c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_by_name_are_case_insensitive() {
        assert_eq!(
            Category::by_name(b"KeySpace").map(Category::name),
            Some("keyspace")
        );
        assert_eq!(
            Category::by_name(b"scripting").map(Category::name),
            Some("scripting")
        );
        assert_eq!(Category::by_name(b"all"), None);
        assert_eq!(Category::by_name(b""), None);
        assert_eq!(Category::all().count(), 21);
    }

    #[test]
    fn ids_are_statistics_slots() {
        let c = catalog();
        assert_eq!(c.len(), cmd::stat_names().len());
        for (slot, name) in cmd::stat_names().iter().enumerate() {
            let id = c.lookup(name.as_bytes()).expect("every slot is named");
            assert_eq!(id.index(), slot);
            assert_eq!(id.name(), *name);
        }
        assert_eq!(c.order().len(), c.len());
    }

    #[test]
    fn lookup_follows_redis_naming() {
        let c = catalog();
        let get = c.lookup(b"GET").expect("get");
        assert_eq!(get.name(), "get");
        assert!(!c.is_container(get) && !c.is_subcommand(get));
        let sub = c.lookup(b"Client|Kill").expect("client|kill");
        assert_eq!(sub.name(), "client|kill");
        assert!(c.is_subcommand(sub));
        let client = c.lookup(b"client").expect("client");
        assert!(c.is_container(client));
        assert!(c.entry(client).subcommands.contains(&sub));
        assert_eq!(c.lookup(b"client|nosuch"), None);
        assert_eq!(c.lookup(b"get|x"), None);
        assert_eq!(c.lookup(b""), None);
        assert_eq!(c.lookup(b"\xff"), None);
    }

    #[test]
    fn containers_are_slow_only_and_subcommands_have_their_own_categories() {
        let c = catalog();
        let slow = Category::by_name(b"slow").expect("slow");
        let client = c.lookup(b"client").expect("client");
        assert_eq!(c.categories_of(client), vec![slow]);
        let get = c.lookup(b"get").expect("get");
        let names: Vec<&str> = c.categories_of(get).iter().map(|c| c.name()).collect();
        assert_eq!(names, ["read", "string", "fast"]);
        let list = c.lookup(b"function|list").expect("function|list");
        assert!(c.in_category(list, Category::by_name(b"scripting").expect("cat")));
    }

    #[test]
    fn redis_categories_override_the_derivation() {
        let c = catalog();
        for (name, categories) in REDIS_CATEGORIES {
            let Some(id) = c.lookup(name.as_bytes()) else {
                assert!(name.starts_with("acl|"), "{name} is a command");
                continue;
            };
            let have: Vec<&str> = c.categories_of(id).iter().map(|c| c.name()).collect();
            assert_eq!(have, *categories, "{name}");
        }
        let cat = |n: &[u8]| Category::by_name(n).expect("category");
        let has = |command: &str, category: &[u8]| {
            c.in_category(c.lookup(command.as_bytes()).expect("known"), cat(category))
        };
        assert!(has("keys", b"dangerous") && has("flushall", b"dangerous"));
        assert!(!has("client|id", b"admin") && has("client|kill", b"admin"));
        assert!(has("sort", b"list") && !has("sort", b"keyspace"));
        assert!(has("command", b"connection") && has("command|docs", b"connection"));
    }

    #[test]
    fn acl_cat_lists_commands_and_subcommands() {
        let c = catalog();
        let cat = |n: &[u8]| c.commands_in(Category::by_name(n).expect("category"));
        assert!(cat(b"transaction").contains(&"multi"));
        assert!(cat(b"scripting").contains(&"function|list"));
        assert!(!cat(b"keyspace").contains(&"set"));
        assert!(!cat(b"stream").contains(&"get"));
        for category in Category::all() {
            assert!(
                !c.commands_in(category).is_empty(),
                "@{} is empty",
                category.name()
            );
        }
    }

    #[test]
    fn a_call_is_identified_by_its_subcommand() {
        let (index, _) = cmd::lookup_indexed(b"client").expect("client");
        let bytes = [
            bytes::Bytes::from_static(b"CLIENT"),
            bytes::Bytes::from_static(b"Kill"),
        ];
        let args = strata_resp::args_of(&bytes);
        let call = CommandRef::of_call(index, &args).expect("known");
        assert_eq!(call.id.name(), "client|kill");
        assert_eq!(call.first_arg, Some(&b"Kill"[..]));
        let (get, _) = cmd::lookup_indexed(b"get").expect("get");
        let bytes = [bytes::Bytes::from_static(b"get")];
        let args = strata_resp::args_of(&bytes);
        let call = CommandRef::of_call(get, &args).expect("known");
        assert_eq!(call.id.name(), "get");
        assert_eq!(call.first_arg, None);
    }
}

//! What `COMMAND DOCS` says about each command: one line per command and subcommand in [`TABLE`],
//! `name; group; since; complexity; summary; syntax`, in our own words. The syntax is the public
//! calling convention (see [`super::syntax`]), from which the argument tree and the arity are derived.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use bytes::Bytes;
use strata_resp::Frame;

use super::syntax::{self, Arg};

/// One command's documentation, parsed from its line.
#[derive(Debug)]
pub struct Doc {
    /// Lower-case name; `container|sub` for a subcommand.
    pub name: &'static str,
    /// The command group (`string`, `sorted-set`, ...).
    pub group: &'static str,
    /// The Redis version that introduced it.
    pub since: &'static str,
    /// Time complexity, in a few words.
    pub complexity: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
    /// The argument tree.
    pub args: Vec<Arg>,
    /// `(since, use instead)` for a deprecated command.
    pub deprecated: Option<(&'static str, &'static str)>,
}

impl Doc {
    /// The arity derived from the syntax (2 words before the arguments for a subcommand).
    pub fn arity(&self) -> i32 {
        syntax::arity(&self.args, if self.name.contains('|') { 2 } else { 1 })
    }
}

/// Every documented command, by name; subcommands are listed as `container|sub`.
pub fn all() -> &'static BTreeMap<&'static str, Doc> {
    static DOCS: LazyLock<BTreeMap<&'static str, Doc>> = LazyLock::new(|| {
        TABLE
            .iter()
            .map(|line| {
                let doc = parse_line(line).unwrap_or_else(|e| {
                    // The table is static and checked by the tests, so this is a build mistake.
                    tracing::error!(line, error = %e, "bad COMMAND DOCS line");
                    Doc {
                        name: line.split(';').next().unwrap_or_default(),
                        group: "server",
                        since: "1.0.0",
                        complexity: "",
                        summary: "",
                        args: Vec::new(),
                        deprecated: None,
                    }
                });
                (doc.name, doc)
            })
            .collect()
    });
    &DOCS
}

/// The documentation of one command or subcommand.
pub fn get(name: &str) -> Option<&'static Doc> {
    all().get(name)
}

/// The subcommands of a container command, sorted by name.
pub fn subcommands(container: &str) -> Vec<&'static Doc> {
    let prefix = format!("{container}|");
    all()
        .range::<str, _>((
            std::ops::Bound::Included(prefix.as_str()),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(name, _)| name.starts_with(&prefix))
        .map(|(_, doc)| doc)
        .collect()
}

/// Parses one line of [`TABLE`].
pub fn parse_line(line: &'static str) -> Result<Doc, String> {
    let fields: Vec<&'static str> = line.splitn(6, ';').map(str::trim).collect();
    let [name, group, since, complexity, summary, syntax_text] = fields[..] else {
        return Err(format!("expected 6 fields separated by ';': {line}"));
    };
    let args = syntax::parse(syntax_text).map_err(|e| format!("{name}: {e}"))?;
    let deprecated = DEPRECATED
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|&(_, since, instead)| (since, instead));
    Ok(Doc {
        name,
        group,
        since,
        complexity,
        summary,
        args,
        deprecated,
    })
}

/// The `COMMAND DOCS` reply body of one command: a map, with its subcommands' maps nested.
pub fn reply(doc: &Doc) -> Frame {
    let mut map = vec![
        (Frame::bulk("summary"), Frame::bulk(doc.summary)),
        (Frame::bulk("since"), Frame::bulk(doc.since)),
        (Frame::bulk("group"), Frame::bulk(doc.group)),
        (Frame::bulk("complexity"), Frame::bulk(doc.complexity)),
    ];
    if let Some((since, instead)) = doc.deprecated {
        map.push((
            Frame::bulk("doc_flags"),
            Frame::Set(vec![Frame::simple("deprecated")]),
        ));
        map.push((Frame::bulk("deprecated_since"), Frame::bulk(since)));
        map.push((Frame::bulk("replaced_by"), Frame::bulk(instead)));
    }
    if !doc.args.is_empty() {
        map.push((Frame::bulk("arguments"), arg_list(&doc.args)));
    }
    if !doc.name.contains('|') {
        let subs: Vec<(Frame, Frame)> = subcommands(doc.name)
            .into_iter()
            .map(|sub| (Frame::bulk(sub.name), reply(sub)))
            .collect();
        if !subs.is_empty() {
            map.push((Frame::bulk("subcommands"), Frame::Map(subs)));
        }
    }
    Frame::Map(map)
}

fn arg_list(args: &[Arg]) -> Frame {
    Frame::Array(args.iter().map(arg_reply).collect())
}

fn arg_reply(arg: &Arg) -> Frame {
    let mut map = vec![
        (
            Frame::bulk("name"),
            Frame::Bulk(Bytes::copy_from_slice(arg.name.as_bytes())),
        ),
        (Frame::bulk("type"), Frame::bulk(arg.kind.as_str())),
    ];
    if arg.has_display_text() {
        map.push((
            Frame::bulk("display_text"),
            Frame::Bulk(Bytes::copy_from_slice(arg.name.as_bytes())),
        ));
    }
    if let Some(index) = arg.key_spec_index {
        map.push((
            Frame::bulk("key_spec_index"),
            Frame::Integer(i64::try_from(index).unwrap_or(i64::MAX)),
        ));
    }
    if let Some(token) = &arg.token {
        map.push((
            Frame::bulk("token"),
            Frame::Bulk(Bytes::copy_from_slice(token.as_bytes())),
        ));
    }
    let flags: Vec<Frame> = [
        (arg.optional, "optional"),
        (arg.multiple, "multiple"),
        (arg.multiple_token, "multiple_token"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, f)| Frame::Simple(Bytes::from_static(f.as_bytes())))
    .collect();
    if !flags.is_empty() {
        map.push((Frame::bulk("flags"), Frame::Set(flags)));
    }
    if !arg.args.is_empty() {
        map.push((Frame::bulk("arguments"), arg_list(&arg.args)));
    }
    Frame::Map(map)
}

/// Deprecated commands: `(name, deprecated since, what to use instead)`.
const DEPRECATED: &[(&str, &str, &str)] = &[
    ("brpoplpush", "6.2.0", "BLMOVE with RIGHT LEFT"),
    ("georadius", "6.2.0", "GEOSEARCH with BYRADIUS"),
    ("georadius_ro", "6.2.0", "GEOSEARCH with BYRADIUS"),
    (
        "georadiusbymember",
        "6.2.0",
        "GEOSEARCH with FROMMEMBER and BYRADIUS",
    ),
    (
        "georadiusbymember_ro",
        "6.2.0",
        "GEOSEARCH with FROMMEMBER and BYRADIUS",
    ),
    ("getset", "6.2.0", "SET with GET"),
    ("hmset", "4.0.0", "HSET with several field-value pairs"),
    ("quit", "7.2.0", "closing the connection"),
    ("rpoplpush", "6.2.0", "LMOVE with RIGHT LEFT"),
    ("slaveof", "5.0.0", "REPLICAOF"),
    ("substr", "2.0.0", "GETRANGE"),
    ("zrangebyscore", "6.2.0", "ZRANGE with BYSCORE"),
    ("zrangebylex", "6.2.0", "ZRANGE with BYLEX"),
    ("zrevrange", "6.2.0", "ZRANGE with REV"),
    ("zrevrangebylex", "6.2.0", "ZRANGE with REV and BYLEX"),
    ("zrevrangebyscore", "6.2.0", "ZRANGE with REV and BYSCORE"),
];

/// `name; group; since; complexity; summary; syntax` for every command and subcommand strata answers.
#[rustfmt::skip]
pub const TABLE: &[&str] = &[
    "acl; server; 6.0.0; Depends on the subcommand; Commands about access control lists: users and their permissions; ",
    "acl|cat; server; 6.0.0; O(1); Lists the ACL categories, or the commands and subcommands in one of them; [category]",
    "acl|deluser; server; 6.0.0; O(1) per user; Deletes users and disconnects the clients authenticated as them; username [username ...]",
    "acl|dryrun; server; 7.0.0; O(1); Says whether a user could run a command, without running it; username command [arg [arg ...]]",
    "acl|genpass; server; 6.0.0; O(N) in the number of bits; Makes a random password suitable for an ACL user; [bits:integer]",
    "acl|getuser; server; 6.0.0; O(N) in the number of password, command, key and channel rules; Describes one user's rules; username",
    "acl|help; server; 6.0.0; O(1); Describes the ACL subcommands; ",
    "acl|list; server; 6.0.0; O(N) in the number of users; Describes every user's rules as configuration lines; ",
    "acl|load; server; 6.0.0; O(N) in the number of users; Reloads the users from the ACL file; ",
    "acl|log; server; 6.0.0; O(N) in the number of entries shown; Lists recent permission denials and failed logins, or forgets them; [operation: count:integer | RESET]",
    "acl|save; server; 6.0.0; O(N) in the number of users; Writes the users to the ACL file; ",
    "acl|setuser; server; 6.0.0; O(N) in the number of rules; Creates a user or changes its rules; username [rule [rule ...]]",
    "acl|users; server; 6.0.0; O(N) in the number of users; Lists the user names; ",
    "acl|whoami; server; 6.0.0; O(1); Returns the name of the user this connection runs as; ",
    "append; string; 2.0.0; O(1); Adds a string to the end of a key's value, creating the key if needed; key value",
    "auth; connection; 1.0.0; O(N) in the password's length; Logs the connection in as a user; [username] password",
    "bgrewriteaof; server; 1.0.0; O(1); Compacts the write-ahead log in the background (flushes the memtable, so older log segments are dropped); ",
    "bgsave; server; 1.0.0; O(1); Saves a snapshot of the data set in the background; [SCHEDULE]",
    "bitcount; bitmap; 2.6.0; O(N); Counts the bits set to 1, in the whole string or a range of it; key [start end [BYTE | BIT]]",
    "bitfield; bitmap; 3.2.0; O(1) per operation; Reads, writes and increments integer fields of any width at any bit offset; key [GET encoding offset | [OVERFLOW <WRAP | SAT | FAIL>] <SET encoding offset value | INCRBY encoding offset increment> ...]",
    "bitfield_ro; bitmap; 6.0.0; O(1) per GET; Reads integer fields of any width, without writing; key [GET encoding offset [GET encoding offset ...]]",
    "bitop; bitmap; 2.6.0; O(N) in the longest string; Combines strings bit by bit and stores the result; <operation: AND | OR | XOR | NOT> destkey key [key ...]",
    "bitpos; bitmap; 2.8.7; O(N); Finds the first bit set to 0 or 1, optionally within a range; key bit [start [end [BYTE | BIT]]]",
    "blmove; list; 6.2.0; O(1); Moves an element from one list end to another list end, waiting for one if the source is empty; source destination <wherefrom: LEFT | RIGHT> <whereto: LEFT | RIGHT> timeout",
    "blmpop; list; 7.0.0; O(N+M) for N keys and M popped elements; Pops elements from the first non-empty list, waiting if all are empty; timeout numkeys key [key ...] <where: LEFT | RIGHT> [COUNT count]",
    "blpop; list; 2.0.0; O(N) in the number of keys; Pops the head of the first non-empty list, waiting if all are empty; key [key ...] timeout",
    "brpop; list; 2.0.0; O(N) in the number of keys; Pops the tail of the first non-empty list, waiting if all are empty; key [key ...] timeout",
    "brpoplpush; list; 2.2.0; O(1); Moves the tail of one list to the head of another, waiting if the source is empty; source destination timeout",
    "bzmpop; sorted-set; 7.0.0; O(K) + O(M log N) for K keys and M popped members; Pops the lowest or highest members of the first non-empty sorted set, waiting if all are empty; timeout numkeys key [key ...] <where: MIN | MAX> [COUNT count]",
    "bzpopmax; sorted-set; 5.0.0; O(log N); Pops the highest-scored member of the first non-empty sorted set, waiting if all are empty; key [key ...] timeout",
    "bzpopmin; sorted-set; 5.0.0; O(log N); Pops the lowest-scored member of the first non-empty sorted set, waiting if all are empty; key [key ...] timeout",
    "client; connection; 2.4.0; Depends on the subcommand; Commands about client connections; ",
    "client|caching; connection; 6.0.0; O(1); Says whether the next command's reads are tracked in OPTIN or OPTOUT mode; <mode: YES | NO>",
    "client|getname; connection; 2.6.9; O(1); Returns the name of this connection; ",
    "client|getredir; connection; 6.0.0; O(1); Returns where tracking notifications of this connection go; ",
    "client|help; connection; 5.0.0; O(1); Describes the CLIENT subcommands; ",
    "client|id; connection; 5.0.0; O(1); Returns the unique ID of this connection; ",
    "client|info; connection; 6.2.0; O(1); Describes this connection; ",
    "client|kill; connection; 2.4.0; O(N) in the number of clients; Closes the connections that match an address or filters; <ip:port | [ID client-id] [TYPE <NORMAL | MASTER | SLAVE | REPLICA | PUBSUB>] [USER username] [ADDR ip:port] [LADDR ip:port] [SKIPME <YES | NO>] [MAXAGE maxage]>",
    "client|list; connection; 2.4.0; O(N) in the number of clients; Describes every connection, or those of a type or with given IDs; [TYPE <NORMAL | MASTER | REPLICA | PUBSUB>] [ID client-id [client-id ...]]",
    "client|no-evict; connection; 7.0.0; O(1); Sets whether this connection may be evicted under memory pressure; <enabled: ON | OFF>",
    "client|no-touch; connection; 7.2.0; O(1); Sets whether this connection's commands update keys' access times; <enabled: ON | OFF>",
    "client|pause; connection; 2.9.50; O(1); Holds back commands of all clients, or only writes, for a while; timeout:integer [mode: WRITE | ALL]",
    "client|reply; connection; 3.2.0; O(1); Turns replies to this connection on or off, or skips the next one; <action: ON | OFF | SKIP>",
    "client|setinfo; connection; 7.2.0; O(1); Records the client library's name or version for this connection; <attr: LIB-NAME libname | LIB-VER libver>",
    "client|setname; connection; 2.6.9; O(1); Names this connection; connection-name",
    "client|tracking; connection; 6.0.0; O(1), or O(N) in the number of prefixes; Turns server-assisted client-side caching on or off; <status: ON | OFF> [REDIRECT client-id] [PREFIX prefix [PREFIX prefix ...]] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]",
    "client|trackinginfo; connection; 6.2.0; O(1); Describes the client-side caching state of this connection; ",
    "client|unblock; connection; 5.0.0; O(log N) in the number of waiting clients; Wakes a client blocked in a command, as by a timeout or with an error; client-id [unblock-type: TIMEOUT | ERROR]",
    "client|unpause; connection; 6.2.0; O(N) in the number of paused clients; Lets commands held back by CLIENT PAUSE run; ",
    "cl.throttle; module; 1.0.0; O(1); Rate-limits a key with the generic cell rate algorithm, as the redis-cell module does; key max_burst:integer count_per_period:integer period:integer [quantity:integer]",
    "cluster; cluster; 3.0.0; Depends on the subcommand; Commands about Redis Cluster (a strata node answers that cluster support is disabled); subcommand [argument [argument ...]]",
    "command; server; 2.8.13; O(N) in the number of commands; Describes every command; ",
    "command|count; server; 2.8.13; O(1); Counts the commands; ",
    "command|docs; server; 7.0.0; O(N) in the number of commands described; Documents commands: summary, version, group, complexity and arguments; [command-name [command-name ...]]",
    "command|getkeys; server; 2.8.13; O(N) in the number of arguments; Extracts the key names from a full command; command [arg [arg ...]]",
    "command|getkeysandflags; server; 7.0.0; O(N) in the number of arguments; Extracts the key names from a full command, with how each is accessed; command [arg [arg ...]]",
    "command|help; server; 5.0.0; O(1); Describes the COMMAND subcommands; ",
    "command|info; server; 2.8.13; O(N) in the number of commands described; Describes commands: arity, flags, key positions; [command-name [command-name ...]]",
    "command|list; server; 7.0.0; O(N) in the number of commands; Lists command names, optionally filtered by module, ACL category or pattern; [FILTERBY <MODULE module-name | ACLCAT category | PATTERN pattern>]",
    "config; server; 2.0.0; Depends on the subcommand; Commands about the server's configuration; ",
    "config|get; server; 2.0.0; O(N) in the number of parameters; Returns the values of configuration parameters matching patterns; parameter [parameter ...]",
    "config|help; server; 5.0.0; O(1); Describes the CONFIG subcommands; ",
    "config|resetstat; server; 2.0.0; O(1); Resets the server's statistics; ",
    "config|rewrite; server; 2.8.0; O(1); Writes the running configuration back to the configuration file; ",
    "config|set; server; 2.0.0; O(N) in the number of parameters; Changes configuration parameters while the server runs; parameter value [parameter value ...]",
    "copy; generic; 6.2.0; O(N) in the size of the value; Copies a key's value to another key, possibly in another database; source destination [DB destination-db] [REPLACE]",
    "dbsize; server; 1.0.0; O(1); Counts the keys of the selected database; ",
    "debug; server; 1.0.0; Depends on the subcommand; Introspection and test hooks (OBJECT, DIGEST, SLEEP, POPULATE, ...); subcommand [argument [argument ...]]",
    "decr; string; 1.0.0; O(1); Subtracts one from a key's integer value; key",
    "decrby; string; 1.0.0; O(1); Subtracts an amount from a key's integer value; key decrement",
    "del; generic; 1.0.0; O(N) in the number of keys, plus the size of each removed value; Removes keys; key [key ...]",
    "discard; transactions; 2.0.0; O(N) in the number of queued commands; Drops the commands queued since MULTI; ",
    "dump; generic; 2.6.0; O(1) to find the key, O(N) to serialize it; Serializes a key's value for RESTORE; key",
    "echo; connection; 1.0.0; O(1); Replies with its argument; message",
    "eval; scripting; 2.6.0; Depends on the script; Runs a Lua script on the server, atomically; script numkeys [key [key ...]] [arg [arg ...]]",
    "eval_ro; scripting; 7.0.0; Depends on the script; Runs a read-only Lua script on the server; script numkeys [key [key ...]] [arg [arg ...]]",
    "evalsha; scripting; 2.6.0; Depends on the script; Runs a cached Lua script by its SHA-1; sha1 numkeys [key [key ...]] [arg [arg ...]]",
    "evalsha_ro; scripting; 7.0.0; Depends on the script; Runs a cached read-only Lua script by its SHA-1; sha1 numkeys [key [key ...]] [arg [arg ...]]",
    "exec; transactions; 1.2.0; Depends on the queued commands; Runs the commands queued since MULTI as one transaction; ",
    "exists; generic; 1.0.0; O(N) in the number of keys; Counts how many of the given keys exist; key [key ...]",
    "expire; generic; 1.0.0; O(1); Sets a key to expire after a number of seconds; key seconds [condition: NX | XX | GT | LT]",
    "expireat; generic; 1.2.0; O(1); Sets a key to expire at a Unix time in seconds; key unix-time-seconds [condition: NX | XX | GT | LT]",
    "expiretime; generic; 7.0.0; O(1); Returns the Unix time in seconds at which a key expires; key",
    "fcall; scripting; 7.0.0; Depends on the function; Runs a function of a loaded library; function numkeys [key [key ...]] [arg [arg ...]]",
    "fcall_ro; scripting; 7.0.0; Depends on the function; Runs a read-only function of a loaded library; function numkeys [key [key ...]] [arg [arg ...]]",
    "flushall; server; 1.0.0; O(N) in the number of keys; Removes every key of every database; [flush-type: ASYNC | SYNC]",
    "flushdb; server; 1.0.0; O(N) in the number of keys; Removes every key of the selected database; [flush-type: ASYNC | SYNC]",
    "function; scripting; 7.0.0; Depends on the subcommand; Commands about server-side function libraries; ",
    "function|delete; scripting; 7.0.0; O(1); Removes a function library; library-name",
    "function|dump; scripting; 7.0.0; O(N) in the number of functions; Serializes every function library; ",
    "function|flush; scripting; 7.0.0; O(N) in the number of functions; Removes every function library; [flush-type: ASYNC | SYNC]",
    "function|help; scripting; 7.0.0; O(1); Describes the FUNCTION subcommands; ",
    "function|kill; scripting; 7.0.0; O(1); Stops the function that is running; ",
    "function|list; scripting; 7.0.0; O(N) in the number of functions; Describes the function libraries; [LIBRARYNAME library-name-pattern] [WITHCODE]",
    "function|load; scripting; 7.0.0; O(1), plus the time to compile the code; Adds a function library; [REPLACE] function-code",
    "function|restore; scripting; 7.0.0; O(N) in the number of functions; Loads function libraries from a FUNCTION DUMP payload; serialized-value [policy: FLUSH | APPEND | REPLACE]",
    "function|stats; scripting; 7.0.0; O(1); Describes the running function and the engines; ",
    "ft.sugadd; module; 1.0.0; O(1); Adds a suggestion to an autocomplete dictionary, or updates its score; key string score:double [INCR] [PAYLOAD payload]",
    "ft.sugdel; module; 1.0.0; O(1); Removes a suggestion from an autocomplete dictionary; key string",
    "ft.sugget; module; 1.0.0; O(1); Returns the best suggestions completing a prefix; key prefix [FUZZY] [WITHSCORES] [WITHPAYLOADS] [MAX max:integer]",
    "ft.suglen; module; 1.0.0; O(1); Counts the suggestions of an autocomplete dictionary; key",
    "geoadd; geo; 3.2.0; O(log N) per point; Adds points to a geospatial index (a sorted set), or updates them; key [condition: NX | XX] [CH] longitude:double latitude:double member [longitude:double latitude:double member ...]",
    "geodist; geo; 3.2.0; O(1); Returns the distance between two points of a geospatial index; key member1 member2 [unit: M | KM | FT | MI]",
    "geohash; geo; 3.2.0; O(1) per member; Returns members' positions as standard geohash strings; key [member [member ...]]",
    "geopos; geo; 3.2.0; O(1) per member; Returns members' longitude and latitude; key [member [member ...]]",
    "georadius; geo; 3.2.0; O(N+log(M)) for N points in the area; Finds the points within a radius of a position, optionally storing them; key longitude:double latitude:double radius:double <unit: M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [count-block: COUNT count [ANY]] [order: ASC | DESC] [store: STORE key | STOREDIST key]",
    "georadius_ro; geo; 3.2.10; O(N+log(M)) for N points in the area; Finds the points within a radius of a position; key longitude:double latitude:double radius:double <unit: M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [count-block: COUNT count [ANY]] [order: ASC | DESC]",
    "georadiusbymember; geo; 3.2.0; O(N+log(M)) for N points in the area; Finds the points within a radius of a member, optionally storing them; key member radius:double <unit: M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [count-block: COUNT count [ANY]] [order: ASC | DESC] [store: STORE key | STOREDIST key]",
    "georadiusbymember_ro; geo; 3.2.10; O(N+log(M)) for N points in the area; Finds the points within a radius of a member; key member radius:double <unit: M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [count-block: COUNT count [ANY]] [order: ASC | DESC]",
    "geosearch; geo; 6.2.0; O(N+log(M)) for N points in the area; Finds the points inside a circle or box around a member or position; key <from: FROMMEMBER member | FROMLONLAT longitude:double latitude:double> <by: BYRADIUS radius:double <unit: M | KM | FT | MI> | BYBOX width:double height:double <unit: M | KM | FT | MI>> [order: ASC | DESC] [count-block: COUNT count [ANY]] [WITHCOORD] [WITHDIST] [WITHHASH]",
    "geosearchstore; geo; 6.2.0; O(N+log(M)) for N points in the area; Stores the points inside a circle or box around a member or position as a sorted set; destination source <from: FROMMEMBER member | FROMLONLAT longitude:double latitude:double> <by: BYRADIUS radius:double <unit: M | KM | FT | MI> | BYBOX width:double height:double <unit: M | KM | FT | MI>> [order: ASC | DESC] [count-block: COUNT count [ANY]] [STOREDIST]",
    "get; string; 1.0.0; O(1); Returns a key's string value; key",
    "getbit; bitmap; 2.2.0; O(1); Returns the bit at an offset of a string; key offset",
    "getdel; string; 6.2.0; O(1); Returns a key's string value and removes the key; key",
    "getex; string; 6.2.0; O(1); Returns a key's string value and sets or clears its expiry; key [expiration: EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | PERSIST]",
    "getrange; string; 2.4.0; O(N) in the length returned; Returns part of a key's string value; key start end",
    "getset; string; 1.0.0; O(1); Sets a key's string value and returns the value it had; key value",
    "hdel; hash; 2.0.0; O(N) in the number of fields; Removes fields from a hash; key field [field ...]",
    "hello; connection; 6.0.0; O(1); Chooses the protocol version, optionally logging in and naming the connection; [protover [AUTH username password] [SETNAME clientname]]",
    "hexists; hash; 2.0.0; O(1); Tells whether a hash has a field; key field",
    "hget; hash; 2.0.0; O(1); Returns the value of a hash field; key field",
    "hgetall; hash; 2.0.0; O(N) in the size of the hash; Returns every field and value of a hash; key",
    "hincrby; hash; 2.0.0; O(1); Adds an integer to the integer value of a hash field; key field increment",
    "hincrbyfloat; hash; 2.6.0; O(1); Adds a floating-point number to the value of a hash field; key field increment:double",
    "hkeys; hash; 2.0.0; O(N) in the size of the hash; Returns the fields of a hash; key",
    "hlen; hash; 2.0.0; O(1); Counts the fields of a hash; key",
    "hmget; hash; 2.0.0; O(N) in the number of fields; Returns the values of several hash fields; key field [field ...]",
    "hmset; hash; 2.0.0; O(N) in the number of fields; Sets several hash fields; key field value [field value ...]",
    "hrandfield; hash; 6.2.0; O(N) in the number of fields returned; Returns random fields of a hash, optionally with their values; key [options: count [WITHVALUES]]",
    "hscan; hash; 2.8.0; O(1) per call, O(N) for a full iteration; Iterates over the fields and values of a hash; key cursor [MATCH pattern] [COUNT count]",
    "hset; hash; 2.0.0; O(N) in the number of fields set; Sets hash fields, creating the hash if needed; key field value [field value ...]",
    "hsetnx; hash; 2.0.0; O(1); Sets a hash field only if it does not exist yet; key field value",
    "hstrlen; hash; 3.2.0; O(1); Returns the length of a hash field's value; key field",
    "hvals; hash; 2.0.0; O(N) in the size of the hash; Returns the values of a hash; key",
    "incr; string; 1.0.0; O(1); Adds one to a key's integer value; key",
    "incrby; string; 1.0.0; O(1); Adds an amount to a key's integer value; key increment",
    "incrbyfloat; string; 2.6.0; O(1); Adds a floating-point amount to a key's numeric value; key increment:double",
    "info; server; 1.0.0; O(1); Reports the server's state and statistics, by section; [section [section ...]]",
    "keys; generic; 1.0.0; O(N) in the number of keys; Lists the keys matching a pattern; pattern",
    "lastsave; server; 1.0.0; O(1); Returns the Unix time of the last successful save; ",
    "lolwut; server; 5.0.0; O(1); Draws a picture and shows the Redis version it is compatible with; [VERSION version]",
    "latency; server; 2.8.13; Depends on the subcommand; Commands about the latency monitor; ",
    "latency|doctor; server; 2.8.13; O(1); Describes the recorded latency events in words, with advice; ",
    "latency|graph; server; 2.8.13; O(1); Draws an event class's latency samples as an ASCII chart; event",
    "latency|help; server; 2.8.13; O(1); Describes the LATENCY subcommands; ",
    "latency|histogram; server; 7.0.0; O(N) in the number of commands; Returns the cumulative latency histograms of commands; [command [command ...]]",
    "latency|history; server; 2.8.13; O(1); Returns an event class's latency samples; event",
    "latency|latest; server; 2.8.13; O(1); Returns the latest latency sample of every event class; ",
    "latency|reset; server; 2.8.13; O(1); Forgets the latency samples of event classes; [event [event ...]]",
    "lcs; string; 7.0.0; O(N*M) in the two lengths; Finds the longest common subsequence of two strings; key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]",
    "lindex; list; 1.0.0; O(N) in the distance from the nearer end; Returns the element at an index of a list; key index",
    "linsert; list; 2.2.0; O(N) in the distance to the pivot; Inserts an element before or after another one in a list; key <where: BEFORE | AFTER> pivot element",
    "llen; list; 1.0.0; O(1); Returns the length of a list; key",
    "lmove; list; 6.2.0; O(1); Moves an element from one list end to another list end; source destination <wherefrom: LEFT | RIGHT> <whereto: LEFT | RIGHT>",
    "lmpop; list; 7.0.0; O(N+M) for N keys and M popped elements; Pops elements from the first non-empty list; numkeys key [key ...] <where: LEFT | RIGHT> [COUNT count]",
    "lpop; list; 1.0.0; O(N) in the number of elements popped; Removes and returns elements from the head of a list; key [count]",
    "lpos; list; 6.0.6; O(N) in the list length; Finds the indexes of an element in a list; key element [RANK rank] [COUNT num-matches] [MAXLEN len]",
    "lpush; list; 1.0.0; O(N) in the number of elements; Adds elements to the head of a list, creating it if needed; key element [element ...]",
    "lpushx; list; 2.2.0; O(N) in the number of elements; Adds elements to the head of a list only if it exists; key element [element ...]",
    "lrange; list; 1.0.0; O(S+N) for offset S and N elements; Returns a range of a list's elements; key start stop",
    "lrem; list; 1.0.0; O(N+M) for list length N and M removed; Removes occurrences of an element from a list; key count element",
    "lset; list; 1.0.0; O(N) in the distance from the nearer end; Replaces the element at an index of a list; key index element",
    "ltrim; list; 1.0.0; O(N) in the number of removed elements; Keeps only a range of a list's elements; key start stop",
    "memory; server; 4.0.0; Depends on the subcommand; Commands about memory use; ",
    "memory|doctor; server; 4.0.0; O(1); Gives advice about the server's memory use; ",
    "memory|help; server; 4.0.0; O(1); Describes the MEMORY subcommands; ",
    "memory|malloc-stats; server; 4.0.0; Depends on the allocator; Reports the memory allocator's statistics; ",
    "memory|purge; server; 4.0.0; Depends on the allocator; Asks the allocator to give unused memory back; ",
    "memory|stats; server; 4.0.0; O(1); Reports where the server's memory goes; ",
    "memory|usage; server; 4.0.0; O(N) in the number of sampled elements; Estimates the memory a key and its value take; key [SAMPLES count]",
    "mget; string; 1.0.0; O(N) in the number of keys; Returns the string values of several keys; key [key ...]",
    "module; server; 4.0.0; Depends on the subcommand; Commands about loadable modules; ",
    "module|help; server; 5.0.0; O(1); Describes the MODULE subcommands; ",
    "module|list; server; 4.0.0; O(N) in the number of modules; Lists the loaded modules (strata loads none); ",
    "module|load; server; 4.0.0; O(1); Loads a module from a shared library (refused: strata loads no modules); path [arg [arg ...]]",
    "module|loadex; server; 7.0.0; O(1); Loads a module with configuration (refused: strata loads no modules); path [ARGS args [args ...]]",
    "module|unload; server; 4.0.0; O(1); Unloads a module; name",
    "monitor; server; 1.0.0; O(1); Streams every command the server runs to this connection; ",
    "migrate; generic; 2.6.0; O(N) in the size of the keys sent; Moves or copies keys to another server by RESTOREing their DUMP payloads there; host port <key-selector: key | empty-string:string> destination-db:integer timeout:integer [COPY] [REPLACE] [authentication: AUTH auth-password | AUTH2 username password] [KEYS key [key ...]]",
    "move; generic; 1.0.0; O(1); Moves a key to another database; key db",
    "mset; string; 1.0.1; O(N) in the number of keys; Sets several keys to string values at once; key value [key value ...]",
    "msetnx; string; 1.0.1; O(N) in the number of keys; Sets several keys at once, only if none of them exists; key value [key value ...]",
    "multi; transactions; 1.2.0; O(1); Starts queueing commands for a transaction; ",
    "object; generic; 2.2.3; Depends on the subcommand; Commands about the internals of keys' values; ",
    "object|encoding; generic; 2.2.3; O(1); Returns how a key's value is encoded; key",
    "object|freq; generic; 4.0.0; O(1); Returns the access frequency counter of a key; key",
    "object|help; generic; 6.2.0; O(1); Describes the OBJECT subcommands; ",
    "object|idletime; generic; 2.2.3; O(1); Returns the seconds since a key was last accessed; key",
    "object|refcount; generic; 2.2.3; O(1); Returns the reference count of a key's value; key",
    "persist; generic; 2.2.0; O(1); Removes a key's expiry; key",
    "pexpire; generic; 2.6.0; O(1); Sets a key to expire after a number of milliseconds; key milliseconds [condition: NX | XX | GT | LT]",
    "pexpireat; generic; 2.6.0; O(1); Sets a key to expire at a Unix time in milliseconds; key unix-time-milliseconds [condition: NX | XX | GT | LT]",
    "pexpiretime; generic; 7.0.0; O(1); Returns the Unix time in milliseconds at which a key expires; key",
    "pfadd; hyperloglog; 2.8.9; O(1) per element; Adds elements to a HyperLogLog, creating it if needed; key [element [element ...]]",
    "pfcount; hyperloglog; 2.8.9; O(1) for one key, O(N) to merge several; Returns the approximate number of distinct elements in the union of HyperLogLogs; key [key ...]",
    "pfdebug; hyperloglog; 2.8.9; O(N); Internal commands for debugging HyperLogLog values; subcommand key",
    "pfmerge; hyperloglog; 2.8.9; O(N) to merge N HyperLogLogs; Merges HyperLogLogs into one; destkey [sourcekey [sourcekey ...]]",
    "pfselftest; hyperloglog; 2.8.9; O(N); Checks the HyperLogLog implementation; ",
    "ping; connection; 1.0.0; O(1); Checks that the server answers; [message]",
    "psetex; string; 2.6.0; O(1); Sets a key's string value with an expiry in milliseconds; key milliseconds value",
    "psubscribe; pubsub; 2.0.0; O(N) in the number of patterns; Listens for messages on channels matching patterns; pattern [pattern ...]",
    "pttl; generic; 2.6.0; O(1); Returns the milliseconds until a key expires; key",
    "publish; pubsub; 2.0.0; O(N+M) for N subscribers and M patterns; Sends a message to a channel; channel message",
    "pubsub; pubsub; 2.8.0; Depends on the subcommand; Commands about the state of pub/sub; ",
    "pubsub|channels; pubsub; 2.8.0; O(N) in the number of channels; Lists the channels with subscribers, optionally matching a pattern; [pattern]",
    "pubsub|help; pubsub; 6.2.0; O(1); Describes the PUBSUB subcommands; ",
    "pubsub|numpat; pubsub; 2.8.0; O(1); Counts the subscribed patterns; ",
    "pubsub|numsub; pubsub; 2.8.0; O(N) in the number of channels; Counts the subscribers of channels; [channel [channel ...]]",
    "pubsub|shardchannels; pubsub; 7.0.0; O(N) in the number of shard channels; Lists the shard channels with subscribers, optionally matching a pattern; [pattern]",
    "pubsub|shardnumsub; pubsub; 7.0.0; O(N) in the number of shard channels; Counts the subscribers of shard channels; [shardchannel [shardchannel ...]]",
    "punsubscribe; pubsub; 2.0.0; O(N) in the number of patterns; Stops listening on patterns, or on all of them; [pattern [pattern ...]]",
    "quit; connection; 1.0.0; O(1); Closes the connection; ",
    "randomkey; generic; 1.0.0; O(1); Returns a random key of the selected database; ",
    "rename; generic; 1.0.0; O(1); Gives a key a new name, replacing any key of that name; key newkey",
    "renamenx; generic; 1.0.0; O(1); Gives a key a new name only if that name is free; key newkey",
    "readonly; cluster; 3.0.0; O(1); Lets a cluster replica serve reads (a standalone server refuses it); ",
    "readwrite; cluster; 3.0.0; O(1); Ends READONLY on a cluster replica (a standalone server refuses it); ",
    "replicaof; server; 5.0.0; O(1); Follows another server or becomes a master again (only NO ONE is accepted); host port",
    "reset; connection; 6.2.0; O(1); Returns the connection to its initial state; ",
    "restore; generic; 2.6.0; O(1) to create the key, O(N) to deserialize it; Creates a key from a DUMP payload; key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]",
    "role; server; 2.8.12; O(1); Returns the replication role of the server; ",
    "rpop; list; 1.0.0; O(N) in the number of elements popped; Removes and returns elements from the tail of a list; key [count]",
    "rpoplpush; list; 1.2.0; O(1); Moves the tail of one list to the head of another; source destination",
    "rpush; list; 1.0.0; O(N) in the number of elements; Adds elements to the tail of a list, creating it if needed; key element [element ...]",
    "rpushx; list; 2.2.0; O(N) in the number of elements; Adds elements to the tail of a list only if it exists; key element [element ...]",
    "sadd; set; 1.0.0; O(N) in the number of members; Adds members to a set, creating it if needed; key member [member ...]",
    "save; server; 1.0.0; O(N) in the size of the data; Saves a snapshot of the data set and waits for it; ",
    "scan; generic; 2.8.0; O(1) per call, O(N) for a full iteration; Iterates over the keys of the selected database; cursor [MATCH pattern] [COUNT count] [TYPE type]",
    "script; scripting; 2.6.0; Depends on the subcommand; Commands about the Lua script cache; ",
    "script|debug; scripting; 3.2.0; O(1); Sets the debug mode of scripts (strata has no debugger); <mode: YES | SYNC | NO>",
    "script|exists; scripting; 2.6.0; O(N) in the number of scripts checked; Tells which scripts are in the cache; sha1 [sha1 ...]",
    "script|flush; scripting; 2.6.0; O(N) in the number of cached scripts; Empties the script cache; [flush-type: ASYNC | SYNC]",
    "script|help; scripting; 5.0.0; O(1); Describes the SCRIPT subcommands; ",
    "script|kill; scripting; 2.6.0; O(1); Stops the script that is running if it has not written; ",
    "script|load; scripting; 2.6.0; O(N) in the script's length; Compiles a script into the cache without running it; script",
    "scard; set; 1.0.0; O(1); Counts the members of a set; key",
    "sdiff; set; 1.0.0; O(N) in the total size of the sets; Returns the members of the first set that are in none of the others; key [key ...]",
    "sdiffstore; set; 1.0.0; O(N) in the total size of the sets; Stores the difference of sets in a key; destination key [key ...]",
    "select; connection; 1.0.0; O(1); Switches the connection to another database; index",
    "set; string; 1.0.0; O(1); Sets a key's string value, with optional conditions and expiry; key value [condition: NX | XX] [GET] [expiration: EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]",
    "setbit; bitmap; 2.2.0; O(1); Sets or clears the bit at an offset of a string; key offset value:integer",
    "setex; string; 2.0.0; O(1); Sets a key's string value with an expiry in seconds; key seconds value",
    "setnx; string; 1.0.0; O(1); Sets a key's string value only if the key does not exist; key value",
    "setrange; string; 2.2.0; O(1), plus copying the value; Overwrites part of a key's string value at an offset; key offset value",
    "shutdown; server; 1.0.0; O(N) with N the number of keys to save; Stops the server after making the data durable; [save-selector: NOSAVE | SAVE] [NOW] [FORCE] [ABORT]",
    "sinter; set; 1.0.0; O(N*M) worst case for N the smallest set and M sets; Returns the members common to all the sets; key [key ...]",
    "sintercard; set; 7.0.0; O(N*M) worst case for N the smallest set and M sets; Counts the members common to all the sets, up to a limit; numkeys key [key ...] [LIMIT limit]",
    "sinterstore; set; 1.0.0; O(N*M) worst case for N the smallest set and M sets; Stores the intersection of sets in a key; destination key [key ...]",
    "sismember; set; 1.0.0; O(1); Tells whether a value is a member of a set; key member",
    "slaveof; server; 1.0.0; O(1); Follows another server or becomes a master again (only NO ONE is accepted); host port",
    "slowlog; server; 2.2.12; Depends on the subcommand; Commands about the slow log; ",
    "slowlog|get; server; 2.2.12; O(N) in the number of entries returned; Returns the most recent slow log entries; [count]",
    "slowlog|help; server; 6.2.0; O(1); Describes the SLOWLOG subcommands; ",
    "slowlog|len; server; 2.2.12; O(1); Counts the slow log entries; ",
    "slowlog|reset; server; 2.2.12; O(N) in the number of entries; Empties the slow log; ",
    "smembers; set; 1.0.0; O(N) in the size of the set; Returns every member of a set; key",
    "smismember; set; 6.2.0; O(N) in the number of values; Tells, for each value, whether it is a member of a set; key member [member ...]",
    "smove; set; 1.0.0; O(1); Moves a member from one set to another; source destination member",
    "sort; generic; 1.0.0; O(N+M*log(M)) for N elements and M returned; Sorts a list, set or sorted set, optionally by external keys, and may store the result; key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [order: ASC | DESC] [sorting: ALPHA] [STORE destination]",
    "sort_ro; generic; 7.0.0; O(N+M*log(M)) for N elements and M returned; Sorts a list, set or sorted set without storing the result; key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [order: ASC | DESC] [sorting: ALPHA]",
    "spop; set; 1.0.0; O(N) in the number of members popped; Removes and returns random members of a set; key [count]",
    "spublish; pubsub; 7.0.0; O(N) in the number of subscribers; Sends a message to a shard channel; shardchannel message",
    "srandmember; set; 1.0.0; O(N) in the number of members returned; Returns random members of a set without removing them; key [count]",
    "srem; set; 1.0.0; O(N) in the number of members; Removes members from a set; key member [member ...]",
    "sscan; set; 2.8.0; O(1) per call, O(N) for a full iteration; Iterates over the members of a set; key cursor [MATCH pattern] [COUNT count]",
    "ssubscribe; pubsub; 7.0.0; O(N) in the number of shard channels; Listens for messages on shard channels; shardchannel [shardchannel ...]",
    "strlen; string; 2.2.0; O(1); Returns the length of a key's string value; key",
    "subscribe; pubsub; 2.0.0; O(N) in the number of channels; Listens for messages on channels; channel [channel ...]",
    "substr; string; 1.0.0; O(N) in the length returned; Returns part of a key's string value; key start end",
    "sunion; set; 1.0.0; O(N) in the total size of the sets; Returns the members of any of the sets; key [key ...]",
    "sunionstore; set; 1.0.0; O(N) in the total size of the sets; Stores the union of sets in a key; destination key [key ...]",
    "sunsubscribe; pubsub; 7.0.0; O(N) in the number of shard channels; Stops listening on shard channels, or on all of them; [shardchannel [shardchannel ...]]",
    "swapdb; server; 4.0.0; O(N) in the number of watching clients; Exchanges the contents of two databases; index1 index2",
    "time; server; 2.6.0; O(1); Returns the server's clock as seconds and microseconds; ",
    "touch; generic; 3.2.1; O(N) in the number of keys; Updates the access time of keys and counts those that exist; key [key ...]",
    "ttl; generic; 1.0.0; O(1); Returns the seconds until a key expires; key",
    "type; generic; 1.0.0; O(1); Returns the type of a key's value; key",
    "unlink; generic; 4.0.0; O(1) per key, the memory is reclaimed later; Removes keys without waiting to reclaim their memory; key [key ...]",
    "unsubscribe; pubsub; 2.0.0; O(N) in the number of channels; Stops listening on channels, or on all of them; [channel [channel ...]]",
    "unwatch; transactions; 2.2.0; O(1); Forgets every key watched by WATCH; ",
    "wait; generic; 3.0.0; O(1); Waits until the client's writes reach a number of replicas; numreplicas:integer timeout:integer",
    "waitaof; generic; 7.2.0; O(1); Waits until the client's writes are fsynced locally and on a number of replicas; numlocal:integer numreplicas:integer timeout:integer",
    "watch; transactions; 2.2.0; O(1) per key; Makes the next transaction fail if any of these keys changes before it runs; key [key ...]",
    "xack; stream; 5.0.0; O(1) per ID; Removes entries from a consumer group's pending entries list; key group id [id ...]",
    "xadd; stream; 5.0.0; O(1) to add, O(N) to trim N entries; Appends an entry to a stream, creating it if needed; key [NOMKSTREAM] [trim: <strategy: MAXLEN | MINID> [operator: = | ~] threshold [LIMIT count]] <id-selector: * | id> field value [field value ...]",
    "xautoclaim; stream; 6.2.0; O(1) per claimed entry; Claims a consumer group's pending entries idle long enough, scanning from a cursor; key group consumer min-idle-time start [COUNT count] [JUSTID]",
    "xclaim; stream; 5.0.0; O(log N) per ID; Changes the owner of pending entries of a consumer group; key group consumer min-idle-time id [id ...] [IDLE ms] [TIME unix-time-milliseconds:unix-time] [RETRYCOUNT count] [FORCE] [JUSTID] [LASTID lastid]",
    "xdel; stream; 5.0.0; O(1) per entry; Deletes entries from a stream; key id [id ...]",
    "xgroup; stream; 5.0.0; Depends on the subcommand; Commands about consumer groups; ",
    "xgroup|create; stream; 5.0.0; O(1); Creates a consumer group; key group <id-selector: id | $> [MKSTREAM] [ENTRIESREAD entries-read]",
    "xgroup|createconsumer; stream; 6.2.0; O(1); Creates a consumer in a consumer group; key group consumer",
    "xgroup|delconsumer; stream; 5.0.0; O(1) per pending entry of the consumer; Deletes a consumer from a consumer group; key group consumer",
    "xgroup|destroy; stream; 5.0.0; O(1), the records are reclaimed later; Destroys a consumer group; key group",
    "xgroup|help; stream; 5.0.0; O(1); Describes the XGROUP subcommands; ",
    "xgroup|setid; stream; 5.0.0; O(1); Sets a consumer group's last delivered ID; key group <id-selector: id | $> [ENTRIESREAD entries-read]",
    "xinfo; stream; 5.0.0; Depends on the subcommand; Commands about streams and their consumer groups; ",
    "xinfo|consumers; stream; 5.0.0; O(1) per consumer; Lists the consumers of a consumer group; key group",
    "xinfo|groups; stream; 5.0.0; O(1) per group; Lists the consumer groups of a stream; key",
    "xinfo|help; stream; 5.0.0; O(1); Describes the XINFO subcommands; ",
    "xinfo|stream; stream; 5.0.0; O(1), FULL O(N) in the entries returned; Describes a stream; key [full-block: FULL [COUNT count]]",
    "xlen; stream; 5.0.0; O(1); Returns the number of entries in a stream; key",
    "xpending; stream; 5.0.0; O(N) in the entries returned; Describes a consumer group's pending entries; key group [filters: [IDLE min-idle-time] start end count [consumer]]",
    "xrange; stream; 5.0.0; O(log N + M) for M returned; Returns the entries of a stream within a range of IDs; key start end [COUNT count]",
    "xread; stream; 5.0.0; O(log N + M) per stream for M returned; Reads entries after given IDs from streams, waiting for some if asked; [COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]",
    "xreadgroup; stream; 5.0.0; O(M) for M returned; Reads entries for a consumer of a consumer group, new ones or its pending history; GROUP group consumer [COUNT count] [BLOCK milliseconds] [NOACK] STREAMS key [key ...] id [id ...]",
    "xrevrange; stream; 5.0.0; O(log N + M) for M returned; Returns the entries of a stream within a range of IDs, last first; key end start [COUNT count]",
    "xsetid; stream; 5.0.0; O(1); Sets a stream's last ID and counters; key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]",
    "xtrim; stream; 5.0.0; O(N) in the entries removed; Removes a stream's oldest entries; key <strategy: MAXLEN | MINID> [operator: = | ~] threshold [LIMIT count]",
    "zadd; sorted-set; 1.2.0; O(log N) per member; Adds members with scores to a sorted set, or updates their scores; key [condition: NX | XX] [comparison: GT | LT] [change: CH] [increment: INCR] score member [score member ...]",
    "zcard; sorted-set; 1.2.0; O(1); Counts the members of a sorted set; key",
    "zcount; sorted-set; 2.0.0; O(log N); Counts the members of a sorted set with scores in a range; key min:double max:double",
    "zdiff; sorted-set; 6.2.0; O(L + (N-K) log N) worst case; Returns the members of the first sorted set that are in none of the others; numkeys key [key ...] [WITHSCORES]",
    "zdiffstore; sorted-set; 6.2.0; O(L + (N-K) log N) worst case; Stores the difference of sorted sets in a key; destination numkeys key [key ...]",
    "zincrby; sorted-set; 1.2.0; O(log N); Adds an amount to the score of a sorted set member; key increment:double member",
    "zinter; sorted-set; 6.2.0; O(N*K) + O(M log M) worst case; Returns the members common to all the sorted sets, with combined scores; numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE <SUM | MIN | MAX>] [WITHSCORES]",
    "zintercard; sorted-set; 7.0.0; O(N*K) worst case; Counts the members common to all the sorted sets, up to a limit; numkeys key [key ...] [LIMIT limit]",
    "zinterstore; sorted-set; 2.0.0; O(N*K) + O(M log M) worst case; Stores the intersection of sorted sets in a key; destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE <SUM | MIN | MAX>]",
    "zlexcount; sorted-set; 2.8.9; O(log N); Counts the members of a sorted set within a lexicographical range; key min max",
    "zmpop; sorted-set; 7.0.0; O(K) + O(M log N) for K keys and M popped members; Pops the lowest or highest members of the first non-empty sorted set; numkeys key [key ...] <where: MIN | MAX> [COUNT count]",
    "zmscore; sorted-set; 6.2.0; O(N) in the number of members; Returns the scores of several sorted set members; key member [member ...]",
    "zpopmax; sorted-set; 5.0.0; O(M log N) for M popped; Removes and returns the highest-scored members of a sorted set; key [count]",
    "zpopmin; sorted-set; 5.0.0; O(M log N) for M popped; Removes and returns the lowest-scored members of a sorted set; key [count]",
    "zrandmember; sorted-set; 6.2.0; O(N) in the number of members returned; Returns random members of a sorted set, optionally with scores; key [options: count [WITHSCORES]]",
    "zrange; sorted-set; 1.2.0; O(log N + M) for M returned; Returns a range of a sorted set's members by rank, score or lexicographical order; key start:string stop:string [sortby: BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES]",
    "zrangebylex; sorted-set; 2.8.9; O(log N + M) for M returned; Returns the members of a sorted set within a lexicographical range; key min max [LIMIT offset count]",
    "zrangebyscore; sorted-set; 1.0.5; O(log N + M) for M returned; Returns the members of a sorted set with scores in a range; key min:double max:double [WITHSCORES] [LIMIT offset count]",
    "zrangestore; sorted-set; 6.2.0; O(log N + M) for M stored; Stores a range of a sorted set in a key; dst src min max [sortby: BYSCORE | BYLEX] [REV] [LIMIT offset count]",
    "zrank; sorted-set; 2.0.0; O(log N); Returns a member's rank in a sorted set, lowest score first; key member [WITHSCORE]",
    "zrem; sorted-set; 1.2.0; O(M log N) for M removed; Removes members from a sorted set; key member [member ...]",
    "zremrangebylex; sorted-set; 2.8.9; O(log N + M) for M removed; Removes the members of a sorted set within a lexicographical range; key min max",
    "zremrangebyrank; sorted-set; 2.0.0; O(log N + M) for M removed; Removes the members of a sorted set within a range of ranks; key start stop",
    "zremrangebyscore; sorted-set; 1.2.0; O(log N + M) for M removed; Removes the members of a sorted set with scores in a range; key min:double max:double",
    "zrevrange; sorted-set; 1.2.0; O(log N + M) for M returned; Returns a range of a sorted set's members by rank, highest score first; key start stop [WITHSCORES]",
    "zrevrangebylex; sorted-set; 2.8.9; O(log N + M) for M returned; Returns the members of a sorted set within a lexicographical range, in reverse order; key max min [LIMIT offset count]",
    "zrevrangebyscore; sorted-set; 2.2.0; O(log N + M) for M returned; Returns the members of a sorted set with scores in a range, highest first; key max:double min:double [WITHSCORES] [LIMIT offset count]",
    "zrevrank; sorted-set; 2.0.0; O(log N); Returns a member's rank in a sorted set, highest score first; key member [WITHSCORE]",
    "zscan; sorted-set; 2.8.0; O(1) per call, O(N) for a full iteration; Iterates over the members and scores of a sorted set; key cursor [MATCH pattern] [COUNT count]",
    "zscore; sorted-set; 1.2.0; O(1); Returns the score of a sorted set member; key member",
    "zunion; sorted-set; 6.2.0; O(N) + O(M log M) for N total and M result; Returns the members of any of the sorted sets, with combined scores; numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE <SUM | MIN | MAX>] [WITHSCORES]",
    "zunionstore; sorted-set; 2.0.0; O(N) + O(M log M) for N total and M result; Stores the union of sorted sets in a key; destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE <SUM | MIN | MAX>]",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::commands;

    #[test]
    fn every_line_parses_and_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for line in TABLE {
            let doc = parse_line(line).unwrap_or_else(|e| panic!("{e}"));
            assert!(names.insert(doc.name), "{} twice", doc.name);
            assert!(
                !doc.summary.is_empty() && !doc.complexity.is_empty(),
                "{line}"
            );
            assert!(doc.since.split('.').count() == 3, "{line}");
        }
        assert_eq!(all().len(), TABLE.len());
    }

    #[test]
    fn every_command_is_documented_and_every_doc_is_a_command() {
        for spec in commands() {
            assert!(
                get(spec.name).is_some(),
                "no COMMAND DOCS line for {}",
                spec.name
            );
        }
        for name in all().keys() {
            let top = name.split('|').next().unwrap_or_default();
            assert!(
                commands().iter().any(|s| s.name == top),
                "{name} is documented but not a command"
            );
        }
    }

    /// The syntax strings are checked against the arities the dispatch table enforces, which
    /// catches a forgotten or misplaced bracket.
    #[test]
    fn syntax_arity_matches_the_dispatch_table() {
        // QUIT accepts and ignores extra arguments, as in Redis; CL.THROTTLE checks its own (a module
        // command: redis-cell answers a wrong count with its usage line).
        const LENIENT: &[&str] = &["quit", "cl.throttle"];
        let wrong: Vec<String> = commands()
            .iter()
            .filter(|spec| subcommands(spec.name).is_empty() && !LENIENT.contains(&spec.name))
            .filter_map(|spec| {
                let doc = get(spec.name)?;
                (doc.arity() != spec.arity)
                    .then(|| format!("{}: syntax {} table {}", spec.name, doc.arity(), spec.arity))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn containers_list_their_subcommands() {
        let names: Vec<&str> = subcommands("object").iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            [
                "object|encoding",
                "object|freq",
                "object|help",
                "object|idletime",
                "object|refcount"
            ]
        );
        assert!(subcommands("get").is_empty());
        assert_eq!(get("memory|usage").map(Doc::arity), Some(-3));
        assert_eq!(get("config|set").map(Doc::arity), Some(-4));
    }
}

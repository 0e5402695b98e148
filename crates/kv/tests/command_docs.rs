//! COMMAND DOCS, INFO, LIST and GETKEYSANDFLAGS over the wire: every command is documented, the argument
//! trees have the shape redis-cli 7 builds its hints from, and RESP2 gets flat arrays where RESP3 gets maps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::collections::BTreeSet;

use common::Server;
use strata_kv::KvConfig;
use strata_resp::Frame;
use support::Raw;

fn text(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(b) | Frame::Simple(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// The pairs of a RESP3 map, or of a RESP2 flat array of key, value, key, value...
fn pairs(frame: &Frame) -> Vec<(String, Frame)> {
    match frame {
        Frame::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        Frame::Array(items) => {
            assert!(items.len().is_multiple_of(2), "odd flat map {items:?}");
            items
                .chunks(2)
                .map(|kv| (text(&kv[0]), kv[1].clone()))
                .collect()
        }
        other => panic!("expected a map, got {other:?}"),
    }
}

fn field(frame: &Frame, name: &str) -> Option<Frame> {
    pairs(frame)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn items(frame: &Frame) -> Vec<Frame> {
    match frame {
        Frame::Array(items) | Frame::Set(items) => items.clone(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// One argument in a compact form: `name:type`, then ` TOKEN`, `?` optional, `*` multiple, `+`
/// multiple_token, `#n` key_spec_index, and nested arguments in braces.
fn dump(arg: &Frame) -> String {
    let name = text(&field(arg, "name").unwrap());
    let kind = text(&field(arg, "type").unwrap());
    let mut out = format!("{name}:{kind}");
    if let Some(token) = field(arg, "token") {
        out.push_str(&format!(" {}", text(&token)));
    }
    if let Some(flags) = field(arg, "flags") {
        for flag in items(&flags) {
            // redis-cli requires status strings here.
            assert!(matches!(flag, Frame::Simple(_)), "flag {flag:?}");
            out.push_str(match text(&flag).as_str() {
                "optional" => "?",
                "multiple" => "*",
                "multiple_token" => "+",
                other => panic!("unknown flag {other}"),
            });
        }
    }
    if let Some(Frame::Integer(i)) = field(arg, "key_spec_index") {
        out.push_str(&format!("#{i}"));
    }
    if let Some(display) = field(arg, "display_text") {
        assert_eq!(text(&display), name);
    }
    if let Some(nested) = field(arg, "arguments") {
        let inner: Vec<String> = items(&nested).iter().map(dump).collect();
        out.push_str(&format!("{{{}}}", inner.join(", ")));
    }
    out
}

/// The hint redis-cli 7 shows for an argument list (its `cliAddArgument` rules).
fn hint(args: &[Frame], separator: &str) -> String {
    args.iter()
        .map(|arg| {
            let name = text(&field(arg, "name").unwrap());
            let kind = text(&field(arg, "type").unwrap());
            let flags: Vec<String> = field(arg, "flags")
                .map(|f| items(&f).iter().map(text).collect())
                .unwrap_or_default();
            let has = |f: &str| flags.iter().any(|x| x == f);
            let token = field(arg, "token").map(|t| text(&t)).unwrap_or_default();
            let nested = field(arg, "arguments").map(|a| items(&a));
            let repeat = match kind.as_str() {
                "oneof" => hint(&nested.unwrap(), "|"),
                "block" => hint(&nested.unwrap(), " "),
                "pure-token" => String::new(),
                _ => name,
            };
            let token_part = if !token.is_empty() && kind != "pure-token" {
                format!("{token} ")
            } else {
                token
            };
            let mut out = format!("{token_part}{repeat}");
            if has("multiple") {
                let again = if has("multiple_token") {
                    token_part.as_str()
                } else {
                    ""
                };
                out.push_str(&format!(" [{again}{repeat} ...]"));
            }
            if has("optional") {
                out = format!("[{out}]");
            }
            out
        })
        .collect::<Vec<_>>()
        .join(separator)
}

fn resp3(server: &Server) -> Raw {
    let mut raw = Raw::connect(server.addr());
    assert!(matches!(raw.call(&["HELLO", "3"]), Frame::Map(_)));
    raw
}

fn docs_of(raw: &mut Raw, name: &str) -> Frame {
    let reply = raw.call(&["COMMAND", "DOCS", name]);
    let mut entries = pairs(&reply);
    assert_eq!(entries.len(), 1, "{reply:?}");
    let (got, doc) = entries.remove(0);
    assert_eq!(got, name);
    doc
}

fn arg_dumps(doc: &Frame) -> Vec<String> {
    items(&field(doc, "arguments").unwrap())
        .iter()
        .map(dump)
        .collect()
}

#[test]
fn every_command_and_subcommand_is_documented() {
    let server = Server::start(KvConfig::default());
    let mut raw = resp3(&server);
    let Frame::Map(all) = raw.call(&["COMMAND", "DOCS"]) else {
        panic!("COMMAND DOCS is a map in RESP3");
    };
    let documented: BTreeSet<String> = all.iter().map(|(k, _)| text(k)).collect();
    let Frame::Integer(count) = raw.call(&["COMMAND", "COUNT"]) else {
        panic!("COMMAND COUNT");
    };
    assert_eq!(documented.len() as i64, count);
    let listed: BTreeSet<String> = items(&raw.call(&["COMMAND", "LIST"]))
        .iter()
        .map(text)
        .collect();
    let top: BTreeSet<String> = listed
        .iter()
        .filter(|n| !n.contains('|'))
        .cloned()
        .collect();
    assert_eq!(documented, top);

    let mut subcommands = BTreeSet::new();
    for (name, doc) in &all {
        let name = text(name);
        let check = |name: &str, doc: &Frame| {
            for key in ["summary", "since", "group", "complexity"] {
                let value = field(doc, key).unwrap_or_else(|| panic!("{name} has no {key}"));
                assert!(!text(&value).is_empty(), "{name}: empty {key}");
            }
            if let Some(args) = field(doc, "arguments") {
                // Every argument renders as redis-cli would, with no unknown type.
                hint(&items(&args), " ");
            }
        };
        check(&name, doc);
        if let Some(Frame::Map(subs)) = field(doc, "subcommands") {
            for (sub, sub_doc) in &subs {
                let sub = text(sub);
                assert!(sub.starts_with(&format!("{name}|")), "{sub}");
                check(&sub, sub_doc);
                subcommands.insert(sub);
            }
        }
    }
    let listed_subs: BTreeSet<String> = listed.into_iter().filter(|n| n.contains('|')).collect();
    assert_eq!(subcommands, listed_subs);
    for expected in [
        "client|list",
        "config|get",
        "object|encoding",
        "memory|usage",
    ] {
        assert!(subcommands.contains(expected), "{expected}");
    }
}

#[test]
fn argument_trees() {
    let server = Server::start(KvConfig::default());
    let mut raw = resp3(&server);

    let set = docs_of(&mut raw, "set");
    assert_eq!(text(&field(&set, "group").unwrap()), "string");
    assert_eq!(text(&field(&set, "since").unwrap()), "1.0.0");
    assert_eq!(
        arg_dumps(&set),
        [
            "key:key#0",
            "value:string",
            "condition:oneof?{nx:pure-token NX, xx:pure-token XX}",
            "get:pure-token GET?",
            "expiration:oneof?{seconds:integer EX, milliseconds:integer PX, \
             unix-time-seconds:unix-time EXAT, unix-time-milliseconds:unix-time PXAT, \
             keepttl:pure-token KEEPTTL}",
        ]
    );
    assert_eq!(
        hint(&items(&field(&set, "arguments").unwrap()), " "),
        "key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|\
         PXAT unix-time-milliseconds|KEEPTTL]"
    );

    assert_eq!(
        arg_dumps(&docs_of(&mut raw, "mset")),
        ["key_value:block*{key:key#0, value:string}"]
    );
    assert_eq!(
        arg_dumps(&docs_of(&mut raw, "zunionstore")),
        [
            "destination:key#0",
            "numkeys:integer",
            "key:key*#1",
            "weight:integer WEIGHTS?*",
            "sum-min-max:oneof AGGREGATE?{sum:pure-token SUM, min:pure-token MIN, max:pure-token MAX}",
        ]
    );
    let sort = docs_of(&mut raw, "sort");
    assert_eq!(
        arg_dumps(&sort),
        [
            "key:key#0",
            "pattern:pattern BY?",
            "limit:block LIMIT?{offset:integer, count:integer}",
            "pattern:pattern GET?*+",
            "order:oneof?{asc:pure-token ASC, desc:pure-token DESC}",
            "sorting:pure-token ALPHA?",
            "destination:key STORE?#1",
        ]
    );
    assert_eq!(
        hint(&items(&field(&sort, "arguments").unwrap()), " "),
        "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC|DESC] [ALPHA] \
         [STORE destination]"
    );
    assert_eq!(
        arg_dumps(&docs_of(&mut raw, "lmove")),
        [
            "source:key#0",
            "destination:key#1",
            "wherefrom:oneof{left:pure-token LEFT, right:pure-token RIGHT}",
            "whereto:oneof{left:pure-token LEFT, right:pure-token RIGHT}",
        ]
    );

    // A deprecated command says so; a command without arguments has no `arguments` entry.
    let getset = docs_of(&mut raw, "getset");
    assert_eq!(
        items(&field(&getset, "doc_flags").unwrap()),
        [Frame::simple("deprecated")]
    );
    assert!(field(&getset, "deprecated_since").is_some());
    assert!(field(&docs_of(&mut raw, "dbsize"), "arguments").is_none());

    // Subcommands, nested in their container or asked for by full name.
    let object = docs_of(&mut raw, "object");
    let subs = pairs(&field(&object, "subcommands").unwrap());
    let names: Vec<&str> = subs.iter().map(|(n, _)| n.as_str()).collect();
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
    assert_eq!(
        arg_dumps(&docs_of(&mut raw, "config|set")),
        ["parameter_value:block*{parameter:string, value:string}"]
    );

    // Unknown names are left out.
    let reply = raw.call(&["COMMAND", "DOCS", "nosuchcommand", "get", "get|nope"]);
    let names: Vec<String> = pairs(&reply).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["get"]);
}

#[test]
fn resp2_gets_flat_arrays() {
    let server = Server::start(KvConfig::default());
    let mut raw = Raw::connect(server.addr());
    let reply = raw.call(&["COMMAND", "DOCS", "set", "get"]);
    let Frame::Array(top) = &reply else {
        panic!("RESP2 docs are a flat array: {reply:?}");
    };
    assert_eq!(top.len(), 4);
    assert_eq!(text(&top[0]), "set");
    let Frame::Array(set) = &top[1] else {
        panic!("flat array per command");
    };
    assert_eq!(text(&set[0]), "summary");
    let args = items(&field(&top[1], "arguments").unwrap());
    let Frame::Array(condition) = &args[2] else {
        panic!("flat array per argument");
    };
    assert_eq!(text(&condition[0]), "name");
    // Flags arrive as an array of status strings, which redis-cli insists on.
    assert_eq!(
        field(&args[2], "flags").unwrap(),
        Frame::Array(vec![Frame::simple("optional")])
    );
    assert_eq!(dump(&args[0]), "key:key#0");
}

#[test]
fn command_info_and_list() {
    let server = Server::start(KvConfig::default());
    let mut raw = resp3(&server);

    let info = items(&raw.call(&[
        "COMMAND",
        "INFO",
        "get",
        "object|encoding",
        "get|key",
        "nope",
    ]));
    assert_eq!(info.len(), 4);
    let get = items(&info[0]);
    assert_eq!(get.len(), 10);
    assert_eq!(text(&get[0]), "get");
    let categories: Vec<String> = items(&get[6]).iter().map(text).collect();
    assert_eq!(categories, ["@read", "@string", "@fast"]);
    let encoding = items(&info[1]);
    assert_eq!(text(&encoding[0]), "object|encoding");
    assert_eq!(encoding[1], Frame::Integer(3));
    assert_eq!(
        &encoding[3..6],
        [Frame::Integer(2), Frame::Integer(2), Frame::Integer(1)]
    );
    assert!(matches!(info[2], Frame::Null | Frame::NullArray));
    assert!(matches!(info[3], Frame::Null | Frame::NullArray));

    // A container's entry lists its subcommands.
    let config = items(&items(&raw.call(&["COMMAND", "INFO", "config"]))[0]);
    let subs: Vec<String> = items(&config[9])
        .iter()
        .map(|s| text(&items(s)[0]))
        .collect();
    assert!(subs.contains(&"config|get".to_owned()), "{subs:?}");

    let list = |raw: &mut Raw, args: &[&str]| -> Vec<String> {
        let mut full = vec!["COMMAND", "LIST", "FILTERBY"];
        full.extend_from_slice(args);
        items(&raw.call(&full)).iter().map(text).collect()
    };
    let sorted = list(&mut raw, &["ACLCAT", "sortedset"]);
    assert!(sorted.contains(&"zadd".to_owned()) && !sorted.contains(&"set".to_owned()));
    let blocking = list(&mut raw, &["aclcat", "BLOCKING"]);
    assert!(blocking.contains(&"blpop".to_owned()) && !blocking.contains(&"lpop".to_owned()));
    assert!(list(&mut raw, &["ACLCAT", "no_such_category"]).is_empty());
    assert!(list(&mut raw, &["MODULE", "nomodule"]).is_empty());
    assert_eq!(list(&mut raw, &["PATTERN", "set"]), ["set"]);
    let config = list(&mut raw, &["PATTERN", "config|*re*"]);
    assert!(config.contains(&"config|resetstat".to_owned()));
    assert!(config.contains(&"config|rewrite".to_owned()));
    assert!(list(&mut raw, &["PATTERN", "cl*help"]).contains(&"client|help".to_owned()));
    assert!(matches!(
        raw.call(&["COMMAND", "LIST", "FILTERBY", "bad", "x"]),
        Frame::Error(_)
    ));

    let keys_and_flags = |raw: &mut Raw, args: &[&str]| -> Vec<String> {
        let mut full = vec!["COMMAND", "GETKEYSANDFLAGS"];
        full.extend_from_slice(args);
        items(&raw.call(&full))
            .iter()
            .map(|k| {
                let pair = items(k);
                let flags: Vec<String> = items(&pair[1]).iter().map(text).collect();
                format!("{} {}", text(&pair[0]), flags.join(" "))
            })
            .collect()
    };
    assert_eq!(
        keys_and_flags(&mut raw, &["set", "k1", "v1"]),
        ["k1 OW update"]
    );
    assert_eq!(
        keys_and_flags(&mut raw, &["lmove", "a", "b", "left", "right"]),
        ["a RW access delete", "b RW insert"]
    );
    assert_eq!(
        keys_and_flags(&mut raw, &["zunionstore", "d", "2", "a", "b"]),
        ["d OW update", "a RO access", "b RO access"]
    );
    assert_eq!(
        keys_and_flags(&mut raw, &["sort", "k", "store", "d"]),
        ["k RO access", "d OW update"]
    );
    assert_eq!(keys_and_flags(&mut raw, &["get", "k"]), ["k RO access"]);
    assert_eq!(
        items(&raw.call(&["COMMAND", "GETKEYS", "memory", "usage", "k"])),
        [Frame::bulk("k")]
    );
    assert!(matches!(
        raw.call(&["COMMAND", "GETKEYS", "ping"]),
        Frame::Error(_)
    ));
    let sort_ro = items(&items(&raw.call(&["COMMAND", "INFO", "sort_ro"]))[0]);
    assert!(items(&sort_ro[2]).contains(&Frame::simple("movablekeys")));
}

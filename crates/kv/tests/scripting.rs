//! EVAL / EVALSHA / SCRIPT and FUNCTION / FCALL through a real Redis client: type conversions both ways,
//! errors in Redis's formats, the sandbox, atomicity, BUSY and SCRIPT KILL, and libraries surviving a
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use redis::Value;
use strata_kv::{KvConfig, SystemClock};

fn eval(
    c: &mut redis::Connection,
    script: &str,
    keys: &[&str],
    args: &[&str],
) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
    cmd.query(c)
}

/// An array of bulk strings.
fn bulks(texts: &[&str]) -> Value {
    Value::Array(
        texts
            .iter()
            .map(|t| Value::BulkString(t.as_bytes().to_vec()))
            .collect(),
    )
}

fn err_text(r: redis::RedisResult<Value>) -> String {
    let e = r.expect_err("an error reply");
    match e.detail() {
        Some(d) => format!("{} {}", e.code().unwrap_or(""), d),
        None => e.to_string(),
    }
}

#[test]
fn conversions_from_lua_to_redis() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    assert_eq!(
        eval(&mut c, "return 100.5", &[], &[]).unwrap(),
        Value::Int(100)
    );
    assert_eq!(
        eval(&mut c, "return 'hello'", &[], &[]).unwrap(),
        Value::BulkString(b"hello".to_vec())
    );
    assert_eq!(
        eval(&mut c, "return true", &[], &[]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(eval(&mut c, "return false", &[], &[]).unwrap(), Value::Nil);
    assert_eq!(eval(&mut c, "return nil", &[], &[]).unwrap(), Value::Nil);
    assert_eq!(
        eval(&mut c, "return {1,2,3,'x',nil,4}", &[], &[]).unwrap(),
        Value::Array(vec![
            Value::Int(1),
            Value::Int(2),
            Value::Int(3),
            Value::BulkString(b"x".to_vec())
        ])
    );
    assert_eq!(
        eval(&mut c, "return {ok='fine'}", &[], &[]).unwrap(),
        Value::Okay.clone_or_status("fine")
    );
    assert_eq!(
        err_text(eval(&mut c, "return {err='MY failure'}", &[], &[])),
        "MY failure"
    );
    assert_eq!(
        err_text(eval(
            &mut c,
            "return redis.error_reply('My Error')",
            &[],
            &[]
        )),
        "My Error"
    );
    assert_eq!(
        eval(&mut c, "return redis.status_reply('DONE')", &[], &[]).unwrap(),
        Value::Okay.clone_or_status("DONE")
    );
    assert_eq!(
        eval(
            &mut c,
            "return {KEYS[1], ARGV[1], #KEYS, #ARGV}",
            &["k"],
            &["a", "b"]
        )
        .unwrap(),
        Value::Array(vec![
            Value::BulkString(b"k".to_vec()),
            Value::BulkString(b"a".to_vec()),
            Value::Int(1),
            Value::Int(2)
        ])
    );
}

trait Status {
    fn clone_or_status(&self, s: &str) -> Value;
}

impl Status for Value {
    fn clone_or_status(&self, s: &str) -> Value {
        if s == "OK" {
            Value::Okay
        } else {
            Value::SimpleString(s.to_owned())
        }
    }
}

#[test]
fn conversions_from_redis_to_lua() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: () = redis::cmd("SET").arg("n").arg("5").query(&mut c).unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("l")
        .arg("a")
        .arg("b")
        .query(&mut c)
        .unwrap();
    // Integer → number, bulk → string, missing → false, array → table, status → {ok=...}.
    let script = "
        local i = redis.call('incr', KEYS[1])
        local s = redis.call('get', KEYS[1])
        local m = redis.call('get', 'missing')
        local l = redis.call('lrange', KEYS[2], 0, -1)
        local st = redis.call('set', 'x', 'y')
        return {type(i), type(s), tostring(m), #l, st.ok}";
    assert_eq!(
        eval(&mut c, script, &["n", "l"], &[]).unwrap(),
        Value::Array(
            ["number", "string", "false"]
                .iter()
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .chain([Value::Int(2), Value::BulkString(b"OK".to_vec())])
                .collect()
        )
    );
    // A command error is raised by redis.call (Redis's format) and returned by redis.pcall.
    let e = err_text(eval(&mut c, "return redis.call('incr', 'l')", &[], &[]));
    assert!(e.starts_with("WRONGTYPE Operation against a key"), "{e}");
    assert!(e.contains("script: "), "{e}");
    assert!(e.ends_with("on @user_script:1."), "{e}");
    let v = eval(
        &mut c,
        "local r = redis.pcall('incr', 'l'); return type(r) .. ':' .. string.sub(r.err, 1, 9)",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(v, Value::BulkString(b"table:WRONGTYPE".to_vec()));
    // RESP3 conversions inside the script after setresp(3): a map and a null.
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let v = eval(
        &mut c,
        "redis.setresp(3); local m = redis.call('hgetall', 'h'); local n = redis.call('get', 'nope');
         return {m.map.f, tostring(n)}",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        v,
        Value::Array(vec![
            Value::BulkString(b"v".to_vec()),
            Value::BulkString(b"nil".to_vec())
        ])
    );
    // Numbers passed to commands use %.17g.
    let v = eval(
        &mut c,
        "redis.call('set', 'f', 0.1); return redis.call('get', 'f')",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(v, Value::BulkString(b"0.10000000000000001".to_vec()));
    // Numbers are passed as Redis formats them, with %.17g.
    let v = eval(
        &mut c,
        "redis.call('rpush', 'nums', 7, -3, 1e15, 2.5, 1e17); return redis.call('lrange', 'nums', 0, -1)",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(v, bulks(&["7", "-3", "1000000000000000", "2.5", "1e+17"]));
    // A call with as many arguments as the Lua stack holds still has room for its reply.
    let v = eval(
        &mut c,
        "local a = {} for i = 1, 7999 do a[i] = 1 end return redis.call('lpush', 'big', unpack(a))",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(v, Value::Int(7999));
    // Arguments of other types, and no arguments, are refused with Redis's messages.
    let v = eval(
        &mut c,
        "return {redis.pcall('set', 'k', {}).err, redis.pcall().err}",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        v,
        bulks(&[
            "ERR Lua redis lib command arguments must be strings or integers",
            "ERR Please specify at least one argument for this redis lib call",
        ])
    );
    // RESP3 types inside the script: a set, a double, a verbatim string; in RESP2 the double is a string.
    let _: () = redis::cmd("SADD").arg("s").arg("m").query(&mut c).unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("z")
        .arg("1.5")
        .arg("m")
        .query(&mut c)
        .unwrap();
    let v = eval(
        &mut c,
        "local two = redis.call('zscore', 'z', 'm')
         redis.setresp(3)
         local s = redis.call('smembers', 's')
         local d = redis.call('zscore', 'z', 'm')
         local info = redis.call('info', 'server')
         return {tostring(s.set.m), tostring(d.double), two, info.verbatim_string.format,
                 string.sub(info.verbatim_string.string, 1, 8)}",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(v, bulks(&["true", "1.5", "1.5", "txt", "# Server"]));
}

#[test]
fn errors_and_sandbox_match_redis() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    assert_eq!(
        err_text(
            eval(&mut c, "return 1", &["a", "b"], &[])
                .map(|_| Value::Nil)
                .and_then(|_| {
                    redis::cmd("EVAL")
                        .arg("return 1")
                        .arg(3)
                        .arg("a")
                        .query::<Value>(&mut c)
                })
        ),
        "ERR Number of keys can't be greater than number of args"
    );
    assert_eq!(
        err_text(
            redis::cmd("EVALSHA")
                .arg("ffffffffffffffffffffffffffffffffffffffff")
                .arg(0)
                .query(&mut c)
        ),
        "NOSCRIPT No matching script. Please use EVAL."
    );
    let e = err_text(eval(&mut c, "error('boom')", &[], &[]));
    assert!(e.starts_with("ERR user_script:1: boom script: "), "{e}");
    assert!(e.ends_with(", on @user_script:1."), "{e}");
    let e = err_text(eval(&mut c, "return a", &[], &[]));
    assert!(
        e.contains("Script attempted to access nonexistent global variable 'a'"),
        "{e}"
    );
    let e = err_text(eval(&mut c, "a = 10", &[], &[]));
    assert!(e.contains("Attempt to modify a readonly table"), "{e}");
    for trick in [
        "redis.call = function() return 1 end",
        "setmetatable(_G, {})",
        "_G.x = 1",
    ] {
        let e = err_text(eval(&mut c, trick, &[], &[]));
        assert!(
            e.contains("Attempt to modify a readonly table"),
            "{trick}: {e}"
        );
    }
    for missing in ["os", "io", "loadfile", "dofile", "print", "require"] {
        let e = err_text(eval(&mut c, &format!("return {missing}"), &[], &[]));
        assert!(e.contains("nonexistent global variable"), "{missing}: {e}");
    }
    // MULTI, and FUNCTION's subcommands (flagged `noscript` each, as in Redis, the container not).
    for refused in [
        "return redis.call('multi')",
        "return redis.call('function', 'list')",
        "return redis.call('function', 'flush')",
    ] {
        let e = err_text(eval(&mut c, refused, &[], &[]));
        assert!(
            e.contains("This Redis command is not allowed from script"),
            "{refused}: {e}"
        );
    }
    let e = err_text(eval(&mut c, "return redis.call('nosuch')", &[], &[]));
    assert!(
        e.contains("Unknown Redis command called from script"),
        "{e}"
    );
    let e = err_text(
        redis::cmd("EVAL_RO")
            .arg("return redis.call('set','k','v')")
            .arg(0)
            .query(&mut c),
    );
    assert!(
        e.starts_with("ERR Write commands are not allowed from read-only scripts."),
        "{e}"
    );
    let e = err_text(eval(&mut c, "return (", &[], &[]));
    assert!(
        e.starts_with("ERR Error compiling script (new function): user_script:1:"),
        "{e}"
    );
    // Keys not declared in KEYS work, as Redis allows (BullMQ relies on it).
    assert_eq!(
        eval(
            &mut c,
            "redis.call('set', 'undeclared', '1'); return redis.call('get', 'undeclared')",
            &[],
            &[]
        )
        .unwrap(),
        Value::BulkString(b"1".to_vec())
    );
    // Blocking commands are refused as in Redis 7 (noscript).
    let e = err_text(eval(&mut c, "return redis.call('blpop', 'x', 0)", &[], &[]));
    assert!(e.contains("not allowed from script"), "{e}");
}

#[test]
fn script_cache_and_libraries() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.sha1hex('')")
        .query(&mut c)
        .unwrap();
    assert_eq!(sha.len(), 40);
    let v: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, vec![1, 0]);
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, vec![0]);
    let v: String = eval(&mut c, "return cjson.encode({a={1,2,3}})", &[], &[])
        .map(|v| redis::from_redis_value(v).unwrap())
        .unwrap();
    assert_eq!(v, r#"{"a":[1,2,3]}"#);
    let v = eval(
        &mut c,
        "return cjson.decode('[1,\"x\",{\"k\":2}]')[3].k",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(v, Value::Int(2));
    let v = eval(&mut c, "return bit.bor(1,2,4)", &[], &[]).unwrap();
    assert_eq!(v, Value::Int(7));
}

/// The `struct` library, with replies and errors as redis-server 7.0 gives them.
#[test]
fn struct_library_packs_as_redis_does() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let bulk = |b: &[u8]| Value::BulkString(b.to_vec());
    let cases: &[(&str, Value)] = &[
        ("return struct.pack('>I2', 258)", bulk(b"\x01\x02")),
        (
            "return struct.pack('!4 b i', 1, 2)",
            bulk(b"\x01\0\0\0\x02\0\0\0"),
        ),
        (
            "return struct.pack('bxxh', 1, 300)",
            bulk(b"\x01\0\0\x2c\x01"),
        ),
        ("return struct.pack('s', 'abc')", bulk(b"abc\0")),
        ("return struct.pack('c0', 'hello')", bulk(b"hello")),
        ("return struct.pack('>d', 1.5)", bulk(&1.5f64.to_be_bytes())),
        ("return struct.size('!4 b i')", Value::Int(8)),
        ("return struct.size('bhld')", Value::Int(19)),
        (
            "return {struct.unpack('<i4', struct.pack('<i4', -2))}",
            Value::Array(vec![Value::Int(-2), Value::Int(5)]),
        ),
        (
            "return {struct.unpack('>i3', '\\255\\255\\254')}",
            Value::Array(vec![Value::Int(-2), Value::Int(4)]),
        ),
        (
            "return {struct.unpack('Bc0', '\\3abcdef')}",
            Value::Array(vec![bulk(b"abc"), Value::Int(5)]),
        ),
        (
            "return {struct.unpack('s', 'abc\\0def')}",
            Value::Array(vec![bulk(b"abc"), Value::Int(5)]),
        ),
        (
            "return {struct.unpack('i', 'abcdabcd', 5)}",
            Value::Array(vec![Value::Int(0x6463_6261), Value::Int(9)]),
        ),
    ];
    for (script, want) in cases {
        assert_eq!(&eval(&mut c, script, &[], &[]).unwrap(), want, "{script}");
    }
    let errors = [
        (
            "return struct.pack('i33', 1)",
            "user_script:1: integral size 33 is larger than limit of 32",
        ),
        (
            "return struct.pack('!3i', 1)",
            "user_script:1: alignment 3 is not a power of 2",
        ),
        (
            "return struct.pack('z', 1)",
            "bad argument #1 to 'pack' (invalid format option 'z')",
        ),
        (
            "return struct.pack('i')",
            "bad argument #2 to 'pack' (number expected, got nil)",
        ),
        (
            "return struct.pack('c20', 'hello')",
            "bad argument #3 to 'pack' (string too short)",
        ),
        (
            "return {struct.unpack('i', 'ab')}",
            "bad argument #2 to 'unpack' (data string too short)",
        ),
        (
            "return {struct.unpack('i', 'abcd', 0)}",
            "bad argument #3 to 'unpack' (offset must be 1 or greater)",
        ),
        (
            "return {struct.unpack('s', 'abc')}",
            "unfinished string in data",
        ),
        (
            "return {struct.unpack('c0', 'abc')}",
            "format 'c0' needs a previous size",
        ),
        (
            "return struct.size('s')",
            "bad argument #1 to 'size' (option 's' has no fixed size)",
        ),
    ];
    for (script, want) in errors {
        let e = err_text(eval(&mut c, script, &[], &[]));
        assert!(e.contains(want), "{script}: {e}");
    }
    let e = err_text(eval(&mut c, "struct.pack = nil", &[], &[]));
    assert!(e.contains("Attempt to modify a readonly table"), "{e}");
}

/// Inputs that crash a stock Lua 5.1 or overflow a recursive decoder get errors, as Redis's patched
/// libraries give, and the server keeps serving.
#[test]
fn hostile_library_inputs_get_errors_not_crashes() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    for (lo, hi) in [
        ("-2", "2147483647"),
        ("0", "2147483647"),
        ("-2147483648", "-2"),
    ] {
        let script = format!("return {{unpack({{1,2,3}}, {lo}, {hi})}}");
        let e = err_text(eval(&mut c, &script, &[], &[]));
        assert!(e.contains("too many results to unpack"), "{script}: {e}");
    }
    let empty = eval(&mut c, "return {unpack({1,2,3}, -1, -2)}", &[], &[]).unwrap();
    assert_eq!(empty, Value::Array(vec![]));
    let counted = eval(
        &mut c,
        "return {select('#', unpack({1,2,3}, -1, 5)), unpack({1,2,3}, '2')}",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        counted,
        Value::Array(vec![Value::Int(7), Value::Int(2), Value::Int(3)])
    );
    let e = err_text(eval(&mut c, "local x = unpack(nil) return x", &[], &[]));
    assert!(
        e.contains("user_script:1: bad argument #1 to 'unpack' (table expected, got nil)"),
        "{e}"
    );
    let e = err_text(eval(&mut c, "return unpack({}, 1, {})", &[], &[]));
    assert!(
        e.contains("bad argument #3 to 'unpack' (number expected, got table)"),
        "{e}"
    );
    let many = "local a = {} for i = 1, 7999 do a[i] = 1 end return select('#', unpack(a))";
    assert_eq!(eval(&mut c, many, &[], &[]).unwrap(), Value::Int(7999));
    let e = err_text(eval(
        &mut c,
        "getmetatable('').__index = function() return 1 end",
        &[],
        &[],
    ));
    assert!(e.contains("Attempt to modify a readonly table"), "{e}");
    let e = err_text(eval(&mut c, "getmetatable('').__index.upper = 1", &[], &[]));
    assert!(e.contains("Attempt to modify a readonly table"), "{e}");
    let e = err_text(eval(&mut c, "getmetatable(1).__index = 1", &[], &[]));
    assert!(e.contains("attempt to index a nil value"), "{e}");
    let sub = eval(&mut c, "return ('abc'):sub(2, 2)", &[], &[]).unwrap();
    assert_eq!(sub, Value::BulkString(b"b".to_vec()));
    let deep_msgpack =
        "return cmsgpack.unpack(string.rep(string.char(0x91), 100000) .. string.char(1))";
    let e = err_text(eval(&mut c, deep_msgpack, &[], &[]));
    assert!(e.contains("too deeply nested"), "{e}");
    let deep_map =
        "return cmsgpack.unpack(string.rep(string.char(0x81, 1), 100000) .. string.char(1))";
    let e = err_text(eval(&mut c, deep_map, &[], &[]));
    assert!(e.contains("too deeply nested"), "{e}");
    let nested = "return #cmsgpack.pack(cmsgpack.unpack(string.rep(string.char(0x91), 999) .. string.char(1)))";
    assert_eq!(eval(&mut c, nested, &[], &[]).unwrap(), Value::Int(17));
    let deep_json = "return cjson.decode(string.rep('[', 100000) .. string.rep(']', 100000))";
    let e = err_text(eval(&mut c, deep_json, &[], &[]));
    assert!(e.contains("too many nested data structures"), "{e}");
    let deep_reply = "local t = {} local c = t for i=1,1000000 do c[1] = {} c = c[1] end return t";
    // Nested arrays down to an error element, as Redis replies; deeper than the client parses.
    assert!(eval(&mut c, deep_reply, &[], &[]).is_err());
    let mut c = server.client();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn functions_load_call_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let code = "#!lua name=mylib\n\
        redis.register_function('incr_by', function(keys, args) return redis.call('incrby', keys[1], args[1]) end)\n\
        redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}";
    {
        let server = Server::start_in(dir.path(), KvConfig::default(), Arc::new(SystemClock));
        let mut c = server.client();
        let name: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg(code)
            .query(&mut c)
            .unwrap();
        assert_eq!(name, "mylib");
        let e = err_text(redis::cmd("FUNCTION").arg("LOAD").arg(code).query(&mut c));
        assert_eq!(e, "ERR Library 'mylib' already exists");
        let n: i64 = redis::cmd("FCALL")
            .arg("incr_by")
            .arg(1)
            .arg("n")
            .arg(5)
            .query(&mut c)
            .unwrap();
        assert_eq!(n, 5);
        let v: String = redis::cmd("FCALL_RO")
            .arg("peek")
            .arg(1)
            .arg("n")
            .query(&mut c)
            .unwrap();
        assert_eq!(v, "5");
        let e = err_text(
            redis::cmd("FCALL_RO")
                .arg("incr_by")
                .arg(1)
                .arg("n")
                .arg(1)
                .query(&mut c),
        );
        assert!(
            e.contains("Can not execute a script with write flag using *_ro command."),
            "{e}"
        );
        let e = err_text(redis::cmd("FCALL").arg("nope").arg(0).query(&mut c));
        assert_eq!(e, "ERR Function not found");
    }
    let server = Server::start_in(dir.path(), KvConfig::default(), Arc::new(SystemClock));
    let mut c = server.client();
    let n: i64 = redis::cmd("FCALL")
        .arg("incr_by")
        .arg(1)
        .arg("n")
        .arg(2)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 7);
    let list: Value = redis::cmd("FUNCTION").arg("LIST").query(&mut c).unwrap();
    let text = format!("{list:?}");
    assert!(
        text.contains("mylib") && text.contains("no-writes"),
        "{text}"
    );
    let _: () = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg("mylib")
        .query(&mut c)
        .unwrap();
    let e = err_text(
        redis::cmd("FCALL")
            .arg("incr_by")
            .arg(1)
            .arg("n")
            .arg(2)
            .query(&mut c),
    );
    assert_eq!(e, "ERR Function not found");
}

#[test]
fn scripts_are_atomic_and_busy_scripts_can_be_killed() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(50)
        .query(&mut c)
        .unwrap();
    let addr = server.addr();
    let mut busy = redis::cmd("EVAL");
    busy.arg("local a = 0 while true do a = a + 1 end").arg(0);
    let runner = spawn_query(&server, busy);
    // Other clients get BUSY once the threshold passes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r: redis::RedisResult<String> = redis::cmd("PING").query(&mut c);
        match r {
            Err(e) if e.code() == Some("BUSY") => break,
            _ => assert!(Instant::now() < deadline, "never BUSY"),
        }
    }
    let _: () = redis::cmd("SCRIPT").arg("KILL").query(&mut c).unwrap();
    let result = runner.join().unwrap();
    let e = err_text(result);
    assert!(e.contains("Script killed by user with SCRIPT KILL"), "{e}");
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let e = err_text(redis::cmd("SCRIPT").arg("KILL").query(&mut c));
    assert_eq!(e, "NOTBUSY No scripts in execution right now.");

    // A script that wrote cannot be killed.
    let runner = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://{addr}"))
            .unwrap()
            .get_connection()
            .unwrap();
        eval(
            &mut c,
            "redis.call('set', 'w', 1) local t = redis.call('time')[1] + 0 while redis.call('time')[1] + 0 < t + 2 do end return 1",
            &[],
            &[],
        )
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r: redis::RedisResult<String> = redis::cmd("SCRIPT").arg("KILL").query(&mut c);
        match r {
            Err(e) if e.code() == Some("UNKILLABLE") => break,
            _ => assert!(Instant::now() < deadline, "never UNKILLABLE"),
        }
    }
    assert_eq!(runner.join().unwrap().unwrap(), Value::Int(1));

    // Atomicity: concurrent INCR-by-script from several clients never loses an update. (Back to the
    // default threshold: a loaded test machine may stall a short script past 50 ms.)
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(5000)
        .query(&mut c)
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = redis::Client::open(format!("redis://{addr}")).unwrap().get_connection().unwrap();
                for _ in 0..100 {
                    eval(
                        &mut c,
                        "local v = tonumber(redis.call('get', KEYS[1]) or '0'); redis.call('set', KEYS[1], v + 1)",
                        &["counter"],
                        &[],
                    )
                    .expect("the script runs");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n: i64 = redis::cmd("GET").arg("counter").query(&mut c).unwrap();
    assert_eq!(n, 400);
}

/// One line of an INFO section, e.g. `cmdstat_eval` or `errorstat_ERR`.
fn info_line(c: &mut redis::Connection, section: &str, name: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn errors_inside_scripts_are_counted_once_where_they_happen() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let reset = |c: &mut redis::Connection| {
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(c).unwrap();
    };
    // A command failing inside redis.call: its own failed call and error; EVAL fails without counting
    // the error again.
    reset(&mut c);
    let e = err_text(eval(&mut c, "return redis.call('select', 99)", &[], &[]));
    assert!(e.starts_with("ERR DB index is out of range"), "{e}");
    assert_eq!(info_line(&mut c, "errorstats", "errorstat_ERR"), "count=1");
    assert!(
        info_line(&mut c, "commandstats", "cmdstat_select")
            .contains("rejected_calls=0,failed_calls=1")
    );
    let evals = info_line(&mut c, "commandstats", "cmdstat_eval");
    assert!(
        evals.starts_with("calls=1,") && evals.contains("rejected_calls=0,failed_calls=1"),
        "{evals}"
    );
    // A command refused inside a script (a write while replicas are required) is a rejected call.
    reset(&mut c);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("min-replicas-to-write")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let ok = eval(
        &mut c,
        "local t = redis.pcall('set', KEYS[1], 'v') if t['err'] then return 1 end return 0",
        &["x"],
        &[],
    )
    .unwrap();
    assert_eq!(ok, Value::Int(1));
    assert_eq!(
        info_line(&mut c, "errorstats", "errorstat_NOREPLICAS"),
        "count=1"
    );
    let sets = info_line(&mut c, "commandstats", "cmdstat_set");
    assert!(
        sets.starts_with("calls=0,") && sets.contains("rejected_calls=1,failed_calls=0"),
        "{sets}"
    );
    let evals = info_line(&mut c, "commandstats", "cmdstat_eval");
    assert!(evals.contains("rejected_calls=0,failed_calls=0"), "{evals}");
    // An error the script raises itself is the script's.
    reset(&mut c);
    let e = err_text(eval(
        &mut c,
        "return redis.error_reply('MY failure')",
        &[],
        &[],
    ));
    assert!(e.starts_with("MY failure"), "{e}");
    assert_eq!(info_line(&mut c, "errorstats", "errorstat_MY"), "count=1");
}

/// Redis freezes time for a script: a key that expires while the script runs stays visible to it until
/// the script returns, so its commands agree with each other.
#[test]
fn time_is_frozen_while_a_script_runs() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let script = r#"
        redis.call('SET', KEYS[1], 'v', 'PX', 2)
        local function ms() local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000) end
        local start = ms()
        while ms() - start < 20 do end
        return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('EXISTS', KEYS[1])}
    "#;
    let r = eval(&mut c, script, &["frozen"], &[]).unwrap();
    assert_eq!(
        r,
        Value::Array(vec![
            Value::BulkString(b"v".to_vec()),
            Value::Int(2),
            Value::Int(1)
        ])
    );
    // Outside the script the 2 ms have long passed.
    let gone: Option<String> = redis::cmd("GET").arg("frozen").query(&mut c).unwrap();
    assert_eq!(gone, None);
}

/// Sends `command` on a connection of its own, from a thread of its own.
fn spawn_query(
    server: &Server,
    command: redis::Cmd,
) -> std::thread::JoinHandle<redis::RedisResult<Value>> {
    let addr = server.addr();
    std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://{addr}"))
            .unwrap()
            .get_connection()
            .unwrap();
        command.query::<Value>(&mut c)
    })
}

/// Runs `command` on a connection of its own, kills it with `kill` (`SCRIPT` or `FUNCTION`) once it is
/// busy, and returns the error the runner got.
fn run_and_kill(
    server: &Server,
    c: &mut redis::Connection,
    command: redis::Cmd,
    kill: &str,
) -> String {
    let runner = spawn_query(server, command);
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis::cmd(kill).arg("KILL").query::<String>(c).is_err() {
        assert!(Instant::now() < deadline, "{kill} KILL never stopped it");
    }
    err_text(runner.join().unwrap())
}

/// Sets `busy-reply-threshold` in milliseconds.
fn busy_after(c: &mut redis::Connection, ms: u64) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(ms)
        .query(c)
        .unwrap();
}

/// The interpreter's watchdog hook stays installed between runs; after a kill it must be armed again, so a
/// second busy script is as killable as the first.
#[test]
fn a_second_busy_script_can_be_killed_too() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    busy_after(&mut c, 50);
    for round in 0..2 {
        let mut busy = redis::cmd("EVAL");
        busy.arg("local a = 0 while true do a = a + 1 end").arg(0);
        let e = run_and_kill(&server, &mut c, busy, "SCRIPT");
        assert!(e.contains("Script killed by user"), "round {round}: {e}");
        // A short script runs normally in between.
        assert_eq!(eval(&mut c, "return 7", &[], &[]).unwrap(), Value::Int(7));
    }
}

/// FUNCTION LOAD runs library code under a timeout hook of its own, which replaces the watchdog: a busy
/// function called after a load must still be killable (regression: Redis's `unit/functions` hung on
/// "FUNCTION - test function kill" when the watchdog was not put back).
#[test]
fn a_busy_function_loaded_after_a_call_can_be_killed() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    busy_after(&mut c, 10);
    let load = |c: &mut redis::Connection, body: &str| {
        let code = format!("#!lua name=lib\nredis.register_function('f', function() {body} end)");
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(code)
            .query(c)
            .unwrap();
    };
    load(&mut c, "return 1");
    let one: i64 = redis::cmd("FCALL").arg("f").arg(0).query(&mut c).unwrap();
    assert_eq!(one, 1);
    load(&mut c, "local a = 1 while true do a = a + 1 end");
    let mut busy = redis::cmd("FCALL");
    busy.arg("f").arg(0);
    let e = run_and_kill(&server, &mut c, busy, "FUNCTION");
    assert!(e.contains("killed"), "{e}");
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}

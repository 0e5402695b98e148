//! CLIENT subcommands against the registry of every connection, per-command statistics, the slow log,
//! CLIENT PAUSE.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::thread;

use common::Server;
use strata_kv::KvConfig;
use support::{info_field, wait_until};

fn client_list(con: &mut redis::Connection, extra: &[&str]) -> String {
    redis::cmd("CLIENT")
        .arg("LIST")
        .arg(extra)
        .query(con)
        .unwrap()
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn client_names_list_and_info() {
    let server = Server::start(KvConfig::default());
    let mut a = server.client();
    let mut b = server.client();
    let e = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("has space")
        .query::<()>(&mut a)
        .unwrap_err();
    assert_eq!(
        e.detail(),
        Some("Client names cannot contain spaces, newlines or special characters.")
    );
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("alpha")
        .query(&mut a)
        .unwrap();
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut a).unwrap();
    assert_eq!(name.as_deref(), Some("alpha"));
    let _: () = redis::cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("mylib")
        .query(&mut b)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut b).unwrap();
    let b_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut b).unwrap();

    let list = client_list(&mut a, &[]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines.len() >= 2, "{list}");
    let alpha = lines.iter().find(|l| field(l, "name") == "alpha").unwrap();
    assert_eq!(field(alpha, "cmd"), "client|list");
    assert_eq!(field(alpha, "flags"), "N");
    let other = lines
        .iter()
        .find(|l| field(l, "id") == b_id.to_string())
        .unwrap();
    assert_eq!(field(other, "db"), "3");
    assert_eq!(field(other, "lib-name"), "mylib");
    assert_eq!(field(other, "cmd"), "client|id");

    let only_b = client_list(&mut a, &["ID", &b_id.to_string()]);
    assert_eq!(only_b.lines().count(), 1);
    assert_eq!(client_list(&mut a, &["TYPE", "pubsub"]), "");
    let e = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("bogus")
        .query::<String>(&mut a)
        .unwrap_err();
    assert_eq!(e.detail(), Some("Unknown client type 'bogus'"));

    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut a).unwrap();
    assert_eq!(field(&info, "name"), "alpha");
    assert_eq!(field(info.trim_end(), "cmd"), "client|info");
    let _: () = redis::cmd("CLIENT")
        .arg("NO-EVICT")
        .arg("on")
        .query(&mut a)
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("NO-TOUCH")
        .arg("on")
        .query(&mut a)
        .unwrap();
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut a).unwrap();
    assert_eq!(field(&info, "flags"), "eT");
}

#[test]
fn client_kill_by_id_address_and_old_form() {
    let server = Server::start(KvConfig::default());
    let mut admin = server.client();
    let mut victim = server.client();
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut victim).unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut admin)
        .unwrap();
    assert_eq!(killed, 1);
    assert!(redis::cmd("PING").query::<String>(&mut victim).is_err());

    let mut victim = server.client();
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut victim).unwrap();
    let addr = field(&info, "addr").to_owned();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg(&addr)
        .query(&mut admin)
        .unwrap();
    assert!(redis::cmd("PING").query::<String>(&mut victim).is_err());
    let e = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("10.0.0.1:1")
        .query::<()>(&mut admin)
        .unwrap_err();
    assert_eq!(e.detail(), Some("No such client"));

    // SKIPME defaults to yes.
    let my_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut admin).unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(my_id)
        .query(&mut admin)
        .unwrap();
    assert_eq!(killed, 0);
    for (args, message) in [
        (vec!["ID", "x"], "client-id should be greater than 0"),
        (vec!["USER", "nobody"], "No such user 'nobody'"),
        (vec!["TYPE", "weird"], "Unknown client type 'weird'"),
        (vec!["SKIPME", "maybe"], "syntax error"),
    ] {
        let e = redis::cmd("CLIENT")
            .arg("KILL")
            .arg(&args)
            .query::<i64>(&mut admin)
            .unwrap_err();
        assert_eq!(e.detail(), Some(message), "{args:?}");
    }
    // The killed connections leave the registry.
    wait_until("killed clients to leave", || {
        client_list(&mut admin, &[]).lines().count() == 1
    });
    assert_eq!(info_field(&mut admin, "clients", "connected_clients"), 1);
}

#[test]
fn commandstats_errorstats_and_resetstat() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET").arg("s").arg("v").query(&mut con).unwrap();
    let _: String = redis::cmd("GET").arg("s").query(&mut con).unwrap();
    assert!(redis::cmd("GET").query::<String>(&mut con).is_err());
    assert!(
        redis::cmd("LPUSH")
            .arg("s")
            .arg("x")
            .query::<i64>(&mut con)
            .is_err()
    );
    assert!(redis::cmd("NOSUCH").query::<i64>(&mut con).is_err());
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    let line = |name: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .unwrap_or_else(|| panic!("no cmdstat_{name} in {stats}"))
            .to_owned()
    };
    let get = line("get");
    assert!(get.starts_with("cmdstat_get:calls=1,usec="), "{get}");
    assert!(get.ends_with(",rejected_calls=1,failed_calls=0"), "{get}");
    assert!(get.contains(",usec_per_call="), "{get}");
    assert!(line("lpush").ends_with("rejected_calls=0,failed_calls=1"));
    let errors: String = redis::cmd("INFO")
        .arg("errorstats")
        .query(&mut con)
        .unwrap();
    assert!(errors.contains("errorstat_ERR:count=2"), "{errors}");
    assert!(errors.contains("errorstat_WRONGTYPE:count=1"), "{errors}");
    let everything: String = redis::cmd("INFO")
        .arg("everything")
        .query(&mut con)
        .unwrap();
    for section in [
        "# Clients",
        "# Stats",
        "# Commandstats",
        "# Errorstats",
        "# Keyspace",
    ] {
        assert!(everything.contains(section), "{section}");
    }
    assert!(info_field(&mut con, "stats", "total_commands_processed") >= 5);
    info_field(&mut con, "stats", "instantaneous_ops_per_sec");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    assert!(!stats.contains("cmdstat_get"), "{stats}");
    let errors: String = redis::cmd("INFO")
        .arg("errorstats")
        .query(&mut con)
        .unwrap();
    assert!(!errors.contains("errorstat_"), "{errors}");
}

#[test]
fn slowlog_records_commands_over_the_threshold() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-*")
        .query(&mut con)
        .unwrap();
    assert!(
        cfg.windows(2)
            .any(|w| w == ["slowlog-log-slower-than", "10000"]),
        "{cfg:?}"
    );
    assert!(
        cfg.windows(2).any(|w| w == ["slowlog-max-len", "128"]),
        "{cfg:?}"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("slowpoke")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1)
        .query(&mut con)
        .unwrap();
    assert_eq!(entries.len(), 1);
    let redis::Value::Array(entry) = &entries[0] else {
        panic!("entry is not an array: {entries:?}");
    };
    assert_eq!(entry.len(), 6);
    assert_eq!(
        entry[3],
        redis::Value::Array(vec![
            redis::Value::BulkString(b"SET".to_vec()),
            redis::Value::BulkString(b"k".to_vec()),
            redis::Value::BulkString(b"v".to_vec()),
        ])
    );
    assert_eq!(entry[5], redis::Value::BulkString(b"slowpoke".to_vec()));
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut con).unwrap();
    assert!(len >= 3);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-max-len")
        .arg(2)
        .query(&mut con)
        .unwrap();
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut con).unwrap();
    assert!(len <= 2);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(-1)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut con).unwrap();
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut con).unwrap();
    assert_eq!(len, 0);
    let e = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-2)
        .query::<redis::Value>(&mut con)
        .unwrap_err();
    assert_eq!(
        e.detail(),
        Some("count should be greater than or equal to -1")
    );
}

#[test]
fn client_pause_write_holds_writes_but_not_reads() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=ro\nredis.register_function{function_name='ro', callback=function() return 'hi' end, flags={'no-writes'}}")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(60_000)
        .arg("WRITE")
        .query(&mut con)
        .unwrap();
    let mut writer = server.client();
    let write = thread::spawn(move || {
        redis::cmd("SET")
            .arg("paused")
            .arg("1")
            .query::<()>(&mut writer)
            .unwrap();
    });
    let mut reader = server.client();
    let v: Option<String> = redis::cmd("GET").arg("paused").query(&mut reader).unwrap();
    assert_eq!(v, None);
    // Scripts declared `no-writes` run during a write pause, as in Redis: EVAL with the shebang flag,
    // EVALSHA of such a cached script, and FCALL of a no-writes function.
    let ro_body = "#!lua flags=no-writes\nreturn redis.call('get', 'x') or 'none'";
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(ro_body)
        .query(&mut reader)
        .unwrap();
    for (command, target, want) in [
        ("EVAL", ro_body, "none"),
        ("EVALSHA", sha.as_str(), "none"),
        ("FCALL", "ro", "hi"),
    ] {
        let reply: String = redis::cmd(command)
            .arg(target)
            .arg(0)
            .query(&mut reader)
            .unwrap();
        assert_eq!(reply, want, "{command}");
    }
    // FUNCTION LIST is not a write; FUNCTION LOAD is, and waits (its subcommand's flags count).
    let listed: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut reader)
        .unwrap();
    assert_eq!(listed.len(), 1);
    let mut loader = server.client();
    let load = thread::spawn(move || {
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("#!lua name=later\nredis.register_function('later', function() return 1 end)")
            .query::<String>(&mut loader)
            .unwrap()
    });
    // Held like the SET: both count as blocked clients while the pause lasts.
    wait_until("the SET and the FUNCTION LOAD to be held", || {
        info_field(&mut reader, "clients", "blocked_clients") == 2
    });
    let listed: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut reader)
        .unwrap();
    assert_eq!(listed.len(), 1, "the held FUNCTION LOAD has not run");
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut con).unwrap();
    assert_eq!(load.join().unwrap(), "later");
    write.join().unwrap();
    let v: Option<String> = redis::cmd("GET").arg("paused").query(&mut reader).unwrap();
    assert_eq!(v.as_deref(), Some("1"));
    let e = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(-1)
        .query::<()>(&mut con)
        .unwrap_err();
    assert_eq!(e.detail(), Some("timeout is negative"));
}

/// An idle connection gives its buffers back after 2 s without a command (CLIENT LIST shows qbuf and
/// qbuf-free at 0, as Redis shows an idle client's freed query buffer), and serves its next command as
/// before, a large one included.
#[test]
fn idle_connections_release_their_buffers() {
    let server = Server::start(KvConfig::default());
    let mut idle = server.client();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("idler")
        .query(&mut idle)
        .unwrap();
    let mut watcher = server.client();
    let idler = |watcher: &mut redis::Connection| -> String {
        client_list(watcher, &[])
            .lines()
            .find(|l| l.contains("name=idler"))
            .unwrap()
            .to_owned()
    };
    assert_ne!(field(&idler(&mut watcher), "qbuf-free"), "0");
    wait_until("the idle connection to release its buffers", || {
        field(&idler(&mut watcher), "qbuf-free") == "0"
    });
    let big = "x".repeat(300_000);
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut idle)
        .unwrap();
    let back: String = redis::cmd("GET").arg("big").query(&mut idle).unwrap();
    assert_eq!(back.len(), big.len());
    assert_ne!(field(&idler(&mut watcher), "qbuf-free"), "0");
}

/// At shutdown an idle connection closes at once, while one that has sent half a command may finish it
/// and gets its reply first; CLIENT KILL closes an idle connection at once.
#[test]
fn shutdown_closes_idle_connections_and_lets_a_half_sent_command_finish() {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::time::Duration;
    let server = Server::start(KvConfig::default());
    let connect = || {
        let s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    let mut admin = server.client();
    // Killed while idle: the connection ends without a reply.
    let mut victim = connect();
    victim.write_all(b"CLIENT SETNAME victim\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = victim.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+OK\r\n");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("SKIPME")
        .arg("yes")
        .arg("ID")
        .arg(
            redis::cmd("CLIENT")
                .arg("LIST")
                .query::<String>(&mut admin)
                .unwrap()
                .lines()
                .find(|l| l.contains("name=victim"))
                .and_then(|l| l.split(' ').next())
                .and_then(|id| id.strip_prefix("id="))
                .unwrap(),
        )
        .query(&mut admin)
        .unwrap();
    assert_eq!(killed, 1);
    assert_eq!(
        victim.read(&mut buf).unwrap(),
        0,
        "killed connection still open"
    );
    // Shutdown: the idle connection closes, the half-sent command completes first.
    let mut idle = connect();
    let mut half = connect();
    half.write_all(b"*1\r\n$4\r\nPI").unwrap();
    idle.write_all(b"PING\r\n").unwrap();
    let n = idle.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
    // The server holds the half command before shutdown starts.
    wait_until("the half command to be read", || {
        redis::cmd("CLIENT")
            .arg("LIST")
            .query::<String>(&mut admin)
            .unwrap()
            .lines()
            .any(|l| !l.contains("cmd=client") && !l.contains(" qbuf=0 "))
    });
    server.begin_shutdown();
    assert_eq!(
        idle.read(&mut buf).unwrap(),
        0,
        "idle connection still open"
    );
    half.write_all(b"NG\r\n").unwrap();
    let mut out = Vec::new();
    half.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"+PONG\r\n");
}

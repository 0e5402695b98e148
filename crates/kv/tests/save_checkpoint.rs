//! SAVE / BGSAVE write a storage checkpoint at `<dir>/<dbfilename>` that opens as the data at that point.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use strata_kv::{KvConfig, SystemClock};

fn no_fsync() -> strata_storage::Options {
    strata_storage::Options {
        fsync: strata_storage::FsyncPolicy::No,
        ..strata_storage::Options::default()
    }
}

/// A server on the data in `dir`, with the real clock and without fsync.
fn server_in(dir: &std::path::Path) -> Server {
    Server::start_in_with(dir, KvConfig::default(), Arc::new(SystemClock), no_fsync())
}

fn config_get(c: &mut redis::Connection, name: &str) -> String {
    let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(c).unwrap();
    assert_eq!(v.len(), 2, "{v:?}");
    v[1].clone()
}

fn persistence(c: &mut redis::Connection) -> BTreeMap<String, String> {
    let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Every string key of db 0 with its value, plus the hash `h` and list `l`.
fn dump(
    c: &mut redis::Connection,
) -> (
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    Vec<String>,
) {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("s:*").query(c).unwrap();
    keys.sort();
    let mut strings = BTreeMap::new();
    for k in keys {
        let v: String = redis::cmd("GET").arg(&k).query(c).unwrap();
        strings.insert(k, v);
    }
    let hash: BTreeMap<String, String> = redis::cmd("HGETALL").arg("h").query(c).unwrap();
    let list: Vec<String> = redis::cmd("LRANGE")
        .arg("l")
        .arg(0)
        .arg(-1)
        .query(c)
        .unwrap();
    (strings, hash, list)
}

fn checkpoint_path(c: &mut redis::Connection) -> PathBuf {
    PathBuf::from(config_get(c, "dir")).join(config_get(c, "dbfilename"))
}

/// Opens a copy of the checkpoint as a server of its own (a restore) and returns what it holds.
fn restore(
    checkpoint: &std::path::Path,
) -> (
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    Vec<String>,
) {
    strata_storage::check::check(checkpoint).unwrap();
    let copy = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(checkpoint).unwrap() {
        let e = e.unwrap();
        let to = copy.path().join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::create_dir_all(to.join(f.file_name())).unwrap();
                for g in std::fs::read_dir(f.path()).unwrap() {
                    let g = g.unwrap();
                    std::fs::copy(g.path(), to.join(f.file_name()).join(g.file_name())).unwrap();
                }
            }
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
    let restored = server_in(copy.path());
    let mut c = restored.client();
    let out = dump(&mut c);
    drop(c);
    drop(restored);
    out
}

/// INFO persistence once `done` holds for it (a background job finished), within a deadline.
fn wait_for_persistence(
    c: &mut redis::Connection,
    what: &str,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = persistence(c);
        if done(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "{what} did not finish: {p:?}");
        std::thread::yield_now();
    }
}

fn wait_for_saves(c: &mut redis::Connection, saves: u64) -> BTreeMap<String, String> {
    wait_for_persistence(c, "BGSAVE", |p| {
        p["rdb_saves"].parse::<u64>().unwrap() >= saves && p["rdb_bgsave_in_progress"] == "0"
    })
}

fn wait_for_rewrites(c: &mut redis::Connection, rewrites: u64) -> BTreeMap<String, String> {
    wait_for_persistence(c, "BGREWRITEAOF", |p| {
        p["aof_rewrites"].parse::<u64>().unwrap() >= rewrites && p["aof_rewrite_in_progress"] == "0"
    })
}

#[test]
fn save_writes_a_checkpoint_holding_exactly_the_data_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_in(dir.path());
    let mut c = server.client();
    let started: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(
        started > 1_600_000_000,
        "LASTSAVE before any save is the start time"
    );
    assert_eq!(config_get(&mut c, "dbfilename"), "dump.strata");
    assert_eq!(
        PathBuf::from(config_get(&mut c, "dir")),
        dir.path().join("checkpoints")
    );
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("s:{i}"))
            .arg(format!("v{i}"))
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f1")
        .arg("a")
        .arg("f2")
        .arg("b")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("l")
        .arg("x")
        .arg("y")
        .arg("z")
        .query(&mut c)
        .unwrap();
    let before = dump(&mut c);
    let p = persistence(&mut c);
    assert_ne!(p["rdb_changes_since_last_save"], "0");
    assert_eq!(p["rdb_saves"], "0");
    assert_eq!(p["rdb_last_bgsave_time_sec"], "-1");

    let ok: String = redis::cmd("SAVE").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let p = persistence(&mut c);
    assert_eq!(p["rdb_changes_since_last_save"], "0");
    assert_eq!(p["rdb_saves"], "1");
    assert_eq!(p["rdb_last_bgsave_status"], "ok");
    assert_eq!(p["rdb_bgsave_in_progress"], "0");
    let last: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(last >= started);

    // Writes after SAVE change the server, not the checkpoint.
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("s:{i}"))
            .arg("changed")
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("DEL")
            .arg(format!("s:{}", 100 + i))
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("s:new")
        .arg("after")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f3")
        .arg("c")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("LPOP").arg("l").query(&mut c).unwrap();
    let p = persistence(&mut c);
    assert_ne!(p["rdb_changes_since_last_save"], "0");

    let path = checkpoint_path(&mut c);
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(restore(&path), before);
    let after = dump(&mut c);
    assert_ne!(after, before);

    // A second SAVE replaces the first checkpoint (atomically, through the link) and removes it.
    let first = std::fs::read_link(&path).unwrap();
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let second = std::fs::read_link(&path).unwrap();
    assert_ne!(first, second);
    assert!(!path.parent().unwrap().join(&first).exists());
    assert_eq!(restore(&path), after);
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "the link and one checkpoint: {names:?}");
}

#[test]
fn bgsave_runs_in_the_background_and_reports_in_info() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_in(dir.path());
    let mut c = server.client();
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("s:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let before = dump(&mut c);
    let reply: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(reply, "Background saving started");
    let p = wait_for_saves(&mut c, 1);
    assert_eq!(p["rdb_last_bgsave_status"], "ok");
    assert!(p["rdb_last_bgsave_time_sec"].parse::<i64>().unwrap() >= 0);
    assert_eq!(p["rdb_current_bgsave_time_sec"], "-1");
    assert_eq!(p["rdb_changes_since_last_save"], "0");
    assert_eq!(restore(&checkpoint_path(&mut c)), before);

    // SCHEDULE starts one when none runs; inside MULTI/EXEC the reply says "scheduled".
    let reply: String = redis::cmd("BGSAVE").arg("SCHEDULE").query(&mut c).unwrap();
    assert!(reply == "Background saving started", "{reply}");
    wait_for_saves(&mut c, 2);
    let _: () = redis::cmd("SET")
        .arg("s:late")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let replies: Vec<String> = redis::pipe().atomic().cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(replies, vec!["Background saving scheduled".to_owned()]);
    wait_for_saves(&mut c, 3);
    assert_eq!(restore(&checkpoint_path(&mut c)).0["s:late"], "1");

    let e = redis::cmd("BGSAVE")
        .arg("NOW")
        .query::<String>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("syntax error"), "{e}");
}

#[test]
fn a_failed_save_reports_err_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_in(dir.path());
    let mut c = server.client();
    let _: () = redis::cmd("SET").arg("s:1").arg("1").query(&mut c).unwrap();
    // Something that is not ours occupies `<dir>/<dbfilename>`: the link cannot replace a directory.
    let path = checkpoint_path(&mut c);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("keep"), b"user data").unwrap();
    let e = redis::cmd("SAVE").query::<String>(&mut c).unwrap_err();
    assert!(e.to_string().contains("cannot point"), "{e}");
    let p = persistence(&mut c);
    assert_eq!(p["rdb_last_bgsave_status"], "err");
    assert_eq!(p["rdb_saves"], "0");
    assert_eq!(std::fs::read(path.join("keep")).unwrap(), b"user data");
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["dump.strata".to_owned()]);

    let reply: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(reply, "Background saving started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while persistence(&mut c)["rdb_bgsave_in_progress"] != "0" {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    assert_eq!(persistence(&mut c)["rdb_last_bgsave_status"], "err");

    // Once the way is clear, SAVE succeeds and the status is ok again.
    std::fs::remove_dir_all(&path).unwrap();
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    assert_eq!(persistence(&mut c)["rdb_last_bgsave_status"], "ok");
}

#[test]
fn bgrewriteaof_flushes_the_log_in_the_background_and_reports_in_info() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_in(dir.path());
    let mut c = server.client();
    let before = persistence(&mut c);
    assert_eq!(before["aof_rewrite_in_progress"], "0");
    assert_eq!(before["aof_rewrites"], "0");
    assert_eq!(before["aof_last_bgrewrite_status"], "ok");
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("r:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let started: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    assert_eq!(started, "Background append only file rewriting started");
    let after = wait_for_rewrites(&mut c, 1);
    assert_eq!(after["aof_last_bgrewrite_status"], "ok");
    // Inside a transaction it is "scheduled", as in Redis.
    let replies: Vec<String> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("in-tx")
        .arg("1")
        .cmd("BGREWRITEAOF")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        replies[1],
        "Background append only file rewriting scheduled"
    );
    wait_for_rewrites(&mut c, 2);
    let v: i64 = redis::cmd("GET").arg("r:99").query(&mut c).unwrap();
    assert_eq!(v, 99);
}

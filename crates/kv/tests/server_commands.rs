//! INFO, CONFIG, TIME, SAVE, LASTSAVE through a real Redis client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::Server;
use strata_kv::KvConfig;

#[test]
fn info_config_time_save() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: () = redis::cmd("SET").arg("a").arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg("b")
        .arg(1)
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    assert!(
        info.starts_with("# Server\r\nredis_version:7.2.0\r\n"),
        "{info}"
    );
    assert!(info.contains("loading:0\r\n"), "{info}");
    assert!(
        info.contains("# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0"),
        "{info}"
    );
    let only: String = redis::cmd("INFO").arg("clients").query(&mut c).unwrap();
    assert!(
        only.starts_with("# Clients\r\nconnected_clients:1\r\n"),
        "{only}"
    );
    assert!(!only.contains("# Server"));

    let got: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("max*")
        .query(&mut c)
        .unwrap();
    assert_eq!(got.get("maxclients").map(String::as_str), Some("10000"));
    assert!(got.contains_key("maxmemory"));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hash-max-listpack-entries")
        .arg("64")
        .query(&mut c)
        .unwrap();
    let got: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hash-max-listpack-entries")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        got.get("hash-max-listpack-entries").map(String::as_str),
        Some("64")
    );
    let e = redis::cmd("CONFIG")
        .arg("SET")
        .arg("databases")
        .arg("1")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("immutable config"), "{e}");
    // Several parameters at once are all checked before any changes: a bad one leaves the rest alone.
    let e = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("10mb")
        .arg("maxmemory-clients")
        .arg("200%")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("percentage argument"), "{e}");
    let got: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .arg("slaveof")
        .query(&mut c)
        .unwrap();
    assert_eq!(got.get("maxmemory").map(String::as_str), Some("0"));
    assert!(got.contains_key("slaveof"));
    // Over maxmemory, commands that may grow the data are refused; reads still run. Used memory counts
    // the data set, so the first key fits under a limit of one byte and takes the server over it.
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let e = redis::cmd("SET")
        .arg("k2")
        .arg("v")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("command not allowed when used memory"),
        "{e}"
    );
    let _: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query(&mut c)
        .unwrap();

    let t: Vec<String> = redis::cmd("TIME").query(&mut c).unwrap();
    assert_eq!(t.len(), 2);
    assert!(t[0].parse::<u64>().unwrap() > 1_600_000_000);
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let last: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(last > 1_600_000_000);
}

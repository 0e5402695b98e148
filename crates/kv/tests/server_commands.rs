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

/// INFO's sections come in Redis 7's order and default set, with the headers clients parse (redis-py's
/// test suite reads `cluster_enabled` before anything else).
#[test]
fn info_sections_follow_redis_order_and_defaults() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let mut headers = |args: &[&str]| -> Vec<String> {
        let mut cmd = redis::cmd("INFO");
        for a in args {
            cmd.arg(*a);
        }
        let text: String = cmd.query(&mut c).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("# "))
            .map(str::to_owned)
            .collect()
    };
    let default = [
        "Server",
        "Clients",
        "Memory",
        "Persistence",
        "Stats",
        "Replication",
        "CPU",
        "Modules",
        "Errorstats",
        "Cluster",
        "Keyspace",
    ];
    assert_eq!(headers(&[]), default);
    assert_eq!(headers(&["default"]), default);
    assert_eq!(
        headers(&["everything"]),
        [
            "Server",
            "Clients",
            "Memory",
            "Persistence",
            "Stats",
            "Replication",
            "CPU",
            "Modules",
            "Commandstats",
            "Errorstats",
            "Latencystats",
            "Cluster",
            "Keyspace",
        ]
    );
    assert_eq!(
        headers(&["keyspace", "CPU", "server"]),
        ["Server", "CPU", "Keyspace"]
    );
    let cluster: String = redis::cmd("INFO").arg("cluster").query(&mut c).unwrap();
    assert_eq!(cluster, "# Cluster\r\ncluster_enabled:0\r\n");
    // LOLWUT's picture is strata's own; its last line is the one clients look for.
    let art: String = redis::cmd("LOLWUT").query(&mut c).unwrap();
    assert!(art.ends_with("Redis ver. 7.2.0\n"), "{art}");
    let small: String = redis::cmd("LOLWUT")
        .arg(&["VERSION", "5", "10", "2"])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        small.lines().filter(|l| l.len() == 10).count(),
        2,
        "{small}"
    );
    let bad = redis::cmd("LOLWUT")
        .arg(&["VERSION", "x"])
        .query::<String>(&mut c)
        .unwrap_err();
    assert_eq!(bad.code(), Some("ERR"));
}

#[test]
fn latency_histograms_subcommand_stats_and_latencystats() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("a").arg("b").query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("c").arg("d").query(&mut c).unwrap();
    let _: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).unwrap();
    // Every command, or the named ones; a container names its subcommands; unknown names are skipped.
    let all: HashMap<String, redis::Value> = redis::cmd("LATENCY")
        .arg("HISTOGRAM")
        .query(&mut c)
        .unwrap();
    assert!(all.contains_key("set") && all.contains_key("client|id"));
    assert!(all.contains_key("config|resetstat"), "{all:?}");
    let some: Vec<redis::Value> = redis::cmd("LATENCY")
        .arg("HISTOGRAM")
        .arg("blabla")
        .arg("set")
        .arg("client")
        .query(&mut c)
        .unwrap();
    assert_eq!(some.len(), 4, "{some:?}");
    let set: HashMap<String, HashMap<String, redis::Value>> = redis::cmd("LATENCY")
        .arg("HISTOGRAM")
        .arg("set")
        .query(&mut c)
        .unwrap();
    assert_eq!(set["set"]["calls"], redis::Value::Int(2));
    let redis::Value::Array(buckets) = &set["set"]["histogram_usec"] else {
        panic!("{set:?}");
    };
    // Cumulative: the last bucket counts every call.
    assert_eq!(buckets.last(), Some(&redis::Value::Int(2)));

    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut c)
        .unwrap();
    assert!(stats.contains("cmdstat_client|id:calls=1,"), "{stats}");
    assert!(stats.contains("cmdstat_set:calls=2,"), "{stats}");
    let latency: String = redis::cmd("INFO")
        .arg("latencystats")
        .query(&mut c)
        .unwrap();
    let line = latency
        .lines()
        .find(|l| l.starts_with("latency_percentiles_usec_set:"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.contains("p50=") && line.contains(",p99=") && line.contains(",p99.9="),
        "{latency}"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("latency-tracking-info-percentiles")
        .arg("0.0 50.0 99.90 100")
        .query(&mut c)
        .unwrap();
    // Read back as Redis prints them: `%f` with the trailing zeros trimmed.
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("latency-tracking-info-percentiles")
        .query(&mut c)
        .unwrap();
    assert_eq!(got[1], "0 50 99.9 100");
    let latency: String = redis::cmd("INFO")
        .arg("latencystats")
        .query(&mut c)
        .unwrap();
    assert!(
        latency.contains("latency_percentiles_usec_set:p0="),
        "{latency}"
    );
    assert!(latency.contains(",p100="), "{latency}");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("latency-tracking")
        .arg("no")
        .query(&mut c)
        .unwrap();
    let latency: String = redis::cmd("INFO")
        .arg("latencystats")
        .query(&mut c)
        .unwrap();
    assert!(
        !latency.contains("latency_percentiles_usec_set"),
        "{latency}"
    );

    // The event monitor: off by default; RESET counts what it forgot.
    let latest: Vec<redis::Value> = redis::cmd("LATENCY").arg("LATEST").query(&mut c).unwrap();
    assert!(latest.is_empty());
    let n: i64 = redis::cmd("LATENCY")
        .arg("RESET")
        .arg("blabla")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
    let doctor: String = redis::cmd("LATENCY").arg("DOCTOR").query(&mut c).unwrap();
    assert!(!doctor.is_empty());
    let err = redis::cmd("LATENCY")
        .arg("HELP")
        .arg("xxx")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("wrong number of arguments for 'latency|help' command"),
        "{err}"
    );
    let err = redis::cmd("LATENCY")
        .arg("GRAPH")
        .arg("command")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("No samples available for event 'command'"),
        "{err}"
    );
}

#[test]
fn a_single_node_answers_replication_and_module_commands() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let role: (String, i64, Vec<String>) = redis::cmd("ROLE").query(&mut c).unwrap();
    assert_eq!(role, ("master".to_owned(), 0, vec![]));
    // Clients tell a standalone server from a cluster node by this error.
    let e = redis::cmd("CLUSTER")
        .arg("INFO")
        .query::<String>(&mut c)
        .unwrap_err();
    assert_eq!(
        e.detail(),
        Some("This instance has cluster support disabled")
    );
    let replicas: i64 = redis::cmd("WAIT").arg(0).arg(0).query(&mut c).unwrap();
    assert_eq!(replicas, 0);
    // Asked for a replica, WAIT waits out its timeout and counts none.
    let replicas: i64 = redis::cmd("WAIT").arg(1).arg(20).query(&mut c).unwrap();
    assert_eq!(replicas, 0);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let acked: (i64, i64) = redis::cmd("WAITAOF")
        .arg(1)
        .arg(0)
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(acked, (1, 0));
    let err = redis::cmd("WAIT")
        .arg(0)
        .arg(-1)
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("timeout is negative"), "{err}");
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut c)
        .unwrap();
    assert!(
        redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(6379)
            .query::<()>(&mut c)
            .is_err()
    );
    let modules: Vec<redis::Value> = redis::cmd("MODULE").arg("LIST").query(&mut c).unwrap();
    assert!(modules.is_empty());
    let err = redis::cmd("MODULE")
        .arg("LOAD")
        .arg("/x.so")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string().contains("Error loading the extension"),
        "{err}"
    );
}

fn config_set(c: &mut redis::Connection, name: &str, value: i64) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(c)
        .unwrap();
}

#[test]
fn min_replicas_to_write_refuses_writes_on_a_node_without_replicas() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let err_text = |r: redis::RedisResult<redis::Value>| {
        let e = r.unwrap_err();
        format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
    };
    let _: () = redis::cmd("SET").arg("x").arg("v").query(&mut c).unwrap();
    config_set(&mut c, "min-replicas-to-write", 1);
    let refused = "NOREPLICAS Not enough good replicas to write.";
    assert_eq!(
        err_text(redis::cmd("SET").arg("x").arg("w").query(&mut c)),
        refused
    );
    // Reads still run, and so do scripts that cannot write or have not written yet.
    let v: String = redis::cmd("GET").arg("x").query(&mut c).unwrap();
    assert_eq!(v, "v");
    let v: String = redis::cmd("EVAL")
        .arg("#!lua flags=no-writes\nreturn redis.call('get','x')")
        .arg(1)
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "v");
    let v: String = redis::cmd("EVAL")
        .arg("return redis.call('get','x')")
        .arg(1)
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "v");
    // A script with flags that may write is refused before it runs; one without flags when it writes.
    assert_eq!(
        err_text(
            redis::cmd("EVAL")
                .arg("#!lua\nreturn redis.call('get','x')")
                .arg(1)
                .arg("x")
                .query(&mut c)
        ),
        refused
    );
    let e = err_text(
        redis::cmd("EVAL")
            .arg("return redis.call('set','x',1)")
            .arg(1)
            .arg("x")
            .query(&mut c),
    );
    assert!(e.starts_with(refused), "{e}");
    // A transaction holding a write is discarded at EXEC.
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let e = err_text(redis::cmd("SET").arg("x").arg("w").query(&mut c));
    assert_eq!(e, refused);
    let e = err_text(redis::cmd("EXEC").query(&mut c));
    assert!(e.starts_with("EXECABORT"), "{e}");
    // min-replicas-max-lag 0 turns the check off, as in Redis.
    config_set(&mut c, "min-replicas-max-lag", 0);
    let _: () = redis::cmd("SET").arg("x").arg("w").query(&mut c).unwrap();
    config_set(&mut c, "min-replicas-max-lag", 10);
    config_set(&mut c, "min-replicas-to-write", 0);
    let _: () = redis::cmd("SET").arg("x").arg("z").query(&mut c).unwrap();
}

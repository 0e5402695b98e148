//! Geospatial commands through a real Redis client: points, distances, geohashes, area searches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use redis::Value;
use strata_kv::KvConfig;

fn add_sicily(c: &mut redis::Connection) {
    let added: i64 = redis::cmd("GEOADD")
        .arg("Sicily")
        .arg(&[
            "13.361389",
            "38.115556",
            "Palermo",
            "15.087269",
            "37.502669",
            "Catania",
        ])
        .query(c)
        .unwrap();
    assert_eq!(added, 2);
}

#[test]
fn points_distances_and_geohashes() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    add_sicily(&mut c);
    let d: String = redis::cmd("GEODIST")
        .arg("Sicily")
        .arg("Palermo")
        .arg("Catania")
        .query(&mut c)
        .unwrap();
    assert_eq!(d, "166274.1516");
    let km: String = redis::cmd("GEODIST")
        .arg("Sicily")
        .arg("Palermo")
        .arg("Catania")
        .arg("km")
        .query(&mut c)
        .unwrap();
    assert_eq!(km, "166.2742");
    let missing: Option<String> = redis::cmd("GEODIST")
        .arg("Sicily")
        .arg("Palermo")
        .arg("Nowhere")
        .query(&mut c)
        .unwrap();
    assert_eq!(missing, None);
    let hashes: Vec<Option<String>> = redis::cmd("GEOHASH")
        .arg("Sicily")
        .arg("Palermo")
        .arg("Catania")
        .arg("Nowhere")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        hashes,
        vec![Some("sqc8b49rny0".into()), Some("sqdtr74hyu0".into()), None]
    );
    let pos: Vec<Option<(String, String)>> = redis::cmd("GEOPOS")
        .arg("Sicily")
        .arg("Palermo")
        .arg("Nowhere")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        pos,
        vec![
            Some(("13.36138933897018433".into(), "38.11555639549629859".into())),
            None
        ]
    );
    // The score is the 52-bit geohash, visible through the sorted-set commands.
    let score: String = redis::cmd("ZSCORE")
        .arg("Sicily")
        .arg("Palermo")
        .query(&mut c)
        .unwrap();
    assert_eq!(score, "3479099956230698");
}

#[test]
fn searches_by_radius_and_box_and_store() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    add_sicily(&mut c);
    let _: i64 = redis::cmd("GEOADD")
        .arg("Sicily")
        .arg(&[
            "12.758489",
            "38.788135",
            "edge1",
            "17.241510",
            "38.788135",
            "edge2",
        ])
        .query(&mut c)
        .unwrap();
    let near: Vec<String> = redis::cmd("GEOSEARCH")
        .arg("Sicily")
        .arg(&["FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC"])
        .query(&mut c)
        .unwrap();
    assert_eq!(near, vec!["Catania", "Palermo"]);
    let boxed: Vec<String> = redis::cmd("GEOSEARCH")
        .arg("Sicily")
        .arg(&["FROMLONLAT", "15", "37", "BYBOX", "400", "400", "km", "ASC"])
        .query(&mut c)
        .unwrap();
    assert_eq!(boxed, vec!["Catania", "Palermo", "edge2", "edge1"]);
    let with: Vec<Value> = redis::cmd("GEORADIUS")
        .arg("Sicily")
        .arg(&[
            "15", "37", "200", "km", "WITHDIST", "WITHHASH", "COUNT", "1",
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        with,
        vec![Value::Array(vec![
            Value::BulkString(b"Catania".to_vec()),
            Value::BulkString(b"56.4413".to_vec()),
            Value::Int(3479447370796909),
        ])]
    );
    let stored: i64 = redis::cmd("GEOSEARCHSTORE")
        .arg("dst")
        .arg("Sicily")
        .arg(&[
            "FROMMEMBER",
            "Palermo",
            "BYRADIUS",
            "200",
            "km",
            "STOREDIST",
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(stored, 3);
    let dists: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("dst")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert_eq!(dists[0], ("Palermo".to_owned(), 0.0));
    assert_eq!(dists[2].0, "Catania");
    assert!((dists[2].1 - 166.2742).abs() < 1e-3, "{dists:?}");
    let stored: i64 = redis::cmd("GEORADIUSBYMEMBER")
        .arg("Sicily")
        .arg(&["Palermo", "1", "m", "STORE", "dst"])
        .query(&mut c)
        .unwrap();
    assert_eq!(stored, 1);
}

/// STOREDIST keeps the distance to the last bit, so it must be computed as Redis computes it (degrees to
/// radians by multiplying with pi/180). The expected score is redis-server's.
#[test]
fn storedist_distances_match_redis_to_the_last_bit() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: i64 = redis::cmd("GEOADD")
        .arg("barcelona")
        .arg(&[
            "2.1909389952632",
            "41.433791470673",
            "place1",
            "2.1873744593677",
            "41.406342043777",
            "place2",
        ])
        .query(&mut c)
        .unwrap();
    let stored: i64 = redis::cmd("GEOSEARCHSTORE")
        .arg(&["near", "barcelona", "FROMLONLAT", "2.191", "41.433"])
        .arg(&["BYRADIUS", "1000", "m", "STOREDIST"])
        .query(&mut c)
        .unwrap();
    assert_eq!(stored, 1);
    let d: String = redis::cmd("ZSCORE")
        .arg("near")
        .arg("place1")
        .query(&mut c)
        .unwrap();
    assert_eq!(d.parse::<f64>().unwrap(), 88.050_606_984_093_01);
}

#[test]
fn errors_are_redis_s() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let err = |c: &mut redis::Connection, args: &[&str]| -> String {
        redis::cmd(args[0])
            .arg(&args[1..])
            .query::<Value>(c)
            .unwrap_err()
            .to_string()
    };
    let e = err(&mut c, &["GEOADD", "k", "200", "10", "m"]);
    assert!(
        e.contains("invalid longitude,latitude pair 200.000000,10.000000"),
        "{e}"
    );
    let e = err(&mut c, &["GEOADD", "k", "NX", "XX", "10", "10", "m"]);
    assert!(e.contains("syntax error"), "{e}");
    let e = err(
        &mut c,
        &["GEOSEARCH", "k", "BYRADIUS", "10", "m", "ASC", "WITHDIST"],
    );
    assert!(e.contains("exactly one of FROMMEMBER or FROMLONLAT"), "{e}");
    let e = err(
        &mut c,
        &["GEOSEARCH", "k", "FROMLONLAT", "0", "0", "ASC", "WITHDIST"],
    );
    assert!(e.contains("exactly one of BYRADIUS and BYBOX"), "{e}");
    let e = err(&mut c, &["GEORADIUS", "k", "0", "0", "10", "parsec"]);
    assert!(e.contains("unsupported unit provided"), "{e}");
    let e = err(&mut c, &["GEORADIUS", "k", "0", "0", "10", "m", "ANY"]);
    assert!(
        e.contains("the ANY argument requires COUNT argument"),
        "{e}"
    );
    let e = err(
        &mut c,
        &[
            "GEORADIUS",
            "k",
            "0",
            "0",
            "10",
            "m",
            "STORE",
            "d",
            "WITHDIST",
        ],
    );
    assert!(
        e.contains("STORE option in GEORADIUS is not compatible"),
        "{e}"
    );
    let _: () = redis::cmd("SET").arg("s").arg("x").query(&mut c).unwrap();
    let e = err(&mut c, &["GEOPOS", "s", "m"]);
    assert!(e.contains("WRONGTYPE"), "{e}");
}

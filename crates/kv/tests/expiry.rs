//! Active expiry with an injected clock: keys whose TTL passed are removed from storage without anybody
//! reading them, by the cycle `serve` starts; the expiry index tolerates re-expired and overwritten keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_kv::keyspace::Entry;
use strata_kv::{Keyspace, KvConfig, ManualClock, Shared, serve};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const T0: u64 = 1_700_000_000_000;

/// Metadata records physically present in database `db`'s tree, expired or not.
fn stored_keys(ks: &Keyspace, tree: &str) -> usize {
    let tree = ks.storage().tree(tree).unwrap();
    tree.prefix(b"m").count()
}

fn with_ttl(value: &str, at: u64) -> Entry {
    let mut e = Entry::string(value.to_owned().into());
    e.expire_at_ms = at;
    e
}

/// A keyspace of four databases on a fresh directory, with a manual clock at `T0`.
fn keyspace_at_t0() -> (tempfile::TempDir, Arc<ManualClock>, Keyspace) {
    let dir = tempfile::tempdir().unwrap();
    let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let ks = Keyspace::open(db, 4, clock.clone()).unwrap();
    (dir, clock, ks)
}

/// Each pass starts where the index's entries left begin (the tree's floor), not at its first entry: a
/// key given a deadline below that place afterwards lowers it, and a pass that stops inside one
/// deadline's keys continues with them.
#[test]
fn expire_passes_resume_at_the_floor_and_see_earlier_deadlines_added_later() {
    let (_dir, clock, ks) = keyspace_at_t0();
    for i in 0..30u64 {
        ks.put(
            0,
            format!("k{i:02}").as_bytes(),
            &with_ttl("v", T0 + 1_000 + i),
        )
        .unwrap();
    }
    // Twenty-five keys share one deadline: more than a pass takes.
    for i in 0..25 {
        ks.put(
            0,
            format!("same{i:02}").as_bytes(),
            &with_ttl("v", T0 + 1_500),
        )
        .unwrap();
    }
    clock.advance_ms(2_000);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 10).unwrap(), 10);
    // Below where the next pass starts, and already due.
    ks.put(0, b"early", &with_ttl("v", T0 + 500)).unwrap();
    let mut total = 10;
    loop {
        let n = ks.expire_cycle(clock.now_ms_for_test(), 10).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 56);
    assert_eq!(stored_keys(&ks, "kv0"), 0);
    // A key listed later than one already gone is found too.
    ks.put(0, b"later", &with_ttl("v", T0 + 3_000)).unwrap();
    clock.advance_ms(2_000);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 10).unwrap(), 1);
    assert_eq!(ks.storage().tree("kv0").unwrap().prefix(b"x").count(), 0);
}

#[test]
fn expire_cycle_removes_only_confirmed_expired_keys() {
    let (_dir, clock, ks) = keyspace_at_t0();
    for i in 0..50 {
        ks.put(0, format!("a{i}").as_bytes(), &with_ttl("v", T0 + 1_000))
            .unwrap();
    }
    ks.put(2, b"late", &with_ttl("v", T0 + 5_000)).unwrap();
    ks.put(2, b"forever", &Entry::string("v".into())).unwrap();
    // Re-expired later: its first index entry is stale.
    ks.put(0, b"moved", &with_ttl("v", T0 + 1_000)).unwrap();
    ks.put(0, b"moved", &with_ttl("v", T0 + 9_000)).unwrap();
    // Given a TTL, then overwritten without one.
    ks.put(3, b"persisted", &with_ttl("v", T0 + 1_000)).unwrap();
    ks.put(3, b"persisted", &Entry::string("w".into())).unwrap();

    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 0);
    clock.advance_ms(2_000);
    // A small budget bounds the work of one pass.
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 10).unwrap(), 10);
    let mut total = 10;
    while total < 50 {
        let n = ks.expire_cycle(clock.now_ms_for_test(), 10).unwrap();
        assert!(n > 0);
        total += n;
    }
    assert_eq!(total, 50);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 0);
    assert_eq!(stored_keys(&ks, "kv0"), 1, "only `moved` is left in db 0");
    assert!(ks.get(3, b"persisted").unwrap().is_some());
    assert_eq!(ks.expired_keys(), 50);
    clock.advance_ms(10_000);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 2);
    assert_eq!(stored_keys(&ks, "kv0"), 0);
    assert_eq!(stored_keys(&ks, "kv2"), 1);
    // Deleting a key with a TTL drops its index entry too: nothing is left to visit.
    ks.put(1, b"gone", &with_ttl("v", T0 + 20_000)).unwrap();
    ks.delete(1, b"gone").unwrap();
    clock.advance_ms(20_000);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 0);
    let index = ks.storage().tree("kv1").unwrap().prefix(b"x").count();
    assert_eq!(index, 0);
}

/// The expiry index entries of database `tree`: (deadline, key), in order.
fn index_of(ks: &Keyspace, tree: &str) -> Vec<(u64, String)> {
    ks.storage()
        .tree(tree)
        .unwrap()
        .prefix(b"x")
        .map(|item| {
            let (k, _) = item.unwrap();
            let at = u64::from_be_bytes(k[1..9].try_into().unwrap());
            (at, String::from_utf8(k[9..].to_vec()).unwrap())
        })
        .collect()
}

#[test]
fn a_later_deadline_keeps_the_index_entry_until_the_cycle_moves_it() {
    let (dir, clock, ks) = keyspace_at_t0();
    // Refreshed twice: listed under its first deadline, the record knows the real one.
    ks.put(0, b"session", &with_ttl("v", T0 + 1_000)).unwrap();
    ks.put(0, b"session", &with_ttl("v", T0 + 5_000)).unwrap();
    ks.put(0, b"session", &with_ttl("v", T0 + 9_000)).unwrap();
    // Shortened: listed under the new, earlier deadline.
    ks.put(0, b"short", &with_ttl("v", T0 + 9_000)).unwrap();
    ks.put(0, b"short", &with_ttl("v", T0 + 2_000)).unwrap();
    // Refreshed, then deleted or renamed: the entry it was listed under goes with it.
    ks.put(0, b"deleted", &with_ttl("v", T0 + 1_000)).unwrap();
    ks.put(0, b"deleted", &with_ttl("v", T0 + 5_000)).unwrap();
    assert!(ks.delete(0, b"deleted").unwrap());
    ks.put(0, b"from", &with_ttl("v", T0 + 1_000)).unwrap();
    ks.put(0, b"from", &with_ttl("v", T0 + 5_000)).unwrap();
    let entry = ks.get(0, b"from").unwrap().unwrap();
    ks.rename(0, b"from", b"to", &entry).unwrap();
    // Refreshed, then made persistent.
    ks.put(0, b"kept", &with_ttl("v", T0 + 1_000)).unwrap();
    ks.put(0, b"kept", &with_ttl("v", T0 + 5_000)).unwrap();
    ks.put(0, b"kept", &Entry::string("v".into())).unwrap();
    assert_eq!(
        index_of(&ks, "kv0"),
        vec![
            (T0 + 1_000, "session".to_owned()),
            (T0 + 2_000, "short".to_owned()),
            (T0 + 5_000, "to".to_owned()),
        ]
    );
    assert_eq!(
        ks.get(0, b"session").unwrap().unwrap().expire_at_ms,
        T0 + 9_000
    );

    // Past the first deadline: the cycle finds `session` alive and lists it under its deadline.
    clock.advance_ms(1_500);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 0);
    assert_eq!(index_of(&ks, "kv0")[2], (T0 + 9_000, "session".to_owned()));
    clock.advance_ms(4_000);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 2);

    // What the record remembers survives a restart.
    ks.put(0, b"again", &with_ttl("v", T0 + 6_000)).unwrap();
    ks.put(0, b"again", &with_ttl("v", T0 + 7_000)).unwrap();
    drop(ks);
    let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
    let ks = Keyspace::open(db, 4, clock.clone()).unwrap();
    assert_eq!(
        ks.get(0, b"again").unwrap().unwrap().expire_at_ms,
        T0 + 7_000
    );
    clock.advance_ms(1_000);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 0);
    assert_eq!(index_of(&ks, "kv0")[0], (T0 + 7_000, "again".to_owned()));
    clock.advance_ms(3_000);
    let mut expired = Vec::new();
    ks.expire_cycle_with(clock.now_ms_for_test(), 100, |_, key| {
        expired.push(String::from_utf8(key.to_vec()).unwrap())
    })
    .unwrap();
    assert_eq!(expired, ["again", "session"]);
    assert!(index_of(&ks, "kv0").is_empty());
    assert_eq!(stored_keys(&ks, "kv0"), 1, "only `kept` is left");
}

trait NowForTest {
    fn now_ms_for_test(&self) -> u64;
}

impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> u64 {
        strata_kv::Clock::now_ms(self)
    }
}

/// A server whose shared state the test keeps a handle on.
struct Node {
    _dir: tempfile::TempDir,
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn start(clock: Arc<ManualClock>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
        let config = KvConfig::default();
        let keyspace = Keyspace::open(db, config.databases, clock).unwrap();
        let shared = Shared::new(config, keyspace);
        let shutdown = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let (token, sh) = (shutdown.clone(), shared.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let tracker = TaskTracker::new();
                serve(listener, sh, token, tracker.clone()).await;
                tracker.close();
                tracker.wait().await;
            });
        });
        let addr = rx.recv().unwrap();
        Node {
            _dir: dir,
            shared,
            addr,
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn served_keys_with_a_ttl_vanish_without_being_read() {
    let clock = Arc::new(ManualClock::new(T0));
    let node = Node::start(clock.clone());
    let mut c = redis::Client::open(format!("redis://{}", node.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("v")
            .arg("PX")
            .arg(100 + i)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("keep")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("PEXPIRE")
        .arg("h")
        .arg(50)
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 502);
    clock.advance_ms(1_000);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_keys(&node.shared.keyspace, "kv0") > 1 {
        assert!(Instant::now() < deadline, "active expiry did not run");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(node.shared.keyspace.expired_keys(), 501);
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 1);
    // The hash's elements went with it.
    let elements = node
        .shared
        .keyspace
        .storage()
        .tree("kv0")
        .unwrap()
        .prefix(b"s")
        .count();
    assert_eq!(elements, 0);
    // The cycle ran on its own thread, below the priority of the threads serving requests (Linux):
    // under SCHED_IDLE, or at nice 10 where the system refuses that.
    #[cfg(target_os = "linux")]
    assert!(
        expire_threads_scheduling()
            .iter()
            .any(|&(policy, nice)| policy == SCHED_IDLE || nice >= 10),
        "strata-expire threads' (policy, nice): {:?}",
        expire_threads_scheduling()
    );
}

/// Linux's number for the `SCHED_IDLE` policy.
#[cfg(target_os = "linux")]
const SCHED_IDLE: i64 = 5;

/// The scheduling policy and nice value of each thread of this process named `strata-expire` (fields 41
/// and 19 of its `/proc` stat line).
#[cfg(target_os = "linux")]
fn expire_threads_scheduling() -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() == "strata-expire" {
            // Fields from the third (the state) on.
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            out.push((fields[38].parse().unwrap(), fields[16].parse().unwrap()));
        }
    }
    out
}

#[test]
fn harness_server_reports_expired_keys_gone_from_dbsize() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = common::Server::start_with_clock(KvConfig::default(), clock.clone());
    let mut c = server.client();
    let _: () = redis::cmd("SET")
        .arg("a")
        .arg("1")
        .arg("EX")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET").arg("b").arg("1").query(&mut c).unwrap();
    clock.advance_ms(1_500);
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 1);
}

/// With `notify-keyspace-events Ex`, a key the active cycle removes is announced on
/// `__keyevent@<db>__:expired`, as Redis does.
#[test]
fn active_expiry_publishes_expired_events() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = common::Server::start_with_clock(KvConfig::default(), clock.clone());
    let mut c = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Ex")
        .query(&mut c)
        .unwrap();
    let mut sub = server.client();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe("__keyevent@0__:expired").unwrap();
    let _: () = redis::cmd("SET")
        .arg("gone")
        .arg("v")
        .arg("PX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    clock.advance_ms(1_000);
    // The subscriber's read timeout bounds the wait for the cycle (it runs every 100 ms).
    let msg = pubsub.get_message().unwrap();
    assert_eq!(msg.get_channel_name(), "__keyevent@0__:expired");
    assert_eq!(msg.get_payload::<String>().unwrap(), "gone");
}

/// A cycle that finds nothing due remembers the earliest deadline it saw and skips the index until then;
/// every way of giving a key an earlier deadline after that (a put, several at once, a move to another
/// database) still gets the key expired on time.
#[test]
fn skipped_scans_still_see_earlier_deadlines_written_after_them() {
    let (_dir, clock, ks) = keyspace_at_t0();
    for d in 0..4 {
        ks.put(d, b"late", &with_ttl("v", T0 + 100_000)).unwrap();
    }
    // Nothing due: each database's next deadline is remembered.
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 0);
    clock.advance_ms(10);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 0);

    ks.put(0, b"one", &with_ttl("v", T0 + 1_000)).unwrap();
    ks.put_many(
        1,
        &[
            (&b"two"[..], with_ttl("v", T0 + 2_000)),
            (&b"three"[..], with_ttl("v", T0 + 1_500)),
        ],
    )
    .unwrap();
    let moved = with_ttl("v", T0 + 1_200);
    ks.put(2, b"src", &moved).unwrap();
    ks.transfer(2, b"src", 3, b"dst", &moved, true).unwrap();

    clock.advance_ms(900);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 0);
    clock.advance_ms(1_200);
    // one (T0+1000), three (T0+1500), dst (T0+1200), two (T0+2000): all due at T0+2110.
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 4);
    for (d, k) in [(0, &b"one"[..]), (1, b"two"), (1, b"three"), (3, b"dst")] {
        assert!(ks.get(d, k).unwrap().is_none());
    }
    // The late keys are left, and found when their time comes.
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 0);
    clock.advance_ms(100_000);
    assert_eq!(ks.expire_cycle(clock.now_ms_for_test(), 100).unwrap(), 4);
}

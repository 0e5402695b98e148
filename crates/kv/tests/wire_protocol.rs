//! Raw bytes on the wire: every malformed request form gets Redis's exact `-ERR Protocol error: ...` and a
//! closed connection, and well-formed input split at any byte boundary yields the same replies as in one
//! piece.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;
use strata_kv::KvConfig;

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.addr()).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_exact_len(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn malformed_requests_get_redis_protocol_errors_and_a_closed_connection() {
    let server = Server::start(KvConfig::default());
    let inline_limit = 64 * 1024;
    let mut too_big_inline = vec![b'a'; inline_limit + 1];
    too_big_inline[0] = b'G';
    let mut too_big_mbulk = b"*".to_vec();
    too_big_mbulk.extend(std::iter::repeat_n(b'1', inline_limit + 1));
    let mut too_big_bulk = b"*1\r\n$".to_vec();
    too_big_bulk.extend(std::iter::repeat_n(b'1', inline_limit + 1));
    let table: Vec<(Vec<u8>, &str)> = vec![
        (b"*x\r\n".to_vec(), "invalid multibulk length"),
        (b"*1x\r\n".to_vec(), "invalid multibulk length"),
        (b"*2147483648\r\n".to_vec(), "invalid multibulk length"),
        (
            b"*99999999999999999999\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (b"*1\r\n$-1\r\n".to_vec(), "invalid bulk length"),
        (b"*1\r\n$-5\r\n".to_vec(), "invalid bulk length"),
        (b"*1\r\n$abc\r\n".to_vec(), "invalid bulk length"),
        (b"*1\r\n$\r\n".to_vec(), "invalid bulk length"),
        (b"*1\r\n$536870913\r\n".to_vec(), "invalid bulk length"),
        (b"*1\r\n:1\r\n".to_vec(), "expected '$', got ':'"),
        (b"*1\r\n+PING\r\n".to_vec(), "expected '$', got '+'"),
        (
            b"*2\r\n$4\r\nECHO\r\n*1\r\n".to_vec(),
            "expected '$', got '*'",
        ),
        (b"SET k \"abc\r\n".to_vec(), "unbalanced quotes in request"),
        (b"ECHO \"a\"b\r\n".to_vec(), "unbalanced quotes in request"),
        (b"ECHO 'a\r\n".to_vec(), "unbalanced quotes in request"),
        (too_big_inline, "too big inline request"),
        (too_big_mbulk, "too big mbulk count string"),
        (too_big_bulk, "too big bulk count string"),
    ];
    for (input, message) in &table {
        // A good request first: it is answered before the bad one closes the connection.
        let mut s = connect(&server);
        s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        s.write_all(input).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("+PONG\r\n-ERR Protocol error: {message}\r\n"),
            "input {:?}",
            String::from_utf8_lossy(&input[..input.len().min(40)])
        );
    }
    // The server is fine afterwards.
    let mut c = server.client();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}

/// Requests (multibulk with binary-safe values, inline with quotes, a bare LF, empty requests) and the
/// reply each one gets.
fn conversation() -> Vec<(&'static [u8], &'static [u8])> {
    vec![
        (
            b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$5\r\na\r\nbc\r\n",
            b"+OK\r\n",
        ),
        (b"GET k1\r\n", b"$5\r\na\r\nbc\r\n"),
        (b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", b"$0\r\n\r\n"),
        (b"*0\r\n\r\n", b""),
        (b"PING\n", b"+PONG\r\n"),
        (
            b"ECHO \"quoted \\x41\\r\\n\" \r\n",
            b"$10\r\nquoted A\r\n\r\n",
        ),
        (b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n", b":1\r\n"),
        (b"*3\r\n$6\r\nINCRBY\r\n$1\r\nn\r\n$2\r\n41\r\n", b":42\r\n"),
        (b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"),
    ]
}

#[test]
fn input_split_at_every_byte_boundary_gives_the_same_replies() {
    let server = Server::start(KvConfig::default());
    let conv = conversation();
    let input: Vec<u8> = conv.iter().flat_map(|(req, _)| req.to_vec()).collect();
    let replies: Vec<u8> = conv.iter().flat_map(|(_, rep)| rep.to_vec()).collect();
    for split in 1..input.len() {
        let mut s = connect(&server);
        let _: () = redis::cmd("DEL")
            .arg("n")
            .query(&mut server.client())
            .unwrap();
        s.write_all(&input[..split]).unwrap();
        // Wait for the replies to every request wholly inside the first part: the server has read that
        // far and holds the rest of a request, partly parsed.
        let mut end = 0;
        let mut first = 0;
        for (req, rep) in &conv {
            end += req.len();
            if end <= split {
                first += rep.len();
            }
        }
        let got = read_exact_len(&mut s, first);
        assert_eq!(got, replies[..first], "split at {split}");
        s.write_all(&input[split..]).unwrap();
        s.write_all(b"QUIT\r\n").unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        let mut want = replies[first..].to_vec();
        want.extend_from_slice(b"+OK\r\n");
        assert_eq!(
            String::from_utf8_lossy(&rest),
            String::from_utf8_lossy(&want),
            "split at {split}"
        );
    }
}

#[test]
fn input_sent_one_byte_at_a_time_gives_the_same_replies() {
    let server = Server::start(KvConfig::default());
    let conv = conversation();
    let mut s = connect(&server);
    let mut want = Vec::new();
    for (req, rep) in &conv {
        for b in *req {
            s.write_all(&[*b]).unwrap();
        }
        want.extend_from_slice(rep);
    }
    let got = read_exact_len(&mut s, want.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn a_large_value_arriving_in_small_pieces() {
    let server = Server::start(KvConfig::default());
    let value: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut req = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    let mut s = connect(&server);
    for piece in req.chunks(997) {
        s.write_all(piece).unwrap();
    }
    assert_eq!(read_exact_len(&mut s, 5), b"+OK\r\n");
    let mut c = server.client();
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
    assert!(got == value, "value differs");
}

/// A request in multibulk form.
fn multibulk(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

#[test]
fn a_pipeline_read_ahead_runs_as_sent() {
    // The connection looks at the commands buffered after the one it runs (to prefetch their keys) and
    // keeps those scans for parsing them: a pipeline mixing databases, an inline command, a request too
    // large to be looked ahead at and keys old and new still runs exactly as sent.
    let server = Server::start(KvConfig::default());
    let mut wire = Vec::new();
    wire.extend(multibulk(&["SET", "a", "1"]));
    wire.extend(multibulk(&["SELECT", "1"]));
    wire.extend(multibulk(&["SET", "a", "2"]));
    for _ in 0..3 {
        wire.extend(multibulk(&["INCR", "a"]));
    }
    wire.extend_from_slice(b"GET a\r\n");
    let mset: Vec<String> = (0..10)
        .flat_map(|i| [format!("k{i}"), format!("v{i}")])
        .collect();
    let mut mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    mset.insert(0, "MSET");
    wire.extend(multibulk(&mset));
    wire.extend(multibulk(&[
        "EVAL",
        "return redis.call('GET', KEYS[1])",
        "1",
        "k9",
    ]));
    wire.extend(multibulk(&["SELECT", "0"]));
    wire.extend(multibulk(&["GET", "a"]));
    wire.extend(multibulk(&["GET", "k9"]));
    wire.extend(multibulk(&["QUIT"]));
    assert_eq!(
        String::from_utf8_lossy(&server.raw(&wire)),
        "+OK\r\n+OK\r\n+OK\r\n:3\r\n:4\r\n:5\r\n$1\r\n5\r\n+OK\r\n$2\r\nv9\r\n+OK\r\n$1\r\n1\r\n$-1\r\n+OK\r\n"
    );
}

#[test]
fn a_read_ahead_follows_authentication_changes_inside_a_pipeline() {
    let server = Server::start(KvConfig::default());
    let out = server.raw(b"CONFIG SET requirepass pw\r\nQUIT\r\n");
    assert_eq!(String::from_utf8_lossy(&out), "+OK\r\n+OK\r\n");
    // Twelve arguments are too many before AUTH but fine after it, in the same write.
    let mut push = vec!["RPUSH", "list"];
    push.extend(["x"; 10]);
    let mut wire = multibulk(&["AUTH", "pw"]);
    wire.extend(multibulk(&push));
    wire.extend(multibulk(&["QUIT"]));
    assert_eq!(
        String::from_utf8_lossy(&server.raw(&wire)),
        "+OK\r\n:10\r\n+OK\r\n"
    );
    // RESET drops the authentication, and the request after it is held to the small limits again even
    // though it was already looked at while they did not apply.
    let mut wire = multibulk(&["AUTH", "pw"]);
    wire.extend(multibulk(&["RESET"]));
    wire.extend(multibulk(&push));
    assert_eq!(
        String::from_utf8_lossy(&server.raw(&wire)),
        "+OK\r\n+RESET\r\n-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
}

//! MIGRATE: moves (or with COPY, copies) keys to another Redis-compatible server by sending it
//! `RESTORE key ttl payload [REPLACE]` with each key's DUMP payload, as Redis 7.0 does outside cluster
//! mode. The connection is opened per call (Redis keeps one per target for 10 seconds; strata does not),
//! and the blocking network I/O runs off the async worker's core.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use strata_resp::{Arg, Frame};

use super::super::{parse_i64, storage_error, wait_off_worker};
use super::dump::dump_with_deadline;
use crate::{Session, Shared};

/// The longest reply line read from the target: its replies to AUTH, SELECT and RESTORE are one short line.
const MAX_REPLY_LINE: u64 = 64 * 1024;

/// The options of one MIGRATE call.
struct Options<'a> {
    /// COPY: keep the local keys.
    copy: bool,
    /// REPLACE: overwrite existing keys on the target.
    replace: bool,
    /// AUTH password or AUTH2 username password: `(username, password)`.
    auth: Option<(Option<&'a [u8]>, &'a [u8])>,
    /// Where the keys start in the arguments: 3, or after KEYS.
    first_key: usize,
}

/// Parses the options after `timeout`, with Redis's errors.
fn parse_options<'a>(args: &'a [Arg<'_>]) -> Result<Options<'a>, Frame> {
    let mut options = Options {
        copy: false,
        replace: false,
        auth: None,
        first_key: 3,
    };
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = &args[j];
        if opt.eq_ignore_ascii_case(b"copy") {
            options.copy = true;
        } else if opt.eq_ignore_ascii_case(b"replace") {
            options.replace = true;
        } else if opt.eq_ignore_ascii_case(b"auth") {
            if more < 1 {
                return Err(Frame::error("ERR syntax error"));
            }
            options.auth = Some((None, &args[j + 1]));
            j += 1;
        } else if opt.eq_ignore_ascii_case(b"auth2") {
            if more < 2 {
                return Err(Frame::error("ERR syntax error"));
            }
            options.auth = Some((Some(&args[j + 1]), &args[j + 2]));
            j += 2;
        } else if opt.eq_ignore_ascii_case(b"keys") {
            if !args[3].is_empty() {
                return Err(Frame::error(
                    "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string",
                ));
            }
            options.first_key = j + 1;
            break;
        } else {
            return Err(Frame::error("ERR syntax error"));
        }
        j += 1;
    }
    Ok(options)
}

/// Appends one command in RESP (an array of bulk strings) to `out`.
fn put_command(out: &mut BytesMut, words: &[&[u8]]) {
    out.put_slice(format!("*{}\r\n", words.len()).as_bytes());
    for w in words {
        out.put_slice(format!("${}\r\n", w.len()).as_bytes());
        out.put_slice(w);
        out.put_slice(b"\r\n");
    }
}

/// How a migration's exchange with the target went wrong before every reply was read.
enum Exchange {
    /// Connecting failed or timed out.
    Connect,
    /// Sending the commands failed or timed out.
    Write,
}

/// Connects to `host:port` within `timeout`, with that timeout on reads and writes too.
fn connect(host: &[u8], port: &[u8], timeout: Duration) -> Option<TcpStream> {
    let host = std::str::from_utf8(host).ok()?;
    let port: u16 = std::str::from_utf8(port).ok()?.parse().ok()?;
    let addrs = (host, port).to_socket_addrs().ok()?;
    let stream = addrs
        .into_iter()
        .find_map(|addr| TcpStream::connect_timeout(&addr, timeout).ok())?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.set_nodelay(true).ok()?;
    Some(stream)
}

/// Reads one reply line without its line ending; `None` on an error, a timeout or the end of the stream.
fn read_line(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    match reader
        .by_ref()
        .take(MAX_REPLY_LINE)
        .read_until(b'\n', &mut line)
    {
        Ok(n) if n > 0 && line.ends_with(b"\n") => {
            line.pop();
            if line.ends_with(b"\r") {
                line.pop();
            }
            Some(line)
        }
        _ => None,
    }
}

/// MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
/// [AUTH2 username password] [KEYS key [key ...]].
///
/// Replies `+OK`, or `+NOKEY` when none of the keys exists. The target's first error is relayed as
/// `ERR Target instance replied with error: ...`; the keys it accepted are deleted locally all the same
/// (unless COPY), as in Redis.
pub fn migrate(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let options = match parse_options(args) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let timeout = match parse_i64(&args[5]) {
        Ok(t) if t <= 0 => 1000,
        Ok(t) => t,
        Err(r) => return r,
    };
    let dbid = match parse_i64(&args[4]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let timeout = Duration::from_millis(timeout as u64);

    // The keys that exist, with their RESTORE commands.
    let now = sh.keyspace.now_ms();
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut commands = BytesMut::new();
    if let Some((user, password)) = options.auth {
        match user {
            Some(user) => put_command(&mut commands, &[b"AUTH", user, password]),
            None => put_command(&mut commands, &[b"AUTH", password]),
        }
    }
    put_command(&mut commands, &[b"SELECT", dbid.to_string().as_bytes()]);
    for key in &args[options.first_key.min(args.len())..] {
        let (payload, deadline) = match dump_with_deadline(sh, s.db, key) {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(r) => return r,
        };
        let ttl = if deadline == 0 {
            0
        } else if deadline < now {
            continue;
        } else {
            (deadline - now).max(1)
        };
        let ttl = Bytes::from(ttl.to_string());
        let mut words: Vec<&[u8]> = vec![b"RESTORE", key, &ttl, &payload];
        if options.replace {
            words.push(b"REPLACE");
        }
        put_command(&mut commands, &words);
        keys.push(key);
    }
    if keys.is_empty() {
        return Frame::simple("NOKEY");
    }

    let (host, port) = (&args[1][..], &args[2][..]);
    let auth = options.auth.is_some();
    let exchanged = wait_off_worker(|| {
        let mut stream = connect(host, port, timeout).ok_or(Exchange::Connect)?;
        stream.write_all(&commands).map_err(|_| Exchange::Write)?;
        let mut reader = BufReader::new(stream);
        // The replies to AUTH, SELECT, then each RESTORE; fewer if the connection failed.
        let mut replies = Vec::with_capacity(keys.len() + 2);
        for _ in 0..keys.len() + 1 + usize::from(auth) {
            match read_line(&mut reader) {
                Some(line) => replies.push(line),
                None => break,
            }
        }
        Ok(replies)
    });
    let replies = match exchanged {
        Ok(r) => r,
        Err(Exchange::Connect) => {
            return Frame::error("IOERR error or timeout connecting to the client");
        }
        Err(Exchange::Write) => {
            return Frame::error("IOERR error or timeout writing to target instance");
        }
    };

    let preamble = 1 + usize::from(auth);
    if replies.len() <= preamble {
        // No reply to the first RESTORE (or to AUTH or SELECT).
        return Frame::error("IOERR error or timeout reading to target instance");
    }
    let setup_error = replies[..preamble]
        .iter()
        .find(|line| line.first() == Some(&b'-'));
    let mut target_error: Option<&[u8]> = None;
    for (key, reply) in keys.iter().zip(&replies[preamble..]) {
        let failed = setup_error.or((reply.first() == Some(&b'-')).then_some(reply));
        if let Some(line) = failed {
            target_error.get_or_insert(&line[1..]);
        } else if !options.copy {
            let _guard = sh.keyspace.lock(s.db, key);
            if let Err(e) = sh.keyspace.delete(s.db, key) {
                return storage_error(e);
            }
        }
    }
    if let Some(error) = target_error {
        return Frame::error(format!(
            "ERR Target instance replied with error: {}",
            String::from_utf8_lossy(error)
        ));
    }
    if replies.len() < preamble + keys.len() {
        return Frame::error("IOERR error or timeout reading to target instance");
    }
    Frame::ok()
}

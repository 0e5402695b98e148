//! Per-connection state.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use strata_resp::ProtocolVersion;

use crate::KvConfig;

/// One client connection's state: who it is, which database it uses, which protocol it speaks.
#[derive(Debug)]
pub struct Session {
    /// `CLIENT ID`: unique and increasing for the life of the process.
    pub id: u64,
    /// The peer address.
    pub peer: SocketAddr,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// The selected database.
    pub db: usize,
    /// RESP2 until `HELLO 3`.
    pub protocol: ProtocolVersion,
    /// Whether `AUTH` succeeded (or no password is configured).
    pub authenticated: bool,
    /// Set by `QUIT`: close after the reply is written.
    pub closing: bool,
    /// When the connection was accepted.
    pub connected_at: Instant,
    /// When the last command arrived.
    pub last_command_at: Instant,
    /// The name of the last command run (`CLIENT LIST`'s `cmd=`).
    pub last_command: &'static str,
    /// Commands queued since MULTI; `None` outside a transaction.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// Whether a command was refused while queueing (EXEC then aborts with EXECABORT).
    pub multi_failed: bool,
    /// WATCHed keys: database, key, and the key's write counter when watched.
    pub watched: Vec<(usize, Bytes, u64)>,
}

impl Session {
    /// A fresh session for a new connection.
    pub fn new(id: u64, peer: SocketAddr, config: &KvConfig) -> Self {
        let now = Instant::now();
        Session {
            id,
            peer,
            name: None,
            db: 0,
            protocol: ProtocolVersion::Resp2,
            authenticated: config.requirepass.is_none(),
            closing: false,
            connected_at: now,
            last_command_at: now,
            last_command: "NULL",
            multi: None,
            multi_failed: false,
            watched: Vec::new(),
        }
    }

    /// Leaves any transaction and drops every WATCH.
    pub fn end_transaction(&mut self, keyspace: &crate::Keyspace) {
        self.multi = None;
        self.multi_failed = false;
        for (db, key, _) in self.watched.drain(..) {
            keyspace.unwatch(db, &key);
        }
    }

    /// `RESET`: back to the state of a new connection, keeping the identity.
    pub fn reset(&mut self, config: &KvConfig) {
        self.name = None;
        self.db = 0;
        self.protocol = ProtocolVersion::Resp2;
        self.authenticated = config.requirepass.is_none();
    }

    /// The line `CLIENT LIST` and `CLIENT INFO` show for this connection.
    pub fn info_line(&self) -> String {
        let now = Instant::now();
        format!(
            "id={} addr={} laddr= fd=0 name={} age={} idle={} flags=N db={} sub=0 psub=0 ssub=0 multi=-1 \
             qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 tot-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 events=r \
             cmd={} user=default redir=-1 resp={}",
            self.id,
            self.peer,
            self.name
                .as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default(),
            now.duration_since(self.connected_at).as_secs(),
            now.duration_since(self.last_command_at).as_secs(),
            self.db,
            self.last_command,
            match self.protocol {
                ProtocolVersion::Resp2 => 2,
                ProtocolVersion::Resp3 => 3,
            }
        )
    }
}

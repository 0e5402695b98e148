//! Durable state in strata-storage: definitions (exchanges, queues, bindings) and persistent messages.
//!
//! Three trees:
//! - `amqp.defs`: `e\0<vhost>\0<exchange>` → exchange record, `q\0<vhost>\0<queue>` → queue record,
//!   `b\0<vhost>\0<source>\0<kind><destination>\0<routing key>\0<arguments>` → empty (the key is the binding),
//!   `P\0<policy|operator_policy>\0<vhost>\0<name>` → the policy as JSON (`pattern`, `apply-to`, `priority`,
//!   `definition`).
//! - `amqp.msgs`: `<queue id u64 BE><sequence u64 BE>` → [`Message::encode`]. A message routed to several
//!   durable queues is stored once per queue. An acknowledgement deletes the key. A message whose stored
//!   form is longer than [`STORED_PIECE`] is split: its first piece under that key, the others under
//!   `<queue id><sequence><piece number u16 BE>` (written before the first, so a present first piece means
//!   every piece is there; pieces without a first piece are leftovers of a crash and deleted at recovery).
//! - `amqp.pages`: `<queue id u64 BE><page id u64 BE>` → a paged-out message body (see [`crate::paging`]);
//!   written without fsync and wiped when the broker opens (transient by nature).
//!
//! Federation (`crate::federation`) keeps its definitions in `amqp.defs` too: `F\0<kind>\0<vhost>\0<name>` → a
//! field table; kind `u` an upstream, `s` an upstream set, `x` a federated exchange, `n` the cluster name, `b`
//! the keys a link last bound upstream.
//!
//! Recovery reads `amqp.defs`, then scans `amqp.msgs` in key order, so each queue gets its messages back in
//! publish order; records of queues that no longer exist are deleted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use amq_protocol::types::FieldTable;
use amq_protocol::types::generation::gen_field_table;
use amq_protocol::types::parsing::parse_field_table;
use bytes::Bytes;
use strata_storage::{Db, Tree, WriteBatch};

use crate::error::AmqpError;
use crate::exchange::{Destination, ExchangeKind};
use crate::message::Message;
use crate::policy::{Policy, PolicyKind};

/// Tree of definitions.
pub const DEFS_TREE: &str = "amqp.defs";
/// Tree of persistent messages.
pub const MSGS_TREE: &str = "amqp.msgs";
/// Tree of virtual hosts: `<name>` → `<description>\0<comma-separated tags>`; the key `\0init` marks a tree
/// whose default virtual host `/` was created (so deleting `/` sticks).
pub const VHOSTS_TREE: &str = "amqp.vhosts";
const VHOSTS_INIT_KEY: &[u8] = b"\0init";

/// A stored virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VHostDef {
    /// Name.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// Longest stored value for one message; longer ones are split into pieces this long (RabbitMQ's messages
/// go up to 128 MiB; pieces keep each commit, and the group commits queued behind it, moderate).
pub const STORED_PIECE: usize = 8 << 20;

/// Tree of paged-out message bodies.
pub const PAGES_TREE: &str = "amqp.pages";
/// Tree of whole queue entries spilled from the tail of very deep queues.
pub const SPILL_TREE: &str = "amqp.spill";

/// Runs a synchronous storage write (a definition change, which waits for its fsync under `fsync=always`)
/// so that it does not stall a runtime worker: on a multi-threaded tokio runtime the worker hands its other
/// tasks away first (`block_in_place`); elsewhere it just runs.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Handles to the broker's trees.
#[derive(Debug, Clone)]
pub struct Store {
    /// The database.
    pub db: Db,
    /// Definitions.
    pub defs: Tree,
    /// Messages.
    pub msgs: Tree,
    /// Paged-out bodies.
    pub pages: Tree,
    /// Spilled queue entries.
    pub spill: Tree,
    next_seq: Arc<AtomicU64>,
    /// (queue id, sequence) of stored messages split into pieces (their deletes cover the pieces).
    split: Arc<parking_lot::Mutex<std::collections::HashSet<(u64, u64)>>>,
    split_count: Arc<std::sync::atomic::AtomicUsize>,
}

/// A stored exchange.
#[derive(Debug, Clone)]
pub struct ExchangeDef {
    /// Virtual host.
    pub vhost: String,
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ExchangeKind,
    /// Auto-delete flag.
    pub auto_delete: bool,
    /// Internal flag.
    pub internal: bool,
    /// Arguments.
    pub arguments: FieldTable,
}

/// A stored queue.
#[derive(Debug, Clone)]
pub struct QueueDef {
    /// Virtual host.
    pub vhost: String,
    /// Name.
    pub name: String,
    /// Id keying its messages.
    pub id: u64,
    /// Auto-delete flag.
    pub auto_delete: bool,
    /// Arguments.
    pub arguments: FieldTable,
}

/// A stored binding.
#[derive(Debug, Clone)]
pub struct BindingDef {
    /// Virtual host.
    pub vhost: String,
    /// Source exchange.
    pub source: String,
    /// Destination.
    pub destination: Destination,
    /// Binding key.
    pub routing_key: String,
    /// Arguments.
    pub arguments: FieldTable,
}

/// Everything recovered at open.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Durable exchanges.
    pub exchanges: Vec<ExchangeDef>,
    /// Durable queues.
    pub queues: Vec<QueueDef>,
    /// Bindings between durable objects.
    pub bindings: Vec<BindingDef>,
    /// Policies and operator policies.
    pub policies: Vec<(PolicyKind, Policy)>,
}

fn table_bytes(t: &FieldTable) -> Vec<u8> {
    match gen_field_table(t)(Vec::new().into()) {
        Ok(ctx) => ctx.write,
        Err(_) => vec![0, 0, 0, 0],
    }
}

fn parse_table(b: &[u8]) -> Option<FieldTable> {
    parse_field_table(b).ok().map(|(_, t)| t)
}

fn key(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![kind];
    for p in parts {
        k.push(0);
        k.extend_from_slice(p);
    }
    k
}

fn split_key(k: &[u8]) -> Vec<&[u8]> {
    k.split(|b| *b == 0).collect()
}

/// The key of piece `n` (1, 2, ...) of a split message.
fn piece_key(queue_id: u64, seq: u64, n: u16) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..16].copy_from_slice(&msg_key(queue_id, seq));
    k[16..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The message key of `seq` in queue `queue_id`.
pub fn msg_key(queue_id: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&queue_id.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// Opens the trees.
    pub fn open(db: &Db) -> Result<Store, AmqpError> {
        Ok(Store {
            db: db.clone(),
            defs: db.tree(DEFS_TREE)?,
            msgs: db.tree(MSGS_TREE)?,
            pages: db.tree(PAGES_TREE)?,
            spill: db.tree(SPILL_TREE)?,
            next_seq: Arc::new(AtomicU64::new(1)),
            split: Arc::default(),
            split_count: Arc::default(),
        })
    }

    /// A fresh message sequence number.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Reads every definition (messages: [`Store::recover_messages`]).
    pub fn recover(&self) -> Result<Recovered, AmqpError> {
        let mut r = Recovered::default();
        for entry in self.defs.iter() {
            let (k, v) = entry?;
            let parts = split_key(&k);
            let corrupt =
                || AmqpError::Corrupt(format!("definition {:?}", String::from_utf8_lossy(&k)));
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            match (k.first(), parts.len()) {
                // Federation definitions: read by `Store::federation_defs`.
                (Some(&FEDERATION_PREFIX), _) => {}
                (Some(b'e'), 3) => {
                    let kind = v
                        .first()
                        .and_then(|&c| match c {
                            b'd' => Some(ExchangeKind::Direct),
                            b'f' => Some(ExchangeKind::Fanout),
                            b't' => Some(ExchangeKind::Topic),
                            b'h' => Some(ExchangeKind::Headers),
                            b'u' => Some(ExchangeKind::FederationUpstream),
                            _ => None,
                        })
                        .ok_or_else(corrupt)?;
                    let flags = *v.get(1).ok_or_else(corrupt)?;
                    r.exchanges.push(ExchangeDef {
                        vhost: s(parts[1]),
                        name: s(parts[2]),
                        kind,
                        auto_delete: flags & 1 != 0,
                        internal: flags & 2 != 0,
                        arguments: parse_table(v.get(2..).ok_or_else(corrupt)?)
                            .ok_or_else(corrupt)?,
                    });
                }
                (Some(b'q'), 3) => {
                    let id = u64::from_be_bytes(
                        v.get(..8)
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(corrupt)?,
                    );
                    let flags = *v.get(8).ok_or_else(corrupt)?;
                    r.queues.push(QueueDef {
                        vhost: s(parts[1]),
                        name: s(parts[2]),
                        id,
                        auto_delete: flags & 1 != 0,
                        arguments: parse_table(v.get(9..).ok_or_else(corrupt)?)
                            .ok_or_else(corrupt)?,
                    });
                }
                (Some(b'b'), _) => {
                    // The arguments may contain zero bytes: they are the value, not part of the split key.
                    if parts.len() < 5 {
                        return Err(corrupt());
                    }
                    let dest = parts[3];
                    let destination = match dest.first() {
                        Some(b'q') => Destination::Queue(Arc::from(s(&dest[1..]).as_str())),
                        Some(b'e') => Destination::Exchange(Arc::from(s(&dest[1..]).as_str())),
                        _ => return Err(corrupt()),
                    };
                    r.bindings.push(BindingDef {
                        vhost: s(parts[1]),
                        source: s(parts[2]),
                        destination,
                        routing_key: s(parts[4]),
                        arguments: parse_table(&v).ok_or_else(corrupt)?,
                    });
                }
                (Some(b'P'), 4) => {
                    let kind = match parts[1] {
                        b"policy" => PolicyKind::User,
                        b"operator_policy" => PolicyKind::Operator,
                        _ => return Err(corrupt()),
                    };
                    let policy =
                        policy_from_stored(&s(parts[2]), &s(parts[3]), &v).ok_or_else(corrupt)?;
                    r.policies.push((kind, policy));
                }
                _ => return Err(corrupt()),
            }
        }
        Ok(r)
    }

    /// Streams every stored message to `f` as (queue id, sequence, message), in key order (so each queue's
    /// in publish order), without holding them all in memory; sets the next sequence number.
    pub fn recover_messages(&self, mut f: impl FnMut(u64, u64, Message)) -> Result<(), AmqpError> {
        let mut max_seq = 0;
        // The message being read: (queue id, sequence, stored bytes, pieces seen).
        let mut cur: Option<(u64, u64, Vec<u8>, u16)> = None;
        let mut leftovers = WriteBatch::new();
        let mut finish = |cur: Option<(u64, u64, Vec<u8>, u16)>| -> Result<(), AmqpError> {
            let Some((qid, seq, bytes, pieces)) = cur else {
                return Ok(());
            };
            let msg = Message::decode(&bytes)
                .ok_or_else(|| AmqpError::Corrupt(format!("message {seq} of queue {qid}")))?;
            if pieces > 0 {
                self.split.lock().insert((qid, seq));
                self.split_count.fetch_add(1, Ordering::Relaxed);
            }
            f(qid, seq, msg);
            Ok(())
        };
        for entry in self.msgs.iter() {
            let (k, v) = entry?;
            let id = |at: usize| u64::from_be_bytes(k[at..at + 8].try_into().unwrap_or_default());
            match k.len() {
                16 => {
                    finish(cur.take())?;
                    let (qid, seq) = (id(0), id(8));
                    max_seq = max_seq.max(seq);
                    cur = Some((qid, seq, v.to_vec(), 0));
                }
                18 => match cur.as_mut() {
                    Some((qid, seq, bytes, pieces)) if *qid == id(0) && *seq == id(8) => {
                        bytes.extend_from_slice(&v);
                        *pieces += 1;
                    }
                    _ => leftovers.delete(&self.msgs, &k),
                },
                _ => {}
            }
        }
        finish(cur.take())?;
        if !leftovers.is_empty() {
            blocking(|| self.db.write(&leftovers))?;
        }
        self.next_seq.store(max_seq + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes every paged body (at open: pages belong to the previous run's memory).
    pub fn clear_pages(&self) -> Result<(), AmqpError> {
        blocking(|| self.pages.clear())?;
        blocking(|| self.spill.clear())?;
        Ok(())
    }

    /// Adds a page insert to `batch`.
    pub fn add_page(&self, batch: &mut WriteBatch, queue_id: u64, page: u64, body: &[u8]) {
        batch.put(&self.pages, &msg_key(queue_id, page), body);
    }

    /// Adds a page delete to `batch`.
    pub fn remove_page(&self, batch: &mut WriteBatch, queue_id: u64, page: u64) {
        batch.delete(&self.pages, &msg_key(queue_id, page));
    }

    /// Returns once every write submitted before it is visible (a tiny deferred write: commits are made
    /// visible in submission order).
    pub fn barrier(&self) -> Result<(), AmqpError> {
        let mut b = WriteBatch::new();
        b.delete(&self.pages, &msg_key(u64::MAX, u64::MAX));
        blocking(|| self.db.write_deferred(&b))?;
        Ok(())
    }

    /// Reads paged bodies of queue `queue_id`: pages from `amqp.pages`, durable copies from `amqp.msgs`.
    /// `None` where one is missing or unreadable.
    pub fn load_pages(&self, queue_id: u64, ats: &[crate::paging::PageAt]) -> Vec<Option<Bytes>> {
        use crate::paging::PageAt;
        let mut out: Vec<Option<Bytes>> = vec![None; ats.len()];
        let (mut page_keys, mut page_idx, mut msg_keys, mut msg_idx) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, at) in ats.iter().enumerate() {
            match *at {
                PageAt::Page(id) => {
                    page_keys.push(msg_key(queue_id, id));
                    page_idx.push(i);
                }
                PageAt::Stored(seq) => {
                    msg_keys.push(msg_key(queue_id, seq));
                    msg_idx.push(i);
                }
            }
        }
        if !page_keys.is_empty() {
            match self.pages.multi_get(&page_keys) {
                Ok(vals) => {
                    for (i, v) in page_idx.into_iter().zip(vals) {
                        out[i] = v;
                    }
                }
                Err(e) => tracing::error!(error = %e, "amqp page read failed"),
            }
        }
        if !msg_keys.is_empty() {
            match self.msgs.multi_get(&msg_keys) {
                Ok(vals) => {
                    for (i, v) in msg_idx.into_iter().zip(vals) {
                        out[i] = v.and_then(|v| Message::decode(&v)).map(|m| m.body);
                    }
                }
                Err(e) => tracing::error!(error = %e, "amqp stored message read failed"),
            }
        }
        out
    }

    /// Deletes pages now, without waiting for the commit.
    pub fn forget_pages(&self, queue_id: u64, pages: &[u64]) {
        let mut batch = WriteBatch::new();
        for &p in pages {
            self.remove_page(&mut batch, queue_id, p);
        }
        drop(self.db.write_async(&batch));
    }

    /// Deletes every page of queue `queue_id`.
    pub fn delete_pages(&self, queue_id: u64) {
        let mut batch = WriteBatch::new();
        batch.delete_range(
            &self.pages,
            &msg_key(queue_id, 0),
            &msg_key(queue_id, u64::MAX),
        );
        batch.delete(&self.pages, &msg_key(queue_id, u64::MAX));
        batch.delete_range(
            &self.spill,
            &msg_key(queue_id, 0),
            &msg_key(queue_id, u64::MAX),
        );
        drop(self.db.write_async(&batch));
    }

    fn exchange_key(vhost: &str, name: &str) -> Vec<u8> {
        key(b'e', &[vhost.as_bytes(), name.as_bytes()])
    }

    fn queue_key(vhost: &str, name: &str) -> Vec<u8> {
        key(b'q', &[vhost.as_bytes(), name.as_bytes()])
    }

    fn binding_key(b: &BindingDef) -> Vec<u8> {
        let mut dest = vec![match b.destination {
            Destination::Queue(_) => b'q',
            Destination::Exchange(_) => b'e',
        }];
        dest.extend_from_slice(b.destination.name().as_bytes());
        let mut k = key(
            b'b',
            &[
                b.vhost.as_bytes(),
                b.source.as_bytes(),
                &dest,
                b.routing_key.as_bytes(),
            ],
        );
        // Bindings differing only in arguments are distinct: the arguments are part of the key.
        k.push(0);
        k.extend_from_slice(&table_bytes(&b.arguments));
        k
    }

    /// Stores a durable exchange.
    pub fn put_exchange(&self, d: &ExchangeDef) -> Result<(), AmqpError> {
        let mut v = vec![
            match d.kind {
                ExchangeKind::Direct => b'd',
                ExchangeKind::Fanout => b'f',
                ExchangeKind::Topic => b't',
                ExchangeKind::Headers => b'h',
                ExchangeKind::FederationUpstream => b'u',
            },
            u8::from(d.auto_delete) | (u8::from(d.internal) << 1),
        ];
        v.extend_from_slice(&table_bytes(&d.arguments));
        blocking(|| self.defs.put(&Self::exchange_key(&d.vhost, &d.name), &v))?;
        Ok(())
    }

    /// Deletes a durable exchange.
    pub fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), AmqpError> {
        blocking(|| self.defs.delete(&Self::exchange_key(vhost, name)))?;
        Ok(())
    }

    /// Stores a durable queue.
    pub fn put_queue(&self, d: &QueueDef) -> Result<(), AmqpError> {
        let mut v = d.id.to_be_bytes().to_vec();
        v.push(u8::from(d.auto_delete));
        v.extend_from_slice(&table_bytes(&d.arguments));
        blocking(|| self.defs.put(&Self::queue_key(&d.vhost, &d.name), &v))?;
        Ok(())
    }

    /// Deletes a durable queue and its stored messages.
    pub fn delete_queue(&self, vhost: &str, name: &str, id: u64) -> Result<(), AmqpError> {
        let mut batch = WriteBatch::new();
        batch.delete(&self.defs, &Self::queue_key(vhost, name));
        batch.delete_range(&self.msgs, &msg_key(id, 0), &msg_key(id, u64::MAX));
        batch.delete(&self.msgs, &msg_key(id, u64::MAX));
        blocking(|| self.db.write(&batch))?;
        if self.split_count.load(Ordering::Relaxed) > 0 {
            let mut split = self.split.lock();
            let before = split.len();
            split.retain(|(q, _)| *q != id);
            self.split_count
                .fetch_sub(before - split.len(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Stores a binding.
    pub fn put_binding(&self, b: &BindingDef) -> Result<(), AmqpError> {
        blocking(|| {
            self.defs
                .put(&Self::binding_key(b), &table_bytes(&b.arguments))
        })?;
        Ok(())
    }

    /// Deletes a binding.
    pub fn delete_binding(&self, b: &BindingDef) -> Result<(), AmqpError> {
        blocking(|| self.defs.delete(&Self::binding_key(b)))?;
        Ok(())
    }

    /// Every stored virtual host; a store never initialised gets `/` (and remembers it did).
    pub fn recover_vhosts(&self) -> Result<Vec<VHostDef>, AmqpError> {
        let tree = self.db.tree(VHOSTS_TREE)?;
        let mut out = Vec::new();
        let mut initialised = false;
        for entry in tree.iter() {
            let (k, v) = entry?;
            if &k[..] == VHOSTS_INIT_KEY {
                initialised = true;
                continue;
            }
            let text = String::from_utf8_lossy(&v);
            let (description, tags) = text.split_once('\0').unwrap_or((&text, ""));
            out.push(VHostDef {
                name: String::from_utf8_lossy(&k).into_owned(),
                description: description.to_owned(),
                tags: tags
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
            });
        }
        if !initialised {
            let root = VHostDef {
                name: "/".to_owned(),
                description: "Default virtual host".to_owned(),
                tags: Vec::new(),
            };
            self.put_vhost(&root)?;
            blocking(|| tree.put(VHOSTS_INIT_KEY, b""))?;
            if !out.iter().any(|v| v.name == "/") {
                out.push(root);
            }
        }
        Ok(out)
    }

    /// Stores a virtual host.
    pub fn put_vhost(&self, d: &VHostDef) -> Result<(), AmqpError> {
        let tree = self.db.tree(VHOSTS_TREE)?;
        let value = format!("{}\0{}", d.description, d.tags.join(","));
        blocking(|| tree.put(d.name.as_bytes(), value.as_bytes()))?;
        Ok(())
    }

    /// Deletes a stored virtual host.
    pub fn delete_vhost(&self, name: &str) -> Result<(), AmqpError> {
        let tree = self.db.tree(VHOSTS_TREE)?;
        blocking(|| tree.delete(name.as_bytes()))?;
        Ok(())
    }

    fn policy_key(kind: PolicyKind, vhost: &str, name: &str) -> Vec<u8> {
        key(
            b'P',
            &[kind.as_str().as_bytes(), vhost.as_bytes(), name.as_bytes()],
        )
    }

    /// Stores a policy or operator policy (replacing one of the same name).
    pub fn put_policy(&self, kind: PolicyKind, p: &Policy) -> Result<(), AmqpError> {
        let mut m = serde_json::Map::new();
        m.insert("pattern".into(), p.pattern.clone().into());
        m.insert("apply-to".into(), p.apply_to.as_str().into());
        m.insert("priority".into(), p.priority.into());
        m.insert(
            "definition".into(),
            serde_json::Value::Object(p.definition.clone()),
        );
        let v = serde_json::Value::Object(m).to_string();
        blocking(|| {
            self.defs
                .put(&Self::policy_key(kind, &p.vhost, &p.name), v.as_bytes())
        })?;
        Ok(())
    }

    /// Deletes a stored policy or operator policy.
    pub fn delete_policy(
        &self,
        kind: PolicyKind,
        vhost: &str,
        name: &str,
    ) -> Result<(), AmqpError> {
        blocking(|| self.defs.delete(&Self::policy_key(kind, vhost, name)))?;
        Ok(())
    }

    /// Adds a message insert to `batch`. A message longer than [`STORED_PIECE`] has its later pieces
    /// submitted now, each in its own batch (a batch is at most 64 MiB), so they commit before `batch`.
    pub fn add_message(&self, batch: &mut WriteBatch, queue_id: u64, seq: u64, encoded: &[u8]) {
        if encoded.len() <= STORED_PIECE {
            batch.put(&self.msgs, &msg_key(queue_id, seq), encoded);
            return;
        }
        let mut pieces = encoded.chunks(STORED_PIECE);
        let first = pieces.next().unwrap_or_default();
        for (i, piece) in pieces.enumerate() {
            let n = u16::try_from(i + 1).unwrap_or(u16::MAX);
            let mut b = WriteBatch::new();
            b.put(&self.msgs, &piece_key(queue_id, seq, n), piece);
            // Nothing waits on it: the message's first piece commits after it (commit order is submit
            // order), and a failed commit poisons the engine, failing that one too.
            drop(self.db.write_async(&b));
        }
        batch.put(&self.msgs, &msg_key(queue_id, seq), first);
        self.split.lock().insert((queue_id, seq));
        self.split_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds a message delete to `batch` (its pieces too, if it was split).
    pub fn remove_message(&self, batch: &mut WriteBatch, queue_id: u64, seq: u64) {
        batch.delete(&self.msgs, &msg_key(queue_id, seq));
        if self.split_count.load(Ordering::Relaxed) > 0
            && self.split.lock().remove(&(queue_id, seq))
        {
            self.split_count.fetch_sub(1, Ordering::Relaxed);
            batch.delete_range(
                &self.msgs,
                &piece_key(queue_id, seq, 1),
                &piece_key(queue_id, seq, u16::MAX),
            );
        }
    }

    /// Deletes messages now, without waiting for the commit (nothing is acknowledged on it).
    pub fn forget(&self, queue_id: u64, seqs: &[u64]) {
        let mut batch = WriteBatch::new();
        for &s in seqs {
            self.remove_message(&mut batch, queue_id, s);
        }
        drop(self.db.write_async(&batch));
    }
}

/// First byte of the keys of federation definitions in `amqp.defs`.
pub const FEDERATION_PREFIX: u8 = b'F';

impl Store {
    fn federation_key(kind: u8, vhost: &str, name: &str) -> Vec<u8> {
        key(
            FEDERATION_PREFIX,
            &[&[kind], vhost.as_bytes(), name.as_bytes()],
        )
    }

    /// Stores a federation definition (`kind`: see the module doc) as a field table.
    pub fn put_federation(
        &self,
        kind: u8,
        vhost: &str,
        name: &str,
        value: &FieldTable,
    ) -> Result<(), AmqpError> {
        blocking(|| {
            self.defs.put(
                &Self::federation_key(kind, vhost, name),
                &table_bytes(value),
            )
        })?;
        Ok(())
    }

    /// Deletes a federation definition.
    pub fn delete_federation(&self, kind: u8, vhost: &str, name: &str) -> Result<(), AmqpError> {
        blocking(|| self.defs.delete(&Self::federation_key(kind, vhost, name)))?;
        Ok(())
    }

    /// Every stored federation definition: (kind, vhost, name, table).
    pub fn federation_defs(&self) -> Result<Vec<(u8, String, String, FieldTable)>, AmqpError> {
        let mut out = Vec::new();
        for entry in self.defs.prefix(&[FEDERATION_PREFIX, 0]) {
            let (k, v) = entry?;
            let corrupt =
                || AmqpError::Corrupt(format!("federation {:?}", String::from_utf8_lossy(&k)));
            let parts = split_key(&k);
            if parts.len() != 4 || parts[1].len() != 1 {
                return Err(corrupt());
            }
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            out.push((
                parts[1][0],
                s(parts[2]),
                s(parts[3]),
                parse_table(&v).ok_or_else(corrupt)?,
            ));
        }
        Ok(out)
    }
}

/// Encoded message bytes shared between queues (encoded once per publish).
pub type Encoded = Bytes;

/// Reads a policy stored by [`Store::put_policy`].
fn policy_from_stored(vhost: &str, name: &str, v: &[u8]) -> Option<Policy> {
    let json: serde_json::Value = serde_json::from_slice(v).ok()?;
    Policy::from_json(vhost, name, &json).ok()
}

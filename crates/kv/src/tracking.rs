//! Client-side caching (`CLIENT TRACKING`): the server remembers which keys a client read and tells it
//! when they change, so the client may keep values in a local cache until told otherwise.
//!
//! Two modes, as in Redis:
//!
//! - **Default**: after a read-only command of a tracking client, its keys enter the *tracking table*
//!   (key → ids of the clients that may cache it). A write, an expiry or an eviction of a key removes it
//!   from the table and sends each of those clients one invalidation for it. The table is bounded by
//!   `tracking-table-max-keys`: past it, keys are dropped at random, each with its invalidation (the client
//!   then simply re-reads). OPTIN tracks only reads preceded by `CLIENT CACHING yes`; OPTOUT tracks every
//!   read except those preceded by `CLIENT CACHING no`.
//! - **BCAST**: nothing is remembered per key; the client registers prefixes (the empty prefix by default)
//!   and hears about every changed key under them. Keys changed by one command are batched into one
//!   message per prefix, sent once the command finished.
//!
//! NOLOOP leaves out keys the client changed itself. Invalidations go out as RESP3 push frames
//! `>2 invalidate [keys]`, or with `REDIRECT id` to another connection: a RESP3 one gets the same push, a
//! RESP2 one in subscribed mode gets a `message` on `__redis__:invalidate`. A client whose redirect target
//! disconnected gets `tracking-redir-broken` pushes instead (if it speaks RESP3). FLUSHALL and FLUSHDB send
//! every tracking client one invalidation with a null key list and empty the table.
//!
//! Like Redis, keys are tracked by name across databases: a write of `k` in db 1 invalidates a cached `k`
//! of db 0 too (a spurious invalidation only costs a re-read).
//!
//! Messages travel through the receiving connection's pub/sub queue, so an invalidation caused by a client's
//! own write reaches it after that command's reply, as in Redis; an eviction that runs before a command
//! puts the invalidation ahead of the reply instead ([`Tracking::invalidate`]'s `own`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use strata_resp::Arg;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_resp::Frame;

use crate::Shared;
use crate::clients::ClientHandle;
use crate::pubsub::Message;

/// The channel RESP2 clients subscribe to for redirected invalidations.
pub const INVALIDATE_CHANNEL: &str = "__redis__:invalidate";

/// Redis's default `tracking-table-max-keys`.
const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// Bytes of memory counted per tracked key beyond its name, and per (key, client) pair.
const KEY_OVERHEAD: usize = 64;
const ITEM_OVERHEAD: usize = 16;

/// A connection's own view of its tracking mode, kept in its session (no lock on the command path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Local {
    /// `CLIENT TRACKING ON`.
    pub on: bool,
    /// BCAST mode.
    pub bcast: bool,
    /// OPTIN mode.
    pub optin: bool,
    /// OPTOUT mode.
    pub optout: bool,
    /// NOLOOP.
    pub noloop: bool,
    /// `CLIENT CACHING yes` (OPTIN) or `no` (OPTOUT) was called for the next command.
    pub caching: bool,
}

impl Local {
    /// Whether the keys of a read-only command run now are to be remembered.
    pub fn remembers_reads(&self) -> bool {
        self.on && !self.bcast && (!self.optin || self.caching) && (!self.optout || !self.caching)
    }
}

/// What the server keeps of one tracking client.
#[derive(Debug)]
struct Client {
    handle: Arc<ClientHandle>,
    /// `REDIRECT` target, 0 for none.
    redirect: u64,
    bcast: bool,
    noloop: bool,
    /// The redirect target was found gone.
    broken: bool,
    /// BCAST prefixes.
    prefixes: Vec<Bytes>,
}

/// A key changed under a BCAST prefix, and the client whose command changed it.
type ChangedKey = (Bytes, Option<u64>);

/// The tracking state of the whole service.
#[derive(Debug)]
pub struct Tracking {
    clients: Mutex<HashMap<u64, Client>>,
    /// Default-mode table: key → clients that may cache it.
    table: Mutex<HashMap<Bytes, HashSet<u64>>>,
    /// BCAST prefixes → clients.
    prefixes: Mutex<BTreeMap<Bytes, HashSet<u64>>>,
    /// Keys changed under some prefix since the last [`Tracking::flush_broadcasts`]: prefix, key, writer.
    pending: Mutex<Vec<(Bytes, Bytes, Option<u64>)>>,
    has_pending: AtomicBool,
    /// Number of tracking clients (the command path's one-load check).
    client_count: AtomicUsize,
    total_keys: AtomicUsize,
    total_items: AtomicUsize,
    key_bytes: AtomicUsize,
    max_keys: AtomicUsize,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            clients: Mutex::new(HashMap::new()),
            table: Mutex::new(HashMap::new()),
            prefixes: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
            client_count: AtomicUsize::new(0),
            total_keys: AtomicUsize::new(0),
            total_items: AtomicUsize::new(0),
            key_bytes: AtomicUsize::new(0),
            max_keys: AtomicUsize::new(DEFAULT_MAX_KEYS),
        }
    }
}

/// The options of one `CLIENT TRACKING ON`.
#[derive(Debug, Default)]
pub struct Options {
    /// `REDIRECT id` (0: none).
    pub redirect: u64,
    /// BCAST.
    pub bcast: bool,
    /// OPTIN.
    pub optin: bool,
    /// OPTOUT.
    pub optout: bool,
    /// NOLOOP.
    pub noloop: bool,
    /// `PREFIX p` (BCAST only).
    pub prefixes: Vec<Bytes>,
}

/// Whether one prefix is a prefix of the other (Redis's overlap rule: equal prefixes overlap too).
fn overlap(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

impl Tracking {
    /// Whether any client tracks anything, or the table still holds keys (the command path's check).
    pub fn is_active(&self) -> bool {
        self.client_count.load(Ordering::Relaxed) > 0 || self.total_keys.load(Ordering::Relaxed) > 0
    }

    /// INFO's `tracking_clients`.
    pub fn clients(&self) -> usize {
        self.client_count.load(Ordering::Relaxed)
    }

    /// INFO's `tracking_total_keys`: keys in the default-mode table.
    pub fn total_keys(&self) -> usize {
        self.total_keys.load(Ordering::Relaxed)
    }

    /// INFO's `tracking_total_items`: (key, client) pairs in the table.
    pub fn total_items(&self) -> usize {
        self.total_items.load(Ordering::Relaxed)
    }

    /// INFO's `tracking_total_prefixes`.
    pub fn total_prefixes(&self) -> usize {
        self.prefixes.lock().len()
    }

    /// About how many bytes the tracking table takes (counted in `used_memory`).
    pub fn memory(&self) -> u64 {
        (self.key_bytes.load(Ordering::Relaxed)
            + self.total_keys() * KEY_OVERHEAD
            + self.total_items() * ITEM_OVERHEAD) as u64
    }

    /// `CLIENT TRACKING ON` after its options were checked for syntax: checks them against the client's
    /// current mode, then enables tracking. Returns the new local state, or the error reply.
    pub fn enable(
        &self,
        sh: &Shared,
        handle: &Arc<ClientHandle>,
        local: Local,
        opts: Options,
    ) -> Result<Local, Frame> {
        if !opts.bcast && !opts.prefixes.is_empty() {
            return Err(Frame::error(
                "ERR PREFIX option requires BCAST mode to be enabled",
            ));
        }
        if local.on && local.bcast != opts.bcast {
            return Err(Frame::error(
                "ERR You can't switch BCAST mode on/off before disabling tracking for this client, \
                 and then re-enabling it with a different mode.",
            ));
        }
        if opts.bcast && (opts.optin || opts.optout) {
            return Err(Frame::error(
                "ERR OPTIN and OPTOUT are not compatible with BCAST",
            ));
        }
        if opts.optin && opts.optout {
            return Err(Frame::error("ERR You can't use both OPTIN and OPTOUT"));
        }
        if (opts.optin && local.optout) || (opts.optout && local.optin) {
            return Err(Frame::error(
                "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, \
                 and then re-enabling it with a different mode.",
            ));
        }
        if opts.redirect != 0 && sh.clients.get(opts.redirect).is_none() {
            return Err(Frame::error(
                "ERR The client ID you want redirect to does not exist",
            ));
        }
        let mut clients = self.clients.lock();
        if opts.bcast {
            let existing: &[Bytes] = clients
                .get(&handle.id)
                .map_or(&[], |c| c.prefixes.as_slice());
            for (i, p) in opts.prefixes.iter().enumerate() {
                if let Some(old) = existing.iter().find(|old| overlap(old, p)) {
                    return Err(Frame::error(format!(
                        "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single \
                         client must not overlap.",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(old)
                    )));
                }
                if let Some(other) = opts.prefixes[i + 1..].iter().find(|q| overlap(p, q)) {
                    return Err(Frame::error(format!(
                        "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a \
                         single client must not overlap.",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(other)
                    )));
                }
            }
        }
        if !local.on {
            self.client_count.fetch_add(1, Ordering::Relaxed);
        }
        let client = clients.entry(handle.id).or_insert_with(|| Client {
            handle: handle.clone(),
            redirect: 0,
            bcast: false,
            noloop: false,
            broken: false,
            prefixes: Vec::new(),
        });
        client.redirect = opts.redirect;
        client.bcast = opts.bcast;
        client.noloop = opts.noloop;
        client.broken = false;
        if opts.bcast {
            let mut added = opts.prefixes;
            if added.is_empty() && client.prefixes.is_empty() {
                added.push(Bytes::new());
            }
            let mut prefixes = self.prefixes.lock();
            for p in added {
                if !client.prefixes.contains(&p) {
                    prefixes.entry(p.clone()).or_default().insert(handle.id);
                    client.prefixes.push(p);
                }
            }
            handle.set_prefix_memory(
                client
                    .prefixes
                    .iter()
                    .map(|p| crate::clients::prefix_memory(p))
                    .sum(),
            );
        }
        Ok(Local {
            on: true,
            bcast: opts.bcast,
            optin: opts.optin,
            optout: opts.optout,
            noloop: opts.noloop,
            caching: false,
        })
    }

    /// `CLIENT TRACKING OFF` (also on disconnect and RESET). Keys it read stay in the table until they
    /// change, as in Redis; invalidations for them are then skipped.
    pub fn disable(&self, id: u64) {
        let Some(client) = self.clients.lock().remove(&id) else {
            return;
        };
        self.client_count.fetch_sub(1, Ordering::Relaxed);
        client.handle.set_prefix_memory(0);
        if !client.prefixes.is_empty() {
            let mut prefixes = self.prefixes.lock();
            for p in &client.prefixes {
                if let Some(ids) = prefixes.get_mut(p) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        prefixes.remove(p);
                    }
                }
            }
        }
    }

    /// `CLIENT GETREDIR`: -1 when tracking is off, else the redirect target (0 for none).
    pub fn redirect_of(&self, id: u64) -> i64 {
        self.clients
            .lock()
            .get(&id)
            .map_or(-1, |c| i64::try_from(c.redirect).unwrap_or(i64::MAX))
    }

    /// `CLIENT TRACKINGINFO`.
    pub fn info(&self, id: u64, local: &Local) -> Frame {
        let clients = self.clients.lock();
        let client = clients.get(&id).filter(|_| local.on);
        let mut flags = vec![Frame::bulk(if client.is_some() { "on" } else { "off" })];
        if let Some(c) = client {
            if local.bcast {
                flags.push(Frame::bulk("bcast"));
            }
            if local.optin {
                flags.push(Frame::bulk("optin"));
                if local.caching {
                    flags.push(Frame::bulk("caching-yes"));
                }
            }
            if local.optout {
                flags.push(Frame::bulk("optout"));
                if local.caching {
                    flags.push(Frame::bulk("caching-no"));
                }
            }
            if c.noloop {
                flags.push(Frame::bulk("noloop"));
            }
            if c.broken {
                flags.push(Frame::bulk("broken_redirect"));
            }
        }
        let redirect = client.map_or(-1, |c| i64::try_from(c.redirect).unwrap_or(i64::MAX));
        let mut prefixes: Vec<Bytes> = client.map(|c| c.prefixes.clone()).unwrap_or_default();
        prefixes.sort();
        Frame::Map(vec![
            (Frame::bulk("flags"), Frame::Array(flags)),
            (Frame::bulk("redirect"), Frame::Integer(redirect)),
            (
                Frame::bulk("prefixes"),
                Frame::Array(prefixes.into_iter().map(Frame::Bulk).collect()),
            ),
        ])
    }

    /// Remembers that client `id` may cache `keys` (a read-only command's), then keeps the table within
    /// `tracking-table-max-keys`.
    pub fn remember<'a>(&self, sh: &Shared, id: u64, keys: impl Iterator<Item = Arg<'a>>) {
        {
            let mut table = self.table.lock();
            for key in keys {
                match table.get_mut(key.as_ref()) {
                    Some(ids) => {
                        if ids.insert(id) {
                            self.total_items.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        table.insert(key.to_bytes(), HashSet::from([id]));
                        self.total_keys.fetch_add(1, Ordering::Relaxed);
                        self.total_items.fetch_add(1, Ordering::Relaxed);
                        self.key_bytes.fetch_add(key.len(), Ordering::Relaxed);
                    }
                }
            }
        }
        self.enforce_limit(sh);
    }

    /// Sets `tracking-table-max-keys` and applies it at once.
    pub fn set_max_keys(&self, sh: &Shared, n: usize) {
        self.max_keys.store(n, Ordering::Relaxed);
        self.enforce_limit(sh);
    }

    /// Drops keys from the table (each with its invalidation) until it is within its limit (0: none).
    fn enforce_limit(&self, sh: &Shared) {
        let max = self.max_keys.load(Ordering::Relaxed);
        if max == 0 {
            return;
        }
        while self.total_keys() > max {
            let victim = {
                let table = self.table.lock();
                // A HashMap's iteration order is randomly seeded per map: an arbitrary key.
                table.keys().next().cloned()
            };
            let Some(key) = victim else { return };
            self.invalidate_tracked(sh, &key, None, None);
        }
    }

    /// A key changed (written, expired, evicted): tells the clients that may cache it, and queues it for
    /// the BCAST clients of matching prefixes (sent by [`Tracking::flush_broadcasts`]). `writer` is the
    /// client whose command changed it (NOLOOP); `own` (a client id and a frame list) receives the frames
    /// meant for that client when they must precede the reply it is about to get.
    pub fn invalidate(
        &self,
        sh: &Shared,
        key: &[u8],
        writer: Option<u64>,
        own: Option<(u64, &mut Vec<Frame>)>,
    ) {
        if !self.is_active() {
            return;
        }
        self.invalidate_tracked(sh, key, writer, own);
        let prefixes = self.prefixes.lock();
        if prefixes.is_empty() {
            return;
        }
        let matching: Vec<Bytes> = prefixes
            .keys()
            .filter(|p| key.starts_with(p))
            .cloned()
            .collect();
        drop(prefixes);
        if matching.is_empty() {
            return;
        }
        let key = Bytes::copy_from_slice(key);
        let mut pending = self.pending.lock();
        for p in matching {
            pending.push((p, key.clone(), writer));
        }
        self.has_pending.store(true, Ordering::Release);
    }

    /// The default-mode half of [`Tracking::invalidate`].
    fn invalidate_tracked(
        &self,
        sh: &Shared,
        key: &[u8],
        writer: Option<u64>,
        mut own: Option<(u64, &mut Vec<Frame>)>,
    ) {
        if self.total_keys() == 0 {
            return;
        }
        let Some(ids) = self.table.lock().remove(key) else {
            return;
        };
        self.total_keys.fetch_sub(1, Ordering::Relaxed);
        self.total_items.fetch_sub(ids.len(), Ordering::Relaxed);
        self.key_bytes.fetch_sub(key.len(), Ordering::Relaxed);
        let payload = Frame::Array(vec![Frame::Bulk(Bytes::copy_from_slice(key))]);
        let mut clients = self.clients.lock();
        for id in ids {
            let Some(c) = clients.get_mut(&id) else {
                continue;
            };
            if c.bcast || (c.noloop && writer == Some(id)) {
                continue;
            }
            let own = match own.as_mut() {
                Some((current, frames)) if *current == id => Some(&mut **frames),
                _ => None,
            };
            send(sh, c, payload.clone(), own);
        }
    }

    /// Sends the BCAST invalidations queued since the last call: one message per prefix and client with
    /// the keys changed under it (less the client's own changes under NOLOOP).
    pub fn flush_broadcasts(&self, sh: &Shared) {
        if !self.has_pending.load(Ordering::Acquire) {
            return;
        }
        let pending = {
            let mut p = self.pending.lock();
            self.has_pending.store(false, Ordering::Release);
            std::mem::take(&mut *p)
        };
        let mut by_prefix: BTreeMap<Bytes, Vec<ChangedKey>> = BTreeMap::new();
        for (prefix, key, writer) in pending {
            by_prefix.entry(prefix).or_default().push((key, writer));
        }
        // The subscribers of each prefix, copied so the client map is locked alone (enable() locks the
        // client map before the prefix map).
        let subscribers: Vec<(Vec<ChangedKey>, Vec<u64>)> = {
            let prefixes = self.prefixes.lock();
            by_prefix
                .into_iter()
                .filter_map(|(prefix, keys)| {
                    let ids = prefixes.get(&prefix)?;
                    Some((keys, ids.iter().copied().collect()))
                })
                .collect()
        };
        let mut clients = self.clients.lock();
        for (keys, ids) in subscribers {
            for id in &ids {
                let Some(c) = clients.get_mut(id) else {
                    continue;
                };
                let mut seen = HashSet::new();
                let list: Vec<Frame> = keys
                    .iter()
                    .filter(|(_, w)| !(c.noloop && *w == Some(*id)))
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .map(|(k, _)| Frame::Bulk(k.clone()))
                    .collect();
                if !list.is_empty() {
                    send(sh, c, Frame::Array(list), None);
                }
            }
        }
    }

    /// FLUSHALL / FLUSHDB: every tracking client gets an invalidation with a null key list, and the
    /// table is emptied.
    pub fn flush(&self, sh: &Shared) {
        {
            let mut table = self.table.lock();
            table.clear();
            self.total_keys.store(0, Ordering::Relaxed);
            self.total_items.store(0, Ordering::Relaxed);
            self.key_bytes.store(0, Ordering::Relaxed);
        }
        let mut clients = self.clients.lock();
        for c in clients.values_mut() {
            send(sh, c, Frame::Null, None);
        }
    }
}

/// The write counters of a write command's keys before it ran, so [`after_command`] knows which keys
/// it changed.
#[derive(Debug)]
pub struct Watch {
    db: usize,
    keys: Vec<(Bytes, u64)>,
}

impl Watch {
    /// Before a command runs: watches its keys if it is a write and anyone may need to hear of it.
    pub fn begin(
        sh: &Shared,
        db: usize,
        spec: &crate::cmd::CommandSpec,
        args: &[Arg],
        keys: &[usize],
    ) -> Option<Watch> {
        if !sh.tracking.is_active() || !spec.flags.contains(&"write") {
            return None;
        }
        let keys = keys
            .iter()
            .filter_map(|&i| args.get(i))
            .map(|k| {
                let k = k.to_bytes();
                let writes = sh.keyspace.watch(db, &k);
                (k, writes)
            })
            .collect();
        Some(Watch { db, keys })
    }
}

/// After a command ran: invalidates the keys it changed, empties the table on FLUSHALL/FLUSHDB, and
/// remembers the keys a tracking client read.
pub fn after_command(
    sh: &Shared,
    session: &crate::Session,
    spec: &crate::cmd::CommandSpec,
    args: &[Arg],
    keys: &[usize],
    watch: Option<Watch>,
    reply: &Frame,
) {
    if let Some(w) = watch {
        for (key, before) in w.keys {
            let written = sh.keyspace.watch_writes(w.db, &key) != before;
            sh.keyspace.unwatch(w.db, &key);
            if written {
                let writer = session.script_caller.unwrap_or(session.id);
                sh.tracking.invalidate(sh, &key, Some(writer), None);
            }
        }
    }
    if matches!(spec.name, "flushall" | "flushdb") && !matches!(reply, Frame::Error(_)) {
        sh.tracking.flush(sh);
    }
    if session.tracking.remembers_reads() && spec.flags.contains(&"readonly") {
        sh.tracking.remember(
            sh,
            session.id,
            keys.iter().filter_map(|&i| args.get(i).copied()),
        );
    }
}

/// Sends one invalidation with `payload` (an array of keys, or null) to a tracking client, or to its
/// redirect target. With `own`, a frame for the client itself goes there rather than into its queue.
fn send(sh: &Shared, c: &mut Client, payload: Frame, own: Option<&mut Vec<Frame>>) {
    let (target, redirected) = if c.redirect != 0 {
        match sh.clients.get(c.redirect) {
            Some(t) => (t, true),
            None => {
                c.broken = true;
                if c.handle.resp.load(Ordering::Relaxed) >= 3 {
                    let frame = Frame::Push(vec![
                        Frame::bulk("tracking-redir-broken"),
                        Frame::Integer(i64::try_from(c.redirect).unwrap_or(i64::MAX)),
                    ]);
                    deliver(sh, &c.handle, frame, own);
                }
                return;
            }
        }
    } else {
        (c.handle.clone(), false)
    };
    let frame = if target.resp.load(Ordering::Relaxed) >= 3 {
        Frame::Push(vec![Frame::bulk("invalidate"), payload])
    } else if redirected && target.is_pubsub() {
        Frame::Push(vec![
            Frame::bulk("message"),
            Frame::bulk(INVALIDATE_CHANNEL),
            payload,
        ])
    } else {
        // A RESP2 connection outside subscribed mode cannot receive out-of-band data.
        return;
    };
    let own = if redirected { None } else { own };
    deliver(sh, &target, frame, own);
}

fn deliver(sh: &Shared, target: &ClientHandle, frame: Frame, own: Option<&mut Vec<Frame>>) {
    match own {
        Some(frames) => frames.push(frame),
        None => sh.pubsub.deliver(target, Message::frame(frame)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_overlap_as_in_redis() {
        assert!(overlap(b"FOO", b"FOOBAR"));
        assert!(overlap(b"FOOBAR", b"FOO"));
        assert!(overlap(b"", b"x"));
        assert!(overlap(b"a", b"a"));
        assert!(!overlap(b"FOO", b"BAR"));
    }

    #[test]
    fn optin_and_optout_decide_which_reads_are_remembered() {
        let on = Local {
            on: true,
            ..Local::default()
        };
        assert!(on.remembers_reads());
        let optin = Local { optin: true, ..on };
        assert!(!optin.remembers_reads());
        assert!(
            Local {
                caching: true,
                ..optin
            }
            .remembers_reads()
        );
        let optout = Local { optout: true, ..on };
        assert!(optout.remembers_reads());
        assert!(
            !Local {
                caching: true,
                ..optout
            }
            .remembers_reads()
        );
        assert!(!Local { bcast: true, ..on }.remembers_reads());
    }
}

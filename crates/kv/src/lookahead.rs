//! Pipeline look-ahead: the keys of a pipeline's next commands start loading before those commands run.
//!
//! Commands run one at a time, and a command's first read of a key that is not in the cache stalls on a
//! chain of misses (the memtable's index slot, then the key's node, then its value), about a sixth of an
//! EVALSHA on 100k random keys. A pipelining client sends many commands in one write, so once one of them
//! is parsed the next ones are already in the read buffer: [`LookAhead`] peeks at them (without consuming
//! anything), finds each one's first key, and asks the keyspace to start loading all of those keys at once
//! ([`crate::keyspace::Keyspace::prefetch_reads`]), so their misses overlap each other and the commands
//! running meanwhile instead of coming one after another. Redis 8 prefetches the keys of a batch of commands
//! for the same reason.
//!
//! It is only a hint: nothing it does changes what a command sees. The parser keeps the scans it made
//! while peeking, so a peeked command is not parsed twice. A client that sends one command per write pays
//! nothing (there is nothing buffered after the command). Where the hint cannot help it backs off and looks
//! only now and then: a pipeline of commands on one key (a stream's XADDs, PFADDs to one HyperLogLog), whose
//! key is in the cache after the first command, and keys the memtable does not hold (new keys, or keys only
//! on disk), where there is nothing in memory to load.

use strata_resp::Arg;
use strata_resp::RequestParser;

use crate::Shared;

/// Most commands looked at in one peek, and so most keys prefetched at once.
const BATCH: usize = 16;

/// Peeks skipped after one that could not help (each skipped peek is a batch of commands).
const BACKOFF: u32 = 8;

/// Longest command name remembered between peeks.
const NAME_BYTES: usize = 24;

/// A connection's look-ahead state.
#[derive(Debug, Default)]
pub(crate) struct LookAhead {
    /// Commands still to be parsed that the last peek already covered.
    covered: usize,
    /// Peeks still to skip.
    backoff: u32,
    /// The last command name peeked at and its place in the command table: a pipeline mostly repeats one
    /// command, and finding a name in the table costs as much as scanning the request.
    name: [u8; NAME_BYTES],
    name_len: usize,
    name_index: Option<usize>,
}

impl LookAhead {
    /// Called after a command was parsed from `input`: when the commands after it are not yet covered,
    /// peeks at up to [`BATCH`] of them and prefetches their keys in database `db`.
    ///
    /// A command with nothing buffered after it (a client waiting for each reply) has its own first key's
    /// memtable slot and plain-filter bit start loading instead, so they arrive while the command is
    /// dispatched (see [`crate::keyspace::Keyspace::prefetch_record_slot`]).
    pub(crate) fn after_parse(
        &mut self,
        parser: &mut RequestParser,
        args: &[Arg],
        input: &[u8],
        shared: &Shared,
        db: usize,
    ) {
        if self.covered > 0 {
            self.covered -= 1;
            if self.covered > 0 {
                return;
            }
        }
        if input.is_empty() {
            self.prefetch_own_key(args, shared, db);
            return;
        }
        if self.backoff > 0 {
            self.backoff -= 1;
            self.covered = BATCH;
            return;
        }
        let mut keys: [&[u8]; BATCH] = [&[]; BATCH];
        let mut n = 0;
        let mut distinct = false;
        let seen = parser.peek(input, BATCH, |args| {
            let Some(index) = self.command_index(args[0]) else {
                return;
            };
            if let Some(at) = crate::cmd::first_key_at(index, args) {
                distinct |= n > 0 && keys[0] != args[at];
                keys[n] = args[at];
                n += 1;
            }
        });
        self.covered = seen;
        // One key throughout is cached after its first command; keys not in memory have nothing to load.
        let useless = n > 1 && !distinct;
        if useless || (n > 0 && shared.keyspace.prefetch_reads(db, &keys[..n]) == 0) {
            self.backoff = BACKOFF;
        }
    }

    /// Starts loading the first key of the command `args`, which runs next (the first stage only: its
    /// slot, not yet the node the slot points to, as that would stall on the slot right here).
    fn prefetch_own_key(&mut self, args: &[Arg], shared: &Shared, db: usize) {
        let Some(name) = args.first() else {
            return;
        };
        let Some(index) = self.command_index(name) else {
            return;
        };
        // Keys come early in a command; the first few arguments are enough to find the first one.
        let mut view: [&[u8]; 8] = [&[]; 8];
        let n = args.len().min(view.len());
        for (v, a) in view.iter_mut().zip(&args[..n]) {
            *v = a;
        }
        if let Some(at) = crate::cmd::first_key_at(index, &view[..n]) {
            shared.keyspace.prefetch_record_slot(db, view[at]);
        }
    }

    /// Where command `name` is in the command table, remembering the last name asked for.
    fn command_index(&mut self, name: &[u8]) -> Option<usize> {
        if name.len() == self.name_len && self.name[..name.len()].eq_ignore_ascii_case(name) {
            return self.name_index;
        }
        let index = crate::cmd::lookup_indexed(name).map(|(index, _)| index);
        if let Some(room) = self.name.get_mut(..name.len()) {
            room.copy_from_slice(name);
            self.name_len = name.len();
            self.name_index = index;
        }
        index
    }

    /// Called when the buffered commands ran out: whatever is read next is looked at afresh.
    pub(crate) fn reset(&mut self) {
        self.covered = 0;
    }
}

//! `ACL LOG`: the recent denials (commands, keys, channels refused by ACL rules) and failed `AUTH`s,
//! newest first and bounded by `acllog-max-len`.
//!
//! As in Redis, a denial like one of the last ten entries (same reason, context, object and user, within
//! 60 seconds of it) does not add an entry: that entry's `count` goes up, it takes the new time and
//! client info, and it moves to the front.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use strata_resp::Frame;

/// Redis's default `acllog-max-len`.
pub const DEFAULT_MAX_LEN: usize = 128;

/// How far apart (in milliseconds) two similar denials may be and still share an entry.
const GROUPING_WINDOW_MS: u64 = 60_000;

/// How many of the newest entries a new denial is compared with.
const GROUPING_SCAN: usize = 10;

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogReason {
    /// The command (object: its full name).
    Command,
    /// A key (object: the key).
    Key,
    /// A channel (object: the channel).
    Channel,
    /// An `AUTH`/`HELLO AUTH` with a wrong password, an unknown or a disabled user (object: the command
    /// name as sent).
    Auth,
}

impl LogReason {
    /// The name `ACL LOG` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            LogReason::Command => "command",
            LogReason::Key => "key",
            LogReason::Channel => "channel",
            LogReason::Auth => "auth",
        }
    }
}

/// Where the refused call came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogContext {
    /// Sent by the client.
    Toplevel,
    /// Queued in, or run by, a MULTI/EXEC transaction.
    Multi,
    /// Called by a script or function.
    Lua,
    /// Called by a module (strata has none; kept for completeness of the reply's values).
    Module,
}

impl LogContext {
    /// The name `ACL LOG` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            LogContext::Toplevel => "toplevel",
            LogContext::Multi => "multi",
            LogContext::Lua => "lua",
            LogContext::Module => "module",
        }
    }
}

/// One `ACL LOG` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// How many similar denials it stands for.
    pub count: u64,
    /// What was refused.
    pub reason: LogReason,
    /// Where the call came from.
    pub context: LogContext,
    /// The command's full name, the key, the channel, or for `auth` the command as sent.
    pub object: Vec<u8>,
    /// The user the client was authenticated as (for `auth`, the user it tried).
    pub username: Vec<u8>,
    /// When it last happened, in Unix milliseconds.
    pub updated_ms: u64,
    /// `CLIENT INFO` of the client it last happened to (the script's caller for a script).
    pub client_info: String,
}

impl LogEntry {
    /// A first occurrence at `now_ms`.
    pub fn new(
        reason: LogReason,
        context: LogContext,
        object: impl Into<Vec<u8>>,
        username: impl Into<Vec<u8>>,
        client_info: impl Into<String>,
        now_ms: u64,
    ) -> LogEntry {
        LogEntry {
            count: 1,
            reason,
            context,
            object: object.into(),
            username: username.into(),
            updated_ms: now_ms,
            client_info: client_info.into(),
        }
    }

    /// Whether `other` is the same denial close enough in time to be counted in this entry.
    fn similar(&self, other: &LogEntry) -> bool {
        self.reason == other.reason
            && self.context == other.context
            && self.updated_ms.abs_diff(other.updated_ms) <= GROUPING_WINDOW_MS
            && self.object == other.object
            && self.username == other.username
    }

    /// Seconds since it last happened.
    pub fn age_seconds(&self, now_ms: u64) -> f64 {
        // Clocks can step back; Redis shows a negative age then, which is as good as anything.
        (now_ms as f64 - self.updated_ms as f64) / 1000.0
    }

    /// The entry as `ACL LOG` replies it: a map of `count`, `reason`, `context`, `object`, `username`,
    /// `age-seconds` and `client-info`, in that order (Redis 7.0's fields).
    pub fn to_frame(&self, now_ms: u64) -> Frame {
        let count = i64::try_from(self.count).unwrap_or(i64::MAX);
        Frame::Map(vec![
            (Frame::bulk("count"), Frame::Integer(count)),
            (Frame::bulk("reason"), Frame::bulk(self.reason.as_str())),
            (Frame::bulk("context"), Frame::bulk(self.context.as_str())),
            (
                Frame::bulk("object"),
                Frame::Bulk(Bytes::copy_from_slice(&self.object)),
            ),
            (
                Frame::bulk("username"),
                Frame::Bulk(Bytes::copy_from_slice(&self.username)),
            ),
            (
                Frame::bulk("age-seconds"),
                Frame::Double(self.age_seconds(now_ms)),
            ),
            (
                Frame::bulk("client-info"),
                Frame::Bulk(Bytes::from(self.client_info.clone())),
            ),
        ])
    }
}

/// The bounded log; see the module documentation.
#[derive(Debug)]
pub struct AclLog {
    /// Newest first.
    entries: Mutex<VecDeque<LogEntry>>,
    max_len: AtomicUsize,
}

impl Default for AclLog {
    fn default() -> Self {
        AclLog::new(DEFAULT_MAX_LEN)
    }
}

impl AclLog {
    /// An empty log keeping at most `max_len` entries.
    pub fn new(max_len: usize) -> AclLog {
        AclLog {
            entries: Mutex::new(VecDeque::new()),
            max_len: AtomicUsize::new(max_len),
        }
    }

    /// `acllog-max-len`.
    pub fn max_len(&self) -> usize {
        self.max_len.load(Ordering::Relaxed)
    }

    /// Sets `acllog-max-len`. As in Redis, a log longer than that is trimmed at the next new entry.
    pub fn set_max_len(&self, max_len: usize) {
        self.max_len.store(max_len, Ordering::Relaxed);
    }

    /// Records a denial (its `updated_ms` is when it happened): counted in a similar recent entry, or
    /// added at the front, dropping the oldest entries past the limit.
    pub fn record(&self, entry: LogEntry) {
        let mut entries = self.entries.lock();
        let similar = entries
            .iter()
            .take(GROUPING_SCAN)
            .position(|e| e.similar(&entry));
        match similar.and_then(|i| entries.remove(i)) {
            Some(mut found) => {
                found.count += 1;
                found.updated_ms = entry.updated_ms;
                found.client_info = entry.client_info;
                entries.push_front(found);
            }
            None => {
                entries.push_front(entry);
                entries.truncate(self.max_len());
            }
        }
    }

    /// `ACL LOG [count]`: the newest `count` entries, newest first.
    pub fn newest(&self, count: usize) -> Vec<LogEntry> {
        self.entries.lock().iter().take(count).cloned().collect()
    }

    /// `ACL LOG` as a reply: the newest `count` entries, `now_ms` giving their age.
    pub fn reply(&self, count: usize, now_ms: u64) -> Frame {
        Frame::Array(
            self.entries
                .lock()
                .iter()
                .take(count)
                .map(|e| e.to_frame(now_ms))
                .collect(),
        )
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.lock().is_empty()
    }

    /// `ACL LOG RESET`.
    pub fn reset(&self) {
        self.entries.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(object: &str, user: &str, at: u64) -> LogEntry {
        LogEntry::new(
            LogReason::Command,
            LogContext::Toplevel,
            object,
            user,
            format!("id=1 at={at}"),
            at,
        )
    }

    #[test]
    fn similar_denials_share_an_entry() {
        let log = AclLog::default();
        for at in [1_000, 2_000, 3_000] {
            log.record(denial("get", "antirez", at));
        }
        let entries = log.newest(10);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].count, 3);
        assert_eq!(entries[0].updated_ms, 3_000);
        assert_eq!(entries[0].client_info, "id=1 at=3000");
    }

    #[test]
    fn what_breaks_grouping() {
        let base = denial("get", "antirez", 1_000);
        let cases: Vec<(&str, LogEntry)> = vec![
            ("other object", denial("set", "antirez", 1_000)),
            ("other user", denial("get", "bob", 1_000)),
            ("over a minute later", denial("get", "antirez", 61_001)),
            (
                "other reason",
                LogEntry {
                    reason: LogReason::Key,
                    ..base.clone()
                },
            ),
            (
                "other context",
                LogEntry {
                    context: LogContext::Multi,
                    ..base.clone()
                },
            ),
        ];
        for (what, other) in cases {
            let log = AclLog::default();
            log.record(base.clone());
            log.record(other);
            assert_eq!(log.len(), 2, "{what}");
        }
        let log = AclLog::default();
        log.record(base.clone());
        log.record(denial("get", "antirez", 61_000));
        assert_eq!(log.len(), 1, "exactly a minute later still groups");
    }

    #[test]
    fn a_matched_entry_moves_to_the_front_but_only_the_last_ten_are_searched() {
        let log = AclLog::default();
        log.record(denial("old", "u", 0));
        for i in 0..5 {
            log.record(denial(&format!("k{i}"), "u", 0));
        }
        log.record(denial("old", "u", 10));
        let entries = log.newest(2);
        assert_eq!(entries[0].object, b"old");
        assert_eq!(entries[0].count, 2);
        assert_eq!(log.len(), 6);

        let log = AclLog::default();
        log.record(denial("old", "u", 0));
        for i in 0..10 {
            log.record(denial(&format!("k{i}"), "u", 0));
        }
        log.record(denial("old", "u", 10));
        assert_eq!(log.len(), 12, "eleventh-newest is not looked at");
    }

    #[test]
    fn bounded_by_max_len() {
        let log = AclLog::new(5);
        for j in 0..10 {
            log.record(denial(&format!("obj:{j}"), "antirez", 0));
        }
        assert_eq!(log.len(), 5);
        assert_eq!(log.newest(1)[0].object, b"obj:9");
        assert_eq!(log.newest(2).len(), 2);
        log.set_max_len(0);
        log.record(denial("x", "antirez", 0));
        assert!(log.is_empty());
        log.set_max_len(3);
        log.record(denial("y", "antirez", 0));
        log.reset();
        assert!(log.is_empty());
    }

    #[test]
    fn reply_fields_in_redis_order() {
        let entry = LogEntry::new(
            LogReason::Auth,
            LogContext::Toplevel,
            "AUTH",
            "antirez",
            "id=3",
            10_000,
        );
        let Frame::Map(fields) = entry.to_frame(12_500) else {
            panic!("a map");
        };
        let names: Vec<Frame> = fields.iter().map(|(k, _)| k.clone()).collect();
        let want: Vec<Frame> = [
            "count",
            "reason",
            "context",
            "object",
            "username",
            "age-seconds",
            "client-info",
        ]
        .into_iter()
        .map(Frame::bulk)
        .collect();
        assert_eq!(names, want);
        assert_eq!(fields[0].1, Frame::Integer(1));
        assert_eq!(fields[1].1, Frame::bulk("auth"));
        assert_eq!(fields[2].1, Frame::bulk("toplevel"));
        assert_eq!(fields[3].1, Frame::bulk("AUTH"));
        assert_eq!(fields[5].1, Frame::Double(2.5));
    }
}

//! What a permission check is asked about (the keys and channels a call names) and what a denial says:
//! the `-NOPERM` replies, `ACL DRYRUN`'s answer, and the texts EXEC and scripts give for a denied call.

use super::catalog::CommandId;

/// How a command uses a key, from its key specs: what an ACL key pattern must grant for it.
///
/// Redis derives this from the key spec's flags: `ACCESS` (the value is read or returned) needs a read
/// permission, `INSERT`/`DELETE`/`UPDATE` a write permission. A key whose spec has none of them (`EXISTS`,
/// `TYPE`, `STRLEN`, `HEXISTS`: only the key's existence, type or size is looked at) is allowed by any
/// pattern that matches it, `%R~` or `%W~` alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// The value is read: needs `~pattern` or `%R~pattern`.
    Read,
    /// The value is written (inserted, updated or deleted): needs `~pattern` or `%W~pattern`.
    Write,
    /// Both: needs `~pattern` (or `%R~` and `%W~` of the same pattern, which are the same thing).
    ReadWrite,
    /// Neither, only the key's existence or metadata: any matching pattern will do.
    Metadata,
}

impl KeyAccess {
    /// (needs read, needs write).
    pub(crate) fn needs(self) -> (bool, bool) {
        match self {
            KeyAccess::Read => (true, false),
            KeyAccess::Write => (false, true),
            KeyAccess::ReadWrite => (true, true),
            KeyAccess::Metadata => (false, false),
        }
    }
}

/// How a command names a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// A channel (`PUBLISH`, `SUBSCRIBE`, `SPUBLISH`, `SSUBSCRIBE`): matched against the user's channel
    /// patterns as a glob.
    Name,
    /// A pattern (`PSUBSCRIBE`): allowed only if the user has that very pattern (compared as a string), so
    /// `&foo:*` allows `PSUBSCRIBE foo:*` but not `PSUBSCRIBE foo:1*`.
    Pattern,
}

// Unsubscribing (`UNSUBSCRIBE`, `PUNSUBSCRIBE`, `SUNSUBSCRIBE`) is never refused for its channels: a check
// of those commands is given no channels, as Redis looks only at channels published or subscribed to.

/// Why a user may not run a call. A key or channel is given by its position in the `keys` or `channels`
/// the check was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No selector allows the command (or subcommand).
    Command,
    /// The key at this position of `keys`.
    Key(usize),
    /// The channel at this position of `channels`.
    Channel(usize),
}

impl Denied {
    /// Redis's ranking when each selector refuses a call for its own reason: a channel over a key over
    /// the command, and of two keys (or channels) the later one.
    pub(crate) fn outranks(self, other: Denied) -> bool {
        let rank = |d: Denied| match d {
            Denied::Command => (0, 0),
            Denied::Key(i) => (1, i),
            Denied::Channel(i) => (2, i),
        };
        rank(self) > rank(other)
    }

    /// The `-NOPERM` error line for this denial of `command` (without the leading `-`), as dispatch
    /// replies it.
    pub fn noperm(self, command: CommandId) -> String {
        match self {
            Denied::Command => noperm_command(command.name()),
            Denied::Key(_) => NOPERM_KEY.to_owned(),
            Denied::Channel(_) => NOPERM_CHANNEL.to_owned(),
        }
    }

    /// The error line EXEC gives for a queued call that the user's rules no longer allow (changed since
    /// it was queued).
    pub fn exec_error(self) -> String {
        let reason = match self {
            Denied::Command => "no permission to execute the command or subcommand",
            Denied::Key(_) => "no permission to touch the specified keys",
            Denied::Channel(_) => "no permission to access one of the channels used as arguments",
        };
        format!(
            "NOPERM ACLs rules changed between the moment the transaction was accumulated and the \
             EXEC call. This command is no longer allowed for the following reason: {reason}"
        )
    }

    /// The message a script's call gets (`redis.call` raises it): `The user executing the script ...`.
    pub fn script_error(self) -> String {
        let what = match self {
            Denied::Command => "can't run this command or subcommand",
            Denied::Key(_) => {
                "can't access at least one of the keys mentioned in the command arguments"
            }
            Denied::Channel(_) => "can't publish to the channel mentioned in the command",
        };
        format!("The user executing the script {what}")
    }

    /// `ACL DRYRUN`'s reply (a bulk string) for this denial of `command` with `keys` and `channels`.
    pub fn dryrun_message(
        self,
        command: CommandId,
        keys: &[(&[u8], KeyAccess)],
        channels: &[(&[u8], ChannelKind)],
    ) -> Vec<u8> {
        let (what, name, kind): (&str, &[u8], &str) = match self {
            Denied::Command => ("run", command.name().as_bytes(), "command"),
            Denied::Key(i) => ("access", keys.get(i).map_or(&[][..], |k| k.0), "key"),
            Denied::Channel(i) => (
                "access",
                channels.get(i).map_or(&[][..], |c| c.0),
                "channel",
            ),
        };
        let mut out = format!("This user has no permissions to {what} the '").into_bytes();
        out.extend_from_slice(name);
        out.extend_from_slice(format!("' {kind}").as_bytes());
        out
    }

    /// The ACL LOG reason of this denial.
    pub fn log_reason(self) -> super::LogReason {
        match self {
            Denied::Command => super::LogReason::Command,
            Denied::Key(_) => super::LogReason::Key,
            Denied::Channel(_) => super::LogReason::Channel,
        }
    }

    /// The ACL LOG object of this denial: the command's full name, or the key or channel.
    pub fn log_object(
        self,
        command: CommandId,
        keys: &[(&[u8], KeyAccess)],
        channels: &[(&[u8], ChannelKind)],
    ) -> Vec<u8> {
        match self {
            Denied::Command => command.name().as_bytes().to_vec(),
            Denied::Key(i) => keys.get(i).map_or_else(Vec::new, |k| k.0.to_vec()),
            Denied::Channel(i) => channels.get(i).map_or_else(Vec::new, |c| c.0.to_vec()),
        }
    }
}

/// `NOPERM this user has no permissions to run the '<name>' command` (`name` is the full name,
/// `client|kill` for a subcommand).
pub fn noperm_command(name: &str) -> String {
    format!("NOPERM this user has no permissions to run the '{name}' command")
}

/// `ACL DRYRUN`'s error line for a user that does not exist.
pub fn dryrun_unknown_user(name: &[u8]) -> String {
    format!("ERR User '{}' not found", shown(name))
}

/// `ACL DRYRUN`'s error line for a command (or container and subcommand) that does not exist; `name` is
/// the command's name as given.
pub fn dryrun_unknown_command(name: &[u8]) -> String {
    format!("ERR Command '{}' not found", shown(name))
}

/// Bytes as they may appear inside an error line.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace(['\r', '\n'], " ")
}

/// The error line of a call denied for one of its keys.
pub const NOPERM_KEY: &str =
    "NOPERM this user has no permissions to access one of the keys used as arguments";

/// The error line of a call denied for one of its channels.
pub const NOPERM_CHANNEL: &str =
    "NOPERM this user has no permissions to access one of the channels used as arguments";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::catalog::catalog;

    fn id(name: &str) -> CommandId {
        catalog().lookup(name.as_bytes()).expect("known command")
    }

    #[test]
    fn ranking_prefers_channels_then_keys_then_later_positions() {
        assert!(Denied::Key(0).outranks(Denied::Command));
        assert!(Denied::Channel(0).outranks(Denied::Key(5)));
        assert!(Denied::Key(2).outranks(Denied::Key(1)));
        assert!(!Denied::Key(1).outranks(Denied::Key(1)));
        assert!(!Denied::Command.outranks(Denied::Command));
    }

    #[test]
    fn messages_match_redis() {
        let keys: &[(&[u8], KeyAccess)] = &[(b"a", KeyAccess::Read), (b"read", KeyAccess::Write)];
        let channels: &[(&[u8], ChannelKind)] = &[(b"otherchannel", ChannelKind::Name)];
        let cases: &[(Denied, &str, &str, &str)] = &[
            (
                Denied::Command,
                "set",
                "This user has no permissions to run the 'set' command",
                "NOPERM this user has no permissions to run the 'set' command",
            ),
            (
                Denied::Command,
                "client|kill",
                "This user has no permissions to run the 'client|kill' command",
                "NOPERM this user has no permissions to run the 'client|kill' command",
            ),
            (
                Denied::Key(1),
                "get",
                "This user has no permissions to access the 'read' key",
                NOPERM_KEY,
            ),
            (
                Denied::Channel(0),
                "spublish",
                "This user has no permissions to access the 'otherchannel' channel",
                NOPERM_CHANNEL,
            ),
        ];
        for &(denied, command, dryrun, noperm) in cases {
            let command = id(command);
            assert_eq!(
                String::from_utf8_lossy(&denied.dryrun_message(command, keys, channels)),
                dryrun
            );
            assert_eq!(denied.noperm(command), noperm);
        }
        assert_eq!(
            Denied::Key(0).log_object(id("get"), keys, channels),
            b"a".to_vec()
        );
        assert_eq!(
            Denied::Command.log_object(id("client|kill"), keys, channels),
            b"client|kill".to_vec()
        );
        assert_eq!(
            dryrun_unknown_user(b"not-a-user"),
            "ERR User 'not-a-user' not found"
        );
        assert_eq!(
            dryrun_unknown_command(b"not-a-command"),
            "ERR Command 'not-a-command' not found"
        );
        assert_eq!(
            Denied::Command.script_error(),
            "The user executing the script can't run this command or subcommand"
        );
        assert!(
            Denied::Key(0)
                .exec_error()
                .ends_with("following reason: no permission to touch the specified keys")
        );
    }
}

//! Turns a command's public syntax string into the argument tree that `COMMAND DOCS` reports.
//!
//! The notation is the one Redis's documentation uses, so each command's syntax is written once:
//!
//! - a lower-case word is an argument, named by the word; its type comes from [`default_type`] or from a
//!   `:type` suffix (`increment:double`);
//! - an upper-case word is a token (`NX`, `LIMIT`); followed by one argument it introduces it
//!   (`EX seconds`), followed by several inside a group it introduces a block (`LIMIT offset count`),
//!   alone it is a pure token;
//! - `[ ... ]` is optional, `< ... >` required; `|` separates alternatives (a oneof);
//! - `...` at the end of a group repeats it: `key [key ...]` is one key argument flagged multiple, and
//!   `[GET pattern [GET pattern ...]]` repeats the token too (multiple_token);
//! - a group may start with a `label:` naming it (`[condition: NX | XX]`); otherwise its name is made
//!   from its members' names.

use std::fmt;

/// The type of an argument, as `COMMAND DOCS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// Any string.
    String,
    /// A signed integer.
    Integer,
    /// A floating-point number.
    Double,
    /// A key name.
    Key,
    /// A glob-style pattern.
    Pattern,
    /// A Unix time in seconds or milliseconds.
    UnixTime,
    /// A token with no value (`NX`).
    PureToken,
    /// Exactly one of the nested arguments.
    OneOf,
    /// All the nested arguments, in order.
    Block,
}

impl ArgType {
    /// The name `COMMAND DOCS` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ArgType::String => "string",
            ArgType::Integer => "integer",
            ArgType::Double => "double",
            ArgType::Key => "key",
            ArgType::Pattern => "pattern",
            ArgType::UnixTime => "unix-time",
            ArgType::PureToken => "pure-token",
            ArgType::OneOf => "oneof",
            ArgType::Block => "block",
        }
    }

    fn from_suffix(s: &str) -> Option<ArgType> {
        Some(match s {
            "string" => ArgType::String,
            "integer" => ArgType::Integer,
            "double" => ArgType::Double,
            "key" => ArgType::Key,
            "pattern" => ArgType::Pattern,
            "unix-time" => ArgType::UnixTime,
            _ => return None,
        })
    }
}

/// One argument of a command, possibly with nested arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// Its name (for a typed argument, the word shown in the syntax).
    pub name: String,
    /// Its type.
    pub kind: ArgType,
    /// The token that introduces it, if any.
    pub token: Option<String>,
    /// May be left out.
    pub optional: bool,
    /// May be repeated.
    pub multiple: bool,
    /// Each repetition repeats the token too.
    pub multiple_token: bool,
    /// For a key: its position among the command's keys.
    pub key_spec_index: Option<usize>,
    /// Nested arguments of a oneof or block.
    pub args: Vec<Arg>,
}

impl Arg {
    fn new(name: impl Into<String>, kind: ArgType) -> Arg {
        Arg {
            name: name.into(),
            kind,
            token: None,
            optional: false,
            multiple: false,
            multiple_token: false,
            key_spec_index: None,
            args: Vec::new(),
        }
    }

    /// Whether `COMMAND DOCS` shows a `display_text` for it (typed values, not tokens or groups).
    pub fn has_display_text(&self) -> bool {
        !matches!(
            self.kind,
            ArgType::PureToken | ArgType::OneOf | ArgType::Block
        )
    }

    /// The fewest words it takes, and whether it can take more.
    fn words(&self) -> (usize, bool) {
        let token = usize::from(self.token.is_some() && self.kind != ArgType::PureToken);
        let (min, variable) = match self.kind {
            ArgType::Block => self.args.iter().fold((0, false), |(n, v), a| {
                let (m, w) = a.words();
                (n + m, v || w)
            }),
            ArgType::OneOf => {
                let all: Vec<(usize, bool)> = self.args.iter().map(Arg::words).collect();
                let min = all.iter().map(|w| w.0).min().unwrap_or(0);
                let max = all.iter().map(|w| w.0).max().unwrap_or(0);
                (min, min != max || all.iter().any(|w| w.1))
            }
            _ => (1, false),
        };
        if self.optional {
            (0, true)
        } else {
            (min + token, variable || self.multiple)
        }
    }
}

/// Why a syntax string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The argument tree of a syntax string, with key positions numbered in order.
pub fn parse(syntax: &str) -> Result<Vec<Arg>, SyntaxError> {
    let words = lex(syntax);
    let mut pos = 0;
    let items = sequence(&words, &mut pos)?;
    if let Some(extra) = words.get(pos) {
        return Err(SyntaxError(format!("unexpected '{extra}' in '{syntax}'")));
    }
    let mut args = convert_seq(items)?;
    let mut next_key = 0;
    number_keys(&mut args, &mut next_key);
    Ok(args)
}

/// Redis's arity for a command (`words_before` is 1, or 2 for a subcommand) with these arguments:
/// the fewest words, negative when more are allowed.
pub fn arity(args: &[Arg], words_before: usize) -> i32 {
    let (min, variable) = args.iter().fold((words_before, false), |(n, v), a| {
        let (m, w) = a.words();
        (n + m, v || w)
    });
    let min = i32::try_from(min).unwrap_or(i32::MAX);
    if variable { -min } else { min }
}

fn number_keys(args: &mut [Arg], next: &mut usize) {
    for arg in args {
        if arg.kind == ArgType::Key {
            arg.key_spec_index = Some(*next);
            *next += 1;
        }
        number_keys(&mut arg.args, next);
    }
}

/// Splits on white space, with brackets, `<`, `>` and `|` as words of their own.
fn lex(syntax: &str) -> Vec<String> {
    let mut spaced = String::with_capacity(syntax.len() * 2);
    for c in syntax.chars() {
        if matches!(c, '[' | ']' | '<' | '>' | '|') {
            spaced.push(' ');
            spaced.push(c);
            spaced.push(' ');
        } else {
            spaced.push(c);
        }
    }
    spaced.split_whitespace().map(str::to_owned).collect()
}

/// A syntax element before tokens are bound to their values.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Raw {
    Word(String),
    Group {
        optional: bool,
        label: Option<String>,
        alts: Vec<Vec<Raw>>,
        repeat: bool,
    },
    /// `x [x ...]`: one or more of the sequence.
    Many(Vec<Raw>),
    Ellipsis,
}

fn is_token(word: &str) -> bool {
    // The streams' symbolic tokens: XADD's `*` and `=`/`~`, XGROUP's `$`.
    if matches!(word, "*" | "=" | "~" | "$") {
        return true;
    }
    word.chars().any(|c| c.is_ascii_uppercase())
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn raw_is_token(raw: &Raw) -> bool {
    matches!(raw, Raw::Word(w) if is_token(w))
}

/// Items until a closing bracket, a `|` or the end.
fn sequence(words: &[String], pos: &mut usize) -> Result<Vec<Raw>, SyntaxError> {
    let mut items = Vec::new();
    while let Some(word) = words.get(*pos) {
        match word.as_str() {
            "]" | ">" | "|" => break,
            "[" | "<" => {
                *pos += 1;
                items.push(group(words, pos, word == "[")?);
            }
            "..." => {
                *pos += 1;
                items.push(Raw::Ellipsis);
            }
            _ => {
                *pos += 1;
                items.push(Raw::Word(word.clone()));
            }
        }
    }
    Ok(items)
}

/// The rest of a group whose opening bracket was just read.
fn group(words: &[String], pos: &mut usize, optional: bool) -> Result<Raw, SyntaxError> {
    let close = if optional { "]" } else { ">" };
    let label = match words.get(*pos) {
        Some(w) if w.len() > 1 && w.ends_with(':') && !is_token(w) => {
            *pos += 1;
            Some(w.trim_end_matches(':').to_owned())
        }
        _ => None,
    };
    let mut alts = vec![sequence(words, pos)?];
    loop {
        match words.get(*pos).map(String::as_str) {
            Some("|") => {
                *pos += 1;
                alts.push(sequence(words, pos)?);
            }
            Some(w) if w == close => {
                *pos += 1;
                break;
            }
            other => {
                return Err(SyntaxError(format!(
                    "expected '{close}', found {}",
                    other.unwrap_or("the end")
                )));
            }
        }
    }
    let mut repeat = false;
    if let Some(last) = alts.last_mut()
        && last.last() == Some(&Raw::Ellipsis)
    {
        last.pop();
        repeat = true;
    }
    if alts
        .iter()
        .any(|a| a.is_empty() || a.contains(&Raw::Ellipsis))
    {
        return Err(SyntaxError("empty alternative or misplaced '...'".into()));
    }
    Ok(Raw::Group {
        optional,
        label,
        alts,
        repeat,
    })
}

/// Folds `x [x ...]` into one repeated item.
fn collapse(items: Vec<Raw>) -> Vec<Raw> {
    let mut out: Vec<Raw> = Vec::with_capacity(items.len());
    for item in items {
        if let Raw::Group {
            alts, repeat: true, ..
        } = &item
            && let [alt] = alts.as_slice()
            && out.len() >= alt.len()
            && out[out.len() - alt.len()..] == alt[..]
        {
            let start = out.len() - alt.len();
            out.truncate(start);
            out.push(Raw::Many(alt.clone()));
            continue;
        }
        out.push(item);
    }
    out
}

/// A sequence as a list of arguments: each token binds to the argument right after it.
fn convert_seq(items: Vec<Raw>) -> Result<Vec<Arg>, SyntaxError> {
    let items = collapse(items);
    let mut out = Vec::with_capacity(items.len());
    let mut iter = items.into_iter().peekable();
    while let Some(item) = iter.next() {
        match item {
            Raw::Word(w) if is_token(&w) => {
                let binds = match iter.peek() {
                    Some(Raw::Word(next)) => !is_token(next),
                    Some(Raw::Many(_)) => true,
                    Some(Raw::Group { optional, .. }) => !optional,
                    _ => false,
                };
                if binds {
                    let next = iter.next().map(convert).transpose()?;
                    if let Some(mut arg) = next {
                        arg.token = Some(w);
                        out.push(arg);
                    }
                } else {
                    out.push(pure_token(w));
                }
            }
            other => out.push(convert(other)?),
        }
    }
    Ok(out)
}

fn pure_token(word: String) -> Arg {
    let mut arg = Arg::new(word.to_ascii_lowercase(), ArgType::PureToken);
    arg.token = Some(word);
    arg
}

/// One alternative of a group (or a repeated sequence) as a single argument.
fn convert_alt(items: Vec<Raw>, label: Option<String>) -> Result<Arg, SyntaxError> {
    let items = collapse(items);
    let mut arg = match items.first() {
        Some(first) if raw_is_token(first) && items.len() > 2 => {
            let Some(Raw::Word(token)) = items.first().cloned() else {
                return Err(SyntaxError("a block must start with a token".into()));
            };
            let mut block = Arg::new(token.to_ascii_lowercase(), ArgType::Block);
            block.args = convert_seq(items[1..].to_vec())?;
            block.token = Some(token);
            block
        }
        _ => {
            let mut args = convert_seq(items)?;
            if args.len() == 1 {
                args.pop()
                    .ok_or_else(|| SyntaxError("empty alternative".into()))?
            } else {
                let name = args
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join("_");
                let mut block = Arg::new(name, ArgType::Block);
                block.args = args;
                block
            }
        }
    };
    if let Some(label) = label {
        arg.name = label;
    }
    Ok(arg)
}

fn convert(raw: Raw) -> Result<Arg, SyntaxError> {
    match raw {
        Raw::Word(w) if is_token(&w) => Ok(pure_token(w)),
        Raw::Word(w) => Ok(typed(&w)),
        Raw::Ellipsis => Err(SyntaxError("'...' outside a group".into())),
        Raw::Many(items) => {
            let starts_with_token = items.first().is_some_and(raw_is_token);
            let mut arg = convert_alt(items, None)?;
            arg.multiple = true;
            arg.multiple_token = starts_with_token && arg.token.is_some();
            Ok(arg)
        }
        Raw::Group {
            optional,
            label,
            mut alts,
            repeat,
        } => {
            let mut arg = if alts.len() == 1 {
                let alt = alts.pop().unwrap_or_default();
                let starts_with_token = alt.first().is_some_and(raw_is_token);
                let mut arg = convert_alt(alt, label)?;
                if repeat {
                    arg.multiple = true;
                    arg.multiple_token = starts_with_token && arg.token.is_some();
                }
                if arg.optional && optional {
                    // `[[x]]`: keep the inner flag on a block of its own.
                    let mut block = Arg::new(arg.name.clone(), ArgType::Block);
                    block.args = vec![arg];
                    block
                } else {
                    arg
                }
            } else {
                let args = alts
                    .into_iter()
                    .map(|alt| convert_alt(alt, None))
                    .collect::<Result<Vec<_>, _>>()?;
                let name = label.unwrap_or_else(|| {
                    args.iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join("-")
                });
                let mut oneof = Arg::new(name, ArgType::OneOf);
                oneof.args = args;
                oneof.multiple = repeat;
                oneof
            };
            arg.optional = arg.optional || optional;
            Ok(arg)
        }
    }
}

/// An argument word, with its type from a `:type` suffix or from [`default_type`].
fn typed(word: &str) -> Arg {
    if let Some((name, suffix)) = word.rsplit_once(':')
        && let Some(kind) = ArgType::from_suffix(suffix)
    {
        return Arg::new(name, kind);
    }
    Arg::new(word, default_type(word))
}

/// The usual type of an argument named `word`.
pub fn default_type(word: &str) -> ArgType {
    match word {
        "key" | "key1" | "key2" | "destination" | "source" | "newkey" | "destkey" | "dst"
        | "src" => ArgType::Key,
        "count" | "numkeys" | "offset" | "start" | "end" | "stop" | "index" | "index1"
        | "index2" | "seconds" | "milliseconds" | "cursor" | "len" | "rank" | "db"
        | "destination-db" | "client-id" | "increment" | "decrement" | "bit" | "protover"
        | "num-matches" | "min-match-len" | "limit" | "ttl" | "frequency" | "weight" => {
            ArgType::Integer
        }
        "score" | "timeout" => ArgType::Double,
        "pattern" => ArgType::Pattern,
        "unix-time-seconds" | "unix-time-milliseconds" => ArgType::UnixTime,
        _ => ArgType::String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(name: &str, kind: ArgType) -> Arg {
        Arg::new(name, kind)
    }

    fn token(word: &str) -> Arg {
        pure_token(word.to_owned())
    }

    fn with_token(mut arg: Arg, token: &str) -> Arg {
        arg.token = Some(token.to_owned());
        arg
    }

    fn optional(mut arg: Arg) -> Arg {
        arg.optional = true;
        arg
    }

    fn multiple(mut arg: Arg) -> Arg {
        arg.multiple = true;
        arg
    }

    fn group(name: &str, kind: ArgType, args: Vec<Arg>) -> Arg {
        let mut arg = Arg::new(name, kind);
        arg.args = args;
        arg
    }

    fn key(index: usize) -> Arg {
        let mut arg = leaf("key", ArgType::Key);
        arg.key_spec_index = Some(index);
        arg
    }

    #[test]
    fn set_syntax() {
        let args = parse(
            "key value [condition: NX | XX] [GET] [EX seconds | PX milliseconds | \
             EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]",
        )
        .expect("parses");
        let expected = vec![
            key(0),
            leaf("value", ArgType::String),
            optional(group(
                "condition",
                ArgType::OneOf,
                vec![token("NX"), token("XX")],
            )),
            optional(token("GET")),
            optional(group(
                "seconds-milliseconds-unix-time-seconds-unix-time-milliseconds-keepttl",
                ArgType::OneOf,
                vec![
                    with_token(leaf("seconds", ArgType::Integer), "EX"),
                    with_token(leaf("milliseconds", ArgType::Integer), "PX"),
                    with_token(leaf("unix-time-seconds", ArgType::UnixTime), "EXAT"),
                    with_token(leaf("unix-time-milliseconds", ArgType::UnixTime), "PXAT"),
                    token("KEEPTTL"),
                ],
            )),
        ];
        assert_eq!(args, expected);
        assert_eq!(arity(&args, 1), -3);
    }

    #[test]
    fn repetition_folds_into_multiple() {
        let args = parse("key [key ...] timeout").expect("parses");
        assert_eq!(
            args,
            vec![multiple(key(0)), leaf("timeout", ArgType::Double)]
        );
        assert_eq!(arity(&args, 1), -3);

        let args = parse("key value [key value ...]").expect("parses");
        assert_eq!(
            args,
            vec![multiple(group(
                "key_value",
                ArgType::Block,
                vec![key(0), leaf("value", ArgType::String)]
            ))]
        );
        assert_eq!(arity(&args, 1), -3);

        // Optional and repeated without a leading copy.
        let args = parse("[channel [channel ...]]").expect("parses");
        assert_eq!(
            args,
            vec![optional(multiple(leaf("channel", ArgType::String)))]
        );
        assert_eq!(arity(&args, 1), -1);
    }

    #[test]
    fn tokens_bind_to_values_and_blocks() {
        let args = parse(
            "destination numkeys key [key ...] [WEIGHTS weight [weight ...]] \
             [AGGREGATE <SUM | MIN | MAX>] [LIMIT offset count] [GET pattern [GET pattern ...]]",
        )
        .expect("parses");
        let mut dest = leaf("destination", ArgType::Key);
        dest.key_spec_index = Some(0);
        let mut get = with_token(leaf("pattern", ArgType::Pattern), "GET");
        get.multiple = true;
        get.multiple_token = true;
        let expected = vec![
            dest,
            leaf("numkeys", ArgType::Integer),
            multiple(key(1)),
            optional(with_token(
                multiple(leaf("weight", ArgType::Integer)),
                "WEIGHTS",
            )),
            optional(with_token(
                group(
                    "sum-min-max",
                    ArgType::OneOf,
                    vec![token("SUM"), token("MIN"), token("MAX")],
                ),
                "AGGREGATE",
            )),
            optional(with_token(
                group(
                    "limit",
                    ArgType::Block,
                    vec![
                        leaf("offset", ArgType::Integer),
                        leaf("count", ArgType::Integer),
                    ],
                ),
                "LIMIT",
            )),
            optional(get),
        ];
        assert_eq!(args, expected);
        assert_eq!(arity(&args, 1), -4);
    }

    #[test]
    fn nested_optionals_and_type_suffixes() {
        let args = parse("key bit [start [end [BYTE | BIT]]]").expect("parses");
        assert_eq!(arity(&args, 1), -3);
        let start = &args[2];
        assert_eq!(
            (start.name.as_str(), start.kind, start.optional),
            ("start_end_byte-bit", ArgType::Block, true)
        );
        assert_eq!(start.args[0], leaf("start", ArgType::Integer));
        assert_eq!(start.args[1].name, "end_byte-bit");
        assert!(start.args[1].optional);

        let args = parse("key increment:double member").expect("parses");
        assert_eq!(args[1], leaf("increment", ArgType::Double));
        assert_eq!(arity(&args, 1), 4);
        // A colon that is not a type suffix is part of the name.
        assert_eq!(parse("ip:port").expect("parses")[0].name, "ip:port");
        assert_eq!(arity(&parse("").expect("parses"), 2), 2);
    }

    #[test]
    fn required_oneof_and_repeated_oneof() {
        let args =
            parse("source destination <wherefrom: LEFT | RIGHT> <LEFT | RIGHT>").expect("parses");
        assert_eq!(args[2].name, "wherefrom");
        assert_eq!(args[3].name, "left-right");
        assert!(!args[2].optional);
        assert_eq!(arity(&args, 1), 5);

        let args = parse("key [GET encoding offset | INCRBY encoding offset increment ...]")
            .expect("parses");
        let op = &args[1];
        assert_eq!(op.kind, ArgType::OneOf);
        assert!(op.optional && op.multiple);
        assert_eq!(op.args[0].kind, ArgType::Block);
        assert_eq!(op.args[0].token.as_deref(), Some("GET"));
        assert_eq!(op.args[1].args.len(), 3);
    }

    #[test]
    fn malformed_syntax_is_refused() {
        for bad in ["[key", "key]", "<a | b]", "[a | ]", "[... a]", "a ..."] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

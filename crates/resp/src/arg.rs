//! A command's arguments as borrowed slices ([`Arg`]), and the parsed request they borrow from
//! ([`Request`]).
//!
//! Arguments were a `Vec<Bytes>`, one slice of the read buffer each: every slice took the buffer's shared
//! reference count up and back down, two locked instructions per argument that were ~9% of the server's CPU
//! under PFADD -P16 (three arguments) and more under XADD's nine. A [`Request`] holds the whole request as
//! one `Bytes` and where its arguments are; an [`Arg`] borrows one of them, and costs a reference count
//! only when a command keeps it ([`Arg::to_bytes`], a value SET stores without copying).

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use smallvec::SmallVec;

/// One argument of a command: its bytes, borrowed, and the `Bytes` holding them (when there is one) so it
/// can be kept without a copy.
#[derive(Clone, Copy)]
pub struct Arg<'a> {
    data: &'a [u8],
    owner: Option<&'a Bytes>,
}

/// A command's arguments, inline up to the size of almost every command.
pub type Args<'a> = SmallVec<[Arg<'a>; 8]>;

impl<'a> Arg<'a> {
    /// An argument of `bytes`, kept without a copy.
    pub fn of(bytes: &'a Bytes) -> Self {
        Arg {
            data: bytes,
            owner: Some(bytes),
        }
    }

    /// The argument at `range` of `whole`.
    ///
    /// # Panics
    /// If `range` is not within `whole`.
    pub fn part(whole: &'a Bytes, range: std::ops::Range<usize>) -> Self {
        Arg {
            data: &whole[range],
            owner: Some(whole),
        }
    }

    /// An argument of borrowed bytes that nothing shares: [`Arg::to_bytes`] copies them.
    pub fn borrowed(data: &'a [u8]) -> Self {
        Arg { data, owner: None }
    }

    /// The bytes, for as long as the request lives.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The argument as `Bytes` to keep: a slice of the request (a reference count), or a copy when the
    /// bytes are borrowed from elsewhere.
    pub fn to_bytes(&self) -> Bytes {
        match self.owner {
            Some(owner) if self.data.is_empty() => owner.slice(0..0),
            Some(owner) => owner.slice_ref(self.data),
            None => Bytes::copy_from_slice(self.data),
        }
    }
}

/// The arguments of `list`, each kept without a copy.
pub fn args_of(list: &[Bytes]) -> Args<'_> {
    list.iter().map(Arg::of).collect()
}

/// Copies of `args` to keep (a queued transaction, a blocked command).
pub fn to_owned_args(args: &[Arg<'_>]) -> Vec<Bytes> {
    args.iter().map(Arg::to_bytes).collect()
}

impl Deref for Arg<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl AsRef<[u8]> for Arg<'_> {
    fn as_ref(&self) -> &[u8] {
        self.data
    }
}

impl std::borrow::Borrow<[u8]> for Arg<'_> {
    fn borrow(&self) -> &[u8] {
        self.data
    }
}

impl fmt::Debug for Arg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.data.escape_ascii())
    }
}

impl PartialEq for Arg<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl Eq for Arg<'_> {}

impl PartialOrd for Arg<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Arg<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.data.cmp(other.data)
    }
}

impl std::hash::Hash for Arg<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.data.hash(state);
    }
}

impl PartialEq<[u8]> for Arg<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        self.data == other
    }
}

impl PartialEq<&[u8]> for Arg<'_> {
    fn eq(&self, other: &&[u8]) -> bool {
        self.data == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Arg<'_> {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.data == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Arg<'_> {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.data == *other
    }
}

impl PartialEq<str> for Arg<'_> {
    fn eq(&self, other: &str) -> bool {
        self.data == other.as_bytes()
    }
}

impl PartialEq<&str> for Arg<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.data == other.as_bytes()
    }
}

impl PartialEq<Bytes> for Arg<'_> {
    fn eq(&self, other: &Bytes) -> bool {
        self.data == &other[..]
    }
}

impl PartialEq<Arg<'_>> for Bytes {
    fn eq(&self, other: &Arg<'_>) -> bool {
        &self[..] == other.data
    }
}

impl PartialEq<Arg<'_>> for [u8] {
    fn eq(&self, other: &Arg<'_>) -> bool {
        self == other.data
    }
}

impl PartialEq<Arg<'_>> for &[u8] {
    fn eq(&self, other: &Arg<'_>) -> bool {
        *self == other.data
    }
}

/// One parsed request: the arguments of a small one as spans of one `Bytes`, a large one's as a list.
pub struct Request {
    inner: Inner,
}

enum Inner {
    /// A small request, whole: its bytes and where each argument is in them.
    Whole {
        whole: Bytes,
        spans: SmallVec<[(u32, u32); 8]>,
    },
    /// Arguments parsed one by one (large or inline requests).
    List(Vec<Bytes>),
}

impl Request {
    pub(crate) fn whole(whole: Bytes, spans: &[(u32, u32)]) -> Self {
        Request {
            inner: Inner::Whole {
                whole,
                spans: SmallVec::from_slice(spans),
            },
        }
    }

    /// A request of the arguments `list`.
    pub fn from_list(list: Vec<Bytes>) -> Self {
        Request {
            inner: Inner::List(list),
        }
    }

    /// The number of arguments.
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Whole { spans, .. } => spans.len(),
            Inner::List(list) => list.len(),
        }
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The arguments, borrowed.
    pub fn args(&self) -> Args<'_> {
        match &self.inner {
            Inner::Whole { whole, spans } => spans
                .iter()
                .map(|&(start, len)| Arg {
                    data: &whole[start as usize..(start + len) as usize],
                    owner: Some(whole),
                })
                .collect(),
            Inner::List(list) => args_of(list),
        }
    }

    /// The arguments as a list of `Bytes`.
    pub fn into_vec(self) -> Vec<Bytes> {
        match self.inner {
            Inner::Whole { whole, spans } => spans
                .iter()
                .map(|&(start, len)| whole.slice(start as usize..(start + len) as usize))
                .collect(),
            Inner::List(list) => list,
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.args().iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::{Limits, RequestParser};

    #[test]
    fn a_small_request_is_borrowed_and_kept_without_copies() {
        let mut parser = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n"[..]);
        let request = parser
            .parse_request(&mut buf)
            .expect("valid")
            .expect("whole");
        let args = request.args();
        assert_eq!(args.len(), 3);
        assert_eq!(args[0], "SET");
        assert_eq!(args[2], &b"value"[..]);
        // Kept, the value is a slice of the request, not a copy.
        let kept = args[2].to_bytes();
        assert_eq!(kept, "value");
        assert_eq!(kept.as_ptr(), args[2].as_ptr());
        drop(args);
        assert_eq!(request.into_vec(), vec!["SET", "k", "value"]);
    }

    #[test]
    fn borrowed_arguments_are_copied_when_kept() {
        let data = b"abc".to_vec();
        let arg = Arg::borrowed(&data);
        let kept = arg.to_bytes();
        assert_eq!(kept, "abc");
        assert_ne!(kept.as_ptr(), data.as_ptr());
        let whole = Bytes::from_static(b"xyz");
        assert_eq!(Arg::part(&whole, 1..3).to_bytes(), "yz");
        assert_eq!(Arg::part(&whole, 3..3).to_bytes(), "");
        let list = vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")];
        assert_eq!(args_of(&list)[1], "k");
        assert_eq!(to_owned_args(&args_of(&list)), list);
        assert_eq!(Request::from_list(list.clone()).into_vec(), list);
    }
}

//! strata-algo: data structures and algorithms with no I/O, each the plan's exercise made into a part strata
//! uses.
//!
//! - [`OrderStatisticTree`]: a B+tree whose internal nodes count the keys under each child, so rank and
//!   select are O(log n). Sorted sets (`ZRANK`, `ZRANGE` by index, `ZCOUNT`) are built on it.
//! - [`TopicTrie`]: AMQP topic patterns (`*` one word, `#` zero or more) to destinations; the broker's topic
//!   exchange routes through it.
//!
//! Invariant: pure data structures — no I/O, no clocks, no threads, no dependency on another strata crate.
//! Every structure has a model-based test against the standard library's equivalent.

mod ostree;
pub mod topic;
pub mod trie;

pub use ostree::{Iter, OrderStatisticTree};
pub use topic::TopicTrie;

//! Compaction: the pure picker deciding what to compact and the iterator deciding which versions survive.

pub mod filter;
pub mod gc;
pub mod job;
pub mod manual;
pub mod picker;

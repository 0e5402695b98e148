//! The pure compaction picker (work in progress).

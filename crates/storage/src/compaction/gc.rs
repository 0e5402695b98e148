//! Garbage collection during compaction (work in progress).

//! `strata storage check|stats <dir>`: offline inspection of a node's storage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::StorageCommand;

/// The storage directory for a path given on the command line: a node's data directory holds it in
/// `storage/`; the storage directory itself is accepted too.
pub fn storage_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("storage");
    if nested.join("CURRENT").exists() {
        nested
    } else {
        dir.to_owned()
    }
}

/// Runs a `strata storage` subcommand.
pub fn run(cmd: StorageCommand) -> ExitCode {
    match cmd {
        StorageCommand::Check { dir } => {
            let dir = storage_dir(&dir);
            match strata_storage::check::check(&dir) {
                Ok(r) => {
                    println!("{}: every checksum verified", dir.display());
                    println!(
                        "  WAL:      {} segments, {} frames",
                        r.wal_segments, r.wal_frames
                    );
                    if r.wal_segments_after_tear > 0 {
                        println!(
                            "            a sealed segment with a torn tail of {} bytes and {} later segments: under \
                             fsync everysec/no recovery ends the log there (a machine crash before the \
                             sealed segment's fsync); under fsync always it refuses to open",
                            r.wal_torn_tail_bytes, r.wal_segments_after_tear
                        );
                    } else if r.wal_torn_tail_bytes > 0 {
                        println!(
                            "            torn tail of {} bytes (an unfinished last write; recovery truncates it)",
                            r.wal_torn_tail_bytes
                        );
                    }
                    println!("  manifest: {} records", r.manifest_records);
                    println!("  SSTables: {} files, {} bytes", r.sst_files, r.sst_bytes);
                    println!(
                        "  logs:     {} segments, {} entries",
                        r.log_segments, r.log_entries
                    );
                    if r.log_torn_tail_bytes > 0 {
                        println!(
                            "            torn tails of {} bytes (recovery truncates them)",
                            r.log_torn_tail_bytes
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("strata: {}: check failed: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
        StorageCommand::Stats { dir } => {
            let dir = storage_dir(&dir);
            match strata_storage::check::stats(&dir) {
                Ok(s) => {
                    println!("{}", dir.display());
                    println!(
                        "{:>5}  {:>6}  {:>14}  {:>12}  {:>10}",
                        "level", "files", "bytes", "entries", "tombstones"
                    );
                    for l in s.levels.iter().filter(|l| l.files > 0) {
                        println!(
                            "{:>5}  {:>6}  {:>14}  {:>12}  {:>10}",
                            format!("L{}", l.level),
                            l.files,
                            l.bytes,
                            l.entries,
                            l.tombstones
                        );
                    }
                    println!("SSTable bytes:       {}", s.sst_bytes);
                    println!("WAL bytes:           {}", s.wal_bytes);
                    println!("space amplification: {:.2}", s.space_amplification);
                    println!("trees:               {}", s.trees.join(", "));
                    for (name, head) in &s.logs {
                        println!("log {name}: head offset {head}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("strata: {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

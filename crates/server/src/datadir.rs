//! The data directory: its exclusive `LOCK` and the `ports.json` tests and scripts read.
//!
//! The lock is an OS advisory lock (`flock`) on `<dir>/LOCK`, held for the life of the process, so it is
//! released even when the process is killed. The holder writes its pid into the file *after* taking the lock;
//! a refused second process only reads it, so it changes nothing in the directory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the data directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// Another process holds the lock.
    #[error(
        "data directory {dir} is in use by another strata process (pid {holder}); stop it or choose another \
         directory with --data-dir"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The holder's pid as written in the LOCK file (`unknown` if unreadable).
        holder: String,
    },
    /// An I/O error on the directory or the lock file.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// An open, exclusively locked data directory. Dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    lock: File,
}

/// Listening ports by service key (`resp`, `amqp`, `http`, `gateway`), as written to `ports.json`.
pub type Ports = BTreeMap<&'static str, u16>;

impl DataDir {
    /// Creates the directory if missing and takes its lock.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        let io = |op, p: &Path| {
            let p = p.to_owned();
            move |source| DataDirError::Io {
                op,
                path: p,
                source,
            }
        };
        std::fs::create_dir_all(path).map_err(io("create data directory", path))?;
        let lock_path = path.join("LOCK");
        // No truncation here: a refused process must leave the holder's pid in place.
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io("open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DataDirError::Locked {
                    dir: path.to_owned(),
                    holder: if holder.is_empty() {
                        "unknown".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("lock", &lock_path)(e)),
        }
        lock.set_len(0)
            .and_then(|()| lock.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(lock, "{}", std::process::id()))
            .and_then(|()| lock.sync_all())
            .map_err(io("write pid to", &lock_path))?;
        Ok(Self {
            path: path.to_owned(),
            lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `ports.json` lives.
    pub fn ports_path(&self) -> PathBuf {
        self.path.join("ports.json")
    }

    /// Writes `ports.json` atomically (temp file + rename), so a reader never sees half a file.
    pub fn write_ports(&self, ports: &Ports) -> Result<(), DataDirError> {
        let final_path = self.ports_path();
        let tmp = self.path.join("ports.json.tmp");
        let json = serde_json::to_string(ports).unwrap_or_else(|_| "{}".to_owned());
        std::fs::write(&tmp, json + "\n")
            .and_then(|()| std::fs::rename(&tmp, &final_path))
            .map_err(|source| DataDirError::Io {
                op: "write",
                path: final_path,
                source,
            })
    }

    /// Removes `ports.json` (shutdown). A missing file is not an error.
    pub fn remove_ports(&self) {
        match std::fs::remove_file(self.ports_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "could not remove ports.json"),
        }
    }

    /// Releases the lock explicitly (it is also released on drop and on process exit).
    pub fn release(self) {
        let _ = self.lock.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_with_the_holder_pid_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let before = std::fs::read(dir.path().join("LOCK")).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert_eq!(std::fs::read(dir.path().join("LOCK")).unwrap(), before);
        first.release();
        DataDir::open(dir.path()).unwrap();
    }

    #[test]
    fn ports_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(&dir.path().join("nested/data")).unwrap();
        let ports = Ports::from([("http", 8080), ("resp", 6379)]);
        d.write_ports(&ports).unwrap();
        let text = std::fs::read_to_string(d.ports_path()).unwrap();
        let back: BTreeMap<String, u16> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.get("http"), Some(&8080));
        d.remove_ports();
        assert!(!d.ports_path().exists());
        d.remove_ports();
    }
}

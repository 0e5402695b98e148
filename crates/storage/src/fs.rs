//! The file layer every WAL, SST, manifest and log segment goes through.
//!
//! Production uses [`OsFs`]. Tests use [`FaultFs`], which wraps `OsFs` and fails writes or fsyncs, tears
//! writes (writes a prefix, then fails) and simulates a full disk on command, so the engine's error paths
//! (poisoning, clean errors, recovery) can be exercised deterministically.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

/// A file opened for appending. Methods take `&self` so a writer and a background fsync thread can share it.
pub trait WritableFile: Send + Sync {
    /// Appends all of `buf` at the end of the file.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
}

/// A file opened for positioned reads.
pub trait ReadableFile: Send + Sync {
    /// Fills `buf` from `offset`; fails if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Directory and file operations used by the engine.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates (or truncates) a file for appending.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>>;
    /// Opens a file for positioned reads.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>>;
    /// Reads a whole file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Atomically renames `from` to `to` (replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Fsyncs a directory so creations, renames and removals in it are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Truncates a file to `len_bytes` and fsyncs it.
    fn truncate(&self, path: &Path, len_bytes: u64) -> io::Result<()>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Size of a file in bytes.
    fn file_size(&self, path: &Path) -> io::Result<u64>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

struct OsWritable(File);

impl WritableFile for OsWritable {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

struct OsReadable(File);

impl ReadableFile for OsReadable {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl FileSystem for OsFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Arc::new(OsWritable(f)))
    }
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let f = OpenOptions::new().append(true).open(path)?;
        Ok(Arc::new(OsWritable(f)))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        Ok(Arc::new(OsReadable(File::open(path)?)))
    }
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut f = File::open(path)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        Ok(v)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn truncate(&self, path: &Path, len_bytes: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len_bytes)?;
        f.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
}

/// Switches shared by a [`FaultFs`] and the test that drives it.
#[derive(Debug, Default)]
pub struct FaultInjector {
    fail_writes: AtomicBool,
    fail_syncs: AtomicBool,
    /// Bytes that may still be written before the disk is "full"; negative means unlimited.
    write_budget_bytes: AtomicI64,
    /// Only files whose name contains this substring are affected (None = all files).
    target: Mutex<Option<String>>,
    writes: AtomicU64,
    syncs: AtomicU64,
}

impl FaultInjector {
    /// A new injector that injects nothing.
    pub fn new() -> Arc<Self> {
        let f = FaultInjector::default();
        f.write_budget_bytes.store(-1, Ordering::SeqCst);
        Arc::new(f)
    }
    /// Every affected write fails with EIO (nothing written).
    pub fn set_fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }
    /// Every affected fsync fails with EIO.
    pub fn set_fail_syncs(&self, on: bool) {
        self.fail_syncs.store(on, Ordering::SeqCst);
    }
    /// After `bytes` more bytes, writes are torn: the part that fits is written, then ENOSPC is returned.
    /// `None` removes the limit.
    pub fn set_write_budget(&self, bytes: Option<u64>) {
        let v = bytes.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
        self.write_budget_bytes.store(v, Ordering::SeqCst);
    }
    /// Restricts faults to files whose name contains `substring` (None = all files).
    pub fn set_target(&self, substring: Option<&str>) {
        *self.target.lock() = substring.map(str::to_string);
    }
    /// Clears every fault.
    pub fn reset(&self) {
        self.set_fail_writes(false);
        self.set_fail_syncs(false);
        self.set_write_budget(None);
        self.set_target(None);
    }
    /// Number of successful writes through affected files.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
    /// Number of successful fsyncs through affected files.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }
    fn applies_to(&self, path: &Path) -> bool {
        match &*self.target.lock() {
            None => true,
            Some(t) => path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(t.as_str())),
        }
    }
}

/// A [`FileSystem`] that injects faults controlled by a [`FaultInjector`].
#[derive(Debug, Clone)]
pub struct FaultFs {
    inner: OsFs,
    faults: Arc<FaultInjector>,
}

impl FaultFs {
    /// Wraps the real file system.
    pub fn new(faults: Arc<FaultInjector>) -> Self {
        FaultFs {
            inner: OsFs,
            faults,
        }
    }
}

struct FaultWritable {
    inner: Arc<dyn WritableFile>,
    path: PathBuf,
    faults: Arc<FaultInjector>,
}

fn injected(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("injected fault: {what}"))
}

impl WritableFile for FaultWritable {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        if !self.faults.applies_to(&self.path) {
            return self.inner.append(buf);
        }
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(injected(io::ErrorKind::Other, "write failed"));
        }
        let budget = self.faults.write_budget_bytes.load(Ordering::SeqCst);
        if budget >= 0 {
            let len = i64::try_from(buf.len()).unwrap_or(i64::MAX);
            if len > budget {
                let fits = usize::try_from(budget).unwrap_or(0).min(buf.len());
                self.inner.append(&buf[..fits])?;
                self.faults.write_budget_bytes.store(0, Ordering::SeqCst);
                return Err(injected(
                    io::ErrorKind::StorageFull,
                    "disk full (torn write)",
                ));
            }
            self.faults
                .write_budget_bytes
                .fetch_sub(len, Ordering::SeqCst);
        }
        self.inner.append(buf)?;
        self.faults.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.faults.applies_to(&self.path) && self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected(io::ErrorKind::Other, "fsync failed"));
        }
        self.inner.sync_data()?;
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl FileSystem for FaultFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        if self.faults.applies_to(path) && self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(injected(io::ErrorKind::Other, "create failed"));
        }
        Ok(Arc::new(FaultWritable {
            inner: self.inner.create(path)?,
            path: path.to_path_buf(),
            faults: self.faults.clone(),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        Ok(Arc::new(FaultWritable {
            inner: self.inner.open_append(path)?,
            path: path.to_path_buf(),
            faults: self.faults.clone(),
        }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        self.inner.open_read(path)
    }
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.faults.applies_to(to) && self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(injected(io::ErrorKind::Other, "rename failed"));
        }
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.faults.fail_syncs.load(Ordering::SeqCst) && self.faults.target.lock().is_none() {
            return Err(injected(io::ErrorKind::Other, "directory fsync failed"));
        }
        self.inner.sync_dir(path)
    }
    fn truncate(&self, path: &Path, len_bytes: u64) -> io::Result<()> {
        self.inner.truncate(path, len_bytes)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_size(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_tears_the_write_that_crosses_it() {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultInjector::new();
        let fs = FaultFs::new(faults.clone());
        let p = dir.path().join("f");
        let f = fs.create(&p).unwrap();
        faults.set_write_budget(Some(5));
        f.append(b"abc").unwrap();
        let e = f.append(b"defg").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(fs.read_all(&p).unwrap(), b"abcde");
        faults.set_fail_syncs(true);
        assert!(f.sync_data().is_err());
        faults.reset();
        f.append(b"x").unwrap();
        f.sync_data().unwrap();
    }
}

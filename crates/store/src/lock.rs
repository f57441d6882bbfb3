//! The exclusive lock of a state directory: one process at a time writes a store.

use crate::StoreError;
use std::path::Path;

/// The exclusive lock of a state directory, held for as long as this value lives (the operating
/// system releases it on any exit, `kill -9` included).
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock of `dir` (creating the directory), or says who has it.
    pub fn acquire(dir: &Path) -> Result<StateLock, StoreError> {
        let bad = |e: std::io::Error| StoreError::BadDir { path: dir.to_path_buf(), reason: e.to_string() };
        std::fs::create_dir_all(dir).map_err(bad)?;
        let file =
            std::fs::File::options().create(true).truncate(false).write(true).open(dir.join("lock")).map_err(bad)?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => Err(bad(e)),
        }
    }
}

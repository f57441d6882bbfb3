//! An open store: a connection to a state directory's database, and how one is opened.

use crate::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The database file name inside a state directory.
pub const DB_FILE: &str = "kappa.db";

/// Seconds since the Unix epoch.
pub fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// An open store.
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

impl Store {
    /// The database path inside a state directory.
    pub fn db_path(dir: &Path) -> PathBuf {
        dir.join(DB_FILE)
    }

    /// Opens the store in `dir`, creating the directory and the database if needed.
    pub fn create(dir: &Path) -> Result<Store, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::BadDir { path: dir.to_path_buf(), reason: "exists and is not a directory".into() });
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::BadDir { path: dir.to_path_buf(), reason: e.to_string() })?;
        let path = Self::db_path(dir);
        if path.exists() && !path.is_file() {
            return Err(StoreError::Corrupt { path, reason: "not a regular file".into() });
        }
        let conn = Connection::open(&path).map_err(|e| StoreError::Sqlite { path: path.clone(), source: e })?;
        let store = Store { conn, path };
        store.init(true)?;
        Ok(store)
    }

    /// Opens an existing store for reading (and, for the coordinator, writing); never creates one.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = Self::db_path(dir);
        if !dir.exists() || !path.exists() {
            return Err(StoreError::NotFound(dir.to_path_buf()));
        }
        if !path.is_file() {
            return Err(StoreError::Corrupt { path, reason: "not a regular file".into() });
        }
        let conn =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| StoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let store = Store { conn, path };
        store.init(false)?;
        Ok(store)
    }

    /// The state directory this store lives in.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Another connection to the same store (a reader beside the writer, say).
    pub fn reopen(&self) -> Result<Store, StoreError> {
        Store::open(self.dir())
    }

    pub(crate) fn corrupt(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), reason: e.to_string() }
    }

    pub(crate) fn sql(&self, e: rusqlite::Error) -> StoreError {
        match e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) =>
            {
                self.corrupt(e)
            }
            e => StoreError::Sqlite { path: self.path.clone(), source: e },
        }
    }
}

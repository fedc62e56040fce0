//! The writer lock: an OS file lock on `STORE/.lock`, released by the kernel when the
//! process dies, so a killed writer never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::StoreError;

pub const LOCK_FILE: &str = ".lock";

#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    pub fn acquire(store: &Path) -> Result<WriterLock, StoreError> {
        let path = store.join(LOCK_FILE);
        let io = |action: &str| {
            let path = path.clone();
            let action = action.to_string();
            move |source| StoreError::Io { path, action, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("opening the lock file"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "unknown process".to_string()
                } else {
                    holder.to_string()
                };
                return Err(StoreError::Locked {
                    path: store.to_path_buf(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking")(e)),
        }
        file.set_len(0).map_err(io("writing the lock file"))?;
        file.rewind().map_err(io("writing the lock file"))?;
        write!(file, "pid {}", std::process::id()).map_err(io("writing the lock file"))?;
        Ok(WriterLock { _file: file })
    }
}

//! The writer lock: an OS lock (flock) on the store directory itself, released by the kernel
//! when the process dies, so a killed writer never leaves a stale lock, and deleting a file
//! cannot let a second writer in. `STORE/.lock` only records who holds it, for the message.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::StoreError;

pub const LOCK_FILE: &str = ".lock";

#[derive(Debug)]
pub struct WriterLock {
    _dir: File,
}

impl WriterLock {
    pub fn acquire(store: &Path) -> Result<WriterLock, StoreError> {
        let io = |action: &str| {
            let path = store.to_path_buf();
            let action = action.to_string();
            move |source| StoreError::Io { path, action, source }
        };
        let dir = File::open(store).map_err(io("opening the store directory to lock it"))?;
        match dir.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(store.join(LOCK_FILE)).unwrap_or_default();
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder.to_string()
                };
                return Err(StoreError::Locked {
                    path: store.to_path_buf(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking the store")(e)),
        }
        let info = store.join(LOCK_FILE);
        let mut f = File::create(&info).map_err(io("writing .lock"))?;
        write!(f, "pid {}", std::process::id()).map_err(io("writing .lock"))?;
        Ok(WriterLock { _dir: dir })
    }
}

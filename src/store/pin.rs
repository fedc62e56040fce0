//! Readers pin the store version they read. `Store::open` writes `STORE/.pins/<reader>.json`
//! (the manifest it read) and holds an OS lock on it while it lives; a writer's clean-up keeps
//! every directory a live pin's manifest names, so two ingests committing while a `run` reads
//! never delete files under it. A pin whose process died is unlocked, and the next writer
//! removes it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::store::Manifest;

pub const PINS: &str = ".pins";

/// A held pin: the lock lasts as long as this value, and the file goes with it.
#[derive(Debug)]
pub struct Pin {
    path: PathBuf,
    _file: File,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Pins `manifest` (just read from `root`). None where the store cannot be written to (a
/// read-only copy: nothing can delete its files either).
pub fn pin(root: &Path, manifest: &Manifest) -> Option<Pin> {
    let dir = root.join(PINS);
    std::fs::create_dir_all(&dir).ok()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = dir.join(format!("{}-{nanos}.json", std::process::id()));
    let mut file = File::create(&path).ok()?;
    file.try_lock().ok()?;
    let text = serde_json::to_string(manifest).ok()?;
    file.write_all(text.as_bytes()).ok()?;
    Some(Pin { path, _file: file })
}

/// The manifests live readers have pinned; pins of dead readers are removed.
pub fn pinned(root: &Path) -> Result<Vec<Manifest>, StoreError> {
    let dir = root.join(PINS);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let Ok(file) = File::open(&path) else { continue };
        match file.try_lock() {
            // Nobody holds it: its reader is gone.
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                if let Some(m) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
                {
                    out.push(m);
                }
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io {
                    path,
                    action: "checking a reader's pin".into(),
                    source: e,
                });
            }
        }
    }
    Ok(out)
}

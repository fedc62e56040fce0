//! `_manifest.json`: the single source of truth of a store. A table or quarantine file is
//! part of the store only if the manifest names it; the manifest is replaced atomically.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

pub const MANIFEST: &str = "_manifest.json";
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    /// Incremented by every commit; names the directories the commit wrote.
    pub generation: u64,
    pub tables: BTreeMap<String, TableEntry>,
    /// Rejected and duplicate rows, per table, one file per batch.
    pub quarantine: BTreeMap<String, Vec<FileEntry>>,
    pub batches: Vec<Batch>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Store-relative directory of the current version.
    pub dir: String,
    pub rows: u64,
    /// Timestamp column whose local month names the `month=YYYY-MM` partitions, if any.
    pub partitioned_by: Option<String>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Store-relative path.
    pub path: String,
    pub rows: u64,
}

/// One `ingest` invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub generation: u64,
    pub mode: String,
    /// RFC 3339 wall-clock time of the commit.
    pub committed_at: String,
    pub config_hash: String,
    pub files: Vec<BatchFile>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchFile {
    pub path: String,
    pub table: String,
    pub sha256: String,
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
}

impl Manifest {
    pub fn new() -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            ..Default::default()
        }
    }

    pub fn load(store: &Path) -> Result<Option<Manifest>, StoreError> {
        let path = store.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    path,
                    action: "reading the manifest".into(),
                    source,
                });
            }
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| StoreError::BadManifest {
            path: store.to_path_buf(),
            message: e.to_string(),
        })?;
        if m.schema_version > SCHEMA_VERSION {
            return Err(StoreError::Version {
                path: store.to_path_buf(),
                found: m.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Some(m))
    }

    /// The batch file that already brought in content with this hash for this table, since
    /// the table was last replaced (a replace forgets what came before it).
    pub fn ingested(&self, table: &str, sha256: &str) -> Option<(u64, &BatchFile)> {
        for b in self.batches.iter().rev() {
            let mut files = b.files.iter().filter(|f| f.table == table).peekable();
            let touched = files.peek().is_some();
            if let Some(f) = files.find(|f| f.sha256 == sha256) {
                return Some((b.generation, f));
            }
            if touched && b.mode == "replace" {
                return None;
            }
        }
        None
    }

    pub fn rows(&self, table: &str) -> u64 {
        self.tables.get(table).map_or(0, |t| t.rows)
    }
}

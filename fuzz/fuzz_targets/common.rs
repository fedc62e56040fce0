//! A scratch file per process for the reader targets.

use std::path::PathBuf;

pub fn scratch(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crm-kpi-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let p = dir.join(name);
    std::fs::write(&p, data).expect("scratch file");
    p
}

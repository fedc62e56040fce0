#![no_main]
//! Any bytes as a Parquet file, whole and in batches: a corrupt file is an error, not a panic.

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("leads.parquet", data);
    let _ = crm_kpi::ingest::read::read_file(&p);
    if let Ok(b) = crm_kpi::ingest::read::RawBatches::open(&p, 2) {
        // The first batches only: a big input read two rows at a time would take seconds.
        for &(o, l) in b.ranges().iter().take(8) {
            let _ = b.read(o, l);
        }
    }
});

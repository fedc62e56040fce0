#![no_main]
//! Any bytes as a CSV export: read, or refused with an error; never a panic.

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("leads.csv", data);
    let _ = crm_kpi::ingest::read::read_file(&p);
});

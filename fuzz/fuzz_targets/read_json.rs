#![no_main]
//! Any bytes as an NDJSON file or a JSON document (with and without a records path).

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let (name, records) = match data.first().map(|b| b % 3) {
        Some(0) => ("leads.ndjson", None),
        Some(1) => ("leads.json", None),
        _ => ("deals.json", Some("results[].stages[]")),
    };
    let p = common::scratch(name, data.get(1..).unwrap_or_default());
    let _ = crm_kpi::ingest::read::read_file_with(&p, records);
});

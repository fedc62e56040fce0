#![no_main]
//! Any bytes as a leads or opportunities export, through the whole ingest into a fresh store:
//! accepted, quarantined or refused, never a panic, and the store stays readable.

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let name = if data.first().is_some_and(|b| b % 2 == 0) { "leads.csv" } else { "opportunities.csv" };
    let p = common::scratch(name, data.get(1..).unwrap_or_default());
    let store = p.with_file_name("store");
    let _ = std::fs::remove_dir_all(&store);
    let config = crm_kpi::Config::default();
    if crm_kpi::ingest::ingest(&store, &[p], &Default::default(), &config).is_ok() {
        let s = crm_kpi::store::Store::open(&store).expect("a committed store opens");
        for def in crm_kpi::schema::TABLES {
            s.read_table(def).expect("a committed table reads back");
        }
    }
});

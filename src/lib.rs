//! crm-kpi: a columnar batch analytics engine for CRM sales history.
//!
//! Data flows through the modules in this order: `config` and `schema` declare what the
//! data is; `ingest` reads CRM exports, maps and validates them; `store` keeps the
//! validated tables as Parquet with an atomically swapped manifest; `kpi` computes the
//! catalog as of a date (its registry is the one description of every KPI), with the
//! statistics of `stats`; `output` writes the results; `cli` is the command line; `generate`
//! makes synthetic histories to test and benchmark with.

// Errors carry the file, table, column and hint a user needs; they are built once, on the
// way out, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod config;
pub mod error;
pub mod generate;
pub mod ingest;
pub mod kpi;
pub mod output;
pub mod panic_guard;
pub mod report;
pub mod schema;
pub mod stats;
pub mod store;
pub mod timefmt;

pub use config::Config;
pub use error::{Error, Result};

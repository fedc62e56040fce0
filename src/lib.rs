//! crm-kpi: a columnar batch analytics engine for CRM sales history.
//!
//! Data flows through the modules in this order: `config` and `schema` declare what the
//! data is; `ingest` reads CRM exports, maps and validates them; `store` keeps the
//! validated tables as Parquet with an atomically swapped manifest; `generate` makes
//! synthetic histories to test and benchmark with.

pub mod cli;
pub mod config;
pub mod error;
pub mod generate;
pub mod ingest;
pub mod schema;
pub mod store;
pub mod timefmt;

pub use config::Config;
pub use error::{Error, Result};

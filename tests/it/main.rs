//! The one integration-test binary (every extra binary links polars again).

mod catalog;
mod common;
mod generate;
mod help;
mod ingest;
mod kill;
mod kpi_deals;
mod kpi_funnel;
mod kpi_pipeline;
mod malformed;
mod sql;

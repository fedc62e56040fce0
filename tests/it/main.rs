//! The one integration-test binary (every extra binary links polars again).

mod common;
mod generate;
mod help;
mod ingest;
mod kpi_deals;
mod kill;
mod kpi_funnel;
mod malformed;
mod sql;

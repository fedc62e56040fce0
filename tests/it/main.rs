//! The one integration-test binary (every extra binary links polars again).

mod common;
mod generate;
mod help;
mod ingest;
mod kill;
mod malformed;

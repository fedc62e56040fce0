//! The one integration-test binary (every extra binary links polars again).

mod catalog;
mod common;
mod fixtures;
mod generate;
mod help;
mod ingest;
mod kill;
mod kpi_customers;
mod kpi_funnel;
mod kpi_leads;
mod kpi_reps;
mod kpi_trends;
mod malformed;
mod mapping;
mod mappings_a;
mod mappings_b;
mod preset_hubspot;
mod preset_pipedrive;
mod preset_salesforce;
mod presets;
mod reliability;
mod report;
mod spark;
mod sql;

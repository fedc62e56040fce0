//! `crm-kpi preset`: the built-in presets (mapping sources for Salesforce, HubSpot and
//! Pipedrive exports), to list or print for a user to copy into crm-kpi.toml and adapt.

use std::io::Write;

use crate::cli::{Cli, Outcome};
use crate::ingest::staging::presets;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the built-in presets.
    List,
    /// Print a preset's mapping sources (TOML, the format of [[sources]] in crm-kpi.toml).
    Show {
        /// salesforce, hubspot or pipedrive.
        name: String,
    },
}

pub fn run(_cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    match &args.command {
        Command::List => {
            for name in presets::names() {
                let text = presets::text(name).unwrap_or_default();
                let first = text
                    .lines()
                    .find_map(|l| l.strip_prefix("description = "))
                    .map(|d| d.trim_matches('"'))
                    .unwrap_or("");
                writeln!(out, "{name:<12} {first}")?;
            }
        }
        Command::Show { name } => match presets::text(name) {
            Some(t) => out.write_all(t.as_bytes())?,
            None => {
                return Err(crate::Error::Usage(format!(
                    "no preset `{name}`; built-in presets: {}",
                    presets::names().join(", ")
                ))
                .into());
            }
        },
    }
    Ok(Outcome::Ok)
}

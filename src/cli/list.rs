//! `crm-kpi list`: the KPI catalog, with `--long` the definitions and output columns.

use crate::cli::{Cli, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print each KPI's definition, key and output columns.
    #[arg(long)]
    pub long: bool,
}

pub fn run(_cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let mut s = String::new();
    for k in crate::kpi::registry() {
        if args.long {
            s.push_str(&format!(
                "{} (v{}, {})\n  grain: {}\n  {}\n  key: {}\n  columns:",
                k.name,
                k.version,
                k.family,
                k.grain,
                k.definition,
                k.key.join(", ")
            ));
            for (c, t) in (k.columns)() {
                s.push_str(&format!(" {c}:{t}"));
            }
            s.push_str("\n\n");
        } else {
            s.push_str(&format!("{:<24} {}\n", k.name, k.grain));
        }
    }
    use std::io::Write;
    std::io::stdout().lock().write_all(s.as_bytes())?;
    Ok(Outcome::Ok)
}

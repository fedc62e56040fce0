//! `crm-kpi completions SHELL` (bash, zsh, fish, powershell, elvish) and `crm-kpi man` (a roff
//! man page): both from the command definitions, so they follow every flag; KPI names
//! complete for `show`.

use clap::CommandFactory;

use crate::cli::{Cli, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(_cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "crm-kpi", &mut buf);
    crate::cli::print_stdout(&String::from_utf8_lossy(&buf))?;
    Ok(Outcome::Ok)
}

/// `crm-kpi man`: the man page, in roff (`crm-kpi man > crm-kpi.1; man ./crm-kpi.1`).
pub fn man(_cli: &Cli) -> anyhow::Result<Outcome> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    crate::cli::print_stdout(&String::from_utf8_lossy(&buf))?;
    Ok(Outcome::Ok)
}

//! Command-line interface: one subcommand per file, each with its `Args` and `run`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod completions;
pub mod files;
pub mod generate;
pub mod ingest;
pub mod list;
pub mod log;
pub mod preset;
pub mod report;
pub mod run;
pub mod show;
pub mod spark;
pub mod sql;
pub mod validate;

/// crm-kpi: sales KPIs you can trust, from CRM exports.
#[derive(Debug, Parser)]
#[command(name = "crm-kpi", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: ./crm-kpi.toml if present, else the built-in default).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (-v info, -vv debug). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Errors only: no warnings, no progress.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log lines as text, or as one JSON object per line (for Airflow, cron, log collectors).
    #[arg(long, global = true, value_enum, default_value = "text", env = "CRM_KPI_LOG_FORMAT")]
    pub log_format: log::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a synthetic CRM history (all 11 tables), deterministic for a seed.
    Generate(generate::Args),
    /// Read CRM exports, validate every row and commit them to a Parquet store.
    Ingest(ingest::Args),
    /// Print a data-quality report of a store.
    Validate(validate::Args),
    /// Compute the KPI catalog as of a date and write it as Parquet (the nightly job).
    Run(run::Args),
    /// Print one KPI as a table, CSV or JSON.
    Show(show::Args),
    /// Write the KPIs as one self-contained HTML report (charts and tables, no network).
    Report(report::Args),
    /// List the KPI catalog.
    List(list::Args),
    /// Run SQL over the store's tables and the KPI outputs.
    Sql(sql::Args),
    /// List the built-in CRM presets, or print one to copy and adapt.
    Preset(preset::Args),
    /// The catalog on Apache Spark: `spark export` writes a bundle for spark-submit.
    Spark(spark::Args),
    /// Print the Parquet files that hold a store table now (for Spark, pandas, pyarrow).
    Files(files::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::Args),
    /// Print the man page (roff): `crm-kpi man > crm-kpi.1`.
    Man,
}

/// What a subcommand reports back: success, or data problems found under `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    DataProblems,
}

pub fn main() -> ExitCode {
    ExitCode::from(run_from(std::env::args_os()))
}

/// The command line `argv` (its first item the program's name), run in this process; returns
/// the exit code (README, "Commands"). The binary's `main`, and the Python package's `crm-kpi`
/// command, are this.
pub fn run_from<I, T>(argv: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    log::init(cli.verbose, cli.quiet, cli.log_format);
    let result = std::panic::catch_unwind(|| dispatch(&cli));
    let Ok(result) = result else {
        let _ = writeln!(
            std::io::stderr(),
            "error: internal error (please report the message above); exiting 2"
        );
        return 2;
    };
    match result {
        Ok(Outcome::Ok) => 0,
        Ok(Outcome::DataProblems) => 1,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", error_message(&e));
            2
        }
    }
}

/// `argv` parsed as the command line parses it; a usage error is clap's message (what the
/// command line prints for it, with its usage line).
pub fn parse<I, T>(argv: I) -> Result<Cli, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(argv).map_err(|e| e.render().to_string())
}

/// Runs the parsed command.
pub fn dispatch(cli: &Cli) -> anyhow::Result<Outcome> {
    match &cli.command {
        Command::Generate(a) => generate::run(cli, a),
        Command::Ingest(a) => ingest::run(cli, a),
        Command::Validate(a) => validate::run(cli, a),
        Command::Run(a) => run::run(cli, a),
        Command::Show(a) => show::run(cli, a),
        Command::Report(a) => report::run(cli, a),
        Command::List(a) => list::run(cli, a),
        Command::Sql(a) => sql::run(cli, a),
        Command::Preset(a) => preset::run(cli, a),
        Command::Files(a) => files::run(cli, a),
        Command::Spark(a) => spark::run(cli, a),
        Command::Completions(a) => completions::run(cli, a),
        Command::Man => completions::man(cli),
    }
}

/// An error as the command line prints it after `error: `: the error, then each cause it does
/// not already say (`caused by: ...`).
pub fn error_message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !msg.contains(&cause) {
            msg.push_str(&format!("\n  caused by: {cause}"));
        }
    }
    msg
}

/// Writes `text` to stdout. A reader that closed the pipe (`crm-kpi validate | head -1`) is not
/// an error: the rest is not printed and the command goes on to its own exit code.
pub(crate) fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The store a command reads or writes: `--store` (or `CRM_KPI_STORE`), else the config's
/// `store` key, else `default` (None: the command needs one).
pub fn store_path(
    arg: &Option<std::path::PathBuf>,
    config: &crate::Config,
    default: Option<&str>,
) -> anyhow::Result<std::path::PathBuf> {
    arg.clone()
        .or_else(|| config.store.clone())
        .or_else(|| default.map(std::path::PathBuf::from))
        .ok_or_else(|| {
            crate::Error::Usage(
                "no store given: pass --store DIR, set CRM_KPI_STORE, or set `store` in crm-kpi.toml".into(),
            )
            .into()
        })
}

/// The KPI output folder: `--out` (or `CRM_KPI_OUT`), else the config's `out` key, else `out`.
pub fn out_path(arg: &Option<std::path::PathBuf>, config: &crate::Config) -> std::path::PathBuf {
    arg.clone()
        .or_else(|| config.out.clone())
        .unwrap_or_else(|| std::path::PathBuf::from("out"))
}

/// Loads the configuration named by `--config`.
pub fn load_config(cli: &Cli) -> anyhow::Result<crate::Config> {
    Ok(crate::Config::load(cli.config.as_deref())?)
}

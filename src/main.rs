//! Thin binary: parse arguments, run the subcommand, map errors to exit codes (SPEC §7).

use std::process::ExitCode;

fn main() -> ExitCode {
    crm_kpi::cli::main()
}

//! Thin binary: parse arguments, run the subcommand, map errors to exit codes (README, "Commands").

use std::process::ExitCode;

#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    crm_kpi::cli::main()
}

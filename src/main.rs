//! Thin binary: parse arguments, run the subcommand, map errors to exit codes (README, "Commands").

use std::process::ExitCode;

#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (`_RJEM_MALLOC_CONF` in the environment overrides
/// them). Allocations from 128 MiB up go to jemalloc's dedicated arena, which returns their
/// pages to the kernel at once; smaller freed pages stay for reuse and decay in the background.
/// With jemalloc's default threshold of 8 MiB, polars' many column buffers above it were
/// unmapped and faulted in again family after family. Scale m, alternated runs of one build:
/// 8 MiB 18.4-18.5 s (9 s of system time, 3.2M page faults, peak 1.44 GB), 32 MiB 15.9-16.4 s
/// (5.3 s, 1.8M, 1.6 GB); on the next build, 32 MiB 15.1 s, 128 MiB 14.3 s (3.4 s, 1.05M,
/// 1.76 GB). Scale l (streaming): 8 MiB 222.9 s / 9.9 GiB (the code before), 32 MiB 218.7 s /
/// 10.5 GiB, 128 MiB 212.2 s / 10.6 GiB (benches/README.md, "Issue 16").
#[cfg(target_os = "linux")]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"oversize_threshold:134217728\0";

fn main() -> ExitCode {
    crm_kpi::cli::main()
}

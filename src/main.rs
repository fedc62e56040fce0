//! Thin binary: parse arguments, run the subcommand, map errors to exit codes (SPEC §7).

use std::process::ExitCode;

#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`. By default jemalloc hands pages freed for 10 s back
/// to the OS, and a KPI family frees and refills the same gigabytes many times within one
/// collect: at scale m that was 3.4M page faults and 7 s of system time. With decay off, freed
/// pages are reused within a family, and `release_freed_memory` hands them all back between
/// families, so the peak stays the largest family's (benches/README.md). `_RJEM_MALLOC_CONF`
/// in the environment still overrides this.
#[cfg(target_os = "linux")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(c"dirty_decay_ms:-1,muzzy_decay_ms:-1".as_ptr());

#[cfg(target_os = "linux")]
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);
// SAFETY: a pointer to a static, immutable C string.
#[cfg(target_os = "linux")]
unsafe impl Sync for MallocConf {}

/// Purges the freed pages of every jemalloc arena (`arena.<MALLCTL_ARENAS_ALL>.purge`).
#[cfg(target_os = "linux")]
fn release_freed_memory() {
    // SAFETY: a valid NUL-terminated name; purge reads and writes nothing.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    crm_kpi::kpi::run::set_memory_release(release_freed_memory);
    crm_kpi::cli::main()
}

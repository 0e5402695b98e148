//! `strata`: one binary running a backend platform. See `strata --help`.

/// jemalloc instead of glibc's allocator: under pipelined collection writes glibc's allocator internals
/// were 20-30% of the server's CPU, and jemalloc cut LRANGE_100 -P16 CPU by ~40% (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    strata::cli::main()
}

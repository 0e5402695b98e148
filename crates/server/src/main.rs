//! `strata`: one binary running a backend platform. See `strata --help`.

fn main() -> std::process::ExitCode {
    strata::cli::main()
}

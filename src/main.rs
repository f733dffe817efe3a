//! The `praetor` agent binary: parse the command line, run, map the outcome to an exit code
//! (0 success, 1 invalid configuration or agent failure, 2 usage error).
fn main() -> std::process::ExitCode {
    praetor::cli::run_cli()
}

//! The `praetorctl` operator CLI: a drop-in for `patronictl` (see `praetor::ctl`).
fn main() -> std::process::ExitCode {
    praetor::ctl::run()
}

//! A shared library that does not export praetor's entry symbol; the host must refuse it.

/// Some Rust function (not exported under a C name).
pub fn not_a_praetor_plugin() -> i32 {
    42
}

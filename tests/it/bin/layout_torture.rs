//! Placeholder replaced by the crash-test helper.
fn main() {}

//! bench-driver.
fn main() {}

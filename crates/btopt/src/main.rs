//! btopt CLI.
fn main() {}

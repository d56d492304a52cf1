//! The `vmc` binary.
fn main() {}

//! Test PKI (filled in by the vmc-trust work).

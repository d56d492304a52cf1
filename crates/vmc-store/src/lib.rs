//! vmc-store

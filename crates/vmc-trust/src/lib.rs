//! vmc-trust

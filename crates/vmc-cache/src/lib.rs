//! vmc-cache

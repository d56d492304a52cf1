//! vmc-fetch

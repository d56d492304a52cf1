//! vmc-model

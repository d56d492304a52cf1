//! Loopback test HTTP server (filled in by the vmc-fetch work).

//! HTTPS: verification against the configured roots, host names, resume over TLS.

use std::fs;

use vmc_fetch::{Client, ClientConfig, FetchError};
use vmc_model::ErrorCode;
use vmc_testkit::server::{Fault, Route, TestTls};

use crate::{body, config, download, partial};

fn trusting(tls: &TestTls, system_roots: bool, retries: u32) -> Client {
    Client::new(ClientConfig {
        system_roots,
        extra_roots: vec![tls.ca_cert.clone()],
        retries,
        ..config()
    })
    .unwrap()
}

#[test]
fn https_download_trusts_the_extra_roots() {
    let tls = TestTls::generate();
    let server = tls.start_server();
    let data = body(1_200_000, 40);
    server.add("/img", Route::new(data.clone()));
    let (_dir, dest) = partial();
    assert!(server.url("/img").starts_with("https://127.0.0.1:"));
    download(&trusting(&tls, false, 0), &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    // System roots and the extra roots together.
    let (_dir2, dest2) = partial();
    download(&trusting(&tls, true, 0), &server.url("/img"), &dest2, &data).unwrap();
}

#[test]
fn untrusted_server_certificate_is_refused() {
    let tls = TestTls::generate();
    let server = tls.start_server();
    let data = body(1000, 41);
    server.add("/img", Route::new(data.clone()));
    let (_dir, dest) = partial();
    // Only the system roots: the test CA is not among them.
    let system_only = Client::new(ClientConfig {
        system_roots: true,
        retries: 2,
        ..config()
    })
    .unwrap();
    let err = download(&system_only, &server.url("/img"), &dest, &data).unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(err.code(), ErrorCode::FetchFailed);
    // Another CA as the extra root.
    let other = TestTls::generate();
    let err = download(
        &trusting(&other, false, 0),
        &server.url("/img"),
        &dest,
        &data,
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
    let err = trusting(&other, false, 0)
        .fetch_bytes(&server.url("/img"), None, 10_000)
        .unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
    assert_eq!(server.requests("/img"), 0);
    assert!(!dest.exists());
}

#[test]
fn certificate_for_another_host_is_refused() {
    let tls = TestTls::generate_for(&["DNS:images.example.org"]);
    let server = tls.start_server();
    server.add("/img", Route::new(b"x".to_vec()));
    let err = trusting(&tls, false, 0)
        .fetch_bytes(&server.url("/img"), None, 100)
        .unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
    assert_eq!(server.requests("/img"), 0);
}

#[test]
fn https_download_resumes_after_truncation() {
    let tls = TestTls::generate();
    let server = tls.start_server();
    let data = body(2_000_000, 42);
    server.add(
        "/img",
        Route::new(data.clone())
            .etag("\"t1\"")
            .fault_for(Fault::TruncateAt(600_000), 1),
    );
    let (_dir, dest) = partial();
    let outcome = download(&trusting(&tls, false, 1), &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(outcome.attempts, 2);
    assert_eq!(outcome.resumed_from, 600_000);
    assert_eq!(server.bytes_sent("/img"), data.len() as u64);
    assert_eq!(fs::read(&dest).unwrap(), data);
}

//! `Client::download`: streaming, verification, resume, retries, size limits.

use std::fs;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vmc_fetch::{Client, ClientConfig, FetchError, NoReporter, state_path};
use vmc_model::ErrorCode;
use vmc_testkit::server::{Fault, Route, TestServer};

use crate::{
    Recorder, body, client, config, download, download_expecting, partial, serve_with_partial, sha,
};

#[test]
fn download_writes_the_verified_file_and_leaves_no_state() {
    let data = body(3 * 1024 * 1024 + 17, 1);
    let (server, _dir, dest) = serve_with_partial("/img", Route::new(data.clone()));
    let recorder = Recorder::default();
    let outcome = download_expecting(
        &client(0),
        &server.url("/img"),
        &dest,
        data.len() as u64,
        &sha(&data).to_uppercase(),
        &recorder,
    )
    .unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    assert_eq!(outcome.sha512, sha(&data));
    assert_eq!(outcome.size, data.len() as u64);
    assert_eq!(outcome.bytes_transferred, data.len() as u64);
    assert_eq!(outcome.resumed_from, 0);
    assert_eq!(outcome.attempts, 1);
    assert!(!state_path(&dest).exists());
    assert_eq!(server.requests("/img"), 1);
    assert_eq!(server.bytes_sent("/img"), data.len() as u64);
    let request = server.last_request("/img").unwrap();
    assert_eq!(request.header("range"), None);
    assert_eq!(
        request.header("user-agent"),
        Some(format!("vmc/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(
        *recorder.started.lock().unwrap(),
        [(server.url("/img"), data.len() as u64, 0)]
    );
    assert_eq!(recorder.last_done.load(Ordering::SeqCst), data.len() as u64);
    assert_eq!(recorder.finished.load(Ordering::SeqCst), 1);
}

#[test]
fn empty_image_downloads() {
    let (server, _dir, dest) = serve_with_partial("/empty", Route::new(Vec::new()));
    let outcome = download(&client(0), &server.url("/empty"), &dest, b"").unwrap();
    assert_eq!(outcome.size, 0);
    assert_eq!(fs::read(&dest).unwrap(), b"");
}

#[test]
fn resumed_download_transfers_only_the_missing_bytes() {
    let data = body(2_000_000, 2);
    let cut = 750_000u64;
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone())
            .etag("\"v1\"")
            .fault_for(Fault::TruncateAt(cut), 1),
    );
    let c = client(0);

    let err = download(&c, &server.url("/img"), &dest, &data).unwrap_err();
    assert!(
        matches!(err, FetchError::Truncated { received, expected, .. } if received == cut && expected == data.len() as u64),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(fs::metadata(&dest).unwrap().len(), cut);
    assert!(state_path(&dest).exists());
    assert_eq!(server.bytes_sent("/img"), cut);

    let recorder = Recorder::default();
    let outcome = download_expecting(
        &c,
        &server.url("/img"),
        &dest,
        data.len() as u64,
        &sha(&data),
        &recorder,
    )
    .unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    assert_eq!(outcome.resumed_from, cut);
    assert_eq!(outcome.bytes_transferred, data.len() as u64 - cut);
    // The server sent every byte exactly once over both calls.
    assert_eq!(server.bytes_sent("/img"), data.len() as u64);
    let request = server.last_request("/img").unwrap();
    assert_eq!(
        request.header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(request.header("if-range"), Some("\"v1\""));
    assert_eq!(recorder.started.lock().unwrap()[0].2, cut);
    assert!(!state_path(&dest).exists());
}

#[test]
fn truncation_is_retried_and_resumed_within_one_call() {
    let data = body(1_500_000, 3);
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone()).fault_for(Fault::TruncateAt(400_000), 1),
    );
    let outcome = download(&client(2), &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(outcome.attempts, 2);
    assert_eq!(outcome.resumed_from, 400_000);
    assert_eq!(outcome.bytes_transferred, data.len() as u64);
    assert_eq!(server.requests("/img"), 2);
    assert_eq!(server.bytes_sent("/img"), data.len() as u64);
    assert_eq!(fs::read(&dest).unwrap(), data);
}

#[test]
fn reset_mid_body_is_transient_and_retried() {
    let data = body(4_000_000, 4);
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone()).fault_for(Fault::ResetAt(1_000_000), 1),
    );
    let err = download(&client(0), &server.url("/img"), &dest, &data).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(
            err,
            FetchError::Network { .. } | FetchError::Truncated { .. }
        ),
        "{err:?}"
    );
    let outcome = download(&client(1), &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(outcome.attempts, 1);
    assert_eq!(fs::read(&dest).unwrap(), data);
    // Whatever arrived before the reset was kept and not asked for again.
    let resumed = outcome.resumed_from;
    assert_eq!(outcome.bytes_transferred, data.len() as u64 - resumed);
    if resumed > 0 {
        let request = server.last_request("/img").unwrap();
        assert_eq!(
            request.header("range"),
            Some(format!("bytes={resumed}-").as_str())
        );
    }
}

#[test]
fn server_without_range_support_gets_a_full_download() {
    let data = body(1_000_000, 5);
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone())
            .ranges(false)
            .fault_for(Fault::TruncateAt(300_000), 1),
    );
    let c = client(0);
    download(&c, &server.url("/img"), &dest, &data).unwrap_err();
    assert_eq!(fs::metadata(&dest).unwrap().len(), 300_000);
    let outcome = download(&c, &server.url("/img"), &dest, &data).unwrap();
    // The range was asked for, the server ignored it, the file was rewritten whole.
    assert!(
        server
            .last_request("/img")
            .unwrap()
            .header("range")
            .is_some()
    );
    assert_eq!(outcome.resumed_from, 0);
    assert_eq!(outcome.bytes_transferred, data.len() as u64);
    assert_eq!(fs::read(&dest).unwrap(), data);
}

#[test]
fn changed_validator_restarts_from_scratch() {
    let good = body(1_000_000, 6);
    let stale = body(1_000_000, 7);
    // A first attempt got 300 kB of another version of the file (ETag v1)…
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(stale)
            .etag("\"v1\"")
            .fault(Fault::TruncateAt(300_000)),
    );
    let c = client(0);
    download(&c, &server.url("/img"), &dest, &good).unwrap_err();
    // …then the server's file changed (ETag v2): If-Range must make it send everything.
    server.replace("/img", Route::new(good.clone()).etag("\"v2\""));
    let outcome = download(&c, &server.url("/img"), &dest, &good).unwrap();
    let request = server.last_request("/img").unwrap();
    assert_eq!(request.header("if-range"), Some("\"v1\""));
    assert_eq!(outcome.resumed_from, 0);
    assert_eq!(fs::read(&dest).unwrap(), good);
}

#[test]
fn last_modified_is_the_validator_when_the_etag_is_weak() {
    let data = body(500_000, 8);
    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone())
            .etag("W/\"weak\"")
            .last_modified(date)
            .fault_for(Fault::TruncateAt(100_000), 1),
    );
    let outcome = download(&client(1), &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(outcome.resumed_from, 100_000);
    assert_eq!(
        server.last_request("/img").unwrap().header("if-range"),
        Some(date)
    );
}

#[test]
fn server_errors_are_retried_until_success() {
    let data = body(100_000, 9);
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone()).fault(Fault::FailTimes {
            status: 500,
            times: 2,
        }),
    );
    let outcome = download(&client(3), &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(outcome.attempts, 3);
    assert_eq!(server.requests("/img"), 3);
    assert_eq!(fs::read(&dest).unwrap(), data);
}

#[test]
fn retries_are_bounded() {
    let data = body(1000, 10);
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone()).fault(Fault::FailTimes {
            status: 503,
            times: 100,
        }),
    );
    let err = download(&client(2), &server.url("/img"), &dest, &data).unwrap_err();
    assert!(
        matches!(err, FetchError::Status { code: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(err.code(), ErrorCode::FetchFailed);
    assert_eq!(server.requests("/img"), 3);
}

#[test]
fn client_errors_are_not_retried() {
    let (server, _dir, dest) = serve_with_partial("/gone", Route::new(b"no".to_vec()).status(404));
    let err = download(&client(3), &server.url("/gone"), &dest, b"anything").unwrap_err();
    assert!(
        matches!(err, FetchError::Status { code: 404, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(server.requests("/gone"), 1);
}

#[test]
fn digest_mismatch_deletes_the_partial_file_and_is_not_retried() {
    let data = body(200_000, 11);
    let (server, _dir, dest) = serve_with_partial("/img", Route::new(data.clone()));
    let wrong = sha(b"something else");
    let err = download_expecting(
        &client(3),
        &server.url("/img"),
        &dest,
        data.len() as u64,
        &wrong,
        &NoReporter,
    )
    .unwrap_err();
    match &err {
        FetchError::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, wrong);
            assert_eq!(*actual, sha(&data));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), ErrorCode::ChecksumMismatch);
    assert!(!err.is_transient());
    assert!(!dest.exists());
    assert!(!state_path(&dest).exists());
    assert_eq!(server.requests("/img"), 1);
}

#[test]
fn content_length_other_than_expected_size_is_refused_at_once() {
    let data = body(5_000_000, 12);
    let (server, _dir, dest) = serve_with_partial("/img", Route::new(data.clone()));
    let err = download_expecting(
        &client(3),
        &server.url("/img"),
        &dest,
        data.len() as u64 + 1,
        &sha(&data),
        &NoReporter,
    )
    .unwrap_err();
    assert!(
        matches!(err, FetchError::SizeMismatch { expected, actual, .. }
            if expected == data.len() as u64 + 1 && actual == data.len() as u64),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::SizeMismatch);
    assert!(!dest.exists());
    assert_eq!(server.requests("/img"), 1);
}

#[test]
fn wrong_content_length_is_a_size_mismatch() {
    let data = body(100_000, 13);
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone()).fault(Fault::WrongContentLength(99_000)),
    );
    let err = download(&client(2), &server.url("/img"), &dest, &data).unwrap_err();
    assert!(
        matches!(err, FetchError::SizeMismatch { actual: 99_000, .. }),
        "{err:?}"
    );
    assert_eq!(server.requests("/img"), 1);
}

#[test]
fn endless_body_is_cut_off_after_the_expected_size() {
    let (server, _dir, dest) =
        serve_with_partial("/img", Route::new(Vec::new()).fault(Fault::EndlessBody));
    let size = 3 * 1024 * 1024 + 5;
    let recorder = Recorder::default();
    let err = download_expecting(
        &client(2),
        &server.url("/img"),
        &dest,
        size,
        &sha(b"x"),
        &recorder,
    )
    .unwrap_err();
    assert!(
        matches!(err, FetchError::SizeMismatch { expected, actual, .. } if expected == size && actual == size + 1),
        "{err:?}"
    );
    // Never more than the expected size was taken into the file.
    assert_eq!(recorder.max_done.load(Ordering::SeqCst), size);
    assert!(!dest.exists());
    assert!(!state_path(&dest).exists());
    assert_eq!(server.requests("/img"), 1);
}

#[test]
fn partial_file_larger_than_expected_is_discarded() {
    let data = body(300_000, 14);
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone()).fault_for(Fault::TruncateAt(1000), 1),
    );
    let c = client(0);
    download(&c, &server.url("/img"), &dest, &data).unwrap_err();
    // Make the partial file (with its valid state) longer than the image.
    fs::write(&dest, vec![0u8; data.len() + 10]).unwrap();
    let outcome = download(&c, &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(outcome.resumed_from, 0);
    assert_eq!(server.last_request("/img").unwrap().header("range"), None);
    assert_eq!(fs::read(&dest).unwrap(), data);
}

#[test]
fn partial_file_without_state_is_not_trusted() {
    let data = body(300_000, 15);
    let (server, _dir, dest) = serve_with_partial("/img", Route::new(data.clone()));
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::write(&dest, b"left over by someone else").unwrap();
    let outcome = download(&client(0), &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(outcome.resumed_from, 0);
    assert_eq!(server.last_request("/img").unwrap().header("range"), None);
    assert_eq!(fs::read(&dest).unwrap(), data);
}

#[test]
fn complete_partial_file_is_verified_without_fetching_again() {
    let data = body(300_000, 16);
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone()).fault_for(Fault::TruncateAt(1000), 1),
    );
    let c = client(0);
    download(&c, &server.url("/img"), &dest, &data).unwrap_err();
    fs::OpenOptions::new()
        .append(true)
        .open(&dest)
        .unwrap()
        .write_all(&data[1000..])
        .unwrap();
    let outcome = download(&c, &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(server.requests("/img"), 1);
    assert_eq!(outcome.bytes_transferred, 0);
    assert_eq!(outcome.resumed_from, data.len() as u64);
    assert!(!state_path(&dest).exists());
}

/// Regression: a download that finished (state file removed) but whose process died before
/// the file was moved on must not be fetched again.
#[test]
fn complete_partial_file_without_state_is_kept_when_it_verifies() {
    let data = body(300_000, 18);
    let (server, _dir, dest) = serve_with_partial("/img", Route::new(data.clone()));
    let c = client(0);
    download(&c, &server.url("/img"), &dest, &data).unwrap();
    assert!(!state_path(&dest).exists());
    let outcome = download(&c, &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(
        server.requests("/img"),
        1,
        "the verified file was fetched again"
    );
    assert_eq!(outcome.bytes_transferred, 0);
    // A complete-looking file that is not the image is still replaced.
    fs::write(&dest, vec![0u8; data.len()]).unwrap();
    download(&c, &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(server.requests("/img"), 2);
    assert_eq!(fs::read(&dest).unwrap(), data);
}

#[test]
fn stalled_body_times_out_and_is_resumed() {
    let data = body(600_000, 17);
    let (server, _dir, dest) = serve_with_partial(
        "/img",
        Route::new(data.clone()).fault_for(Fault::StallAt(200_000, Duration::from_secs(60)), 2),
    );
    let quick = |retries| {
        Client::new(ClientConfig {
            read_timeout: Duration::from_millis(800),
            retries,
            ..config()
        })
        .unwrap()
    };
    let err = download(&quick(0), &server.url("/img"), &dest, &data).unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());
    // The second request stalls too (after its first 200 kB), the third one completes.
    let outcome = download(&quick(1), &server.url("/img"), &dest, &data).unwrap();
    assert_eq!(outcome.attempts, 2);
    assert!(outcome.resumed_from >= 200_000, "{outcome:?}");
    assert_eq!(fs::read(&dest).unwrap(), data);
}

#[test]
fn redirects_are_followed_and_loops_refused() {
    let data = body(10_000, 18);
    let (server, _dir, dest) = serve_with_partial("/img", Route::new(data.clone()));
    server.add("/old", Route::redirect("/img"));
    server.add("/loop1", Route::redirect("/loop2"));
    server.add("/loop2", Route::redirect("/loop1"));
    download(&client(0), &server.url("/old"), &dest, &data).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    // A fresh destination: a complete, verified file there would be kept without a request.
    fs::remove_file(&dest).unwrap();
    let err = download(&client(3), &server.url("/loop1"), &dest, &data).unwrap_err();
    assert!(
        matches!(err, FetchError::TooManyRedirects { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    // max_redirects (5) + the first request, and no retries.
    assert_eq!(server.requests("/loop1") + server.requests("/loop2"), 6);
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[test]
fn image_bodies_are_never_content_decoded() {
    let gz = gzip_stored(&body(100_000, 19));
    let (server, _dir, dest) = serve_with_partial(
        "/img.gz",
        Route::new(gz.clone()).header("Content-Encoding", "gzip"),
    );
    download(&client(0), &server.url("/img.gz"), &dest, &gz).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), gz);
    let request = server.last_request("/img.gz").unwrap();
    assert!(
        !request
            .header("accept-encoding")
            .unwrap_or("")
            .contains("gzip")
    );
}

#[test]
fn file_urls_are_copied_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source image");
    let data = body(2_500_000, 20);
    fs::write(&source, &data).unwrap();
    let url = format!("file://{}", source.display()).replace(' ', "%20");
    let dest = dir.path().join("partial/img");
    let c = client(0);
    let outcome = download(&c, &url, &dest, &data).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    assert_eq!(outcome.bytes_transferred, data.len() as u64);

    let err = download_expecting(&c, &url, &dest, data.len() as u64, &sha(b"x"), &NoReporter)
        .unwrap_err();
    assert!(
        matches!(err, FetchError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert!(!dest.exists());
    let err = download_expecting(&c, &url, &dest, 5, &sha(&data), &NoReporter).unwrap_err();
    assert!(matches!(err, FetchError::SizeMismatch { actual, .. } if actual == data.len() as u64));
    let err = download(&c, "file:///nonexistent/vmc/x", &dest, &data).unwrap_err();
    assert!(matches!(err, FetchError::Io { .. }), "{err:?}");
}

#[test]
fn refused_connection_is_a_transient_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_dir, dest) = partial();
    let err = download(
        &client(1),
        &format!("http://127.0.0.1:{port}/x"),
        &dest,
        b"x",
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.code(), ErrorCode::FetchFailed);
}

#[test]
fn parallel_downloads_share_one_client() {
    let server = TestServer::start();
    let images: Vec<Vec<u8>> = (0..4).map(|i| body(700_000, 100 + i)).collect();
    for (i, data) in images.iter().enumerate() {
        server.add(
            &format!("/img{i}"),
            Route::new(data.clone()).throttle(4_000_000),
        );
    }
    let c = client(0);
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        for (i, data) in images.iter().enumerate() {
            let c = c.clone();
            let url = server.url(&format!("/img{i}"));
            let dest = dir.path().join(format!("img{i}"));
            s.spawn(move || {
                download(&c, &url, &dest, data).unwrap();
                assert_eq!(fs::read(&dest).unwrap(), *data);
            });
        }
    });
    assert_eq!(
        server.total_bytes_sent(),
        images.iter().map(|d| d.len() as u64).sum::<u64>()
    );
}

#[test]
fn bad_requests_are_refused_before_any_transfer() {
    let (_dir, dest) = partial();
    let c = client(0);
    let err =
        download_expecting(&c, "http://127.0.0.1:1/x", &dest, 1, "abc", &NoReporter).unwrap_err();
    assert!(matches!(err, FetchError::InvalidDigest { .. }), "{err:?}");
    let err = download(&c, "ftp://u:secret@example.org/x", &dest, b"x").unwrap_err();
    assert!(
        matches!(err, FetchError::UnsupportedScheme { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("secret"));
    // A destination that is not a regular file is neither written nor deleted.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    server.add("/img", Route::new(b"x".to_vec()));
    let err = download(&c, &server.url("/img"), dir.path(), b"x").unwrap_err();
    assert!(matches!(err, FetchError::Io { .. }), "{err:?}");
    assert!(dir.path().is_dir());
}

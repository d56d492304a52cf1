//! `Client::fetch_bytes`, credentials and redirects.

use std::time::Duration;

use vmc_fetch::{Client, ClientConfig, Credentials, DownloadRequest, FetchError, NoReporter};
use vmc_testkit::server::{Auth, Fault, Route, TestServer};

use crate::{body, client, config, partial, sha};

#[test]
fn fetch_bytes_returns_the_body() {
    let server = TestServer::start();
    server.add("/list", Route::new(b"signed list".to_vec()));
    let bytes = client(0)
        .fetch_bytes(&server.url("/list?x=1"), None, 1024)
        .unwrap();
    assert_eq!(bytes, b"signed list");
    assert_eq!(server.requests("/list"), 1);
}

#[test]
fn fetch_bytes_accepts_exactly_the_limit_and_refuses_more() {
    let server = TestServer::start();
    server.add("/list", Route::new(vec![b'a'; 1000]));
    let c = client(2);
    assert_eq!(
        c.fetch_bytes(&server.url("/list"), None, 1000)
            .unwrap()
            .len(),
        1000
    );
    let err = c.fetch_bytes(&server.url("/list"), None, 999).unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 999, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[test]
fn fetch_bytes_refuses_an_endless_body_while_reading() {
    let server = TestServer::start();
    server.add("/list", Route::new(Vec::new()).fault(Fault::EndlessBody));
    let err = client(2)
        .fetch_bytes(&server.url("/list"), None, 4 * 1024 * 1024)
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
    assert_eq!(server.requests("/list"), 1);
}

#[test]
fn fetch_bytes_reports_a_truncated_body() {
    let server = TestServer::start();
    server.add(
        "/list",
        Route::new(vec![b'a'; 10_000]).fault(Fault::TruncateAt(5000)),
    );
    let err = client(1)
        .fetch_bytes(&server.url("/list"), None, 1 << 20)
        .unwrap_err();
    assert!(matches!(err, FetchError::Truncated { .. }), "{err:?}");
    assert_eq!(server.requests("/list"), 2);
}

#[test]
fn fetch_bytes_retries_server_errors() {
    let server = TestServer::start();
    server.add(
        "/list",
        Route::new(b"ok".to_vec()).fault(Fault::FailTimes {
            status: 502,
            times: 1,
        }),
    );
    assert_eq!(
        client(1)
            .fetch_bytes(&server.url("/list"), None, 100)
            .unwrap(),
        b"ok"
    );
    assert_eq!(server.requests("/list"), 2);
}

#[test]
fn list_timeout_bounds_the_whole_request() {
    let server = TestServer::start();
    server.add(
        "/list",
        Route::new(vec![b'a'; 100_000]).fault(Fault::StallAt(10, Duration::from_secs(60))),
    );
    // Per-read timeout is long; the overall list timeout is what ends it.
    let c = Client::new(ClientConfig {
        read_timeout: Duration::from_secs(30),
        list_timeout: Duration::from_millis(800),
        ..config()
    })
    .unwrap();
    let err = c
        .fetch_bytes(&server.url("/list"), None, 1 << 20)
        .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
}

#[test]
fn fetch_bytes_reads_file_urls_with_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.smime");
    std::fs::write(&path, b"local list").unwrap();
    let url = format!("file://{}", path.display());
    let c = client(0);
    assert_eq!(c.fetch_bytes(&url, None, 100).unwrap(), b"local list");
    let err = c.fetch_bytes(&url, None, 5).unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 5, .. }),
        "{err:?}"
    );
}

fn basic(username: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: username.into(),
        password: password.into(),
    }
}

#[test]
fn basic_auth_from_credentials_or_url_userinfo() {
    let server = TestServer::start();
    server.add(
        "/private",
        Route::new(b"private list".to_vec()).auth(Auth::Basic {
            username: "TOKEN".into(),
            password: "x-oauth-basic".into(),
        }),
    );
    let c = client(2);
    let url = server.url("/private");
    let err = c.fetch_bytes(&url, None, 100).unwrap_err();
    assert!(
        matches!(err, FetchError::Status { code: 401, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(server.requests("/private"), 1);

    let ok = c
        .fetch_bytes(&url, Some(&basic("TOKEN", "x-oauth-basic")), 100)
        .unwrap();
    assert_eq!(ok, b"private list");
    let wrong = c.fetch_bytes(&url, Some(&basic("TOKEN", "nope")), 100);
    assert!(matches!(wrong, Err(FetchError::Status { code: 401, .. })));

    // EGI AppDB style: the token as the URL's user name.
    let with_userinfo = url.replace("http://", "http://TOKEN:x-oauth-basic@");
    assert_eq!(
        c.fetch_bytes(&with_userinfo, None, 100).unwrap(),
        b"private list"
    );
    // Percent-encoded userinfo is decoded.
    server.add(
        "/enc",
        Route::new(b"e".to_vec()).auth(Auth::Basic {
            username: "a@b".into(),
            password: "p:w".into(),
        }),
    );
    let enc = server.url("/enc").replace("http://", "http://a%40b:p%3Aw@");
    assert_eq!(c.fetch_bytes(&enc, None, 100).unwrap(), b"e");
}

#[test]
fn bearer_token_auth() {
    let server = TestServer::start();
    server.add(
        "/private",
        Route::new(b"ok".to_vec()).auth(Auth::Bearer("tok-123".into())),
    );
    let c = client(0);
    let url = server.url("/private");
    assert_eq!(
        c.fetch_bytes(&url, Some(&Credentials::Bearer("tok-123".into())), 10)
            .unwrap(),
        b"ok"
    );
    let err = c
        .fetch_bytes(&url, Some(&Credentials::Bearer("other".into())), 10)
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { code: 401, .. }),
        "{err:?}"
    );
    assert_eq!(
        server
            .last_request("/private")
            .unwrap()
            .header("authorization"),
        Some("Bearer other")
    );
}

#[test]
fn credentials_are_used_for_downloads_too() {
    let server = TestServer::start();
    let data = body(50_000, 30);
    server.add(
        "/img",
        Route::new(data.clone()).auth(Auth::Bearer("t".into())),
    );
    let (_dir, dest) = partial();
    let creds = Credentials::Bearer("t".into());
    let digest = sha(&data);
    client(0)
        .download(
            &DownloadRequest {
                url: &server.url("/img"),
                credentials: Some(&creds),
                dest: &dest,
                expected_size: data.len() as u64,
                expected_sha512: &digest,
            },
            &NoReporter,
        )
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[test]
fn credentials_follow_same_host_redirects_only() {
    let server = TestServer::start();
    let other = TestServer::start();
    let creds = Auth::Basic {
        username: "u".into(),
        password: "p".into(),
    };
    server.add("/here", Route::new(b"here".to_vec()).auth(creds.clone()));
    server.add("/moved", Route::redirect("/here"));
    other.add("/there", Route::new(b"there".to_vec()).auth(creds));
    server.add("/away", Route::redirect(&other.url("/there")));
    let c = client(0);
    let creds = basic("u", "p");
    assert_eq!(
        c.fetch_bytes(&server.url("/moved"), Some(&creds), 100)
            .unwrap(),
        b"here"
    );
    // Another host (here: another port) never sees the credentials.
    let err = c
        .fetch_bytes(&server.url("/away"), Some(&creds), 100)
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { code: 401, .. }),
        "{err:?}"
    );
    assert_eq!(
        other
            .last_request("/there")
            .unwrap()
            .header("authorization"),
        None
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    let server = TestServer::start();
    server.add("/missing", Route::new(Vec::new()).status(404));
    let url = server
        .url("/missing")
        .replace("http://", "http://user:hunter2@");
    let err = client(0).fetch_bytes(&url, None, 10).unwrap_err();
    match &err {
        FetchError::Status { url, code } => {
            assert_eq!(*code, 404);
            assert_eq!(*url, server.url("/missing"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    let creds = basic("TOKEN", "hunter2");
    assert!(!format!("{creds:?}").contains("hunter2"));
    assert!(!format!("{creds:?}").contains("TOKEN"));
}

#[test]
fn redirects_to_local_files_are_refused() {
    let server = TestServer::start();
    server.add("/evil", Route::redirect("file:///etc/passwd"));
    let err = client(0)
        .fetch_bytes(&server.url("/evil"), None, 1 << 20)
        .unwrap_err();
    assert!(
        matches!(err, FetchError::UnsupportedScheme { .. }),
        "{err:?}"
    );
}

#[test]
fn relative_redirects_keep_credentials_on_the_same_origin() {
    let server = TestServer::start();
    server.add(
        "/dir/list",
        Route::new(b"moved list".to_vec()).auth(Auth::Bearer("t".into())),
    );
    server.add(
        "/dir/old",
        Route::new(Vec::new())
            .status(301)
            .header("Location", "list"),
    );
    let bytes = client(0)
        .fetch_bytes(
            &server.url("/dir/old"),
            Some(&Credentials::Bearer("t".into())),
            100,
        )
        .unwrap();
    assert_eq!(bytes, b"moved list");
}

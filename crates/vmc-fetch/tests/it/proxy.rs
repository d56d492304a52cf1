//! The configured HTTP proxy (CONNECT) and its exceptions.

use vmc_fetch::{Client, ClientConfig, FetchError};
use vmc_testkit::server::{Route, TestServer, TestTls};

use crate::{body, config, download, partial};

fn via(proxy: &TestServer, no_proxy: &[&str], tls: Option<&TestTls>) -> Client {
    Client::new(ClientConfig {
        proxy: Some(proxy.base_url()),
        no_proxy: no_proxy.iter().map(|s| (*s).to_owned()).collect(),
        extra_roots: tls.map(|t| vec![t.ca_cert.clone()]).unwrap_or_default(),
        ..config()
    })
    .unwrap()
}

#[test]
fn requests_go_through_the_configured_proxy() {
    let proxy = TestServer::start();
    proxy.enable_connect_proxy();
    let target = TestServer::start();
    let data = body(300_000, 50);
    target.add("/img", Route::new(data.clone()));
    let (_dir, dest) = partial();
    download(&via(&proxy, &[], None), &target.url("/img"), &dest, &data).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(proxy.connects(), [target.addr().to_string()]);
}

#[test]
fn https_goes_through_the_proxy_tunnel() {
    let proxy = TestServer::start();
    proxy.enable_connect_proxy();
    let tls = TestTls::generate();
    let target = tls.start_server();
    target.add("/list", Route::new(b"list".to_vec()));
    let bytes = via(&proxy, &[], Some(&tls))
        .fetch_bytes(&target.url("/list"), None, 100)
        .unwrap();
    assert_eq!(bytes, b"list");
    assert_eq!(proxy.connects(), [target.addr().to_string()]);
}

#[test]
fn no_proxy_hosts_are_reached_directly() {
    let proxy = TestServer::start();
    proxy.enable_connect_proxy();
    let target = TestServer::start();
    target.add("/list", Route::new(b"list".to_vec()));
    let bytes = via(&proxy, &["localhost", "127.0.0.1"], None)
        .fetch_bytes(&target.url("/list"), None, 100)
        .unwrap();
    assert_eq!(bytes, b"list");
    assert!(proxy.connects().is_empty());
}

#[test]
fn unusable_proxy_settings_are_refused_when_building_the_client() {
    for proxy in [
        "socks5://127.0.0.1:1080",
        "http://:3128",
        "http://h:notaport",
    ] {
        let err = Client::new(ClientConfig {
            proxy: Some(proxy.to_owned()),
            ..config()
        })
        .unwrap_err();
        assert!(
            matches!(err, FetchError::InvalidProxy { .. }),
            "{proxy}: {err:?}"
        );
    }
    let err = Client::new(ClientConfig {
        proxy: Some("ftp://user:secret@h:1".to_owned()),
        ..config()
    })
    .unwrap_err();
    assert!(!err.to_string().contains("secret"));
}

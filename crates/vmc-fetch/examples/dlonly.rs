//! Temporary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs)]
use std::time::Instant;
use vmc_fetch::{Client, ClientConfig, DownloadRequest, NoReporter};
use vmc_testkit::server::{Route, TestServer};
fn main() {
    let size: usize = 256 << 20;
    let data: Vec<u8> = vec![7u8; size];
    let digest = hex::encode(openssl::sha::sha512(&data));
    let server = TestServer::start();
    server.add("/img", Route::new(data));
    let client = Client::new(ClientConfig { system_roots: false, ..ClientConfig::default() }).unwrap();
    let dir = tempfile::tempdir_in("/work").unwrap();
    let dest = dir.path().join("img");
    for target in ["/dev/null", "/work/curl.out"] {
        let t = Instant::now();
        let st = std::process::Command::new("curl").args(["-s", "-o", target, &server.url("/img")]).status().unwrap();
        assert!(st.success());
        println!("curl -o {target}: {:.0} MB/s", size as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file("/work/curl.out");
    let t0 = Instant::now();
    for _ in 0..4 {
        let t = Instant::now();
        client.download(&DownloadRequest { url: &server.url("/img"), credentials: None, dest: &dest, expected_size: size as u64, expected_sha512: &digest }, &NoReporter).unwrap();
        println!("download http {:.0} MB/s", size as f64 / 1e6 / t.elapsed().as_secs_f64());
        std::fs::remove_file(&dest).unwrap();
    }
    println!("total {:?}", t0.elapsed());
}

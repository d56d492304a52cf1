//! Temporary throughput measurement (not part of the crate).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs)]

use std::time::Instant;

use vmc_fetch::{Client, ClientConfig, DownloadRequest, NoReporter, sha512_file};
use vmc_testkit::server::{Route, TestServer, TestTls};

fn main() {
    let size: usize = std::env::args().nth(1).map_or(256, |s| s.parse().unwrap()) << 20;
    let data: Vec<u8> = (0..size).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let digest = hex::encode(openssl::sha::sha512(&data));
    let server = TestServer::start();
    server.add("/img", Route::new(data.clone()));
    let tls = TestTls::generate();
    let tserver = tls.start_server();
    tserver.add("/img", Route::new(data.clone()));
    let client = Client::new(ClientConfig { system_roots: false, extra_roots: vec![tls.ca_cert.clone()], ..ClientConfig::default() }).unwrap();
    let dir = tempfile::tempdir_in("/work").unwrap();
    let mb = |secs: f64| size as f64 / 1e6 / secs;
    for round in 0..3 {
        let t = Instant::now();
        let d = openssl::sha::sha512(&data);
        std::hint::black_box(d);
        let mem = t.elapsed().as_secs_f64();

        let dest = dir.path().join(format!("img{round}"));
        let t = Instant::now();
        client.download(&DownloadRequest { url: &server.url("/img"), credentials: None, dest: &dest, expected_size: size as u64, expected_sha512: &digest }, &NoReporter).unwrap();
        let dl = t.elapsed().as_secs_f64();

        // Same destination again (pages warm: the file is rewritten in place after truncate).
        std::fs::remove_file(&dest).unwrap();
        let t = Instant::now();
        client.download(&DownloadRequest { url: &tserver.url("/img"), credentials: None, dest: &dest, expected_size: size as u64, expected_sha512: &digest }, &NoReporter).unwrap();
        let tdl = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let h = sha512_file(&dest).unwrap();
        assert_eq!(h, digest);
        let fh = t.elapsed().as_secs_f64();
        std::fs::remove_file(&dest).unwrap();
        println!("round {round}: sha512 in memory {:.0} MB/s | download http {:.0} MB/s | download https {:.0} MB/s | sha512_file {:.0} MB/s", mb(mem), mb(dl), mb(tdl), mb(fh));
    }
}

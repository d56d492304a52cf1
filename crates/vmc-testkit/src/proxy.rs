//! A reverse HTTP/1.1 proxy on `127.0.0.1:0` in front of a real server (Glance), that fails on
//! purpose for the requests a [`Rule`] matches: it answers a status of its own without asking
//! the server ([`ProxyFault::Status`]), drops the connection after part of the request body
//! ([`ProxyFault::DropAfter`]), flips one byte of the body on the way
//! ([`ProxyFault::Corrupt`]), stops forwarding and hangs ([`ProxyFault::Stall`]), or cuts the
//! server's answer short ([`ProxyFault::CutResponse`]: a download reset mid-body). Everything
//! else passes unchanged.
//!
//! Each connection carries one request: the proxy asks the server for `Connection: close`, so
//! the server's answer ends the connection and the client opens a new one for the next
//! request. Request bodies must have a `Content-Length` (vmc's clients always send one).
//! Dropping the proxy stops its accept loop.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a matched request fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyFault {
    /// Read the request, then answer this status (with an empty body) without forwarding.
    Status(u16),
    /// Forward the head and this many body bytes, then close both connections.
    DropAfter(u64),
    /// Forward everything, with the body byte at this offset inverted.
    Corrupt(u64),
    /// Forward the head and this many body bytes, then forward nothing more and hold both
    /// connections open until the proxy is dropped (a peer that hangs mid-upload).
    Stall(u64),
    /// Forward the request, then this many bytes of the answer (head included), then close
    /// both connections (a connection reset in the middle of a download).
    CutResponse(u64),
}

/// Which requests fail, how, and how many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The request method (`PUT`, `POST`…).
    pub method: String,
    /// A substring the request target must contain (`/file`).
    pub path_contains: String,
    /// What happens.
    pub fault: ProxyFault,
    /// How many matching requests fail (then the rule is spent).
    pub times: u32,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    log: Vec<String>,
}

/// The running proxy.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let shared = Arc::clone(&shared);
                            let stop = Arc::clone(&stop);
                            std::thread::spawn(move || {
                                let _ = serve(client, upstream, &shared, &stop);
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(FaultProxy {
            addr,
            shared,
            stop,
            accept: Some(accept),
        })
    }

    /// The proxy's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule (rules are tried in the order added; the first live match applies).
    pub fn add_rule(&self, method: &str, path_contains: &str, fault: ProxyFault, times: u32) {
        self.lock().rules.push(Rule {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            fault,
            times,
        });
    }

    /// Removes every rule: from now on everything passes.
    pub fn clear_rules(&self) {
        self.lock().rules.clear();
    }

    /// `METHOD target` of every request seen, in order.
    pub fn requests(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Serves one connection: one request, forwarded or failed.
fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::with_capacity(256 * 1024, client.try_clone()?);
    let mut client = client;
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut head = String::new();
    head.push_str(&request_line);
    let mut content_length: u64 = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        head.push_str(&line);
    }
    head.push_str("Connection: close\r\n\r\n");
    let fault = {
        let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.log.push(format!("{method} {target}"));
        let rule = shared.rules.iter_mut().find(|r| {
            r.times > 0
                && r.method.eq_ignore_ascii_case(&method)
                && target.contains(&r.path_contains)
        });
        rule.map(|r| {
            r.times -= 1;
            r.fault.clone()
        })
    };
    if let Some(ProxyFault::Status(code)) = fault {
        io::copy(&mut (&mut reader).take(content_length), &mut io::sink())?;
        write!(
            client,
            "HTTP/1.1 {code} Injected\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        )?;
        client.flush()?;
        return client.shutdown(Shutdown::Both);
    }
    let mut server = TcpStream::connect(upstream)?;
    server.set_read_timeout(Some(Duration::from_secs(600)))?;
    server.write_all(head.as_bytes())?;
    let limit = match fault {
        Some(ProxyFault::DropAfter(n) | ProxyFault::Stall(n)) => n.min(content_length),
        _ => content_length,
    };
    let corrupt_at = match fault {
        Some(ProxyFault::Corrupt(offset)) => Some(offset),
        _ => None,
    };
    let mut sent = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    while sent < limit {
        let want = usize::try_from((limit - sent).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        if let Some(at) = corrupt_at
            && at >= sent
            && at < sent + n as u64
        {
            let i = usize::try_from(at - sent).unwrap_or(0);
            buf[i] ^= 0xff;
        }
        server.write_all(&buf[..n])?;
        sent += n as u64;
    }
    if matches!(fault, Some(ProxyFault::Stall(_))) {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    if matches!(fault, Some(ProxyFault::DropAfter(_))) {
        let _ = server.shutdown(Shutdown::Both);
        return client.shutdown(Shutdown::Both);
    }
    if let Some(ProxyFault::CutResponse(n)) = fault {
        io::copy(&mut (&mut server).take(n), &mut client)?;
        client.flush()?;
        let _ = server.shutdown(Shutdown::Both);
        return client.shutdown(Shutdown::Both);
    }
    io::copy(&mut server, &mut client)?;
    client.flush()?;
    client.shutdown(Shutdown::Both)
}

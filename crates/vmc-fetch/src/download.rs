//! Verified, resumable downloads into the partial directory.
//!
//! One attempt: look at the partial file and its state file (`<dest>.state`, which ties the
//! partial bytes to the expected digest and size and keeps the server's validator), ask for the
//! missing bytes with `Range` + `If-Range` (or for everything), stream the body to the file
//! while a second thread hashes the same buffers, then check size and SHA-512 and fsync. A
//! transient failure keeps the partial bytes for the next attempt; a size or digest mismatch
//! deletes them so the next try starts clean.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use vmc_model::oci::DigestAlgorithm;

use crate::client::{Client, authorization, map_body_error};
use crate::error::FetchError;
use crate::hash::{BUFFER_SIZE, Hasher, fill};
use crate::url::Target;
use crate::{DownloadOutcome, DownloadRequest, Reporter};

/// First line of a state file (its format version).
const STATE_MAGIC: &str = "vmc-fetch-partial 1";

/// The state file kept beside a partial file: `<dest>.state` (written through a temporary
/// name unique to the writer, see [`crate::unique_tmp_path`]). Both belong to the download of `dest`; a successful download removes
/// the state file.
pub fn state_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".state");
    PathBuf::from(name)
}

/// What the state file says about the partial bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    algorithm: DigestAlgorithm,
    /// The expected digest (lowercase hex).
    digest: String,
    size: u64,
    /// A strong `ETag` or a `Last-Modified` value, for `If-Range`.
    validator: Option<String>,
}

impl State {
    fn read(path: &Path) -> Option<State> {
        let text = fs::read_to_string(path).ok()?;
        let mut lines = text.lines();
        if lines.next()? != STATE_MAGIC {
            return None;
        }
        let (mut digest, mut size, mut validator) = (None, None, None);
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "sha512" => digest = Some((DigestAlgorithm::Sha512, value.to_owned())),
                "sha256" => digest = Some((DigestAlgorithm::Sha256, value.to_owned())),
                "size" => size = value.parse().ok(),
                "validator" if !value.is_empty() => validator = Some(value.to_owned()),
                _ => {}
            }
        }
        let (algorithm, digest) = digest?;
        Some(State {
            algorithm,
            digest,
            size: size?,
            validator,
        })
    }

    /// Writes the state atomically (temporary file, then rename).
    fn write(&self, path: &Path) -> io::Result<()> {
        let mut text = format!(
            "{STATE_MAGIC}\n{} {}\nsize {}\n",
            self.algorithm, self.digest, self.size
        );
        if let Some(v) = &self.validator {
            text.push_str("validator ");
            text.push_str(v);
            text.push('\n');
        }
        crate::replace_file(path, text.as_bytes())
    }
}

/// Removes a file, a missing one being fine.
fn remove_if_present(path: &Path) -> Result<(), FetchError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FetchError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Deletes the partial file and its state so that the next try starts clean.
fn discard(dest: &Path) -> Result<(), FetchError> {
    remove_if_present(dest)?;
    remove_if_present(&state_path(dest))
}

/// The destination exists and is not a plain file: never delete or write through it.
fn not_a_file(path: &Path) -> FetchError {
    FetchError::Io {
        path: path.to_owned(),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            "destination exists and is not a regular file",
        ),
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The parsed `Content-Range: bytes START-END/TOTAL` of a 206.
struct ContentRange {
    start: u64,
    end: u64,
    total: Option<u64>,
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let range = ContentRange {
        start: start.trim().parse().ok()?,
        end: end.trim().parse().ok()?,
        total,
    };
    (range.start <= range.end).then_some(range)
}

/// Checks that the expected SHA-512 is 128 hex digits; returns it in lowercase.
pub(crate) fn normalize_digest(value: &str) -> Result<String, FetchError> {
    if value.len() == DigestAlgorithm::Sha512.hex_len()
        && value.bytes().all(|b| b.is_ascii_hexdigit())
    {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(FetchError::InvalidDigest {
            value: value.to_owned(),
        })
    }
}

/// Bytes written between two nudges of the background writeback.
const FLUSH_EVERY: u64 = 32 << 20;

/// The partial file being written. A helper thread calls `fdatasync` every
/// [`FLUSH_EVERY`] bytes, so that the disk writes overlap the download and the final `fsync`
/// has little left to do (on the project's machine it was a third of a download's time).
struct Output {
    file: File,
    unflushed: u64,
    nudge: Option<mpsc::SyncSender<()>>,
    flusher: Option<JoinHandle<()>>,
}

impl Output {
    fn new(file: File) -> Output {
        let mut out = Output {
            file,
            unflushed: 0,
            nudge: None,
            flusher: None,
        };
        let Ok(clone) = out.file.try_clone() else {
            return out;
        };
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let spawned = std::thread::Builder::new()
            .name("vmc-writeback".into())
            .spawn(move || {
                for () in rx {
                    // Errors surface in the final `sync_all`.
                    let _ = clone.sync_data();
                }
            });
        if let Ok(handle) = spawned {
            out.nudge = Some(tx);
            out.flusher = Some(handle);
        }
        out
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.unflushed += buf.len() as u64;
        if self.unflushed >= FLUSH_EVERY {
            self.unflushed = 0;
            if let Some(tx) = &self.nudge {
                // Full means a flush is pending already: it will cover these bytes too.
                let _ = tx.try_send(());
            }
        }
        Ok(())
    }

    fn stop_flusher(&mut self) {
        drop(self.nudge.take());
        if let Some(handle) = self.flusher.take() {
            let _ = handle.join();
        }
    }

    /// Waits for the background flushes, then `fsync`s the file.
    fn sync(mut self) -> io::Result<()> {
        self.stop_flusher();
        self.file.sync_all()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.stop_flusher();
    }
}

impl Client {
    /// Downloads `request.url` into `request.dest` (a file of the partial directory) and
    /// verifies it against `expected_size` and `expected_sha512`.
    ///
    /// The body is hashed while it streams (no second read of the file); an interrupted
    /// download resumes from the bytes already in `dest` (with `Range` and `If-Range`,
    /// falling back to the whole file when the server ignores ranges or the file changed);
    /// transient failures are retried with exponential backoff. A body that announces or
    /// runs past another size fails at once with [`FetchError::SizeMismatch`] (never more than
    /// `expected_size` bytes are written); a digest mismatch deletes the partial file. On
    /// success `dest` holds the verified, fsynced file; the caller moves it into the cache.
    pub fn download(
        &self,
        request: &DownloadRequest<'_>,
        reporter: &dyn Reporter,
    ) -> Result<DownloadOutcome, FetchError> {
        let expected_sha = normalize_digest(request.expected_sha512)?;
        ensure_parent(request.dest)?;
        match Target::parse(request.url)? {
            Target::File { url, path } => copy_file(&url, &path, request, &expected_sha, reporter),
            Target::Http { url, userinfo } => {
                let auth = authorization(request.credentials, userinfo.as_ref());
                let done = self.download_http(
                    &HttpDownload {
                        url: &url,
                        auth: auth.as_deref(),
                        renew: None,
                        dest: request.dest,
                        size: request.expected_size,
                        algorithm: DigestAlgorithm::Sha512,
                        digest: &expected_sha,
                    },
                    reporter,
                )?;
                Ok(DownloadOutcome {
                    sha512: done.digest,
                    size: request.expected_size,
                    bytes_transferred: done.bytes_transferred,
                    resumed_from: done.resumed_from,
                    attempts: done.attempts,
                })
            }
        }
    }

    /// The single-pass, resumable, verified download of an `http(s)` URL (no userinfo) that
    /// [`Client::download`] and registry blob downloads share: `digest` is the expected
    /// digest in lowercase hex of `algorithm`.
    pub(crate) fn download_http(
        &self,
        request: &HttpDownload<'_>,
        reporter: &dyn Reporter,
    ) -> Result<Done, FetchError> {
        ensure_parent(request.dest)?;
        let mut transferred = 0u64;
        // The `Authorization` value now in use: a renewal replaces it for the later attempts.
        let auth = std::cell::RefCell::new(request.auth.map(str::to_owned));
        let ((digest, resumed_from), attempts) = self.with_retries(request.url, |attempt| {
            let job = Job {
                client: self,
                url: request.url,
                auth: &auth,
                renew: request.renew,
                dest: request.dest,
                size: request.size,
                algorithm: request.algorithm,
                digest: request.digest,
                reporter,
            };
            tracing::debug!(url = request.url, attempt, dest = %request.dest.display(), "download attempt");
            job.attempt(&mut transferred)
        })?;
        Ok(Done {
            digest,
            bytes_transferred: transferred,
            resumed_from,
            attempts,
        })
    }
}

/// An `http(s)` download for [`Client::download_http`].
pub(crate) struct HttpDownload<'a> {
    /// The URL, without userinfo.
    pub(crate) url: &'a str,
    /// The `Authorization` header value, if any (sent only to the URL's origin).
    pub(crate) auth: Option<&'a str>,
    /// How to answer a `401` (a bearer token that expired during a long download): given the
    /// refused response, a new `Authorization` value, or the error of getting one. `None`:
    /// a `401` fails the download.
    pub(crate) renew: Option<&'a Renew<'a>>,
    /// The partial file.
    pub(crate) dest: &'a Path,
    /// The size the file must have.
    pub(crate) size: u64,
    /// The digest algorithm.
    pub(crate) algorithm: DigestAlgorithm,
    /// The digest the file must have (lowercase hex).
    pub(crate) digest: &'a str,
}

/// See [`HttpDownload::renew`].
pub(crate) type Renew<'a> = dyn Fn(&crate::client::Response) -> Result<String, FetchError> + 'a;

/// What [`Client::download_http`] did.
pub(crate) struct Done {
    /// The verified digest (lowercase hex).
    pub(crate) digest: String,
    /// Body bytes received, all attempts together.
    pub(crate) bytes_transferred: u64,
    /// The offset the successful attempt started from.
    pub(crate) resumed_from: u64,
    /// Attempts made.
    pub(crate) attempts: u32,
}

/// Creates the directory `dest` goes into.
fn ensure_parent(dest: &Path) -> Result<(), FetchError> {
    match dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fs::create_dir_all(parent).map_err(io_at(parent)),
        None => Ok(()),
    }
}

/// One download's fixed parameters.
struct Job<'a> {
    client: &'a Client,
    url: &'a str,
    auth: &'a std::cell::RefCell<Option<String>>,
    renew: Option<&'a Renew<'a>>,
    dest: &'a Path,
    size: u64,
    algorithm: DigestAlgorithm,
    digest: &'a str,
    reporter: &'a dyn Reporter,
}

impl Job<'_> {
    /// Looks at the partial file: returns how many of its bytes can be kept and the validator
    /// to send with `If-Range`. Discards what cannot be kept.
    fn inspect_partial(&self) -> Result<(u64, Option<String>), FetchError> {
        let state_file = state_path(self.dest);
        let len = match fs::symlink_metadata(self.dest) {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => return Err(not_a_file(self.dest)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                remove_if_present(&state_file)?;
                return Ok((0, None));
            }
            Err(source) => {
                return Err(FetchError::Io {
                    path: self.dest.to_owned(),
                    source,
                });
            }
        };
        match State::read(&state_file) {
            Some(state)
                if state.algorithm == self.algorithm
                    && state.digest == self.digest
                    && state.size == self.size =>
            {
                if len > self.size {
                    tracing::info!(
                        url = self.url,
                        len,
                        size = self.size,
                        "partial file is larger than the image, starting over"
                    );
                    discard(self.dest)?;
                    Ok((0, None))
                } else {
                    Ok((len, state.validator))
                }
            }
            // A complete file whose state is gone: a finished download whose process died
            // before the file was moved on (the state file goes first). `attempt` re-hashes
            // it and keeps it only if it is the image.
            None if len == self.size && len > 0 => Ok((len, None)),
            _ => {
                if len > 0 {
                    tracing::info!(url = self.url, dest = %self.dest.display(),
                        "partial file has no matching state, starting over");
                }
                discard(self.dest)?;
                Ok((0, None))
            }
        }
    }

    /// One attempt. Returns the digest and the offset the transfer started from.
    fn attempt(&self, transferred: &mut u64) -> Result<(String, u64), FetchError> {
        let (mut existing, mut validator) = self.inspect_partial()?;
        if existing == self.size && existing > 0 {
            // Everything is there already (an earlier attempt died after the last byte).
            let actual =
                crate::hash::digest_file(self.dest, self.algorithm).map_err(io_at(self.dest))?;
            if actual == self.digest {
                self.reporter.started(self.url, self.size, existing);
                File::open(self.dest)
                    .and_then(|f| f.sync_all())
                    .map_err(io_at(self.dest))?;
                remove_if_present(&state_path(self.dest))?;
                self.reporter.finished();
                return Ok((actual, existing));
            }
            discard(self.dest)?;
            existing = 0;
            validator = None;
        }

        let mut restarted = false;
        let mut renewed = false;
        let (response, start) = loop {
            let mut headers = Vec::new();
            if existing > 0 {
                headers.push(("Range", format!("bytes={existing}-")));
                if let Some(v) = &validator {
                    headers.push(("If-Range", v.clone()));
                }
            }
            let sent = self.auth.borrow().clone();
            let response = self
                .client
                .send(self.url, sent.as_deref(), &headers, None)?;
            match response.status {
                // A token that expired since the last request (a retry after a reset, after
                // backoff): one fresh token, then the same request again. The same value
                // again, or a second refusal, is the 401 it is.
                401 if !renewed && let Some(renew) = self.renew => {
                    let fresh = renew(&response)?;
                    renewed = true;
                    if sent.as_deref() == Some(fresh.as_str()) {
                        return Err(FetchError::Status {
                            url: self.url.to_owned(),
                            code: 401,
                        });
                    }
                    tracing::info!(url = self.url, "authorization renewed after a 401");
                    *self.auth.borrow_mut() = Some(fresh);
                }
                206 => {
                    let value = response
                        .header("content-range")
                        .unwrap_or_default()
                        .to_owned();
                    let range = parse_content_range(&value);
                    if let Some(total) = range.as_ref().and_then(|r| r.total)
                        && total != self.size
                    {
                        discard(self.dest)?;
                        return Err(self.size_mismatch(total));
                    }
                    let fits = range.as_ref().is_some_and(|r| {
                        r.start == existing && r.end.checked_add(1) == Some(self.size)
                    });
                    if fits {
                        break (response, existing);
                    }
                    if existing > 0 && !restarted {
                        tracing::info!(
                            url = self.url,
                            value,
                            "unusable content-range, starting over"
                        );
                        discard(self.dest)?;
                        (existing, validator, restarted) = (0, None, true);
                        continue;
                    }
                    return Err(FetchError::BadContentRange {
                        url: self.url.to_owned(),
                        value,
                    });
                }
                416 if existing > 0 && !restarted => {
                    tracing::info!(
                        url = self.url,
                        existing,
                        "range not satisfiable, starting over"
                    );
                    discard(self.dest)?;
                    (existing, validator, restarted) = (0, None, true);
                }
                200 => {
                    if existing > 0 {
                        tracing::info!(
                            url = self.url,
                            existing,
                            "server sent the whole file (ranges unsupported or file changed)"
                        );
                    }
                    break (response, 0);
                }
                code => {
                    return Err(FetchError::Status {
                        url: self.url.to_owned(),
                        code,
                    });
                }
            }
        };

        let remaining = self.size - start;
        if let Some(len) = response.content_length
            && len != remaining
        {
            discard(self.dest)?;
            return Err(self.size_mismatch(len.saturating_add(start)));
        }
        let validator = response
            .header("etag")
            .filter(|v| !v.starts_with("W/"))
            .or_else(|| response.header("last-modified"))
            .map(str::to_owned);
        State {
            algorithm: self.algorithm,
            digest: self.digest.to_owned(),
            size: self.size,
            validator,
        }
        .write(&state_path(self.dest))
        .map_err(io_at(self.dest))?;

        let mut hasher = Hasher::new(self.algorithm);
        let file = if start > 0 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.dest)
                .map_err(io_at(self.dest))?;
            let hashed = hasher.feed(&mut file, start).map_err(io_at(self.dest))?;
            if hashed != start {
                // The file shrank under us: nothing sensible to resume.
                discard(self.dest)?;
                return Err(FetchError::Truncated {
                    url: self.url.to_owned(),
                    received: hashed,
                    expected: self.size,
                });
            }
            file.seek(SeekFrom::Start(start))
                .map_err(io_at(self.dest))?;
            file
        } else {
            File::create(self.dest).map_err(io_at(self.dest))?
        };
        let mut file = Output::new(file);
        self.reporter.started(self.url, self.size, start);

        let mut reader = response.body.into_reader();
        let mut done = start;
        loop {
            let remaining = self.size - done;
            if remaining == 0 {
                if body_has_more(&mut reader) {
                    drop(file);
                    discard(self.dest)?;
                    return Err(self.size_mismatch(self.size + 1));
                }
                break;
            }
            let mut buf = hasher.buffer();
            let want = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(BUFFER_SIZE);
            let (n, result) = fill(&mut reader, &mut buf, want);
            if n > 0 {
                file.write_all(&buf[..n]).map_err(io_at(self.dest))?;
            }
            hasher.submit(buf, n);
            done += n as u64;
            *transferred += n as u64;
            self.reporter.progress(done);
            if let Err(error) = result {
                return Err(
                    match map_body_error(self.url, error, done, Some(self.size)) {
                        FetchError::Truncated { url, .. } => FetchError::Truncated {
                            url,
                            received: done,
                            expected: self.size,
                        },
                        other => other,
                    },
                );
            }
            if n < want {
                return Err(FetchError::Truncated {
                    url: self.url.to_owned(),
                    received: done,
                    expected: self.size,
                });
            }
        }

        let actual = hasher.finish().map_err(io_at(self.dest))?;
        if actual != self.digest {
            drop(file);
            discard(self.dest)?;
            return Err(FetchError::ChecksumMismatch {
                url: self.url.to_owned(),
                algorithm: self.algorithm,
                expected: self.digest.to_owned(),
                actual,
            });
        }
        file.sync().map_err(io_at(self.dest))?;
        remove_if_present(&state_path(self.dest))?;
        self.reporter.finished();
        Ok((actual, start))
    }

    fn size_mismatch(&self, actual: u64) -> FetchError {
        FetchError::SizeMismatch {
            url: self.url.to_owned(),
            expected: self.size,
            actual,
        }
    }
}

/// Whether a body that should be complete still has bytes (reads at most one). A read
/// error here counts as the end: every expected byte has arrived and the digest decides.
fn body_has_more(reader: &mut impl Read) -> bool {
    let mut probe = [0u8; 1];
    loop {
        match reader.read(&mut probe) {
            Ok(n) => return n > 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// `file://` downloads: a verified copy (always whole; local files need no resume).
fn copy_file(
    url: &str,
    source: &Path,
    request: &DownloadRequest<'_>,
    expected_sha: &str,
    reporter: &dyn Reporter,
) -> Result<DownloadOutcome, FetchError> {
    let dest = request.dest;
    let size = request.expected_size;
    let mut input = File::open(source).map_err(io_at(source))?;
    let len = input.metadata().map_err(io_at(source))?.len();
    let mismatch = |actual| FetchError::SizeMismatch {
        url: url.to_owned(),
        expected: size,
        actual,
    };
    if len != size {
        return Err(mismatch(len));
    }
    if fs::symlink_metadata(dest).is_ok_and(|m| !m.is_file()) {
        return Err(not_a_file(dest));
    }
    remove_if_present(&state_path(dest))?;
    let mut output = Output::new(File::create(dest).map_err(io_at(dest))?);
    reporter.started(url, size, 0);
    let mut hasher = Hasher::new(DigestAlgorithm::Sha512);
    let mut done = 0u64;
    while done < size {
        let mut buf = hasher.buffer();
        let want = usize::try_from(size - done)
            .unwrap_or(usize::MAX)
            .min(BUFFER_SIZE);
        let (n, result) = fill(&mut input, &mut buf, want);
        if n > 0
            && let Err(source) = output.write_all(&buf[..n])
        {
            hasher.submit(buf, 0);
            drop(output);
            discard(dest)?;
            return Err(FetchError::Io {
                path: dest.to_owned(),
                source,
            });
        }
        hasher.submit(buf, n);
        done += n as u64;
        reporter.progress(done);
        result.map_err(io_at(source))?;
        if n < want {
            drop(output);
            discard(dest)?;
            return Err(mismatch(done));
        }
    }
    if body_has_more(&mut input) {
        drop(output);
        discard(dest)?;
        return Err(mismatch(size + 1));
    }
    let actual = hasher.finish().map_err(io_at(dest))?;
    if actual != expected_sha {
        drop(output);
        discard(dest)?;
        return Err(FetchError::ChecksumMismatch {
            url: url.to_owned(),
            algorithm: DigestAlgorithm::Sha512,
            expected: expected_sha.to_owned(),
            actual,
        });
    }
    output.sync().map_err(io_at(dest))?;
    reporter.finished();
    Ok(DownloadOutcome {
        sha512: actual,
        size,
        bytes_transferred: size,
        resumed_from: 0,
        attempts: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses_the_usual_forms() {
        let r = parse_content_range("bytes 100-199/200").unwrap();
        assert_eq!((r.start, r.end, r.total), (100, 199, Some(200)));
        let r = parse_content_range("bytes 0-9/*").unwrap();
        assert_eq!((r.start, r.end, r.total), (0, 9, None));
        assert!(parse_content_range("bytes */200").is_none());
        assert!(parse_content_range("bytes 9-1/200").is_none());
        assert!(parse_content_range("items 0-1/2").is_none());
    }

    #[test]
    fn state_round_trips_and_rejects_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.state");
        let state = State {
            algorithm: DigestAlgorithm::Sha512,
            digest: "ab".repeat(64),
            size: 42,
            validator: Some("\"etag-1\"".into()),
        };
        state.write(&path).unwrap();
        assert_eq!(State::read(&path), Some(state.clone()));
        let sha256 = State {
            algorithm: DigestAlgorithm::Sha256,
            digest: "cd".repeat(32),
            ..state.clone()
        };
        sha256.write(&path).unwrap();
        assert_eq!(State::read(&path), Some(sha256));
        fs::write(&path, "something else\n").unwrap();
        assert_eq!(State::read(&path), None);
        assert_eq!(
            state_path(Path::new("/p/img-1")),
            PathBuf::from("/p/img-1.state")
        );
    }

    #[test]
    fn digests_must_be_128_hex_digits() {
        let upper = "AB".repeat(64);
        assert_eq!(normalize_digest(&upper).unwrap(), "ab".repeat(64));
        assert!(normalize_digest("abc").is_err());
        assert!(normalize_digest(&"zz".repeat(64)).is_err());
    }
}

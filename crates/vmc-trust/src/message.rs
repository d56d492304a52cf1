//! Detecting the layout of a signed list and taking it apart: MIME headers, the exact bytes of
//! a detached S/MIME content part, and the PKCS#7 structure.

use openssl::nid::Nid;
use openssl::pkcs7::Pkcs7;

use crate::MessageFormat;
use crate::der;
use crate::error::TrustError;

/// Headers longer than this are not MIME headers of a signed list.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A signed message taken apart.
pub(crate) struct Parsed {
    /// The detected layout.
    pub format: MessageFormat,
    /// The PKCS#7 signed-data.
    pub p7: Pkcs7,
    /// For a detached signature: the candidate contents, most literal first (the bytes of
    /// the part as they are, then OpenSSL's CRLF-canonical form if different).
    pub detached: Option<Vec<Vec<u8>>>,
}

fn malformed(reason: impl Into<String>, source: Option<openssl::error::ErrorStack>) -> TrustError {
    TrustError::MalformedSignature {
        reason: reason.into(),
        source,
    }
}

fn not_signed(reason: impl Into<String>) -> TrustError {
    TrustError::NotSigned {
        reason: reason.into(),
    }
}

/// Splits `bytes` into lines, each with its line ending, keeping offsets.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= bytes.len() {
            return None;
        }
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| start + p + 1);
        let line = (start, &bytes[start..end]);
        start = end;
        Some(line)
    })
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// MIME headers (lowercased names, unfolded values) and the offset of the body, or `None`
/// when `bytes` does not start with a header block.
fn mime_headers(bytes: &[u8]) -> Option<(Vec<(String, String)>, usize)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for (offset, raw) in lines(bytes) {
        if offset > MAX_HEADER_BYTES {
            return None;
        }
        let line = trim_eol(raw);
        if line.is_empty() {
            return (!headers.is_empty()).then_some((headers, offset + raw.len()));
        }
        let text = std::str::from_utf8(line).ok()?;
        if text.starts_with([' ', '\t']) {
            let (_, value) = headers.last_mut()?;
            value.push(' ');
            value.push_str(text.trim());
            continue;
        }
        let (name, value) = text.split_once(':')?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    None
}

/// A `Content-Type` value: the lowercased media type and its parameters.
fn content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_owned()))
        })
        .collect();
    (media, params)
}

/// The bytes of the first body part of a multipart body, exactly as they are: from after the
/// first delimiter line up to the line break before the next delimiter (which belongs to
/// the delimiter, RFC 2046).
fn first_part<'a>(body: &'a [u8], boundary: &str) -> Option<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let is_delimiter = |line: &[u8]| {
        trim_eol(line)
            .strip_prefix(delimiter.as_bytes())
            .is_some_and(|rest| rest.iter().all(|b| b.is_ascii_whitespace()) || rest == b"--")
    };
    let mut start = None;
    for (offset, line) in lines(body) {
        match start {
            None if is_delimiter(line) => start = Some(offset + line.len()),
            Some(s) if is_delimiter(line) => {
                let part = body.get(s..offset)?;
                let part = part.strip_suffix(b"\n").unwrap_or(part);
                return Some(part.strip_suffix(b"\r").unwrap_or(part));
            }
            _ => {}
        }
    }
    None
}

/// Splits `bytes` as OpenSSL's MIME reader does (`BIO_gets` into a 1024-byte buffer): at each
/// line feed, and after 1023 bytes of a longer line.
fn openssl_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .take(1023)
            .position(|&b| b == b'\n')
            .map_or(rest.len().min(1023), |p| p + 1);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Whether the header blocks OpenSSL's S/MIME reader parses are ASCII: the top-level block,
/// and the block after every line starting with `--` but the first one of the body (one of
/// them starts the signature part, whatever boundary OpenSSL settles on).
///
/// OpenSSL copies header values into its error queue, and the Rust bindings panic on error
/// data that is not UTF-8 (a line cut at 1023 bytes can split a character), so such messages
/// must never reach it. Real S/MIME headers are 7-bit (RFC 2045).
fn smime_headers_are_ascii(text: &[u8]) -> bool {
    let mut in_block = true;
    let mut delimiters = 0usize;
    for piece in openssl_lines(text) {
        if in_block {
            if matches!(piece.first(), None | Some(b'\r' | b'\n' | 0)) {
                in_block = false;
            } else if !piece.is_ascii() {
                return false;
            }
        } else if piece.starts_with(b"--") {
            delimiters += 1;
            in_block = delimiters > 1;
        }
    }
    true
}

fn skip_leading_space(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Detects the layout of `message` and parses its PKCS#7 structure.
pub(crate) fn parse(message: &[u8]) -> Result<Parsed, TrustError> {
    let text = skip_leading_space(message);
    let (format, p7, detached) = if text.starts_with(b"-----BEGIN PKCS7-----")
        || text.starts_with(b"-----BEGIN PKCS #7 SIGNED DATA-----")
    {
        let p7 = Pkcs7::from_pem(text)
            .map_err(|e| malformed("cannot decode the PEM PKCS#7 structure", Some(e)))?;
        (MessageFormat::PemPkcs7, p7, None)
    } else if der::looks_like_one_element(message) {
        let p7 = Pkcs7::from_der(message)
            .map_err(|e| malformed("cannot decode the DER PKCS#7 structure", Some(e)))?;
        (MessageFormat::DerPkcs7, p7, None)
    } else if let Some((headers, body_offset)) = mime_headers(text) {
        let Some((_, value)) = headers.iter().find(|(name, _)| name == "content-type") else {
            return Err(not_signed("MIME headers without a Content-Type"));
        };
        let (media, params) = content_type(value);
        if !smime_headers_are_ascii(text) {
            return Err(malformed("S/MIME headers that are not ASCII", None));
        }
        match media.as_str() {
            "multipart/signed" => {
                let (p7, canonical) = Pkcs7::from_smime(text)
                    .map_err(|e| malformed("cannot decode the S/MIME signature part", Some(e)))?;
                let mut candidates = Vec::new();
                let boundary = params.iter().find(|(k, _)| k == "boundary");
                if let Some(raw) = boundary
                    .and_then(|(_, b)| first_part(text.get(body_offset..).unwrap_or_default(), b))
                {
                    candidates.push(raw.to_vec());
                }
                if let Some(canonical) = canonical
                    && !candidates.contains(&canonical)
                {
                    candidates.push(canonical);
                }
                if candidates.is_empty() {
                    return Err(malformed("multipart/signed without a content part", None));
                }
                (MessageFormat::SmimeDetached, p7, Some(candidates))
            }
            "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
                let (p7, _) = Pkcs7::from_smime(text)
                    .map_err(|e| malformed("cannot decode the S/MIME pkcs7-mime body", Some(e)))?;
                (MessageFormat::SmimeOpaque, p7, None)
            }
            other => {
                return Err(not_signed(format!(
                    "MIME type {other} carries no signature"
                )));
            }
        }
    } else {
        return Err(not_signed("no S/MIME or PKCS#7 structure found"));
    };
    if p7.type_().map(|t| t.nid()) != Some(Nid::PKCS7_SIGNED) {
        return Err(not_signed("the PKCS#7 structure is not signed-data"));
    }
    Ok(Parsed {
        format,
        p7,
        detached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_unfold_and_stop_at_blank_line() {
        let msg = b"MIME-Version: 1.0\r\nContent-Type: multipart/signed;\r\n\tboundary=\"xx\"\r\n\r\nbody";
        let (headers, offset) = mime_headers(msg).unwrap();
        assert_eq!(headers[1].0, "content-type");
        assert_eq!(headers[1].1, "multipart/signed; boundary=\"xx\"");
        assert_eq!(&msg[offset..], b"body");
        let (media, params) = content_type(&headers[1].1);
        assert_eq!(media, "multipart/signed");
        assert_eq!(params, vec![("boundary".to_owned(), "xx".to_owned())]);
    }

    #[test]
    fn json_is_not_mime() {
        assert!(mime_headers(b"{\"hv:imagelist\": {}}\n\n").is_none());
        assert!(mime_headers(b"no colon here\n\n").is_none());
        assert!(matches!(
            parse(b"{\"a\": 1}"),
            Err(TrustError::NotSigned { .. })
        ));
        assert!(matches!(parse(b""), Err(TrustError::NotSigned { .. })));
        assert!(matches!(
            parse(b"Content-Type: text/plain\n\nhello"),
            Err(TrustError::NotSigned { .. })
        ));
    }

    #[test]
    fn first_part_keeps_bytes_and_drops_the_delimiter_line_break() {
        let body = b"preamble\n--b\r\nline1\r\nline2\n\r\n--b\r\nsig\r\n--b--\r\n";
        assert_eq!(first_part(body, "b"), Some(&b"line1\r\nline2\n"[..]));
        let lf = b"--b\nx\ny\n--b\nsig\n--b--\n";
        assert_eq!(first_part(lf, "b"), Some(&b"x\ny"[..]));
        assert_eq!(first_part(b"--b\nno end", "b"), None);
        // a line that merely starts with the boundary text is not a delimiter
        assert_eq!(first_part(b"--b\n--bx\n--b\n", "b"), Some(&b"--bx"[..]));
    }

    #[test]
    fn non_ascii_smime_headers_never_reach_openssl() {
        // Found by fuzzing: OpenSSL quotes a bad signature-part Content-Type in its error
        // queue, and the bindings panicked on the byte 0xc3 there.
        let msg = b"MIME-Version: 1.0\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"----B\"\n\nThis is an S/MIME signed message\n\n------B\n{\"x\": \"\xc3\xa9\"}\n------B\nContent-Type: application/x-pkcs7-sig\xc3nature; name=\"smime.p7s\"\nContent-Transfer-Encoding: base64\n\nMIIB\n\n------B--\n\n";
        assert!(matches!(
            parse(msg),
            Err(TrustError::MalformedSignature { .. })
        ));
        // A line cut at 1023 bytes inside a character: the top-level block must be ASCII.
        let mut long = b"MIME-Version: 1.0\nContent-Type: application/pkcs7-mime; x=\"".to_vec();
        long.extend("é".repeat(600).as_bytes());
        long.extend(b"\"\n\nMIIB\n");
        assert!(matches!(
            parse(&long),
            Err(TrustError::MalformedSignature { .. })
        ));
        // Non-ASCII content in the signed part is fine.
        assert!(smime_headers_are_ascii(
            b"Content-Type: multipart/signed; boundary=b\n\n--b\n\xc3\xa9\xff\n--b\nContent-Type: application/pkcs7-signature\n\nMIIB\n--b--\n"
        ));
        let pieces: Vec<usize> = openssl_lines(&[b'a'; 2500]).map(<[u8]>::len).collect();
        assert_eq!(pieces, [1023, 1023, 454]);
    }

    #[test]
    fn broken_signed_structures_are_malformed() {
        let msg =
            b"Content-Type: multipart/signed; boundary=\"b\"\n\n--b\nx\n--b\ngarbage\n--b--\n";
        assert!(matches!(
            parse(msg),
            Err(TrustError::MalformedSignature { .. })
        ));
        assert!(matches!(
            parse(b"-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n"),
            Err(TrustError::MalformedSignature { .. })
        ));
        assert!(matches!(
            parse(&[0x30, 0x03, 0x02, 0x01, 0x05]),
            Err(TrustError::MalformedSignature { .. })
        ));
    }
}

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
    /// For a detached signature: the content part's bytes as they are. If the signature does
    /// not cover them, [`openssl_canonical`] gives the other form a signer may have signed.
    pub detached: Option<Vec<u8>>,
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

/// The body parts of a multipart body, each exactly as it is: from after a delimiter line up
/// to the line break before the next delimiter (which belongs to the delimiter, RFC 2046).
/// `None` when the closing delimiter (`--boundary--`) is missing, as OpenSSL requires it too.
fn body_parts<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<&'a [u8]>> {
    let delimiter = format!("--{boundary}");
    // 0: not a delimiter, 1: a delimiter, 2: the closing delimiter.
    let kind = |line: &[u8]| match trim_eol(line).strip_prefix(delimiter.as_bytes()) {
        Some(b"--") => 2,
        Some(rest) if rest.iter().all(|b| b.is_ascii_whitespace()) => 1,
        _ => 0,
    };
    let mut parts = Vec::new();
    let mut start = None;
    for (offset, line) in lines(body) {
        let kind = kind(line);
        if kind == 0 {
            continue;
        }
        if let Some(s) = start {
            let part = body.get(s..offset)?;
            let part = part.strip_suffix(b"\n").unwrap_or(part);
            parts.push(part.strip_suffix(b"\r").unwrap_or(part));
        }
        if kind == 2 {
            return Some(parts);
        }
        start = Some(offset + line.len());
    }
    None
}

/// The form OpenSSL's MIME reader gives a text part (the detached content
/// `SMIME_read_PKCS7` returns). It reads the part with the line break that precedes the next
/// delimiter in [`openssl_lines`], removes every piece's trailing run of CRs and LFs, and joins
/// the pieces, putting CRLF after those whose run held a line feed, except the last.
pub(crate) fn openssl_canonical(part: &[u8]) -> Vec<u8> {
    let mut region = Vec::with_capacity(part.len() + part.len() / 32 + 1);
    region.extend_from_slice(part);
    region.push(b'\n');
    let mut out = Vec::with_capacity(region.len());
    let mut eol = false;
    for (i, piece) in openssl_lines(&region).enumerate() {
        let kept = piece
            .iter()
            .rposition(|&b| b != b'\r' && b != b'\n')
            .map_or(0, |p| p + 1);
        if i > 0 && eol {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&piece[..kept]);
        eol = piece[kept..].contains(&b'\n');
    }
    out
}

/// The PKCS#7 structure of a `multipart/signed` signature part: headers naming a PKCS#7
/// signature, then base64 (whatever `Content-Transfer-Encoding` says, as in OpenSSL).
fn signature_part(part: &[u8]) -> Result<Pkcs7, TrustError> {
    let Some((headers, body_offset)) = mime_headers(part) else {
        return Err(malformed("the signature part has no MIME headers", None));
    };
    let media = headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| content_type(value).0)
        .unwrap_or_default();
    if media != "application/pkcs7-signature" && media != "application/x-pkcs7-signature" {
        return Err(malformed(
            format!("the signature part has type {media:?}, not application/pkcs7-signature"),
            None,
        ));
    }
    let base64: String = part
        .get(body_offset..)
        .unwrap_or_default()
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|&b| char::from(b))
        .collect();
    let der = openssl::base64::decode_block(&base64)
        .map_err(|e| malformed("cannot decode the base64 of the signature part", Some(e)))?;
    Pkcs7::from_der(&der).map_err(|e| malformed("cannot decode the S/MIME signature part", Some(e)))
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
/// must never reach it. Only `application/pkcs7-mime` messages still go through OpenSSL's
/// reader (`multipart/signed` is taken apart here), but the check applies to every MIME
/// message, so that both layouts refuse non-ASCII headers alike. Real S/MIME headers are
/// 7-bit (RFC 2045).
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
                // Taken apart here rather than by `SMIME_read_PKCS7`, which reads the whole
                // message line by line through a BIO (a quarter of the update of a 7 MB list).
                let Some((_, boundary)) = params.iter().find(|(k, _)| k == "boundary") else {
                    return Err(malformed("multipart/signed without a boundary", None));
                };
                let body = text.get(body_offset..).unwrap_or_default();
                let Some(parts) = body_parts(body, boundary) else {
                    return Err(malformed(
                        "multipart/signed without its closing delimiter",
                        None,
                    ));
                };
                let [content, signature] = parts.as_slice() else {
                    return Err(malformed(
                        format!(
                            "multipart/signed needs 2 parts (content, signature), found {}",
                            parts.len()
                        ),
                        None,
                    ));
                };
                let p7 = signature_part(signature)?;
                (MessageFormat::SmimeDetached, p7, Some(content.to_vec()))
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
    fn body_parts_keep_bytes_and_drop_the_delimiter_line_break() {
        let body = b"preamble\n--b\r\nline1\r\nline2\n\r\n--b\r\nsig\r\n--b--\r\n";
        assert_eq!(
            body_parts(body, "b"),
            Some(vec![&b"line1\r\nline2\n"[..], &b"sig"[..]])
        );
        let lf = b"--b\nx\ny\n--b\nsig\n--b--\n";
        assert_eq!(body_parts(lf, "b"), Some(vec![&b"x\ny"[..], &b"sig"[..]]));
        // the closing delimiter is required
        assert_eq!(body_parts(b"--b\nno end", "b"), None);
        assert_eq!(body_parts(b"--b\nx\n--b\nsig\n", "b"), None);
        // a line that merely starts with the boundary text is not a delimiter
        assert_eq!(
            body_parts(b"--b\n--bx\n--b--\n", "b"),
            Some(vec![&b"--bx"[..]])
        );
    }

    #[test]
    fn canonical_form_is_openssls_crlf_text_form() {
        assert_eq!(openssl_canonical(b"a\nb\r\nc"), b"a\r\nb\r\nc");
        // trailing runs of CR and LF go, a line feed among them makes one CRLF
        assert_eq!(openssl_canonical(b"a\r\r\n\nb"), b"a\r\n\r\nb");
        assert_eq!(openssl_canonical(b"a\n\nb"), b"a\r\n\r\nb");
        assert_eq!(openssl_canonical(b"a\n"), b"a\r\n");
        assert_eq!(openssl_canonical(b"a"), b"a");
        assert_eq!(openssl_canonical(b""), b"");
        // lines longer than 1023 bytes come in pieces joined without a line break, and a CR
        // at the end of a piece is dropped, as OpenSSL's reader does
        let mut long = vec![b'x'; 1022];
        long.push(b'\r');
        long.extend_from_slice(b"yz\nw");
        let mut expected = vec![b'x'; 1022];
        expected.extend_from_slice(b"yz\r\nw");
        assert_eq!(openssl_canonical(&long), expected);
    }

    #[test]
    fn content_and_canonical_form_match_openssls_reader() {
        use chrono::TimeZone;
        use vmc_testkit::pki::{Ca, Validity};
        let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let ca = Ca::root("/CN=Canonical Test CA", Validity::around(now, 1));
        let signer = ca.issue_leaf("/CN=Canonical Test Signer", Validity::around(now, 2));
        let signed = signer.sign_smime(b"{}");
        let (headers, offset) = mime_headers(&signed).unwrap();
        let (_, ctype) = headers.iter().find(|(n, _)| n == "content-type").unwrap();
        let (_, params) = content_type(ctype);
        let (_, boundary) = params.iter().find(|(k, _)| k == "boundary").unwrap();
        let parts = body_parts(&signed[offset..], boundary).unwrap();
        let head = &signed[..offset];
        // Contents with every kind of line ending, empty lines, and lines around the 1023-byte
        // piece size of OpenSSL's reader; the same signature part each time (not verified).
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..400 {
            let mut content = Vec::new();
            let len = (round * 7) % 3000;
            while content.len() < len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match seed % 9 {
                    0 => content.push(b'\n'),
                    1 => content.push(b'\r'),
                    2 => content.extend_from_slice(b"\r\n"),
                    3 => {
                        content.extend(std::iter::repeat_n(b'y', 1000 + (seed >> 8) as usize % 60))
                    }
                    _ => content.push(b'a' + (seed >> 8) as u8 % 26),
                }
            }
            let nl = if round % 3 == 0 { "\n" } else { "\r\n" };
            let mut message = head.to_vec();
            message.extend_from_slice(format!("--{boundary}{nl}").as_bytes());
            message.extend_from_slice(&content);
            message.extend_from_slice(format!("{nl}--{boundary}{nl}").as_bytes());
            message.extend_from_slice(parts[1]);
            message.extend_from_slice(format!("{nl}--{boundary}--{nl}").as_bytes());
            let (_, from_openssl) = Pkcs7::from_smime(&message).unwrap();
            let ours = body_parts(&message[offset..], boundary).unwrap();
            // (With LF framing a content ending in CR loses it: CR LF before a delimiter is
            // the delimiter's line break.)
            if nl == "\r\n" || !content.ends_with(b"\r") {
                assert_eq!(ours[0], &content[..], "round {round}: the raw part");
            }
            assert_eq!(
                Some(openssl_canonical(ours[0])),
                from_openssl,
                "round {round}: content {content:?}"
            );
        }
    }

    #[test]
    fn signature_part_needs_a_pkcs7_signature_type_and_base64() {
        let err = |part: &[u8]| match signature_part(part) {
            Err(TrustError::MalformedSignature { reason, .. }) => reason,
            other => panic!("{:?}", other.map(|_| ())),
        };
        assert!(err(b"no headers").contains("no MIME headers"));
        assert!(err(b"Content-Type: text/plain\n\nAAAA").contains("text/plain"));
        assert!(
            err(b"Content-Type: application/pkcs7-signature\n\n!!notbase64!!").contains("base64")
        );
        assert!(
            err(b"Content-Type: application/x-pkcs7-signature\n\nAAAA")
                .contains("cannot decode the S/MIME signature part")
        );
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
        // multipart/signed that OpenSSL's reader refuses too: no boundary, no closing
        // delimiter, other than two parts
        for (msg, reason) in [
            (
                &b"Content-Type: multipart/signed\n\n--b\nx\n--b\ny\n--b--\n"[..],
                "without a boundary",
            ),
            (
                b"Content-Type: multipart/signed; boundary=b\n\n--b\nx\n--b\ny\n",
                "closing delimiter",
            ),
            (
                b"Content-Type: multipart/signed; boundary=b\n\n--b\nx\n--b\ny\n--b\nz\n--b--\n",
                "found 3",
            ),
            (
                b"Content-Type: multipart/signed; boundary=b\n\n--b\nx\n--b--\n",
                "found 1",
            ),
        ] {
            match parse(msg) {
                Err(TrustError::MalformedSignature { reason: got, .. }) => {
                    assert!(got.contains(reason), "{got}")
                }
                other => panic!("{reason}: {:?}", other.map(|p| p.format)),
            }
        }
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

//! Distinguished names as text: OpenSSL's one-line form (`/C=XX/O=Org/CN=Name`, what grid
//! tools and image lists use) and RFC 2253 (`CN=Name,O=Org,C=XX`).
//!
//! Both reproduce OpenSSL 3 byte for byte, so a DN copied from `openssl x509 -noout -subject
//! -nameopt compat` (or `-nameopt RFC2253`) compares equal:
//! - one-line: each attribute is `/SN=value` (`+SN=value` for the further members of a
//!   multi-valued RDN); inside a value `/` and `+` are escaped as `\/` and `\+`, and every byte
//!   outside printable ASCII as `\xHH` (uppercase hex, the raw bytes of the encoded string, so
//!   `é` in a UTF8String is `\xC3\xA9`). Unknown attribute types print as their dotted OID.
//! - RFC 2253: the RDNs in reverse order separated by `,`, multi-valued members by `+`; values
//!   converted to UTF-8 with bytes above 0x7F and control characters as `\HH`, the characters
//!   `,+"\<>;` escaped with a backslash, as are a leading `#` or space and a trailing space.
//!   Values of unknown attribute types or non-string types print as `#` and the hex DER.

use openssl::asn1::Asn1ObjectRef;
use openssl::nid::Nid;
use openssl::x509::{X509NameEntryRef, X509NameRef};

use crate::der;

/// ASN.1 universal tags of the string types.
mod tag {
    pub const UTF8: u8 = 12;
    pub const NUMERIC: u8 = 18;
    pub const PRINTABLE: u8 = 19;
    pub const T61: u8 = 20;
    pub const IA5: u8 = 22;
    pub const VISIBLE: u8 = 26;
    pub const GENERAL: u8 = 27;
    pub const UNIVERSAL: u8 = 28;
    pub const BMP: u8 = 30;
}

/// One attribute as both printers need it.
struct Attr<'a> {
    /// Index of its RDN, when the DER could be read.
    rdn: Option<usize>,
    /// The string's ASN.1 tag, when the DER could be read.
    tag: Option<u8>,
    /// The content octets of the value.
    value: &'a [u8],
    /// Uppercase hex of the whole DER value element (for RFC 2253 `#` dumps).
    raw_hex: String,
    /// Whether the attribute type has a short name.
    known: bool,
    /// Short name, or dotted OID.
    field: String,
}

fn field_name(obj: &Asn1ObjectRef) -> (String, bool) {
    let nid = obj.nid();
    if nid != Nid::UNDEF
        && let Ok(sn) = nid.short_name()
    {
        return (sn.to_owned(), true);
    }
    (obj.to_string(), false)
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn attributes(name: &X509NameRef) -> Vec<Attr<'_>> {
    let entries: Vec<&X509NameEntryRef> = name.entries().collect();
    // The DER gives what the entries do not expose: the string tags and the RDN grouping.
    let der = name.to_der().ok();
    let parsed: Option<Vec<(usize, u8, String)>> = der
        .as_deref()
        .and_then(der::name_attributes)
        .map(|attrs| {
            attrs
                .iter()
                .map(|a| (a.rdn, a.tag, hex_upper(a.raw_value)))
                .collect::<Vec<_>>()
        })
        .filter(|p| p.len() == entries.len());
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let (field, known) = field_name(entry.object());
            let info = parsed.as_ref().and_then(|p| p.get(i));
            Attr {
                rdn: info.map(|(rdn, _, _)| *rdn),
                tag: info.map(|(_, tag, _)| *tag),
                value: entry.data().as_slice(),
                raw_hex: info.map(|(_, _, hex)| hex.clone()).unwrap_or_default(),
                known,
                field,
            }
        })
        .collect()
}

/// The OpenSSL one-line form of a name, as `openssl x509 -noout -subject -nameopt compat`
/// prints it: `/C=XX/O=Org/CN=Name` (see the module documentation for escaping).
pub fn one_line_dn(name: &X509NameRef) -> String {
    let mut out = String::new();
    let mut prev_rdn = None;
    for attr in attributes(name) {
        let joined = attr.rdn.is_some() && attr.rdn == prev_rdn;
        out.push(if joined { '+' } else { '/' });
        out.push_str(&attr.field);
        out.push('=');
        let value = attr.value;
        // OpenSSL prints only every fourth byte of a GeneralString made of 4-byte characters
        // whose upper three bytes are all zero (its historical UniversalString shortcut).
        let stride_low = attr.tag == Some(tag::GENERAL)
            && value.len().is_multiple_of(4)
            && value
                .chunks(4)
                .all(|c| c.first() == Some(&0) && c.get(1) == Some(&0) && c.get(2) == Some(&0));
        for (j, &b) in value.iter().enumerate() {
            if stride_low && j % 4 != 3 {
                continue;
            }
            match b {
                b'/' | b'+' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                b' '..=b'~' => out.push(char::from(b)),
                _ => out.push_str(&format!("\\x{b:02X}")),
            }
        }
        prev_rdn = attr.rdn;
    }
    out
}

/// Decodes a string value to Unicode scalar values the way OpenSSL's RFC 2253 printer does, or
/// `None` when the value must be dumped as `#hex`.
fn decode_chars(tag: Option<u8>, value: &[u8]) -> Option<Vec<u32>> {
    match tag? {
        tag::UTF8 => Some(
            String::from_utf8_lossy(value)
                .chars()
                .map(u32::from)
                .collect(),
        ),
        tag::NUMERIC | tag::PRINTABLE | tag::T61 | tag::IA5 | tag::VISIBLE => {
            Some(value.iter().map(|&b| u32::from(b)).collect())
        }
        tag::BMP if value.len().is_multiple_of(2) => Some(
            value
                .chunks(2)
                .map(|c| c.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
                .collect(),
        ),
        tag::UNIVERSAL if value.len().is_multiple_of(4) => Some(
            value
                .chunks(4)
                .map(|c| c.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
                .collect(),
        ),
        _ => None,
    }
}

fn push_rfc2253_value(out: &mut String, chars: &[u32]) {
    let last = chars.len().saturating_sub(1);
    for (i, &c) in chars.iter().enumerate() {
        let ch = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
        if c > 0x7f {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
            continue;
        }
        match ch {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(ch);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// The RFC 2253 form of a name, as `openssl x509 -noout -subject -nameopt RFC2253` prints it:
/// `CN=Name,O=Org,C=XX` (see the module documentation for escaping).
pub fn rfc2253_dn(name: &X509NameRef) -> String {
    let attrs = attributes(name);
    let mut out = String::new();
    let mut prev_rdn = None;
    for (i, attr) in attrs.iter().enumerate().rev() {
        if i + 1 < attrs.len() {
            let joined = attr.rdn.is_some() && attr.rdn == prev_rdn;
            out.push(if joined { '+' } else { ',' });
        }
        out.push_str(&attr.field);
        out.push('=');
        let chars = if attr.known {
            decode_chars(attr.tag, attr.value)
        } else {
            None
        };
        match chars {
            Some(chars) => push_rfc2253_value(&mut out, &chars),
            None => {
                out.push('#');
                out.push_str(&attr.raw_hex);
            }
        }
        prev_rdn = attr.rdn;
    }
    out
}

#[cfg(test)]
mod tests {
    use openssl::x509::X509Name;

    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A name made with python-cryptography: multi-valued RDN, BMPString, an unknown OID,
    /// RFC 2253 specials, a control character, `/` and `+` in values, UTF-8.
    const WEIRD: &str = "30819a310b300906035504061302585831143012060355040a0c0b412f422b432c20496e632e310e300c060355040b0c05636166c3a9311b300806035504030c0161300f060a0992268993f22c6401010c0162310d300b06035504071e04005a00e9310a300806032a03040c0176311d301b06035504080c1420236c656164203b3c3e225c3d20747261696c20310e300c06035504090c0563746c0178";

    #[test]
    fn matches_openssl_cli_output_for_a_difficult_name() {
        let name = X509Name::from_der(&unhex(WEIRD)).unwrap();
        // `openssl x509 -noout -subject -nameopt compat` (OpenSSL 3.0.19)
        assert_eq!(
            one_line_dn(&name),
            r#"/C=XX/O=A\/B\+C, Inc./OU=caf\xC3\xA9/CN=a+UID=b/L=\x00Z\x00\xE9/1.2.3.4=v/ST= #lead ;<>"\= trail /street=ctl\x01x"#
        );
        // `openssl x509 -noout -subject -nameopt RFC2253`
        assert_eq!(
            rfc2253_dn(&name),
            r#"street=ctl\01x,ST=\ #lead \;\<\>\"\\= trail\ ,1.2.3.4=#0C0176,L=Z\C3\A9,UID=b+CN=a,OU=caf\C3\A9,O=A/B\+C\, Inc.,C=XX"#
        );
    }

    #[test]
    fn plain_names() {
        let mut b = X509Name::builder().unwrap();
        b.append_entry_by_text("C", "XX").unwrap();
        b.append_entry_by_text("O", "InteropGrid").unwrap();
        b.append_entry_by_text("CN", "Interop Root CA").unwrap();
        let name = b.build();
        assert_eq!(one_line_dn(&name), "/C=XX/O=InteropGrid/CN=Interop Root CA");
        assert_eq!(rfc2253_dn(&name), "CN=Interop Root CA,O=InteropGrid,C=XX");
        let empty = X509Name::builder().unwrap().build();
        assert_eq!(one_line_dn(&empty), "");
        assert_eq!(rfc2253_dn(&empty), "");
    }
}

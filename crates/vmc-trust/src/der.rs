//! A minimal DER reader: just enough to see what the OpenSSL crate does not expose (the string
//! tags and RDN grouping of a name, the digest algorithm and count of PKCS#7 SignerInfos).
//!
//! Input always comes from OpenSSL's own `i2d` re-encoding, so only the definite-length,
//! low-tag-number forms of DER are accepted; anything else reads as `None`.

/// One tag-length-value element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    /// The identifier octet (class, constructed bit and tag number < 31).
    pub tag: u8,
    /// The content octets.
    pub content: &'a [u8],
    /// The whole element, identifier and length included.
    pub raw: &'a [u8],
}

/// `SEQUENCE`.
pub(crate) const SEQUENCE: u8 = 0x30;
/// `SET`.
pub(crate) const SET: u8 = 0x31;
/// `OBJECT IDENTIFIER`.
pub(crate) const OID: u8 = 0x06;

/// Reads one element from the front of `input`, returning it and the rest.
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers never occur in what we read
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None; // indefinite length or absurd size
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    let (content, after) = rest.split_at(len);
    let raw = input.get(..header + len)?;
    Some((Tlv { tag, content, raw }, after))
}

/// Splits the content of a constructed element into its children.
pub(crate) fn children(content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (tlv, after) = read(rest)?;
        out.push(tlv);
        rest = after;
    }
    Some(out)
}

/// Reads `input` as exactly one element (no trailing bytes).
pub(crate) fn single(input: &[u8]) -> Option<Tlv<'_>> {
    match read(input)? {
        (tlv, []) => Some(tlv),
        _ => None,
    }
}

/// Whether `input` looks like one BER/DER element spanning the whole input (a quick test used
/// to tell a DER PKCS#7 file from text that happens to start with `0`).
pub(crate) fn looks_like_one_element(input: &[u8]) -> bool {
    match input {
        [SEQUENCE, 0x80, ..] => true, // BER indefinite length
        [SEQUENCE, ..] => read(input).is_some_and(|(_, rest)| rest.is_empty()),
        _ => false,
    }
}

/// An attribute of a distinguished name, as encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameAttribute<'a> {
    /// Index of the RDN (SET) this attribute belongs to.
    pub rdn: usize,
    /// The string's tag (UTF8String 12, PrintableString 19, …).
    pub tag: u8,
    /// The whole value element (for `#hex` dumps).
    pub raw_value: &'a [u8],
}

/// Parses a DER `Name` into its attributes in encoding order.
pub(crate) fn name_attributes(der: &[u8]) -> Option<Vec<NameAttribute<'_>>> {
    let name = single(der)?;
    if name.tag != SEQUENCE {
        return None;
    }
    let mut out = Vec::new();
    for (rdn, set) in children(name.content)?.into_iter().enumerate() {
        if set.tag != SET {
            return None;
        }
        for atv in children(set.content)? {
            match children(atv.content)?.as_slice() {
                [oid, value] if atv.tag == SEQUENCE && oid.tag == OID => out.push(NameAttribute {
                    rdn,
                    tag: value.tag,
                    raw_value: value.raw,
                }),
                _ => return None,
            }
        }
    }
    Some(out)
}

/// What the SignerInfos of a PKCS#7 signed-data say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignerInfos {
    /// How many SignerInfos there are.
    pub count: usize,
    /// The content octets of each SignerInfo's digest algorithm OID.
    pub digest_oids: Vec<Vec<u8>>,
}

/// DER content octets of the sha1 OID (1.3.14.3.2.26).
pub(crate) const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
/// DER content octets of the md5 OID (1.2.840.113549.2.5).
pub(crate) const OID_MD5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05];

/// Reads the SignerInfos of a DER `ContentInfo` holding signed-data.
pub(crate) fn signer_infos(der: &[u8]) -> Option<SignerInfos> {
    // ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT SignedData }
    let ci = single(der)?;
    let [_, explicit] = children(ci.content)?.try_into().ok()?;
    if explicit.tag != 0xa0 {
        return None;
    }
    // SignedData ::= SEQUENCE { version, digestAlgorithms SET, contentInfo,
    //     [0] certificates OPTIONAL, [1] crls OPTIONAL, signerInfos SET }
    let signed = single(explicit.content)?;
    let fields = children(signed.content)?;
    let infos = fields.last().filter(|f| f.tag == SET)?;
    let mut digest_oids = Vec::new();
    let list = children(infos.content)?;
    for info in &list {
        // SignerInfo ::= SEQUENCE { version, issuerAndSerialNumber, digestAlgorithm, … }
        let parts = children(info.content)?;
        let alg = parts.get(2).filter(|a| a.tag == SEQUENCE)?;
        let oid = children(alg.content)?
            .into_iter()
            .next()
            .filter(|o| o.tag == OID)?;
        digest_oids.push(oid.content.to_vec());
    }
    Some(SignerInfos {
        count: list.len(),
        digest_oids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let short = [0x04, 0x02, 0xaa, 0xbb, 0xff];
        let (tlv, rest) = read(&short).unwrap();
        assert_eq!(
            (tlv.tag, tlv.content, rest),
            (0x04, &[0xaa, 0xbb][..], &[0xff][..])
        );

        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        let (tlv, rest) = read(&long).unwrap();
        assert_eq!(tlv.content.len(), 0x80);
        assert!(rest.is_empty());
        assert_eq!(tlv.raw.len(), long.len());
    }

    #[test]
    fn refuses_truncated_and_indefinite() {
        assert!(read(&[0x04, 0x05, 0x01]).is_none());
        assert!(read(&[0x30, 0x80, 0x00, 0x00]).is_none());
        assert!(read(&[]).is_none());
        assert!(single(&[0x04, 0x00, 0x00]).is_none());
    }

    #[test]
    fn tells_der_from_text_starting_with_zero() {
        assert!(!looks_like_one_element(b"0.5 is not a signature"));
        assert!(looks_like_one_element(&[0x30, 0x03, 0x02, 0x01, 0x05]));
        assert!(looks_like_one_element(&[
            0x30, 0x80, 0x02, 0x01, 0x05, 0, 0
        ]));
    }
}

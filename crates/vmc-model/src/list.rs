//! HEPiX image lists: the typed form of a verified payload, its parsing and its JSON form.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::error::{ImageError, ListError, Location};
use crate::ident::Identifier;
use crate::version::Version;

/// A JSON object with its keys in document order.
pub type JsonObject = Map<String, Value>;

/// Bounds applied while parsing, against hostile or broken lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest payload accepted, in bytes (default 16 MiB).
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects (default 32).
    pub max_depth: usize,
    /// Most images in one list (default 100 000).
    pub max_images: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024 * 1024,
            max_depth: 32,
            max_images: 100_000,
        }
    }
}

/// One `hv:x509` endorser claim of a list (`hv:endorser`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndorserClaim {
    /// `hv:dn`: the endorser's subject, OpenSSL one-line form.
    pub dn: String,
    /// `hv:ca`: the issuer of the endorser's certificate, OpenSSL one-line form.
    pub ca: String,
    /// `dc:creator`, when present.
    pub creator: Option<String>,
    /// `hv:email`, when present.
    pub email: Option<String>,
    /// Any other keys of the `hv:x509` object, kept as written.
    pub extra: JsonObject,
}

/// One image of a list (`hv:images[].hv:image`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `dc:identifier`, safe as a file name.
    pub identifier: Identifier,
    /// `dc:title`.
    pub title: String,
    /// `hv:uri`: where the image is downloaded from.
    pub uri: String,
    /// `hv:size` in bytes (written as a number or, as AppDB does, a string of digits).
    pub size: u64,
    /// `sl:checksum:sha512`, normalised to lowercase hex.
    pub sha512: String,
    /// `hv:version`.
    pub version: String,
    /// Every other key of the image (`dc:description`, `hv:hypervisor`, `sl:os`, `ad:*`, unknown
    /// keys…), with its value as written. See [`Image::text`] for the string-valued ones.
    pub extra: JsonObject,
}

/// An image list as its endorser signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageList {
    /// `dc:identifier` of the list.
    pub identifier: Identifier,
    /// `dc:title`.
    pub title: String,
    /// `dc:description`.
    pub description: String,
    /// `dc:source`.
    pub source: String,
    /// `dc:date:created`.
    pub created: DateTime<Utc>,
    /// `dc:date:expires`.
    pub expires: DateTime<Utc>,
    /// `hv:version`.
    pub version: Version,
    /// `hv:uri`: where the list says it is published.
    pub uri: String,
    /// `hv:endorser`: one claim, or several.
    pub endorsers: Vec<EndorserClaim>,
    /// The images that passed their own checks.
    pub images: Vec<Image>,
    /// Every other key of `hv:imagelist` (`ad:vo`, `ad:swid`, unknown keys), as written.
    pub extra: JsonObject,
}

/// An image of the payload that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedImage {
    /// Why it was left out (code `image_invalid`).
    pub error: ImageError,
}

/// The result of parsing a payload: the list, and the images that failed their own checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedList {
    /// The list, holding only the accepted images.
    pub list: ImageList,
    /// Images left out (spec check 11), in payload order.
    pub rejected: Vec<RejectedImage>,
}

const LIST_KEYS: [&str; 10] = [
    "dc:identifier",
    "dc:title",
    "dc:description",
    "dc:source",
    "dc:date:created",
    "dc:date:expires",
    "hv:version",
    "hv:uri",
    "hv:endorser",
    "hv:images",
];

const ENDORSER_KEYS: [&str; 4] = ["hv:dn", "hv:ca", "dc:creator", "hv:email"];

const IMAGE_KEYS: [&str; 6] = [
    "dc:identifier",
    "dc:title",
    "hv:uri",
    "hv:size",
    "sl:checksum:sha512",
    "hv:version",
];

impl Image {
    /// Creates an image with its mandatory fields and no others.
    pub fn new(
        identifier: Identifier,
        title: impl Into<String>,
        uri: impl Into<String>,
        size: u64,
        sha512: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Self {
            identifier,
            title: title.into(),
            uri: uri.into(),
            size,
            sha512: sha512.into().to_ascii_lowercase(),
            version: version.into(),
            extra: JsonObject::new(),
        }
    }

    /// A string-valued key of [`Image::extra`] (`dc:description`, `hv:hypervisor`, `hv:format`,
    /// `sl:arch`, `sl:os`, `sl:osname`, `sl:osversion`, `sl:comments`, `ad:mpuri`…); numbers and
    /// booleans are given in their JSON text, other values as `None`.
    ///
    /// ```
    /// use vmc_model::{Identifier, Image};
    /// let mut image = Image::new(
    ///     Identifier::new("img-1").unwrap(),
    ///     "Title",
    ///     "https://example.org/i.img",
    ///     42,
    ///     "AB".repeat(64),
    ///     "1.0",
    /// );
    /// assert_eq!(image.sha512, "ab".repeat(64));
    /// image.extra.insert("sl:os".into(), "Linux".into());
    /// image.extra.insert("hv:ram_minimum".into(), 2048.into());
    /// image.extra.insert("ad:tags".into(), serde_json::json!(["a", "b"]));
    /// assert_eq!(image.text("sl:os").as_deref(), Some("Linux"));
    /// assert_eq!(image.text("hv:ram_minimum").as_deref(), Some("2048"));
    /// assert_eq!(image.text("ad:tags"), None);
    /// assert_eq!(image.text("sl:arch"), None);
    /// ```
    pub fn text(&self, key: &str) -> Option<String> {
        match self.extra.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The image as its HEPiX JSON object (the contents of `hv:image`): the mandatory keys
    /// first, then every other key as parsed.
    pub fn to_json(&self) -> JsonObject {
        let mut map = JsonObject::new();
        map.insert("dc:identifier".into(), self.identifier.as_str().into());
        map.insert("dc:title".into(), self.title.clone().into());
        map.insert("hv:uri".into(), self.uri.clone().into());
        map.insert("hv:size".into(), self.size.into());
        map.insert("sl:checksum:sha512".into(), self.sha512.clone().into());
        map.insert("hv:version".into(), self.version.clone().into());
        for (k, v) in &self.extra {
            map.entry(k.clone()).or_insert_with(|| v.clone());
        }
        map
    }
}

impl ImageList {
    /// The list's `ad:vo`, when present as a string.
    pub fn vo(&self) -> Option<&str> {
        self.extra.get("ad:vo").and_then(Value::as_str)
    }

    /// The list as a HEPiX JSON document: `{"hv:imagelist": {…}}`, dates in RFC 3339 UTC.
    ///
    /// Parsing the result yields an equal list. A single endorser is written as an object,
    /// several as an array; `hv:size` is written as a number; unknown keys follow the known ones.
    ///
    /// ```
    /// use vmc_model::{ParseLimits, parse_image_list};
    /// let payload = br#"{"hv:imagelist": {
    ///   "dc:identifier": "list-1", "dc:title": "T", "dc:description": "D",
    ///   "dc:source": "https://example.org/", "dc:date:created": "2027-01-01T01:00:00+01:00",
    ///   "dc:date:expires": "2027-02-01T00:00:00Z", "hv:version": "7",
    ///   "hv:uri": "https://example.org/list", "ad:vo": "vo.example.org",
    ///   "hv:endorser": [{"hv:x509": {"hv:dn": "/CN=E", "hv:ca": "/CN=CA"}}],
    ///   "hv:images": []}}"#;
    /// let list = parse_image_list(payload, &ParseLimits::default()).unwrap().list;
    /// let json = list.to_json();
    /// let inner = &json["hv:imagelist"];
    /// assert_eq!(inner["dc:date:created"], "2027-01-01T00:00:00Z");
    /// assert_eq!(inner["hv:endorser"]["hv:x509"]["hv:dn"], "/CN=E");
    /// assert_eq!(inner["ad:vo"], "vo.example.org");
    /// let again = parse_image_list(&list.to_json_bytes(), &ParseLimits::default()).unwrap();
    /// assert_eq!(again.list, list);
    /// ```
    pub fn to_json(&self) -> Value {
        let mut map = JsonObject::new();
        map.insert("dc:identifier".into(), self.identifier.as_str().into());
        map.insert("dc:title".into(), self.title.clone().into());
        map.insert("dc:description".into(), self.description.clone().into());
        map.insert("dc:source".into(), self.source.clone().into());
        map.insert("dc:date:created".into(), rfc3339(self.created).into());
        map.insert("dc:date:expires".into(), rfc3339(self.expires).into());
        map.insert("hv:version".into(), self.version.as_str().into());
        map.insert("hv:uri".into(), self.uri.clone().into());
        let endorsers: Vec<Value> = self
            .endorsers
            .iter()
            .map(|e| {
                let mut x = JsonObject::new();
                x.insert("hv:dn".into(), e.dn.clone().into());
                x.insert("hv:ca".into(), e.ca.clone().into());
                if let Some(c) = &e.creator {
                    x.insert("dc:creator".into(), c.clone().into());
                }
                if let Some(m) = &e.email {
                    x.insert("hv:email".into(), m.clone().into());
                }
                for (k, v) in &e.extra {
                    x.entry(k.clone()).or_insert_with(|| v.clone());
                }
                let mut wrapper = JsonObject::new();
                wrapper.insert("hv:x509".into(), Value::Object(x));
                Value::Object(wrapper)
            })
            .collect();
        let endorser = match <[Value; 1]>::try_from(endorsers) {
            Ok([one]) => one,
            Err(many) => Value::Array(many),
        };
        map.insert("hv:endorser".into(), endorser);
        let images = self
            .images
            .iter()
            .map(|image| {
                let mut wrapper = JsonObject::new();
                wrapper.insert("hv:image".into(), Value::Object(image.to_json()));
                Value::Object(wrapper)
            })
            .collect();
        map.insert("hv:images".into(), Value::Array(images));
        for (k, v) in &self.extra {
            map.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut doc = JsonObject::new();
        doc.insert("hv:imagelist".into(), Value::Object(map));
        Value::Object(doc)
    }

    /// [`ImageList::to_json`] as pretty-printed bytes, ready to be signed.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(&self.to_json()).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses a verified payload into an image list (spec checks 5 and 11).
///
/// Structural faults of the list or of any image (missing mandatory keys, wrong types, bad
/// dates, duplicate image identifiers, size and nesting over `limits`) refuse the whole list
/// with a [`ListError`] naming the key and the image. An image whose values fail its own checks
/// (unsafe identifier, malformed checksum, unsupported URI scheme) is left out and reported in
/// [`ParsedList::rejected`].
///
/// The payload must be UTF-8; a UTF-8 byte order mark (`EF BB BF`) at its very start is skipped,
/// as RFC 8259 §8.1 allows, and is not part of the parsed document (offsets in
/// [`ListError::NotUtf8`] still count from the first byte of `payload`). The nesting depth is
/// checked on the raw text before any JSON parsing, so deeply nested input cannot exhaust the
/// stack.
///
/// ```
/// let payload = br#"{"hv:imagelist": {
///   "dc:identifier": "list-1", "dc:title": "T", "dc:description": "D",
///   "dc:source": "https://example.org/", "dc:date:created": "2027-01-01T00:00:00Z",
///   "dc:date:expires": "2027-02-01T00:00:00+01:00", "hv:version": "1.2",
///   "hv:uri": "https://example.org/list",
///   "hv:endorser": {"hv:x509": {"hv:dn": "/C=XX/CN=E", "hv:ca": "/C=XX/CN=CA"}},
///   "hv:images": [{"hv:image": {"dc:identifier": "img-1", "dc:title": "I",
///     "hv:uri": "https://example.org/i.img", "hv:size": "1024",
///     "sl:checksum:sha512": "AB", "hv:version": "1"}}]}}"#;
/// let parsed = vmc_model::parse_image_list(payload, &Default::default()).unwrap();
/// assert_eq!(parsed.list.identifier.as_str(), "list-1");
/// // "AB" is no sha512: that image is left out, the list stands.
/// assert!(parsed.list.images.is_empty());
/// assert_eq!(parsed.rejected.len(), 1);
/// ```
pub fn parse_image_list(payload: &[u8], limits: &ParseLimits) -> Result<ParsedList, ListError> {
    if payload.len() > limits.max_bytes {
        return Err(ListError::TooLarge {
            size: payload.len(),
            max: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|e| ListError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    // RFC 8259 §8.1 lets parsers ignore a byte order mark; some Windows tools write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_depth(text, limits.max_depth)?;
    let doc: Value = serde_json::from_str(text).map_err(|source| ListError::Syntax {
        line: source.line(),
        column: source.column(),
        source,
    })?;
    // The tree is taken apart rather than copied: its strings and values move into the list.
    let Value::Object(mut root) = doc else {
        return Err(ListError::WrongType {
            key: "(document)".into(),
            location: Location::List,
            expected: "an object holding \"hv:imagelist\"",
        });
    };
    match root.remove("hv:imagelist") {
        Some(Value::Object(obj)) => parse_list_object(obj, limits),
        Some(_) => Err(ListError::WrongType {
            key: "hv:imagelist".into(),
            location: Location::List,
            expected: "an object",
        }),
        None => Err(ListError::MissingKey {
            key: "hv:imagelist".into(),
            location: Location::List,
        }),
    }
}

fn parse_list_object(mut obj: JsonObject, limits: &ParseLimits) -> Result<ParsedList, ListError> {
    let loc = Location::List;
    for key in LIST_KEYS {
        if !obj.contains_key(key) {
            return Err(ListError::MissingKey {
                key: key.into(),
                location: loc,
            });
        }
    }
    let identifier =
        Identifier::new(string(&obj, "dc:identifier", &loc)?).map_err(ListError::ListIdentifier)?;
    let raw_images = match obj.get_mut("hv:images") {
        Some(Value::Array(items)) => std::mem::take(items),
        _ => return Err(wrong("hv:images", &loc, "an array")),
    };
    if raw_images.len() > limits.max_images {
        return Err(ListError::TooManyImages {
            count: raw_images.len(),
            max: limits.max_images,
        });
    }
    // Identifiers must be unique; the first repeat is refused when the images are read in
    // order, before that image's own checks.
    let first_repeat = {
        let mut seen = HashSet::with_capacity(raw_images.len());
        raw_images.iter().position(|item| {
            item.get("hv:image")
                .and_then(|i| i.get("dc:identifier"))
                .and_then(Value::as_str)
                .is_some_and(|id| !seen.insert(id))
        })
    };
    let mut images = Vec::with_capacity(raw_images.len());
    let mut rejected = Vec::new();
    for (index, item) in raw_images.into_iter().enumerate() {
        if Some(index) == first_repeat {
            let identifier = item["hv:image"]["dc:identifier"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            return Err(ListError::DuplicateImageId { identifier });
        }
        match parse_image(index, item)? {
            Ok(image) => images.push(image),
            Err(error) => rejected.push(RejectedImage { error }),
        }
    }
    let list = ImageList {
        identifier,
        title: string(&obj, "dc:title", &loc)?,
        description: string(&obj, "dc:description", &loc)?,
        source: string(&obj, "dc:source", &loc)?,
        created: date(&obj, "dc:date:created", &loc)?,
        expires: date(&obj, "dc:date:expires", &loc)?,
        version: Version::new(string(&obj, "hv:version", &loc)?),
        uri: string(&obj, "hv:uri", &loc)?,
        endorsers: endorsers(&obj["hv:endorser"])?,
        images,
        extra: obj
            .into_iter()
            .filter(|(k, _)| !LIST_KEYS.contains(&k.as_str()))
            .collect(),
    };
    Ok(ParsedList { list, rejected })
}

/// Outer `Err`: the list is malformed. Inner `Err`: this image is left out.
fn parse_image(index: usize, item: Value) -> Result<Result<Image, ImageError>, ListError> {
    let mut loc = Location::Image {
        index,
        identifier: None,
    };
    let Value::Object(mut wrapper) = item else {
        return Err(wrong("hv:images[]", &loc, "an object holding \"hv:image\""));
    };
    let obj = match wrapper.remove("hv:image") {
        Some(Value::Object(obj)) => obj,
        Some(_) => return Err(wrong("hv:image", &loc, "an object")),
        None => {
            return Err(ListError::MissingKey {
                key: "hv:image".into(),
                location: loc,
            });
        }
    };
    if let Some(Value::String(id)) = obj.get("dc:identifier") {
        loc = Location::Image {
            index,
            identifier: Some(truncate(id)),
        };
    }
    for key in IMAGE_KEYS {
        if !obj.contains_key(key) {
            return Err(ListError::MissingKey {
                key: key.into(),
                location: loc,
            });
        }
    }
    // One pass in document order: the mandatory values to their slots, the rest kept as
    // written.
    let mut mandatory: [Value; IMAGE_KEYS.len()] = Default::default();
    let mut extra = JsonObject::new();
    for (key, value) in obj {
        match IMAGE_KEYS.iter().position(|k| *k == key) {
            Some(slot) => mandatory[slot] = value,
            None => {
                extra.insert(key, value);
            }
        }
    }
    let [id_value, title, uri, size, sha512, version] = mandatory;
    let id_text = into_string(id_value, "dc:identifier", &loc)?;
    let title = into_string(title, "dc:title", &loc)?;
    let uri = into_string(uri, "hv:uri", &loc)?;
    let size = match &size {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok()
        }
        _ => None,
    }
    .ok_or_else(|| {
        wrong(
            "hv:size",
            &loc,
            "a non-negative integer (number or string of digits) below 2^64",
        )
    })?;
    let mut sha512 = into_string(sha512, "sl:checksum:sha512", &loc)?;
    let version = match version {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        _ => return Err(wrong("hv:version", &loc, "a string")),
    };
    let identifier = match Identifier::new(id_text) {
        Ok(id) => id,
        Err(source) => {
            return Ok(Err(ImageError::UnsafeIdentifier {
                location: loc,
                source,
            }));
        }
    };
    if sha512.len() != 128 || !sha512.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Err(ImageError::BadChecksum { location: loc }));
    }
    let scheme_ok = ["http://", "https://", "file://"].iter().any(|p| {
        uri.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    });
    if !scheme_ok {
        return Ok(Err(ImageError::BadUri { location: loc }));
    }
    sha512.make_ascii_lowercase();
    Ok(Ok(Image {
        identifier,
        title,
        uri,
        size,
        sha512,
        version,
        extra,
    }))
}

/// The string `value` of the mandatory `key` (present: checked before).
fn into_string(value: Value, key: &str, location: &Location) -> Result<String, ListError> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(wrong(key, location, "a string")),
    }
}

fn endorsers(value: &Value) -> Result<Vec<EndorserClaim>, ListError> {
    let loc = Location::List;
    // Each claim is named by its path in error messages: `hv:endorser` for the object form,
    // `hv:endorser[i]` for the array form.
    let items: Vec<(String, &Value)> = match value {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("hv:endorser[{i}]"), item))
            .collect(),
        Value::Object(_) => vec![("hv:endorser".to_owned(), value)],
        _ => {
            return Err(wrong(
                "hv:endorser",
                &loc,
                "an object or a non-empty array of objects",
            ));
        }
    };
    items
        .into_iter()
        .map(|(path, item)| {
            let wrapper = item
                .as_object()
                .ok_or_else(|| wrong(&path, &loc, "an object holding \"hv:x509\""))?;
            let x509_path = format!("{path}.hv:x509");
            let x509 = match wrapper.get("hv:x509") {
                Some(Value::Object(x509)) => x509,
                Some(_) => return Err(wrong(&x509_path, &loc, "an object")),
                None => {
                    return Err(ListError::MissingKey {
                        key: x509_path,
                        location: loc.clone(),
                    });
                }
            };
            let optional = |key: &str| -> Result<Option<String>, ListError> {
                match x509.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(wrong(&format!("{x509_path}.{key}"), &loc, "a string")),
                }
            };
            Ok(EndorserClaim {
                dn: string_at(x509, "hv:dn", &format!("{x509_path}.hv:dn"), &loc)?,
                ca: string_at(x509, "hv:ca", &format!("{x509_path}.hv:ca"), &loc)?,
                creator: optional("dc:creator")?,
                email: optional("hv:email")?,
                extra: x509
                    .iter()
                    .filter(|(k, _)| !ENDORSER_KEYS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
        })
        .collect()
}

fn wrong(key: &str, location: &Location, expected: &'static str) -> ListError {
    ListError::WrongType {
        key: key.into(),
        location: location.clone(),
        expected,
    }
}

fn string(obj: &JsonObject, key: &str, location: &Location) -> Result<String, ListError> {
    string_at(obj, key, key, location)
}

fn string_at(
    obj: &JsonObject,
    key: &str,
    full_key: &str,
    location: &Location,
) -> Result<String, ListError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(wrong(full_key, location, "a string")),
        None => Err(ListError::MissingKey {
            key: full_key.into(),
            location: location.clone(),
        }),
    }
}

fn date(obj: &JsonObject, key: &str, location: &Location) -> Result<DateTime<Utc>, ListError> {
    let text = string(obj, key, location)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| ListError::BadDate {
            key: key.into(),
            location: location.clone(),
            value: truncate(&text),
        })
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Refuses nesting deeper than `max` before the JSON parser sees it.
fn check_depth(text: &str, max: usize) -> Result<(), ListError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ListError::TooDeep { max });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

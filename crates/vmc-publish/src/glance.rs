//! OpenStack Glance v2 over the agent vmc-fetch configures (one TLS set-up for the whole
//! program): create, streamed upload, get, find by property, hide, deactivate/reactivate,
//! share, delete.
//!
//! Authentication is a Keystone token ([`crate::Keystone`], refreshed once on a 401) or, for a
//! Glance deployed without Keystone (the `trusted` paste flavor, as the tests run it), the
//! identity headers Keystone's middleware would set ([`GlanceAuth::TrustedHeaders`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha512};
use ureq::{Agent, Body, SendBody};

use crate::PublishError;
use crate::keystone::Keystone;
use crate::service::{Deletion, ImageService, NewRemoteImage, RemoteImage};

/// Largest answer body read from Glance (image records and listings).
const MAX_ANSWER: u64 = 16 << 20;
/// Attempts for a read (GET) that fails transiently.
const READ_ATTEMPTS: u32 = 3;
/// The fields of Glance's image record that are not free-form properties (nor may an
/// annotation set them).
pub(crate) const STANDARD_FIELDS: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "min_ram",
    "min_disk",
    "disk_format",
    "container_format",
    "created_at",
    "updated_at",
    "tags",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
    "stores",
];

/// How requests to Glance are authenticated.
#[derive(Clone)]
pub enum GlanceAuth {
    /// A Keystone v3 token, fetched and refreshed as needed.
    Keystone(Keystone),
    /// Identity headers sent as they are, for a Glance that trusts them (deployed without
    /// Keystone, with the `trusted` paste flavor): `X-Identity-Status: Confirmed`, `X-Roles`,
    /// `X-Project-Id`, `X-User-Id`. Never use this against a Glance reachable by others.
    TrustedHeaders(Vec<(String, String)>),
}

impl std::fmt::Debug for GlanceAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GlanceAuth::Keystone(k) => f.debug_tuple("Keystone").field(k).finish(),
            GlanceAuth::TrustedHeaders(h) => f
                .debug_tuple("TrustedHeaders")
                .field(&h.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// A Glance v2 client.
#[derive(Debug, Clone)]
pub struct Glance {
    agent: Agent,
    base: String,
    auth: GlanceAuth,
}

/// A request's body.
enum Payload<'a> {
    None,
    Json(&'a Value),
    Patch(&'a Value),
}

impl Glance {
    /// A client of the Glance at `endpoint` (`https://glance.example:9292`, with or without a
    /// trailing `/v2`).
    pub fn new(agent: Agent, endpoint: &str, auth: GlanceAuth) -> Glance {
        let base = endpoint.trim_end_matches('/');
        let base = base.strip_suffix("/v2").unwrap_or(base).to_owned();
        Glance { agent, base, auth }
    }

    /// A client of the image endpoint in the catalog of `keystone`'s token (or of
    /// `endpoint_override`, as `OS_IMAGE_URL` / clouds.yaml's `image_endpoint_override`).
    pub fn from_keystone(
        agent: Agent,
        keystone: Keystone,
        endpoint_override: Option<&str>,
    ) -> Result<Glance, PublishError> {
        let endpoint = match endpoint_override {
            Some(e) => e.to_owned(),
            None => keystone.endpoint("image")?,
        };
        Ok(Glance::new(
            agent,
            &endpoint,
            GlanceAuth::Keystone(keystone),
        ))
    }

    /// The API base URL (without `/v2`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2{path}", self.base)
    }

    fn auth_headers(&self, refresh: bool) -> Result<Vec<(String, String)>, PublishError> {
        match &self.auth {
            GlanceAuth::TrustedHeaders(h) => Ok(h.clone()),
            GlanceAuth::Keystone(k) => {
                if refresh {
                    k.invalidate();
                }
                Ok(vec![("X-Auth-Token".to_owned(), k.token()?)])
            }
        }
    }

    /// One request with a small body; on a 401 under Keystone the token is fetched again
    /// once. Returns the status and the body text.
    fn call(
        &self,
        method: &'static str,
        path: &str,
        payload: Payload<'_>,
    ) -> Result<(u16, String), PublishError> {
        let url = self.url(path);
        let mut refreshed = false;
        loop {
            let headers = self.auth_headers(refreshed)?;
            let result = send(&self.agent, method, &url, &headers, &payload);
            match result {
                Ok((401, _)) if matches!(self.auth, GlanceAuth::Keystone(_)) && !refreshed => {
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    /// [`Self::call`] for reads, retried on 5xx and connection failures.
    fn read(&self, path: &str) -> Result<(u16, String), PublishError> {
        let mut attempt = 1;
        loop {
            match self.call("GET", path, Payload::None) {
                Ok((status, _)) | Err(PublishError::Status { status, .. })
                    if status >= 500 && attempt < READ_ATTEMPTS =>
                {
                    tracing::info!(path, status, attempt, "Glance read failed, retrying");
                }
                Err(PublishError::Http { .. }) if attempt < READ_ATTEMPTS => {
                    tracing::info!(path, attempt, "Glance read failed, retrying");
                }
                other => return other,
            }
            std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
            attempt += 1;
        }
    }

    fn expect(
        &self,
        method: &'static str,
        path: &str,
        (status, body): (u16, String),
        ok: &[u16],
    ) -> Result<String, PublishError> {
        if ok.contains(&status) {
            Ok(body)
        } else {
            Err(PublishError::Status {
                method,
                url: self.url(path),
                status,
                body: body.chars().take(500).collect(),
            })
        }
    }

    fn parse_image(&self, path: &str, body: &str) -> Result<RemoteImage, PublishError> {
        let value: Value = serde_json::from_str(body).map_err(|e| PublishError::Protocol {
            url: self.url(path),
            reason: format!("not JSON: {e}"),
        })?;
        image_from_json(&value).ok_or_else(|| PublishError::Protocol {
            url: self.url(path),
            reason: "an image record without id or status".to_owned(),
        })
    }
}

impl ImageService for Glance {
    fn create(&self, image: &NewRemoteImage) -> Result<RemoteImage, PublishError> {
        let mut body = serde_json::Map::new();
        for (k, v) in &image.properties {
            body.insert(k.clone(), json!(v));
        }
        body.insert("name".into(), json!(image.name));
        body.insert("disk_format".into(), json!(image.disk_format));
        body.insert("container_format".into(), json!(image.container_format));
        body.insert("visibility".into(), json!(image.visibility.as_str()));
        body.insert("min_ram".into(), json!(image.min_ram));
        body.insert("min_disk".into(), json!(image.min_disk));
        if let Some(owner) = &image.owner {
            body.insert("owner".into(), json!(owner));
        }
        let body = Value::Object(body);
        let answer = self.call("POST", "/images", Payload::Json(&body))?;
        let text = self.expect("POST", "/images", answer, &[201])?;
        self.parse_image("/images", &text)
    }

    fn upload(&self, id: &str, path: &Path, size: u64) -> Result<String, PublishError> {
        let io_err = |source| PublishError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let mut reader = HashingReader {
            inner: file.take(size),
            hasher: Sha512::new(),
            count: 0,
        };
        let route = format!("/images/{id}/file");
        let url = self.url(&route);
        let mut request = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string());
        for (k, v) in self.auth_headers(false)? {
            request = request.header(k, v);
        }
        let response = request
            .send(SendBody::from_reader(&mut reader))
            .map_err(|source| PublishError::Http {
                method: "PUT",
                url: url.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let body = read_body(&url, "PUT", response.into_body())?;
        self.expect("PUT", &route, (status, body), &[204])?;
        if reader.count != size {
            return Err(PublishError::Io {
                path: path.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} bytes read, {size} expected", reader.count),
                ),
            });
        }
        Ok(hex::encode(reader.hasher.finalize()))
    }

    fn get(&self, id: &str) -> Result<Option<RemoteImage>, PublishError> {
        let route = format!("/images/{id}");
        let answer = self.read(&route)?;
        if answer.0 == 404 {
            return Ok(None);
        }
        let text = self.expect("GET", &route, answer, &[200])?;
        self.parse_image(&route, &text).map(Some)
    }

    fn find(&self, key: &str, value: &str) -> Result<Vec<RemoteImage>, PublishError> {
        let mut found = Vec::new();
        // Hidden images are left out of listings unless asked for.
        for hidden in ["false", "true"] {
            let mut route = format!(
                "/images?{}={}&os_hidden={hidden}&limit=1000",
                query_escape(key),
                query_escape(value)
            );
            loop {
                let answer = self.read(&route)?;
                let text = self.expect("GET", &route, answer, &[200])?;
                let page: Value =
                    serde_json::from_str(&text).map_err(|e| PublishError::Protocol {
                        url: self.url(&route),
                        reason: format!("not JSON: {e}"),
                    })?;
                let images = page["images"]
                    .as_array()
                    .ok_or_else(|| PublishError::Protocol {
                        url: self.url(&route),
                        reason: "no `images` array".to_owned(),
                    })?;
                for image in images {
                    if let Some(image) = image_from_json(image)
                        && image.properties.get(key).map(String::as_str) == Some(value)
                    {
                        found.push(image);
                    }
                }
                match page["next"].as_str() {
                    Some(next) => route = next.strip_prefix("/v2").unwrap_or(next).to_owned(),
                    None => break,
                }
            }
        }
        Ok(found)
    }

    fn set_hidden(&self, id: &str, hidden: bool) -> Result<(), PublishError> {
        let route = format!("/images/{id}");
        let patch = json!([{"op": "replace", "path": "/os_hidden", "value": hidden}]);
        let answer = self.call("PATCH", &route, Payload::Patch(&patch))?;
        self.expect("PATCH", &route, answer, &[200]).map(drop)
    }

    fn deactivate(&self, id: &str) -> Result<(), PublishError> {
        let route = format!("/images/{id}/actions/deactivate");
        let answer = self.call("POST", &route, Payload::None)?;
        self.expect("POST", &route, answer, &[204]).map(drop)
    }

    fn reactivate(&self, id: &str) -> Result<(), PublishError> {
        let route = format!("/images/{id}/actions/reactivate");
        let answer = self.call("POST", &route, Payload::None)?;
        self.expect("POST", &route, answer, &[204]).map(drop)
    }

    fn add_member(&self, id: &str, project: &str) -> Result<(), PublishError> {
        let route = format!("/images/{id}/members");
        let body = json!({ "member": project });
        let answer = self.call("POST", &route, Payload::Json(&body))?;
        // 409: already a member.
        self.expect("POST", &route, answer, &[200, 409]).map(drop)
    }

    fn delete(&self, id: &str) -> Result<Deletion, PublishError> {
        let route = format!("/images/{id}");
        let answer = self.call("DELETE", &route, Payload::None)?;
        match answer.0 {
            204 | 404 => Ok(Deletion::Deleted),
            403 | 409 => Ok(Deletion::InUse),
            _ => self
                .expect("DELETE", &route, answer, &[])
                .map(|_| Deletion::Deleted),
        }
    }
}

/// Sends one request and reads the answer (any status).
fn send(
    agent: &Agent,
    method: &'static str,
    url: &str,
    headers: &[(String, String)],
    payload: &Payload<'_>,
) -> Result<(u16, String), PublishError> {
    let http_err = |source| PublishError::Http {
        method,
        url: url.to_owned(),
        source,
    };
    let response = match method {
        "GET" | "DELETE" => {
            let mut request = if method == "GET" {
                agent.get(url)
            } else {
                agent.delete(url)
            };
            for (k, v) in headers {
                request = request.header(k, v);
            }
            request.call().map_err(http_err)?
        }
        _ => {
            let mut request = match method {
                "PATCH" => agent.patch(url),
                "PUT" => agent.put(url),
                _ => agent.post(url),
            };
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let (content_type, bytes) = match payload {
                Payload::None => ("application/json", Vec::new()),
                Payload::Json(v) => ("application/json", v.to_string().into_bytes()),
                Payload::Patch(v) => (
                    "application/openstack-images-v2.1-json-patch",
                    v.to_string().into_bytes(),
                ),
            };
            request = request.header("Content-Type", content_type);
            if bytes.is_empty() {
                request.send_empty().map_err(http_err)?
            } else {
                request.send(&bytes[..]).map_err(http_err)?
            }
        }
    };
    let status = response.status().as_u16();
    let body = read_body(url, method, response.into_body())?;
    tracing::debug!(method, url, status, "Glance answered");
    Ok((status, body))
}

fn read_body(url: &str, method: &'static str, mut body: Body) -> Result<String, PublishError> {
    body.with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|source| PublishError::Http {
            method,
            url: url.to_owned(),
            source,
        })
}

/// An image record of Glance's JSON.
fn image_from_json(value: &Value) -> Option<RemoteImage> {
    let object = value.as_object()?;
    let text = |k: &str| object.get(k).and_then(Value::as_str).map(str::to_owned);
    let properties: BTreeMap<String, String> = object
        .iter()
        .filter(|(k, _)| !STANDARD_FIELDS.contains(&k.as_str()))
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect();
    Some(RemoteImage {
        id: text("id")?,
        status: text("status")?,
        hash_algo: text("os_hash_algo"),
        hash_value: text("os_hash_value"),
        hidden: object
            .get("os_hidden")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        protected: object
            .get("protected")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        tags: object
            .get("tags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        owner: text("owner"),
        visibility: text("visibility").unwrap_or_default(),
        properties,
    })
}

/// Percent-encodes a query component (unreserved characters stay).
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads through, hashing and counting.
struct HashingReader<R> {
    inner: R,
    hasher: Sha512,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_escaped() {
        assert_eq!(query_escape("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(query_escape("vmc_identifier"), "vmc_identifier");
    }

    #[test]
    fn image_records_split_standard_fields_from_properties() {
        let image = image_from_json(&json!({
            "id": "x", "status": "active", "os_hidden": true, "protected": false,
            "tags": ["vmc-in-use"], "os_hash_algo": "sha512", "os_hash_value": "ab",
            "vmc_identifier": "img", "min_ram": 0, "owner": "p"
        }))
        .unwrap();
        assert!(image.hidden);
        assert_eq!(image.tags, ["vmc-in-use"]);
        assert_eq!(image.hash_value.as_deref(), Some("ab"));
        assert_eq!(
            image.properties,
            BTreeMap::from([("vmc_identifier".to_owned(), "img".to_owned())])
        );
        assert!(image_from_json(&json!({"status": "active"})).is_none());
    }

    #[test]
    fn endpoints_lose_a_trailing_version() {
        let agent = Agent::new_with_defaults();
        let auth = GlanceAuth::TrustedHeaders(Vec::new());
        assert_eq!(
            Glance::new(agent.clone(), "http://g:9292/v2/", auth.clone()).base_url(),
            "http://g:9292"
        );
        assert_eq!(
            Glance::new(agent, "http://g:9292", auth).base_url(),
            "http://g:9292"
        );
    }
}

//! `<cache>/cache.index`: a JSON object keyed by image id, for people and old tools (the
//! database is the source of truth). Rewritten atomically from the database after every change.
//!
//! The format is the one the old vmcatcher's `vmcatcher_cache` reads and writes
//! (`manged_directory.py`, `controler.py`), so that a site can go back to vmcatcher with the
//! cache vmc kept: every entry carries vmcatcher's own keys (`filename`, `uuid`, `sha512`,
//! `size`, `uri`, `msgHash`, `DownLoadTrys`), the image's `dc:*`, `hv:*` and `sl:*` keys
//! under vmcatcher's names, `hv:imagelist.dc:identifier` and `hv:imagelist.ad:vo`, and every
//! raw image key again as `hv:image.<key>`; vmc adds `cached_at`. The only key of vmcatcher's
//! left out is `message`, the whole signed list copied into every entry, which vmcatcher
//! writes but never reads (it compares `msgHash`).
//!
//! vmcatcher deletes every file of its cache directory that its index does not name. So an
//! entry of an index vmc did not write (vmcatcher's own, for a file vmc did not adopt) is kept
//! as it was while its file is still in the directory: rolling back loses no file.
//!
//! An OCI image is verified against its layer's `sha256:…` digest, which is no sha512. Its
//! entry still carries `sha512` and `sl:checksum:sha512` (and `hv:image.sl:checksum:sha512`)
//! with the file's real SHA-512, because every reader of the format relies on them:
//! vmcatcher's `checkSumCache` re-hashes each file with SHA-512 and deletes it when the index
//! says otherwise, and its `expire` reads the key without a default (a missing key stops it).
//! The digest vmc verifies is under `oci:layer_digest`. The SHA-512 is computed once per file
//! (in parallel when several files need it) and then taken from the index itself while the
//! entry names the same layer digest and size.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};
use vmc_store::{CacheEntry, ImageRecord};

use crate::error::{CacheError, io};
use crate::oci::is_layer_digest;

/// The file name of the index inside the cache directory.
pub const INDEX_FILE: &str = "cache.index";

/// The image keys vmcatcher copies into an entry under their own names (beside `hv:image.*`).
const IMAGE_KEYS: [&str; 9] = [
    "dc:title",
    "dc:description",
    "hv:uri",
    "hv:version",
    "hv:hypervisor",
    "sl:arch",
    "sl:comments",
    "sl:os",
    "sl:osversion",
];

/// `extra`/index key of an OCI image's verified digest (the layer's, `sha256:…`).
const LAYER_DIGEST_KEY: &str = crate::oci::KEY_LAYER_DIGEST;

/// The index entry of one cached file, in vmcatcher's format (see the module doc).
/// `file_sha512` is the file's SHA-512 when its recorded digest is an OCI layer's (`None`
/// when it could not be computed: the checksum keys are then left out).
pub fn entry(
    cached: &CacheEntry,
    record: Option<&ImageRecord>,
    file_sha512: Option<&str>,
) -> Value {
    let mut map = Map::new();
    let id = cached.identifier.as_str();
    map.insert("filename".into(), cached.filename.clone().into());
    map.insert("dc:identifier".into(), id.into());
    map.insert("uuid".into(), id.into());
    let oci = is_layer_digest(&cached.sha512);
    let sha512 = if oci {
        map.insert(LAYER_DIGEST_KEY.into(), cached.sha512.clone().into());
        file_sha512
    } else {
        Some(cached.sha512.as_str())
    };
    if let Some(sha512) = sha512 {
        map.insert("sl:checksum:sha512".into(), sha512.into());
        map.insert("sha512".into(), sha512.into());
    }
    map.insert("hv:size".into(), cached.size.into());
    map.insert("size".into(), cached.size.into());
    map.insert(
        "cached_at".into(),
        cached
            .cached_at
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
            .into(),
    );
    // vmcatcher's expiry reads msgHash: present even when no current list names the image.
    let msg_hash = record.map(|r| r.list_sha512.clone()).unwrap_or_default();
    map.insert("msgHash".into(), msg_hash.clone().into());
    map.insert(
        "DownLoadTrys".into(),
        serde_json::json!({"count": 1, "msgHash": msg_hash}),
    );
    if let Some(rec) = record {
        let raw = rec.image.to_json();
        for key in IMAGE_KEYS {
            if let Some(v) = raw.get(key) {
                map.insert(key.into(), v.clone());
            }
        }
        if let Some(uri) = raw.get("hv:uri") {
            map.insert("uri".into(), uri.clone());
        }
        map.insert(
            "hv:imagelist.dc:identifier".into(),
            rec.list_identifier.clone().into(),
        );
        if let Some(vo) = rec.list_vo.as_ref().filter(|vo| !vo.is_empty()) {
            map.insert("hv:imagelist.ad:vo".into(), vo.clone().into());
        }
        for (k, v) in raw {
            map.insert(format!("hv:image.{k}"), v);
        }
        if oci {
            // The raw key holds the layer digest: the file's SHA-512 instead, or nothing.
            let key = "hv:image.sl:checksum:sha512";
            match sha512 {
                Some(sha512) => map.insert(key.into(), sha512.into()),
                None => map.remove(key),
            };
        }
    }
    Value::Object(map)
}

/// The SHA-512 of every cached file whose recorded digest is an OCI layer's: from the entry
/// `old` (the index now on disk) when it names the same layer digest and size, else hashed
/// from the file, several files at once. A file that cannot be read is logged and left out.
fn oci_file_sha512s(
    cache_dir: &Path,
    cached: &[CacheEntry],
    old: &Map<String, Value>,
) -> HashMap<String, String> {
    let mut known = HashMap::new();
    let mut to_hash = Vec::new();
    for c in cached.iter().filter(|c| is_layer_digest(&c.sha512)) {
        let id = c.identifier.to_string();
        let remembered = old.get(&id).and_then(|e| {
            let same = e.get(LAYER_DIGEST_KEY).and_then(Value::as_str) == Some(&c.sha512)
                && e.get("size").and_then(Value::as_u64) == Some(c.size);
            e.get("sha512")
                .and_then(Value::as_str)
                .filter(|h| same && h.len() == 128 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        match remembered {
            Some(sha512) => {
                known.insert(id, sha512.to_owned());
            }
            None => to_hash.push((id, cache_dir.join(&c.filename))),
        }
    }
    if to_hash.is_empty() {
        return known;
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(to_hash.len());
    let hashed: Vec<(String, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = to_hash
            .chunks(to_hash.len().div_ceil(threads))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|(id, path)| match vmc_fetch::sha512_file(path) {
                            Ok(sha512) => Some((id.clone(), sha512)),
                            Err(e) => {
                                tracing::warn!(
                                    "{}: cannot compute its sha512 for {INDEX_FILE}: {e}",
                                    path.display()
                                );
                                None
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    known.extend(hashed);
    known
}

/// Whether `name` is one plain file name (no directory part, not `.`/`..`).
pub(crate) fn plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".." && !name.contains('\0')
}

/// The entries of the index now in `cache_dir` that vmc keeps as they are: those of image ids
/// vmc has not cached whose file (`filename`, else the key) is still in the directory and is
/// not one of vmc's files.
fn foreign_entries(
    cache_dir: &Path,
    cached: &[CacheEntry],
    old: &Map<String, Value>,
) -> Vec<(String, Value)> {
    let ours: HashSet<&str> = cached
        .iter()
        .flat_map(|c| [c.identifier.as_str(), c.filename.as_str()])
        .collect();
    old.iter()
        .filter(|(key, value)| {
            let file = value.get("filename").and_then(Value::as_str).unwrap_or(key);
            !ours.contains(key.as_str())
                && !ours.contains(file)
                && plain_file_name(file)
                && file != INDEX_FILE
                && cache_dir.join(file).is_file()
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// The index now in `cache_dir` (empty when there is none, or it is no JSON object).
/// The index now on disk: its bytes (empty when there is none) and its entries.
fn read_old(cache_dir: &Path) -> (Vec<u8>, Map<String, Value>) {
    let path = cache_dir.join(INDEX_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return (Vec::new(), Map::new());
    };
    let old = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(old)) => old,
        _ => {
            tracing::warn!("{} is not a JSON object: rewritten", path.display());
            Map::new()
        }
    };
    (bytes, old)
}

/// Writes the index for `cached` entries atomically (a temporary file named for this writer
/// alone, fsync, rename), keeping the entries of files vmc did not write (see the module doc);
/// an index that already says exactly this is left as it is.
pub fn write(
    cache_dir: &Path,
    cached: &[CacheEntry],
    records: &[ImageRecord],
) -> Result<(), CacheError> {
    let (old_bytes, old) = read_old(cache_dir);
    let mut doc = Map::new();
    for (key, value) in foreign_entries(cache_dir, cached, &old) {
        doc.insert(key, value);
    }
    let sha512s = oci_file_sha512s(cache_dir, cached, &old);
    for c in cached {
        let rec = records.iter().find(|r| r.image.identifier == c.identifier);
        let id = c.identifier.to_string();
        doc.insert(
            id.clone(),
            entry(c, rec, sha512s.get(&id).map(String::as_str)),
        );
    }
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc)).unwrap_or_default();
    bytes.push(b'\n');
    let target = cache_dir.join(INDEX_FILE);
    if old_bytes == bytes {
        return Ok(());
    }
    vmc_fetch::replace_file(&target, &bytes).map_err(io("write", &target))
}
